"""Ops that cut an axis into pieces, join pieces, or pick units by position.

A contiguous slice or split cuts an axis into consecutive pieces (``Sum`` layouts): units
may still move within each piece. ``cat`` joins pieces the same way. Picking units by
position (``select``, ``index``) or padding an axis does not commute with reordering it,
so that axis is blocked.
"""

from __future__ import annotations

import torch

from permgraph.axisgraph import Layout, Sum
from permgraph.rules.context import (
    AxisLayouts,
    Context,
    RuleOutput,
    TupleLayouts,
    block_everything,
    dim_index,
    register,
)
from permgraph.rules.experts import pick


@register("aten.slice", "aten.slice_copy")
def _slice(ctx: Context) -> RuleOutput:
    """``x[start:end:step]`` along ``dim``; out-of-range bounds are clamped."""
    t, s = ctx.layouts(ctx.first), ctx.shape(ctx.first)
    d = dim_index(ctx["dim"] or 0, len(t))
    n = s[d]
    start, end, step = ctx["start"], ctx["end"], ctx["step"] or 1
    start = 0 if start is None else (start + n if start < 0 else start)
    end = n if end is None else (end + n if end < 0 else end)
    start, end = max(0, min(start, n)), max(0, min(end, n))
    return _cut(ctx, t, d, n, (start, end, step))


@register("aten.narrow")
def _narrow(ctx: Context) -> RuleOutput:
    """``length`` units from ``start`` along ``dim``."""
    t, s = ctx.layouts(ctx.first), ctx.shape(ctx.first)
    d = dim_index(ctx["dim"] or 0, len(t))
    n = s[d]
    start = ctx["start"]
    start = start + n if start < 0 else start
    return _cut(ctx, t, d, n, (start, start + ctx["length"], 1))


def _cut(ctx: Context, t: AxisLayouts, d: int, n: int, bounds: tuple[int, int, int]) -> AxisLayouts:
    """The layouts of units ``start:end:step`` of axis ``d`` (of length ``n``): a contiguous
    range is a piece of the axis (units may move within it); a strided one blocks the axis."""
    start, end, step = bounds
    out = list(t)
    if step != 1:
        ctx.block(t[d], "strided slice")
        out[d] = ctx.fresh(ctx.out_shape()[d])
        return out
    if start == 0 and end == n:
        return out
    sizes = [start, end - start, n - end]
    pieces = ctx.split_sum(t[d], [x for x in sizes if x > 0])
    if pieces is None:
        out[d] = ctx.fresh(end - start)
        return out
    out[d] = pieces[1] if start > 0 else pieces[0]
    return out


@register("aten.split", "aten.split_with_sizes", "aten.chunk", "aten.tensor_split", "aten.unsafe_split",
          "aten.split_with_sizes_copy", "aten.unsafe_chunk")
def _split(ctx: Context) -> RuleOutput:
    """Consecutive pieces of one axis, one output each."""
    t = ctx.layouts(ctx.first)
    d = dim_index(ctx["dim"] or 0, len(t))
    sizes = [int(o.shape[d]) for o in ctx.example_output]
    pieces = ctx.split_sum(t[d], [s for s in sizes if s > 0])
    result: list[RuleOutput] = []
    it = iter(pieces or [])
    for s in sizes:
        o = list(t)
        o[d] = (next(it) if pieces is not None else ctx.fresh(s)) if s > 0 else ctx.fresh(0)
        result.append(o)
    return TupleLayouts(tuple(result))


@register("aten.unbind", "aten.unbind_copy")
def _unbind(ctx: Context) -> RuleOutput:
    """One output per unit of ``dim``, in order: the outputs are told apart by position."""
    x = ctx.first
    t = ctx.layouts(x)
    d = dim_index(ctx["dim"] or 0, len(t))
    ctx.block(t[d], "unbind picks units by position")
    rest = [layout for i, layout in enumerate(t) if i != d]
    return TupleLayouts(tuple(_slice_layouts(ctx, t[d], i, rest) for i in range(ctx.shape(x)[d])))


def _slice_layouts(ctx: Context, position: Layout, i: int, rest: AxisLayouts) -> AxisLayouts:
    """The layouts of slice ``i`` along an axis of positions: ``rest`` itself, unless the
    slices carry layouts of their own (``shape.sliced_reshape``)."""
    own = ctx.g.slices.get(position) if isinstance(position, int) else None
    if own is None:
        return list(rest)
    return [own[i].get(x, x) if isinstance(x, int) else x for x in rest]


@register("aten.select", "aten.select_copy")
def _select(ctx: Context) -> RuleOutput:
    """``x[..., i, ...]``: one unit picked by position."""
    t = ctx.layouts(ctx.first)
    d = dim_index(ctx["dim"], len(t))
    ctx.block(t[d], "select picks a unit by position")
    rest = [layout for i, layout in enumerate(t) if i != d]
    index = ctx["index"]
    return _slice_layouts(ctx, t[d], index + ctx.shape(ctx.first)[d] if index < 0 else index, rest)


@register("aten.index_select")
def _index_select(ctx: Context) -> RuleOutput:
    """Units picked by a list of positions."""
    t = ctx.layouts(ctx["self"])
    d = dim_index(ctx["dim"], len(t))
    pick(ctx, t[d], ctx["index"], "index_select picks units by position")
    out = list(t)
    ti = ctx.layouts(ctx["index"])  # unit i of the result is the one index[i] names
    out[d] = ti[0] if len(ti) == 1 else ctx.fresh(ctx.out_shape()[d])
    return out


@register("aten.index")
def _index(ctx: Context) -> RuleOutput:
    """``x[..., idx, ...]`` with one index tensor: the indexed axis is blocked (units are
    picked by position); the other axes pass through around the index's own axes."""
    x, indices = ctx["self"], list(ctx["indices"])
    t = ctx.layouts(x)
    used = [k for k, i in enumerate(indices) if i is not None]
    if len(used) != 1 or not ctx.is_tensor(indices[used[0]]):
        return block_everything(ctx, "advanced indexing with several index tensors")
    k = used[0]
    idx = indices[k]
    if ctx.layouts(idx) and ctx.is_tensor(idx) and idx.meta["val"].dtype == torch.bool:
        return block_everything(ctx, "boolean mask indexing")
    pick(ctx, t[k], idx, "indexing picks units by position")
    return t[:k] + ctx.layouts(idx) + t[k + 1:]


@register("aten.cat", "aten.concat", "aten.concatenate")
def _cat(ctx: Context) -> RuleOutput:
    """The joined axis is the ``Sum`` of the parts; the other axes of all parts are tied.
    Empty 1-D tensors (``torch.cat``'s legacy placeholders) are skipped."""
    tensors = [a for a in ctx["tensors"] if ctx.is_tensor(a)]
    nonempty = [a for a in tensors if ctx.shape(a) != (0,)]
    if not nonempty:
        return ctx.fresh_layouts(ctx.out_shape())
    ndim = len(ctx.shape(nonempty[0]))
    d = dim_index(ctx["dim"] or 0, ndim)
    first = ctx.layouts(nonempty[0])
    out = list(first)
    for a in nonempty[1:]:
        for i, layout in enumerate(ctx.layouts(a)):
            if i != d:
                ctx.unify(first[i], layout)
    parts = [ctx.layouts(a)[d] for a in nonempty]
    out[d] = parts[0] if len(parts) == 1 else Sum(tuple(parts))
    return out


@register("aten.stack")
def _stack(ctx: Context) -> RuleOutput:
    """Tensors of one shape, tied axis by axis, along a new axis of positions."""
    tensors = [a for a in ctx["tensors"] if ctx.is_tensor(a)]
    first = ctx.layouts(tensors[0])
    for a in tensors[1:]:
        for x, y in zip(first, ctx.layouts(a)):
            ctx.unify(x, y)
    d = dim_index(ctx["dim"] or 0, len(first) + 1)
    out = list(first)
    out.insert(d, ctx.fresh(len(tensors), "stack index is a position"))
    return out


def _pad_axes(ctx: Context, pad: list[int], every_covered_axis: bool) -> AxisLayouts:
    """``pad`` lists (before, after) widths from the last axis backwards. A padded axis is
    blocked (the padding sits at fixed positions) and gets a new layout."""
    t = ctx.layouts(ctx.first)
    out = list(t)
    out_shape = ctx.out_shape()
    for k in range(len(pad) // 2):
        d = len(t) - 1 - k
        if pad[2 * k] or pad[2 * k + 1] or every_covered_axis:
            ctx.block(t[d], "padded axis")
            out[d] = ctx.fresh(out_shape[d])
    return out


@register("aten.constant_pad_nd")
def _constant_pad(ctx: Context) -> RuleOutput:
    """Constant padding: an axis padded by zero widths is untouched."""
    return _pad_axes(ctx, list(ctx["pad"]), every_covered_axis=False)


@register("aten.pad")
def _pad(ctx: Context) -> RuleOutput:
    """``F.pad`` in any mode; conservatively blocks every axis the pad list covers."""
    return _pad_axes(ctx, list(ctx["pad"]), every_covered_axis=True)


@register("aten.reflection_pad1d", "aten.reflection_pad2d", "aten.reflection_pad3d", "aten.replication_pad1d",
          "aten.replication_pad2d", "aten.replication_pad3d")
def _edge_pad(ctx: Context) -> RuleOutput:
    """Reflection and replication padding copy units from the edges: every covered axis is
    blocked."""
    return _pad_axes(ctx, list(ctx["padding"]), every_covered_axis=True)
