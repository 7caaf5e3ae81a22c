"""The rule-writer's API: what a rule receives, what it returns, and how it is registered.

A *rule* states one ATen op's equivariance. It receives a ``Context`` (the op's bound
arguments, the layouts of their axes, the axis graph) and returns the layouts of the op's
outputs, a ``RuleOutput``, in one of three shapes:

- ``AxisLayouts`` (``list[Layout]``): the op returns one tensor; one layout per dim, in
  order. Returning an input's layout says "this output axis moves with that input axis".
- ``TupleLayouts``: the op returns a tuple or list of values (``split``, ``max(dim)``,
  ``native_layer_norm``); one ``RuleOutput`` per element, ``None`` for an element that is
  not a tensor. ``getitem`` picks the element.
- ``None``: the op returns no tensor (``sym_size``, Python arithmetic on sizes).

On the way the rule ties axes that must move together with ``ctx.unify`` (contractions,
broadcasting) and blocks, with a reason, every axis the op does not commute with
(``ctx.block``): ``permgraph inspect`` shows that reason to the user. An op without a rule
blocks every axis it touches (``block_everything``), and so does a rule that raises, so a
rule may read its arguments without defending against every overload.

A rule is registered under the op's overload packet name, ``"aten.add"`` for
``torch.ops.aten.add.Tensor`` (``op_name``). Example::

    @register("aten.relu", "aten.relu_")
    def _relu(ctx: Context) -> RuleOutput:
        return ctx.layouts(ctx["self"])  # every output axis moves with the input's

The axis graph a rule builds on is described in ``permgraph.axisgraph``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx

from permgraph.axisgraph import AxisGraph, Layout, LayoutMismatch

__all__ = [
    "AxisLayouts",
    "Context",
    "RULES",
    "Rule",
    "RuleOutput",
    "TupleLayouts",
    "bind_arguments",
    "block_everything",
    "concrete_size",
    "dim_index",
    "flat_nodes",
    "fresh_like",
    "op_name",
    "register",
    "rule_for",
]

AxisLayouts = list[Layout]
"""The layouts of one tensor's axes, one per dim in order."""


@dataclass(frozen=True)
class TupleLayouts:
    """The layouts of an op that returns several values: ``items[i]`` describes element
    ``i`` (an ``AxisLayouts`` for a tensor, a nested ``TupleLayouts`` for a list of tensors,
    ``None`` for anything else)."""

    items: tuple[RuleOutput, ...]


RuleOutput = AxisLayouts | TupleLayouts | None
"""What a rule returns: see the module docstring."""

Rule = Callable[["Context"], RuleOutput]
RULES: dict[str, Rule] = {}


def register(*names: str) -> Callable[[Rule], Rule]:
    """Register the decorated function as the rule of every op packet in ``names``.

    Each name may have one rule only: a second registration is a mistake (two family
    modules claiming one op) and raises ``ValueError``."""

    def deco(fn: Rule) -> Rule:
        for n in names:
            if n in RULES:
                raise ValueError(f"{n} already has the rule {RULES[n].__qualname__}")
            RULES[n] = fn
        return fn

    return deco


def op_name(target: Any) -> str:
    """The registry key of a graph node's target: the overload packet of an ATen op, the
    function name of anything else.

    >>> op_name(torch.ops.aten.add.Tensor)
    'aten.add'
    >>> import operator; op_name(operator.getitem)
    'getitem'
    """
    packet = getattr(target, "overloadpacket", None)
    if packet is not None:
        return str(packet)
    return getattr(target, "__name__", str(target))


def rule_for(target: Any) -> Rule | None:
    """The rule registered for a node's target, or None (its axes will be blocked).

    >>> rule_for(torch.ops.aten.relu.default) is not None, rule_for(torch.ops.aten.special_i0.default)
    (True, None)
    """
    return RULES.get(op_name(target))


class Context:
    """What a rule sees of one op: its bound arguments, their layouts and shapes, and the
    axis graph it ties them in. Messages name the op and node (``where``)."""

    def __init__(self, g: AxisGraph, node: torch.fx.Node, values: dict[torch.fx.Node, RuleOutput]):
        self.g = g
        self.node = node
        self.values = values
        self.op = op_name(node.target)
        self.where = f"{self.op} ({node.name})"
        self.args = bind_arguments(node)

    # -- argument access ------------------------------------------------------------
    def __getitem__(self, name: str) -> Any:
        """The argument called ``name`` in the op's schema (its default when not passed)."""
        return self.args.get(name)

    @property
    def first(self) -> Any:
        """The first positional argument: the tensor most ops act on, whatever the schema
        calls it (``self``, ``input``)."""
        return self.node.args[0]

    @property
    def example_output(self) -> Any:
        """The op's output on the example inputs: a (fake) tensor, a tuple of them, or a scalar."""
        return self.node.meta.get("val")

    def layouts(self, arg: Any) -> AxisLayouts:
        """The layouts of a tensor argument's axes (a new list); ``[]`` for anything else."""
        t = self.values.get(arg) if isinstance(arg, torch.fx.Node) else None
        if t is None:
            return []
        return list(t)

    @staticmethod
    def shape(arg: Any) -> tuple[int, ...]:
        """A tensor argument's shape on the example inputs; ``()`` for anything else."""
        val = arg.meta.get("val") if isinstance(arg, torch.fx.Node) else arg
        if isinstance(val, torch.Tensor):
            return tuple(concrete_size(s) for s in val.shape)
        return ()

    @staticmethod
    def is_tensor(arg: Any) -> bool:
        """Whether an argument is a tensor-valued node (not a scalar, list or None)."""
        return isinstance(arg, torch.fx.Node) and isinstance(arg.meta.get("val"), torch.Tensor)

    def out_shape(self, i: int | None = None) -> tuple[int, ...]:
        """The output's shape (element ``i``'s for an op returning several values)."""
        val = self.example_output
        if i is not None:
            val = val[i]
        return tuple(concrete_size(s) for s in val.shape) if isinstance(val, torch.Tensor) else ()

    # -- building layouts ------------------------------------------------------------
    def fresh(self, size: int, blocked: str | None = "", role: str | None = None) -> Layout:
        """A new atom. Blocked unless ``blocked=None``: an output axis that does not come
        from an input must not be permuted on its own."""
        reason = None if blocked is None else (blocked or f"{self.where}: new axis")
        return self.g.atom(size, self.where, blocked=reason, role=role)

    def fresh_layouts(self, shape: Sequence[int], blocked: str | None = "") -> AxisLayouts:
        """One ``fresh`` atom per axis of ``shape``."""
        return [self.fresh(s, blocked) for s in shape]

    def unify(self, a: Layout, b: Layout) -> None:
        """Tie two axes of one length: unit ``i`` of one moves with unit ``i`` of the other."""
        self.g.unify(a, b, self.where)

    def block(self, layout: Layout, why: str) -> None:
        """Forbid permuting an axis; ``why`` is shown to the user, prefixed with the op."""
        self.g.block(layout, f"{self.where}: {why}")

    def split_prod(self, layout: Layout, sizes: list[int]) -> list[Layout] | None:
        """Cut an axis row-major into factors (a head split); None (and the axis blocked)
        when its layout cannot be cut that way."""
        try:
            return self.g.split_prod(layout, sizes, self.where)
        except LayoutMismatch as e:
            self.block(layout, str(e))
            return None

    def split_sum(self, layout: Layout, sizes: list[int]) -> list[Layout] | None:
        """Cut an axis into consecutive pieces (``split``); None (and the axis blocked) when
        its layout cannot be cut that way."""
        try:
            return self.g.split_sum(layout, sizes, self.where)
        except LayoutMismatch as e:
            self.block(layout, str(e))
            return None

    def broadcast(self, *args: Any) -> AxisLayouts:
        """Numpy broadcasting: axes of equal length (not 1) are tied, right-aligned."""
        tensors = [a for a in args if self.is_tensor(a)]
        if not tensors:
            return []
        ndim = max(len(self.shape(a)) for a in tensors)
        out: AxisLayouts = []
        for d in range(-ndim, 0):
            candidates = []
            for a in tensors:
                shp, typ = self.shape(a), self.layouts(a)
                if len(shp) >= -d and shp[d] != 1:
                    candidates.append(typ[d])
            if not candidates:
                out.append(self.fresh(1))
                continue
            for c in candidates[1:]:
                self.unify(candidates[0], c)
            out.append(candidates[0])
        return out


def bind_arguments(node: torch.fx.Node) -> dict[str, Any]:
    """Every schema argument of the node's op by name, defaults filled in (``argN`` for a
    target without a schema, such as ``operator.getitem``)."""
    schema = getattr(node.target, "_schema", None)
    if schema is None:
        return {f"arg{i}": a for i, a in enumerate(node.args)} | dict(node.kwargs)
    out: dict[str, Any] = {}
    for i, a in enumerate(schema.arguments):
        if i < len(node.args):
            out[a.name] = node.args[i]
        elif a.name in node.kwargs:
            out[a.name] = node.kwargs[a.name]
        else:
            out[a.name] = a.default_value if a.has_default_value() else None
    return out


def concrete_size(s: Any) -> int:
    """A dimension's length on the example inputs; 0 for a data-dependent one (the number
    of tokens routed to one expert, ``torch.where(mask)``): its atoms are blocked, as any of
    length under 2, so no permutation is claimed along an axis of unknown length."""
    try:
        return int(s)
    except Exception as e:  # the class is imported only here: symbolic_shapes pulls in sympy (0.4 s at import)
        from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

        if isinstance(e, GuardOnDataDependentSymNode):
            return 0
        raise


def dim_index(d: int, ndim: int) -> int:
    """A possibly negative dim as an index into a tensor's ``ndim`` axes.

    >>> dim_index(-1, 3), dim_index(1, 3)
    (2, 1)
    """
    return d + ndim if d < 0 else d


def flat_nodes(x: Any) -> list[torch.fx.Node]:
    """The graph nodes inside an argument (a node, or lists, tuples and dicts of them)."""
    if isinstance(x, torch.fx.Node):
        return [x]
    if isinstance(x, (list, tuple)):
        return [n for y in x for n in flat_nodes(y)]
    if isinstance(x, dict):
        return [n for y in x.values() for n in flat_nodes(y)]
    return []


def block_everything(ctx: Context, why: str) -> RuleOutput:
    """The fallback for an op permgraph cannot prove anything about: block every axis of
    every tensor input, and give every output axis a new blocked atom."""
    for n in flat_nodes(list(ctx.node.args) + list(ctx.node.kwargs.values())):
        for t in ctx.layouts(n):
            ctx.block(t, why)
    return fresh_like(ctx, ctx.example_output, why)


def fresh_like(ctx: Context, val: Any, why: str) -> RuleOutput:
    """New blocked atoms shaped like an example value (a tensor, or a tuple of values)."""
    if isinstance(val, torch.Tensor):
        return [ctx.fresh(concrete_size(s), why) for s in val.shape]
    if isinstance(val, (list, tuple)):
        return TupleLayouts(tuple(fresh_like(ctx, v, why) for v in val))
    return None
