"""The activations a group permutes: find them in the axis graph, and collect them on data.

A free group's atom sits not only in parameter axes but in the axes of values the model computes:
the output of the linear layer that produces the group's units, the ReLU after it, a residual sum.
Permuting the weights by ``p`` permutes those units by ``p`` for every input, because the axis graph
tied them. :func:`activation_sites` reads them off an analysed graph (``infer`` stores them in
``Group.activations``); :func:`collect_activations` runs the exported graph on inputs and returns,
per group, the matrix ``(units, samples)`` that activation matching and REPAIR read.

Only values computed from the model's inputs count (a transposed weight carries the group too, but
it is a parameter, not an activation). A value in which the group's atom occurs twice (a Gram
matrix) is left out: its other positions would move with the permutation too.

>>> import torch, permgraph
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
>>> spec = permgraph.infer(model, (torch.randn(3, 4),))
>>> [(a.node, a.axis, a.clean) for a in spec.group("0.out").activations]
[('linear', 1, True), ('relu', 1, True)]
>>> acts = collect_activations(model, spec, [torch.randn(5, 4), torch.randn(5, 4)])
>>> tuple(acts["0.out"].shape)  # 8 units x (2 batches x 5 samples x 2 sites)
(8, 20)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.fx
from torch.utils._pytree import tree_leaves

from permgraph.apply import group_rows
from permgraph.axisgraph import Atom
from permgraph.rules.context import concrete_size, op_name
from permgraph.spec import Activation, Group, PermSpec
from permgraph.trace import Traced, trace

__all__ = ["activation_sites", "GraphRunner", "collect_activations", "group_activations", "split_inputs", "Hook"]

log = logging.getLogger(__name__)

Hook = Callable[[str, torch.Tensor], "torch.Tensor | None"]
"""``hook(node_name, value)``: sees a graph value; returning a tensor replaces it downstream."""


def _data_nodes(graph: torch.fx.Graph, user_inputs: Iterable[str]) -> set[torch.fx.Node]:
    """The nodes whose value depends on a model input (graph order makes one pass enough)."""
    names = set(user_inputs)
    out: set[torch.fx.Node] = set()
    for node in graph.nodes:
        if node.op == "placeholder":
            if node.name in names:
                out.add(node)
        elif any(a in out for a in node.all_input_nodes):
            out.add(node)
    return out


def _occurrences(g, layouts: list) -> list[tuple[int, Any, int, Atom]]:
    """(axis, region, factor index, root) of every factor of size >= 2 in a value's layouts."""
    found = []
    for axis, layout in enumerate(layouts):
        for region in g.regions(layout):
            for k, (atom, n, _) in enumerate(region.dims):
                if n >= 2:
                    found.append((axis, region, k, g.root(atom)))
    return found


def activation_sites(analysis, names: Mapping[Atom, str], index_of: Mapping[Atom, Atom] | None = None
                     ) -> dict[str, tuple[Activation, ...]]:  # fmt: skip
    """Per free group (``names``: root atom -> group name, free groups only), every graph value that
    depends on the model's inputs and carries the group's atom once, with its grid (as a member's).

    ``index_of`` maps an inner group's root to its outer one (``infer(per_block=True)``): a site of
    the inner group must hold the outer atom in the same axis, which becomes its ``index_dim``."""
    g, index_of = analysis.graph, index_of or {}
    data = _data_nodes(analysis.traced.graph, analysis.traced.user_inputs)
    out: dict[str, list[Activation]] = {}
    for node in analysis.traced.graph.nodes:
        layouts = analysis.values.get(node)
        if node.op != "call_function" or node not in data or not isinstance(layouts, list) or not layouts:
            continue
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            continue
        shape = tuple(concrete_size(s) for s in val.shape)
        try:
            occ = _occurrences(g, layouts)
        except Exception:  # noqa: BLE001 - a layout this reader cannot place: no site there (never a wrong one)
            log.debug("no activation sites read at %s", node.name, exc_info=True)
            continue
        roots = [r for _, _, _, r in occ]
        for axis, region, k, root in occ:
            if root not in names or roots.count(root) > 1:
                continue
            region_roots = [g.root(a) for a, _, _ in region.dims]
            outer = index_of.get(root)
            index_dim = None
            if outer is not None:
                if outer not in region_roots[:k]:
                    continue  # the outer group is elsewhere: the per-block form does not fit this value
                index_dim = region_roots.index(outer)
            mixed = sorted({names[r] for r in roots if r in names and r != root and r != outer})
            out.setdefault(names[root], []).append(Activation(
                node=node.name, axis=axis, axis_size=g.size(layouts[axis]),
                sizes=tuple(n for _, n, _ in region.dims), strides=tuple(s for _, _, s in region.dims),
                group_dim=k, offset=region.offset, index_dim=index_dim, shape=shape,
                op=op_name(node.target), mixed=tuple(mixed),
            ))  # fmt: skip
    return {name: tuple(sites) for name, sites in out.items()}


def split_inputs(inputs: Any) -> tuple[tuple, dict]:
    """``(args, kwargs)`` of one model call: a tensor is one positional argument, a tuple or list
    the positional arguments, a mapping the keyword arguments."""
    if isinstance(inputs, Mapping):
        return (), dict(inputs)
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}
    return (inputs,), {}


class _Tap:
    """The call a graph module makes at each tapped value: hands it to the runner's hook."""

    def __init__(self, runner: GraphRunner, name: str):
        self.runner, self.name, self.__name__ = runner, name, f"tap_{name}"

    def __call__(self, value: torch.Tensor) -> torch.Tensor:
        hook = self.runner.hook
        new = hook(self.name, value) if hook is not None else None
        return value if new is None else new


class GraphRunner:
    """The model's exported graph, run with a hook on the named values (graph node names).

    torch.export fixes the input shapes, so the graph is exported once per input signature (a
    last, smaller batch gets its own); every export must name the same values, else the spec was
    inferred from another graph and ``ValueError`` says so. ``load(state)`` sets the weights the
    graph runs with (default: the model's own at the first export); the model is not modified."""

    def __init__(self, model: torch.nn.Module, nodes: Iterable[str]):
        self.model = model
        self.nodes = set(nodes)
        self.hook: Hook | None = None
        self.state: dict[str, torch.Tensor] | None = None
        self.traced: Traced | None = None  # the first export: its lifted graph names each parameter
        self._modules: dict[tuple, torch.fx.GraphModule] = {}

    def load(self, state: Mapping[str, torch.Tensor]) -> GraphRunner:
        """Run with ``state`` from now on (a state dict of the model's architecture)."""
        self.state = dict(state)
        for gm in self._modules.values():
            self._load_into(gm)
        return self

    def _load_into(self, gm: torch.fx.GraphModule) -> None:
        if self.state is None:
            return
        own = gm.state_dict()
        missing = [k for k in own if k not in self.state]
        if missing:
            raise ValueError(f"the state dict lacks {missing[:3]} of the model's graph: another architecture")
        # assign: the exported module's tensors may be the model's own; copying into them would
        # overwrite the model (and any state dict that shares its storage)
        gm.load_state_dict({k: self.state[k].to(own[k].device) for k in own}, assign=True)

    def _module_for(self, args: tuple, kwargs: dict) -> torch.fx.GraphModule:
        key = tuple((tuple(x.shape), x.dtype) if isinstance(x, torch.Tensor) else repr(x)
                    for x in tree_leaves((args, kwargs)))  # fmt: skip
        gm = self._modules.get(key)
        if gm is not None:
            return gm
        traced = trace(self.model, args, kwargs)
        self.traced = self.traced or traced
        gm = traced.program.module()
        found = {n.name: n for n in gm.graph.nodes}
        lacking = sorted(self.nodes - set(found))
        if lacking:
            raise ValueError(
                f"the graph exported on these inputs has no value {lacking[0]!r} (and {len(lacking) - 1} more) "
                "that the spec names: infer the spec on inputs of this kind")  # fmt: skip
        for name in sorted(self.nodes):
            node = found[name]
            with gm.graph.inserting_after(node):
                tap = gm.graph.call_function(_Tap(self, name), (node,))
            node.replace_all_uses_with(tap, delete_user_cb=lambda user, tap=tap: user is not tap)
        gm.recompile()
        self._load_into(gm)
        self._modules[key] = gm
        return gm

    def __call__(self, inputs: Any, hook: Hook | None = None) -> Any:
        """The graph's output on ``inputs`` (see :func:`split_inputs`), ``hook`` seeing each named value."""
        args, kwargs = split_inputs(inputs)
        return self.run(args, kwargs, hook)

    @torch.no_grad()
    def run(self, args: tuple, kwargs: Mapping[str, Any], hook: Hook | None = None) -> Any:
        """The graph's output on ``model(*args, **kwargs)``, ``hook`` seeing each named value."""
        kwargs = dict(kwargs)
        gm = self._module_for(args, kwargs)
        self.hook = hook
        try:
            return gm(*args, **kwargs)
        finally:
            self.hook = None


def _sites(spec: PermSpec, groups: Iterable[str] | None, include_mixed: bool) -> dict[str, list[Activation]]:
    chosen = [spec.group(n) for n in groups] if groups is not None else spec.free_groups
    out: dict[str, list[Activation]] = {}
    for g in chosen:
        sites = [a for a in g.activations if include_mixed or a.clean]
        if not sites:
            why = (
                "no activations recorded (a spec from before activations were recorded: infer it again)"
                if not g.activations
                else "every value it permutes also moves another group (use include_mixed=True)"
            )
            raise ValueError(f"group {g.name!r} has no activation site to collect: {why}")
        out[g.name] = sites
    return out


def group_activations(group: Group, sites: list[Activation], values: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """One batch's ``(units, samples)`` matrix of ``group`` from the tapped ``values`` (sites side by side)."""
    rows = []
    for a in sites:
        v = values[a.node]
        if v.dim() <= a.axis or v.shape[a.axis] != a.axis_size:
            raise ValueError(f"value {a.node!r} has shape {tuple(v.shape)}, but group {group.name!r} expects "
                             f"{a.axis_size} units on axis {a.axis}: the spec comes from another graph")  # fmt: skip
        rows.append(group_rows(v.detach(), a.as_member()))
    return torch.cat(rows, dim=-1) if len(rows) > 1 else rows[0]


def collect_activations(
    model: torch.nn.Module,
    spec: PermSpec,
    inputs: Iterable[Any],
    *,
    groups: Iterable[str] | None = None,
    state: Mapping[str, torch.Tensor] | None = None,
    include_mixed: bool = False,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """Per group (default: every free group), its activation matrix ``(units, samples)`` over all
    ``inputs`` (each a tensor, an args tuple or a kwargs dict), the samples flattened over batch,
    spatial and token positions, its clean sites side by side; ``(blocks, units, samples)`` for a
    per-block group. ``state``: run with these weights instead of the model's.

    Holds every sample in memory: for large data, tap the values with :class:`GraphRunner` and
    reduce them batch by batch (``transfer.merge`` does)."""
    sites = _sites(spec, groups, include_mixed)
    runner = GraphRunner(model, {a.node for ss in sites.values() for a in ss})
    if state is not None:
        runner.load(state)
    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in sites}
    values: dict[str, torch.Tensor] = {}
    for x in inputs:
        values.clear()
        runner(x, values.__setitem__)
        for name, ss in sites.items():
            chunks[name].append(group_activations(spec.group(name), ss, values).to(dtype))
    if not any(chunks.values()):
        raise ValueError("collect_activations got no inputs")
    return {name: torch.cat(c, dim=-1) for name, c in chunks.items()}
