"""Prove a rule sound on examples: permute what the rule says may move, and compare.

``check_rule(fn, example_args)`` traces one call of ``fn`` (an op, a function of tensors, or
a module) with ``torch.export``, runs the registered rules over it with every input axis
*free* (unlike ``infer``, which blocks a model's inputs and outputs), and reads off the
groups the rules leave free: sets of units of the inputs, outputs (and a module's
parameters) that the rules say move together. It then draws random permutations of those
groups, permutes the inputs, calls ``fn`` again and checks that the output is the original
output permuted the same way. An axis the rules consume (a sum over it) must leave the
output unchanged; a new output axis the rules call free (``expand``) must be constant.
It also checks that each output's layouts have the output's rank and sizes.

This is the numeric half of permgraph's own op table, usable in the user's test suite:

>>> import torch
>>> report = check_rule(torch.ops.aten.softmax.int, (torch.randn(3, 5, dtype=torch.float64), -1))
>>> report.ok, report.free_sizes
(True, (3, 5))
>>> check_rule(torch.cumsum, (torch.randn(3, 5), 1)).free_sizes   # cumsum's axis 1 is blocked
(3,)

A rule that blocks everything passes (blocking is always sound) but proves nothing:
``free_sizes`` says what was exercised. Exact ties (a max over equal values) are broken by
position, so use random float64 examples.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from permgraph.apply import apply, random_permutation
from permgraph.axisgraph import AxisGraph
from permgraph.infer import Analysis, spec_from_analysis
from permgraph.rules.context import Context, RuleOutput, block_everything, flat_nodes, op_name, rule_for
from permgraph.rules.public import rule_key
from permgraph.spec import PermSpec
from permgraph.trace import Traced, trace

__all__ = ["RuleCheck", "assert_rule_sound", "check_rule"]

_SINGLE = "touches a single tensor"  # infer's reason for an atom held by one tensor: here it is checked too


@dataclass(frozen=True)
class RuleCheck:
    """What ``check_rule`` found. ``ok``: no output changed beyond tolerance and every rule
    returned layouts that fit its output; ``free`` describes each group that was permuted,
    ``blocked`` why the others were not; ``unknown`` names ops without a rule."""

    ops: tuple[str, ...]
    free: tuple[str, ...]
    free_sizes: tuple[int, ...]
    blocked: tuple[str, ...]
    unknown: tuple[str, ...]
    problems: tuple[str, ...]
    max_abs_diff: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [f"rule check of {', '.join(self.ops) or 'no op'}: {'ok' if self.ok else 'FAILED'}"
                 f" (largest change {self.max_abs_diff:.3g})"]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  free: {f}" for f in self.free]
        lines += [f"  blocked: {b}" for b in self.blocked]
        lines += [f"  no rule: {u}" for u in self.unknown]
        return "\n".join(lines)


class _Call(torch.nn.Module):
    """``fn(*args, **kwargs)`` with the tensors of the arguments as the module's inputs."""

    def __init__(self, fn: Callable[..., Any], template: Any):
        super().__init__()
        self.fn = fn  # a module's parameters become ours, under "fn."
        self.template = template

    def forward(self, *tensors: torch.Tensor) -> Any:
        args, kwargs = _fill(self.template, tensors)
        return self.fn(*args, **kwargs)


@dataclass(frozen=True)
class _Slot:
    index: int


def _hollow(x: Any, found: list[torch.Tensor]) -> Any:
    """``x`` with every tensor replaced by a numbered slot (appended to ``found``)."""
    if isinstance(x, torch.Tensor):
        found.append(x)
        return _Slot(len(found) - 1)
    if isinstance(x, (list, tuple)):
        return type(x)(_hollow(y, found) for y in x)
    if isinstance(x, dict):
        return {k: _hollow(v, found) for k, v in x.items()}
    return x


def _fill(x: Any, tensors: tuple[torch.Tensor, ...]) -> Any:
    if isinstance(x, _Slot):
        return tensors[x.index]
    if isinstance(x, (list, tuple)):
        return type(x)(_fill(y, tensors) for y in x)
    if isinstance(x, dict):
        return {k: _fill(v, tensors) for k, v in x.items()}
    return x


def _outputs(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for y in out for t in _outputs(y)]
    return []


def _run(ctx: Context, unknown: list[str], problems: list[str]) -> RuleOutput:
    rule = rule_for(ctx.node.target)
    if rule is None:
        unknown.append(ctx.where)
        return block_everything(ctx, "no rule")
    try:
        return rule(ctx)
    except Exception as e:  # as infer does: block, but here the user wants to know
        problems.append(f"the rule of {ctx.where} raised {type(e).__name__}: {e}")
        return block_everything(ctx, f"rule failed ({type(e).__name__}: {e})")


def _fits(name: str, layouts: Any, value: torch.Tensor, g: AxisGraph) -> str | None:
    if not isinstance(layouts, list):
        return f"{name}: the rule returned {type(layouts).__name__} for a tensor"
    sizes = tuple(g.size(x) for x in layouts)
    if sizes != tuple(value.shape):
        return f"{name}: the rule's layouts have sizes {sizes}, the tensor has shape {tuple(value.shape)}"
    return None


def _analyse(traced: Traced, n_inputs: int) -> tuple[Analysis, list[str], list[str], list[str]]:
    """The rules over the traced call, with every input and parameter axis free."""
    g = AxisGraph()
    analysis = Analysis(traced=traced, graph=g, values={}, param_layouts={})
    ops: list[str] = []
    unknown: list[str] = []
    problems: list[str] = []
    for node in traced.graph.nodes:
        val = node.meta.get("val")
        if node.op == "placeholder" and isinstance(val, torch.Tensor):
            if node.name in traced.user_inputs:
                name = f"input {traced.user_inputs.index(node.name)}"
            else:
                name = traced.param_of.get(node.name)
            blocked = None if name else "constant tensor"
            layouts = [g.atom(int(s), f"{name or node.name} axis {i}", blocked=blocked) for i, s in enumerate(val.shape)]
            analysis.values[node] = layouts
            if name:
                analysis.param_layouts[name] = layouts
        elif node.op == "call_function":
            ops.append(op_name(node.target))
            analysis.values[node] = _run(Context(g, node, analysis.values), unknown, problems)
        elif node.op == "output":
            outs = [n for i in traced.user_output_indices for n in flat_nodes([node.args[0][i]])]
            for k, n in enumerate(outs):
                value = n.meta.get("val")
                if not isinstance(value, torch.Tensor):
                    continue
                problem = _fits(f"output {k} ({n.name})", analysis.values.get(n), value, g)
                if problem:
                    problems.append(problem)
                else:
                    analysis.param_layouts[f"output {k}"] = analysis.values[n]
    return analysis, list(dict.fromkeys(ops)), unknown, problems


def _differs(a: torch.Tensor, b: torch.Tensor, rtol: float | None) -> float | None:
    """How far ``a`` is from ``b`` where that is beyond tolerance; None when they agree."""
    if a.shape != b.shape:
        return float("inf")
    if not (a.is_floating_point() or a.is_complex()):
        return None if torch.equal(a, b) else float("inf")
    if rtol is None:
        rtol = 1e-9 if a.dtype == torch.float64 else 1e-4 if a.dtype == torch.float32 else 1e-2
    diff = (a - b).abs().nan_to_num(0.0, posinf=float("inf")).max().item() if a.numel() else 0.0
    nan_same = torch.equal(a.isnan(), b.isnan())
    scale = b.abs().nan_to_num(0.0, posinf=0.0).max().item() if b.numel() else 0.0
    return None if nan_same and diff <= rtol * max(scale, 1.0) else max(diff, 0.0 if nan_same else float("inf"))


def _permuted_run(fn: Any, call: _Call, spec: PermSpec, perm: dict, state: dict, n_inputs: int) -> tuple[list, dict]:
    moved = apply(spec, perm, state)
    tensors = tuple(moved[f"input {i}"] for i in range(n_inputs))
    target = call
    if isinstance(fn, torch.nn.Module):
        target = copy.deepcopy(call)
        params = {k: v for k, v in moved.items() if k.startswith("fn.")}
        target.load_state_dict(params, strict=False)
    with torch.no_grad():
        return _outputs(target(*tensors)), moved


def _compare(fn: Any, call: _Call, spec: PermSpec, perm: dict, state: dict, n_in: int, rtol: float | None) -> float:
    """The largest out-of-tolerance change of any output (0 when none)."""
    got, moved = _permuted_run(fn, call, spec, perm, state, n_in)
    worst = 0.0
    for k, y in enumerate(got):
        want = moved.get(f"output {k}")
        if want is None:
            continue
        d = _differs(y, want, rtol)
        if d is not None:
            worst = max(worst, d, 1e-300)
    return worst


def check_rule(
    fn: Callable[..., Any],
    example_args: tuple[Any, ...] | Any,
    example_kwargs: dict[str, Any] | None = None,
    *,
    trials: int = 3,
    seed: int = 0,
    rtol: float | None = None,
) -> RuleCheck:
    """Check the rules that ``fn(*example_args, **example_kwargs)`` runs through (see the
    module docstring). ``rtol`` is relative to the largest output value; by default 1e-9 in
    float64, 1e-4 in float32."""
    args = example_args if isinstance(example_args, tuple) else (example_args,)
    tensors: list[torch.Tensor] = []
    template = _hollow((args, dict(example_kwargs or {})), tensors)
    call = _Call(fn, template)
    with torch.no_grad():
        reference = _outputs(call(*tensors))
    analysis, ops, unknown, problems = _analyse(trace(call, tuple(tensors)), len(tensors))
    spec = spec_from_analysis(analysis, "check_rule", per_block=False)
    groups = tuple(replace(g, blocked=None) if g.blocked and g.blocked.startswith(_SINGLE) else g for g in spec.groups)
    spec = replace(spec, groups=groups)
    state = {f"input {i}": t for i, t in enumerate(tensors)} | {f"output {k}": y for k, y in enumerate(reference)}
    state |= {k: v.detach() for k, v in call.state_dict().items()}
    worst = 0.0
    if not problems:
        gen = torch.Generator().manual_seed(seed)
        for _ in range(trials):
            worst = max(worst, _compare(fn, call, spec, random_permutation(spec, gen), state, len(tensors), rtol))
        if worst:
            for grp in spec.free_groups:  # name the groups that break it
                alone = {grp.name: torch.randperm(grp.size, generator=gen)}
                if _compare(fn, call, spec, alone, state, len(tensors), rtol):
                    problems.append(f"permuting {grp.size} units of {_members(grp)} changes the output")
            if not problems:
                problems.append("permuting the free groups together changes the output")
    return RuleCheck(
        ops=tuple(ops),
        free=tuple(f"{g.size} units: {_members(g)}" for g in spec.free_groups),
        free_sizes=tuple(sorted(g.size for g in spec.free_groups)),
        blocked=tuple(dict.fromkeys(g.blocked for g in spec.groups if g.blocked)),
        unknown=tuple(unknown),
        problems=tuple(problems),
        max_abs_diff=worst,
    )


def _members(group: Any) -> str:
    return ", ".join(m.describe() for m in group.members)


def assert_rule_sound(
    fn: Callable[..., Any],
    example_args: tuple[Any, ...] | Any,
    example_kwargs: dict[str, Any] | None = None,
    *,
    op: Any = None,
    free: tuple[int, ...] | None = None,
    trials: int = 3,
) -> RuleCheck:
    """``check_rule`` for a test: raise ``AssertionError`` (with the report) unless the check
    is ok, every op has a rule, ``op`` (default: ``fn`` itself when it is an op) appears in
    the call, and, when given, the sorted sizes of the free groups are ``free``."""
    report = check_rule(fn, example_args, example_kwargs, trials=trials)
    wanted = op if op is not None else (fn if hasattr(fn, "overloadpacket") or hasattr(fn, "_qualname")
                                        or hasattr(fn, "overloads") else None)
    errors = list(report.problems) + [f"no rule for {u}" for u in report.unknown]
    if wanted is not None and rule_key(wanted) not in report.ops:
        errors.append(f"{rule_key(wanted)} does not appear in the traced call ({', '.join(report.ops)})")
    if free is not None and tuple(sorted(free)) != report.free_sizes:
        errors.append(f"free group sizes are {report.free_sizes}, expected {tuple(sorted(free))}")
    if errors:
        raise AssertionError("; ".join(errors) + "\n" + str(report))
    return report
