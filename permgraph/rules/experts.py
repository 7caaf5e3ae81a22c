"""Index-valued tensors: top-k routing and the ops that read its indices (routed experts).

``topk`` returns the indices of the k largest scores: integers that are *positions* along
the scored axis. Permuting that axis by ``σ`` (a router's rows, ``logits[:, c] =
logits[:, σ[c]]``) leaves the chosen scores alone and relabels the indices
(``idx' = σ⁻¹[idx]``). An op that uses the indices to pick slices of a tensor whose axis
moves by the same ``σ`` (stacked expert weights ``w[idx]``, ``index_select``, ``gather``,
``embedding``) then picks the very same slices, ``w'[idx'] = w[σ[σ⁻¹[idx]]] = w[idx]``, and
``scatter`` writes into the same ones.
``one_hot(idx, E)`` gets its class axis permuted by ``σ``. So permuting the experts together
with the router's output rows is a symmetry, provided *every* use of the indices is one of
these readers (possibly after views, selects and casts, which keep the values). Any other
use (``idx == e`` in a loop over experts, arithmetic on indices, returning them) reads the
positions as numbers, and the scored axis is blocked with that reason.

Exact ties between scores are broken by position; routers' scores are continuous, so ties
have probability zero, and a tie between experts of zero weight changes nothing.

Every reader (``aten.index`` and ``aten.index_select`` in ``slicing``, ``aten.embedding``,
``gather``, ``scatter`` and ``index_add`` here) calls ``pick``: tie the indexed axis to the positions' axis,
or block it. ``topk`` followed by ``scatter`` is also how k-winners-take-all activations are
written, whose units then stay free.
"""

from __future__ import annotations

import operator
from weakref import WeakKeyDictionary

import torch.fx

from permgraph.axisgraph import AxisGraph, Layout
from permgraph.rules.context import (
    Context,
    RuleOutput,
    TupleLayouts,
    bind_arguments,
    block_everything,
    dim_index,
    op_name,
    register,
)

__all__ = ["pick", "positions_of"]

_POSITIONS: WeakKeyDictionary[AxisGraph, dict[torch.fx.Node, Layout]] = WeakKeyDictionary()

# ops whose output holds values of their first argument (so positions stay positions)
_KEEPS_VALUES = {
    "aten.view", "aten.reshape", "aten._unsafe_view", "aten.unsqueeze", "aten.squeeze", "aten.flatten",
    "aten.unflatten", "aten.expand", "aten.clone", "aten.contiguous", "aten.permute", "aten.transpose",
    "aten.alias", "aten.select", "aten.slice", "aten.to", "aten._to_copy", "aten.t",
}


def positions_of(ctx: Context, arg: object) -> Layout | None:
    """The axis whose positions the integer tensor ``arg`` holds (topk's indices, through
    views), or None when its values are plain numbers."""
    if not isinstance(arg, torch.fx.Node):
        return None
    return _POSITIONS.get(ctx.g, {}).get(arg)


def pick(ctx: Context, layout: Layout, index: object, why: str) -> None:
    """``layout``'s units are picked by the integers in ``index``: tie it to the axis they
    are positions of (the pick then commutes with permuting both), or block it with ``why``."""
    along = positions_of(ctx, index)
    if along is None:
        ctx.block(layout, why)
    else:
        ctx.unify(layout, along)


def _reads_positions(user: torch.fx.Node, node: torch.fx.Node) -> bool:
    """Whether ``user`` uses ``node`` only as positions to pick slices of another tensor."""
    name = op_name(user.target)
    args = bind_arguments(user)
    if name == "aten.index":
        used = [i for i in args.get("indices") or [] if i is not None]
        return len(used) == 1 and used[0] is node and args.get("self") is not node
    if name in ("aten.index_select", "aten.gather", "aten.scatter", "aten.scatter_add"):
        return args.get("index") is node and args.get("self") is not node and args.get("src") is not node
    if name == "aten.index_add":
        return args.get("index") is node and args.get("self") is not node and args.get("source") is not node
    if name == "aten.embedding":
        return args.get("indices") is node and args.get("weight") is not node
    return name == "aten.one_hot" and args.get("self") is node


def _carriers(node: torch.fx.Node) -> tuple[list[torch.fx.Node], str | None]:
    """``node`` and every value derived from it that still holds its values, when every use
    of them reads positions; otherwise the first use that does not, described."""
    carrying, stack = [node], [node]
    while stack:
        n = stack.pop()
        for user in n.users:
            name = op_name(user.target) if user.op == "call_function" else f"the model's {user.op}"
            if user.op == "call_function" and name in _KEEPS_VALUES and user.args and user.args[0] is n:
                carrying.append(user)
                stack.append(user)
            elif user.op != "call_function" or not _reads_positions(user, n):
                return [], f"{name} ({user.name}) reads them as numbers"
    return carrying, None


@register("aten.topk")
def _topk(ctx: Context) -> RuleOutput:
    """The k largest along ``dim``: values and indices, in rank order (a new, blocked axis).
    The scored axis stays free only when the indices are used purely as positions."""
    t = ctx.layouts(ctx["self"])
    d = dim_index(ctx["dim"], len(t))
    out = list(t)
    out[d] = ctx.fresh(ctx.out_shape(0)[d], "topk orders its results by value")
    carrying: list[torch.fx.Node] = []
    why = None
    for user in ctx.node.users:
        if user.target is not operator.getitem or user.args[1] not in (0, 1):
            why = f"{user.name} uses topk's result whole"
        elif user.args[1] == 1:
            found, why_not = _carriers(user)
            carrying += found
            why = why or why_not
    if why is not None:
        ctx.block(t[d], f"topk's indices are positions along this axis, and {why}")
    else:
        positions = _POSITIONS.setdefault(ctx.g, {})
        for n in carrying:
            positions[n] = t[d]
    return TupleLayouts((out, list(out)))


@register("aten.one_hot")
def _one_hot(ctx: Context) -> RuleOutput:
    """``out[..., c] = (x == c)``: the input's axes pass through; the class axis is the axis
    ``x``'s positions run along (permuted with it), or a new blocked axis of class values."""
    x = ctx["self"]
    along = positions_of(ctx, x)
    classes = along if along is not None else ctx.fresh(ctx.out_shape()[-1], "one_hot classes are values")
    return ctx.layouts(x) + [classes]


def _tie_other_axes(ctx: Context, x, index, d: int, shorter: str) -> None:
    """gather / scatter: every axis but ``d`` of ``x`` and the index is tied where the two are as long,
    blocked on both (with ``shorter`` as the reason) where the index covers only the first units."""
    (tx, sx), (ti, si) = x, index
    for a, (lx, li) in enumerate(zip(tx, ti)):
        if a == d:
            continue
        if sx[a] == si[a]:
            ctx.unify(lx, li)
        else:
            ctx.block(lx, shorter)
            ctx.block(li, shorter)


@register("aten.gather")
def _gather(ctx: Context) -> RuleOutput:
    """``out[i][j] = x[i][index[i][j]]`` (for ``dim`` 1): the output has the index's axes;
    the other axes of ``x`` are tied to the index's where they are as long, and ``x``'s
    ``dim`` axis is picked by position (see ``pick``)."""
    x, index = ctx["self"], ctx["index"]
    tx, ti = ctx.layouts(x), ctx.layouts(index)
    sx, si = ctx.shape(x), ctx.shape(index)
    d = dim_index(ctx["dim"], len(tx))
    pick(ctx, tx[d], index, "gather picks units by position")
    _tie_other_axes(ctx, (tx, sx), (ti, si), d, "gather reads only the first units of this axis")
    return ti


@register("aten.index_add")
def _index_add(ctx: Context) -> RuleOutput:
    """``out[..., index[i], ...] += source[..., i, ...]`` along ``dim`` (a loop over experts
    adding each expert's tokens back): ``self``'s and ``source``'s other axes are tied and
    pass through; entry ``i`` of ``index`` goes with slice ``i`` of ``source``; ``self``'s
    ``dim`` axis is picked by position (see ``pick``)."""
    x, index, source = ctx["self"], ctx["index"], ctx["source"]
    tx, ts, ti = ctx.layouts(x), ctx.layouts(source), ctx.layouts(index)
    d = dim_index(ctx["dim"], len(tx))
    pick(ctx, tx[d], index, "index_add adds into units by position")
    if len(ts) == len(tx):
        for a, (lx, ls) in enumerate(zip(tx, ts)):
            if a != d:
                ctx.unify(lx, ls)
        if ti:
            ctx.unify(ts[d], ti[0])
    else:  # a 0-d source or index: nothing to tie, nothing may move
        for layout in ts + ti:
            ctx.block(layout, "index_add with a scalar source")
    return tx


@register("aten._grouped_mm", "transformers.grouped_mm_fallback")
def _grouped_mm(ctx: Context) -> RuleOutput:
    """Rows ``offs[i-1]:offs[i]`` of ``a`` (tokens sorted by expert) times ``b[i]``, the
    stacked experts' weights ``(E, K, N)``; ``transformers``' CPU fallback has the same
    meaning. Each expert's ``K`` and ``N`` units pass through (one permutation for all
    experts); the rows and the experts are matched by position, so both are blocked."""
    a, b, offs, bias = ctx.node.args[0], ctx.node.args[1], ctx["offs"], ctx["bias"]
    if len(ctx.shape(a)) != 2 or len(ctx.shape(b)) != 3 or not ctx.is_tensor(offs):
        return block_everything(ctx, "grouped_mm other than rows grouped by offsets times stacked experts")
    ta, tb = ctx.layouts(a), ctx.layouts(b)
    ctx.unify(ta[1], tb[1])
    ctx.block(ta[0], "grouped_mm gives each expert the rows between two offsets")
    ctx.block(tb[0], "grouped_mm gives group i of the rows to expert i")
    for layout in ctx.layouts(offs):
        ctx.block(layout, "grouped_mm offsets")
    if ctx.is_tensor(bias):
        tbias = ctx.layouts(bias)
        ctx.unify(tbias[-1], tb[2])
        for layout in tbias[:-1]:
            ctx.block(layout, "grouped_mm gives group i of the rows to expert i")
    return [ta[0], tb[2]]


def _scatter_like(ctx: Context, entries_commute: bool) -> RuleOutput:
    """``out = self`` with ``out[i][index[i][j]] = src[i][j]`` (for ``dim`` 1): ``self``'s axes
    pass through, its ``dim`` axis written by position (see ``pick``); the index's other axes
    are tied to ``self``'s where as long and to ``src``'s. The entries ``j`` may be reordered
    (with ``src``'s) only where the writes commute (``scatter_add``): with repeated indices,
    which write of ``scatter`` lands last depends on their order."""
    x, index, src = ctx["self"], ctx["index"], ctx["src"]
    tx, ti = ctx.layouts(x), ctx.layouts(index)
    sx, si = ctx.shape(x), ctx.shape(index)
    d = dim_index(ctx["dim"], len(tx))
    pick(ctx, tx[d], index, "scatter writes units by position")
    _tie_other_axes(ctx, (tx, sx), (ti, si), d, "scatter writes only the first units of this axis")
    if ctx.is_tensor(src):
        ts, ss = ctx.layouts(src), ctx.shape(src)
        for a, (li, ls) in enumerate(zip(ti, ts)):
            if ss[a] == si[a] and (a != d or entries_commute):
                ctx.unify(li, ls)
            else:
                ctx.block(li, "scatter's order of writes")
                ctx.block(ls, "scatter's order of writes")
    elif ti:
        ctx.block(ti[d], "scatter's order of writes")
    return tx


@register("aten.scatter")
def _scatter(ctx: Context) -> RuleOutput:
    """Writes ``src`` (or one value) at the index's positions; see ``_scatter_like``."""
    return _scatter_like(ctx, entries_commute=False)


@register("aten.scatter_add")
def _scatter_add(ctx: Context) -> RuleOutput:
    """Adds ``src`` at the index's positions; the additions commute, so the entries may move
    together with ``src``'s."""
    return _scatter_like(ctx, entries_commute=True)
