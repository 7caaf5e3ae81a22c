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
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx

from permgraph.axisgraph import Atom, AxisGraph
from permgraph.rules import Context, _flat_nodes, block_everything, op_name, rule_for
from permgraph.spec import Group, Member, PermSpec
from permgraph.trace import Traced, trace

__all__ = ["Analysis", "analyse", "infer", "spec_from_analysis"]

log = logging.getLogger(__name__)


@dataclass
class Analysis:
    """The axis graph of one traced model, kept for inspection and drawing."""

    traced: Traced
    graph: AxisGraph
    values: dict[torch.fx.Node, Any]
    param_layouts: dict[str, list]
    unknown_ops: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _placeholder(g: AxisGraph, node: torch.fx.Node, traced: Traced, params: dict[str, list]) -> Any:
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


def _block_nested(g: AxisGraph, value: Any, why: str) -> None:
    if isinstance(value, list):
        for v in value:
            _block_nested(g, v, why)
    elif value is not None:
        g.block(value, why)


def analyse(traced: Traced) -> Analysis:
    g = AxisGraph()
    values: dict[torch.fx.Node, Any] = {}
    params: dict[str, list] = {}
    unknown: dict[str, int] = {}
    for node in traced.graph.nodes:
        if node.op == "placeholder":
            values[node] = _placeholder(g, node, traced, params)
        elif node.op == "call_function":
            ctx = Context(g, node, values)
            rule = rule_for(node.target)
            if rule is None:
                name = op_name(node.target)
                unknown[name] = unknown.get(name, 0) + 1
                values[node] = block_everything(ctx, "no rule")
                continue
            try:
                values[node] = rule(ctx)
            except Exception as e:  # a rule that cannot read its op must not guess
                log.debug("rule for %s failed on %s", ctx.op, node.name, exc_info=True)
                values[node] = block_everything(ctx, f"rule failed ({type(e).__name__}: {e})")
        elif node.op == "output":
            outs = node.args[0]
            outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
            for i in traced.user_output_indices:
                if i < len(outs):
                    for n in _flat_nodes(outs[i]):
                        _block_nested(g, values.get(n), "model output")
            for i, key in traced.buffer_mutations.items():
                if i < len(outs) and key in params and isinstance(outs[i], torch.fx.Node):
                    for a, b in zip(params[key], values.get(outs[i]) or []):
                        g.unify(a, b, f"buffer update of {key}")
        elif node.op == "get_attr":
            val = getattr(traced.program.graph_module, str(node.target), None)
            if isinstance(val, torch.Tensor):
                values[node] = [g.atom(int(s), "get_attr", blocked="module attribute") for s in val.shape]
    return Analysis(traced=traced, graph=g, values=values, param_layouts=params, unknown_ops=unknown)


def _structure(g: AxisGraph, root: Atom, members: list[Member]) -> str:
    roles = sorted(g.roles(root))
    if roles:
        return ", ".join(roles)
    kinds = {m.structure.split()[0] for m in members}
    for k in ("factor", "block-expanded", "slice"):
        if k in kinds:
            return {"factor": "factored", "slice": "sliced"}.get(k, k)
    return "plain"


def _group_name(member: Member, taken: set[str]) -> str:
    module = member.param.rsplit(".", 1)[0] if "." in member.param else member.param
    role = {0: "out", 1: "in"}.get(member.axis, f"axis{member.axis}")
    base = f"{module}.{role}"
    if len(member.sizes) > 1 and member.structure.startswith("factor"):
        base += f".f{member.group_dim}"
    if member.offset:
        base += f"@{member.offset}"
    name, k = base, 2
    while name in taken:
        name, k = f"{base}.{k}", k + 1
    taken.add(name)
    return name


def spec_from_analysis(analysis: Analysis, model_name: str = "") -> PermSpec:
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
    groups: list[Group] = []
    taken: set[str] = set()
    for root, ms in members.items():
        reasons = g.blocked_reasons(root)
        blocked = "; ".join(reasons) if reasons else None
        if blocked is None and len({m.param for m in ms}) < 2:
            blocked = "touches a single tensor (nothing to keep consistent with)"
        groups.append(
            Group(
                name=_group_name(ms[0], taken),
                size=g.size(root),
                members=tuple(ms),
                blocked=blocked,
                structure=_structure(g, root, ms),
                origin=g.origin.get(root, ""),
            )
        )
    return PermSpec(
        groups=tuple(groups),
        param_shapes=shapes,
        aliases=dict(analysis.traced.aliases),
        model=model_name,
    )


def infer(
    model: torch.nn.Module,
    example_args: tuple[Any, ...] | Any,
    example_kwargs: dict[str, Any] | None = None,
    *,
    name: str = "",
    return_analysis: bool = False,
) -> PermSpec | tuple[PermSpec, Analysis]:
    """Trace ``model`` on the example inputs and infer every permutation group."""
    t0 = time.perf_counter()
    traced = trace(model, example_args if isinstance(example_args, tuple) else (example_args,), example_kwargs)
    t1 = time.perf_counter()
    analysis = analyse(traced)
    spec = spec_from_analysis(analysis, name or type(model).__name__)
    t2 = time.perf_counter()
    analysis.seconds = {"trace": t1 - t0, "infer": t2 - t1}
    if analysis.unknown_ops:
        log.info("ops without a rule (their axes are blocked): %s", analysis.unknown_ops)
    return (spec, analysis) if return_analysis else spec
