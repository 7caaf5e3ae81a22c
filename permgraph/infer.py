"""Infer a model's permutation groups: run every rule over the traced graph, then read the
groups off the axis graph.

A group is one free atom of the axis graph together with every parameter / buffer axis it
reaches. Groups that reach the model's inputs or outputs, or an op without a proven rule,
are blocked and keep the reason, so ``permgraph inspect`` can say why.

>>> spec = infer(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)),
...              (torch.randn(1, 4),))
>>> [(g.name, g.size) for g in spec.free_groups]
[('0.out', 8)]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.fx

from permgraph.activations import activation_sites
from permgraph.axisgraph import Atom, AxisGraph
from permgraph.rules import AxisLayouts, Context, RuleOutput, TupleLayouts, block_everything, flat_nodes, op_name, rule_for
from permgraph.spec import Group, Member, MemberKind, PermSpec
from permgraph.trace import Traced, as_output_names, choose_outputs, trace

__all__ = ["Analysis", "analyse", "infer", "spec_from_analysis"]

log = logging.getLogger(__name__)


@dataclass
class Analysis:
    """The axis graph of one traced model, kept for inspection and drawing."""

    traced: Traced
    graph: AxisGraph
    values: dict[torch.fx.Node, RuleOutput]
    param_layouts: dict[str, AxisLayouts]
    unknown_ops: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    outputs: tuple[str, ...] | None = None  # the outputs that must be preserved; None: all


def _placeholder(g: AxisGraph, node: torch.fx.Node, traced: Traced, params: dict[str, AxisLayouts]) -> RuleOutput:
    """Parameters and buffers get free atoms (recorded in ``params``); model inputs and
    constants get blocked ones: their units have a meaning fixed outside the model."""
    val = node.meta.get("val")
    if not isinstance(val, torch.Tensor):
        return None
    shape = [int(s) for s in val.shape]
    key = traced.param_of.get(node.name)
    if key is not None:
        layouts = [g.atom(s, f"{key} axis {i}") for i, s in enumerate(shape)]
        params[key] = layouts
        return layouts
    if node.name in traced.constants:
        why = f"constant tensor or non-persistent buffer {node.target!r} (not in the state dict)"
    else:
        why = f"model input {node.name!r}"
    return [g.atom(s, why, blocked=why) for s in shape]


def _block_nested(g: AxisGraph, value: RuleOutput, why: str) -> None:
    if isinstance(value, TupleLayouts):
        for v in value.items:
            _block_nested(g, v, why)
    elif value is not None:
        for layout in value:
            g.block(layout, why)


def _run_rule(ctx: Context, unknown: dict[str, int]) -> RuleOutput:
    """The op's rule applied to ``ctx``; every axis blocked when there is none (counted in
    ``unknown``) or when it raises: a rule that cannot read its op must not guess."""
    rule = rule_for(ctx.node.target)
    if rule is None:
        name = op_name(ctx.node.target)
        unknown[name] = unknown.get(name, 0) + 1
        return block_everything(ctx, "no rule")
    try:
        return rule(ctx)
    except Exception as e:
        log.debug("rule for %s failed on %s", ctx.op, ctx.node.name, exc_info=True)
        return block_everything(ctx, f"rule failed ({type(e).__name__}: {e})")


def _close_outputs(g: AxisGraph, node: torch.fx.Node, analysis: Analysis) -> None:
    """Block what the model returns (its units mean something to the caller) and tie each
    updated buffer (BatchNorm statistics in train mode) to the value written into it."""
    traced, values, params = analysis.traced, analysis.values, analysis.param_layouts
    outs = node.args[0]
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    chosen = None if analysis.outputs is None else choose_outputs(traced, analysis.outputs)
    for i in traced.user_output_indices:
        if i < len(outs) and (chosen is None or i in chosen):
            for n in flat_nodes(outs[i]):
                _block_nested(g, values.get(n), "model output")
    for i, key in traced.buffer_mutations.items():
        if i < len(outs) and key in params and isinstance(outs[i], torch.fx.Node):
            written = values.get(outs[i])
            for a, b in zip(params[key], written if isinstance(written, list) else []):
                g.unify(a, b, f"buffer update of {key}")


def analyse(traced: Traced, outputs: Sequence[str | int] | str | None = None) -> Analysis:
    """Run every op's rule over the traced graph, in order, building one axis graph.
    ``outputs`` names the model outputs that must be preserved (default: all of them)."""
    g = AxisGraph()
    analysis = Analysis(traced=traced, graph=g, values={}, param_layouts={}, unknown_ops={},
                        outputs=as_output_names(outputs))
    if analysis.outputs is not None:
        choose_outputs(traced, analysis.outputs)  # an unknown name fails before any rule runs
    values = analysis.values
    for node in traced.graph.nodes:
        if node.op == "placeholder":
            values[node] = _placeholder(g, node, traced, analysis.param_layouts)
        elif node.op == "call_function":
            values[node] = _run_rule(Context(g, node, values), analysis.unknown_ops)
        elif node.op == "output":
            _close_outputs(g, node, analysis)
        elif node.op == "get_attr":
            val = getattr(traced.program.graph_module, str(node.target), None)
            if isinstance(val, torch.Tensor):
                values[node] = [g.atom(int(s), "get_attr", blocked="module attribute") for s in val.shape]
    return analysis


def _structure(g: AxisGraph, root: Atom, members: list[Member]) -> str:
    roles = sorted(g.roles(root))
    if roles:
        return ", ".join(roles)
    kinds = {m.kind for m in members}
    labels = {MemberKind.FACTOR: "factored", MemberKind.BLOCK_EXPANDED: "block-expanded", MemberKind.SLICE: "sliced"}
    return next((label for k, label in labels.items() if k in kinds), "plain")


def _group_name(member: Member, taken: set[str]) -> str:
    module = member.param.rsplit(".", 1)[0] if "." in member.param else member.param
    role = {0: "out", 1: "in"}.get(member.axis, f"axis{member.axis}")
    base = f"{module}.{role}"
    if member.kind is MemberKind.FACTOR:
        base += f".f{member.group_dim}"
    if member.offset:
        base += f"@{member.offset}"
    name, k = base, 2
    while name in taken:
        name, k = f"{base}.{k}", k + 1
    taken.add(name)
    return name


def _tensor_layouts(value: RuleOutput) -> list[AxisLayouts]:
    """The per-axis layouts of every tensor in a node's value (tuples flattened)."""
    if isinstance(value, TupleLayouts):
        return [t for v in value.items for t in _tensor_layouts(v)]
    return [value] if value else []


def _region_of(g: AxisGraph, analysis: Analysis, member: Member) -> tuple:
    layout = analysis.param_layouts[member.param][member.axis]
    for region in g.regions(layout):
        if region.offset == member.offset and tuple(n for _, n, _ in region.dims) == member.sizes:
            return region.dims
    raise AssertionError("member without its region")


def _block_indices(analysis: Analysis, members: dict[Atom, list[Member]], free: set[Atom]) -> dict[Atom, Atom]:
    """Inner groups whose units may move independently within each unit of an outer group.

    Attention's per-head dims and GroupNorm's within-group channels are factors of an axis
    ``Prod(outer, inner)``. When every value in the graph that carries ``inner`` also carries
    ``outer`` exactly once, no op mixes ``inner`` across different ``outer`` units, so each
    outer unit (head, norm group) may permute its own inner units. A per-dim parameter
    shared by all heads, or a conv weight's in-channel axis, carries ``inner`` without
    ``outer`` and keeps the permutation shared. Parameters must hold both in one axis so
    that ``apply`` can express the dependence."""
    g = analysis.graph
    candidates: dict[Atom, set[Atom] | None] = dict.fromkeys(free)
    for value in analysis.values.values():
        for layouts in _tensor_layouts(value):
            counts: dict[Atom, int] = {}
            for layout in layouts:
                for leaf in g.leaves(layout):
                    counts[leaf] = counts.get(leaf, 0) + 1
            once = {a for a, c in counts.items() if c == 1 and a in free}
            for a, c in counts.items():
                if a not in candidates:
                    continue
                here = once - {a} if c == 1 else set()
                prev = candidates[a]
                candidates[a] = here if prev is None else prev & here
    chosen: dict[Atom, Atom] = {}
    used_as_index: set[Atom] = set()
    for inner, cands in candidates.items():
        if not cands:
            continue
        outer_choice = None
        for m in members[inner]:  # the outer group must sit in the same axis, outside the inner
            dims = [g.root(a) for a, _, _ in _region_of(g, analysis, m)]
            before = [a for a in dims[: m.group_dim] if a in cands]
            cands = cands & set(before)
            if before and outer_choice is None:
                outer_choice = before[-1]
        if not cands or outer_choice not in cands or outer_choice in chosen or inner in used_as_index:
            continue
        chosen[inner] = outer_choice
        used_as_index.add(outer_choice)
    return chosen


def spec_from_analysis(analysis: Analysis, model_name: str = "", per_block: bool = False) -> PermSpec:
    """Read the groups off an analysed graph: one group per root atom that some parameter or
    buffer axis holds, free unless a rule blocked it or it touches a single tensor. ``per_block``:
    as :func:`infer`'s (the same default)."""
    g = analysis.graph
    members: dict[Atom, list[Member]] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for key, layouts in analysis.param_layouts.items():
        shapes[key] = tuple(g.size(x) for x in layouts)
        for axis, layout in enumerate(layouts):
            axis_size = g.size(layout)
            for region in g.regions(layout):
                sizes = tuple(n for _, n, _ in region.dims)
                strides = tuple(s for _, _, s in region.dims)
                for k, (atom, n, _) in enumerate(region.dims):
                    if n < 2:
                        continue
                    members.setdefault(g.root(atom), []).append(
                        Member(key, axis, axis_size, sizes, strides, k, region.offset)
                    )
    blocked_by: dict[Atom, str | None] = {}
    for root, ms in members.items():
        reasons = g.blocked_reasons(root)
        blocked = "; ".join(reasons) if reasons else None
        if blocked is None and len({m.param for m in ms}) < 2:
            blocked = "touches a single tensor (nothing to keep consistent with)"
        blocked_by[root] = blocked
    free = {r for r, b in blocked_by.items() if b is None and g.size(r) >= 2}
    index_of = _block_indices(analysis, members, free) if per_block else {}
    names: dict[Atom, str] = {}
    taken: set[str] = set()
    for root, ms in members.items():
        names[root] = _group_name(ms[0], taken)
    sites = activation_sites(analysis, {r: names[r] for r in free}, index_of)
    groups: list[Group] = []
    for root, ms in members.items():
        outer = index_of.get(root)
        if outer is not None:
            ms = [replace(m, index_dim=[g.root(a) for a, _, _ in _region_of(g, analysis, m)].index(outer))
                  for m in ms]
        structure = _structure(g, root, ms)
        groups.append(
            Group(
                name=names[root],
                size=g.size(root),
                members=tuple(ms),
                blocked=blocked_by[root],
                structure=structure + (f", independent within each unit of {names[outer]}" if outer else ""),
                origin=g.origin.get(root, ""),
                indexed_by=names[outer] if outer is not None else None,
                activations=sites.get(names[root], ()),
            )
        )
    # an indexed group comes after its index group: apply moves blocks first, then within them
    position = {grp.name: i for i, grp in enumerate(groups)}
    groups.sort(key=lambda grp: (position[grp.indexed_by] + 0.5) if grp.indexed_by else position[grp.name])
    return PermSpec(
        groups=tuple(groups),
        param_shapes=shapes,
        aliases=dict(analysis.traced.aliases),
        model=model_name,
        outputs=analysis.outputs,
    )


def infer(
    model: torch.nn.Module,
    example_args: tuple[Any, ...] | Any,
    example_kwargs: dict[str, Any] | None = None,
    *,
    name: str = "",
    return_analysis: bool = False,
    per_block: bool = False,
    outputs: Sequence[str | int] | str | None = None,
) -> PermSpec | tuple[PermSpec, Analysis]:
    """Trace ``model`` on the example inputs and infer every permutation group.

    ``per_block=True`` lets inner groups (dims within an attention head, channels within a
    GroupNorm group) permute independently inside each unit of their outer group: a larger
    symmetry group, whose permutations are ``(blocks, size)`` tensors.

    ``outputs`` names which of the model's outputs must be preserved: keys of a dict or
    ``ModelOutput`` (``("logits",)``), indices of a tuple. The others may change under the
    inferred permutations (T5's ``encoder_last_hidden_state`` then no longer blocks the
    encoder's stream); the spec records the choice and ``verify`` compares only those.
    Default: every output counts."""
    t0 = time.perf_counter()
    traced = trace(model, example_args if isinstance(example_args, tuple) else (example_args,), example_kwargs)
    t1 = time.perf_counter()
    analysis = analyse(traced, outputs)
    spec = spec_from_analysis(analysis, name or type(model).__name__, per_block=per_block)
    t2 = time.perf_counter()
    analysis.seconds = {"trace": t1 - t0, "infer": t2 - t1}
    if analysis.unknown_ops:
        log.info("ops without a rule (their axes are blocked): %s", analysis.unknown_ops)
    return (spec, analysis) if return_analysis else spec
