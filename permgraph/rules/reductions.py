"""Reductions and softmax: permuting the reduced axis does not change a sum, a mean or a
maximum, so the reduced axis is consumed and the others pass through. Ops that return
*where* the maximum is (argmax, ``max(dim)``'s indices) depend on unit order instead."""

from __future__ import annotations

from typing import Any

from permgraph.rules.context import AxisLayouts, Context, RuleOutput, TupleLayouts, dim_index, register


def _reduced_dims(ctx: Context, x: Any, dims: Any) -> list[int]:
    """The axes a reduction consumes: ``dim`` as an int or a list, all of them when absent."""
    ndim = len(ctx.shape(x))
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        return list(range(ndim))
    if isinstance(dims, int):
        dims = [dims]
    return [dim_index(d, ndim) for d in dims]


@register(
    "aten.sum", "aten.mean", "aten.amax", "aten.amin", "aten.var", "aten.std", "aten.prod",
    "aten.any", "aten.all", "aten.logsumexp", "aten.linalg_vector_norm", "aten.norm",
    "aten.nansum", "aten.nanmean", "aten.count_nonzero",
)
def _reduction(ctx: Context) -> RuleOutput:
    """Invariant to permuting the reduced axes: they are consumed (kept as size 1 with
    ``keepdim``)."""
    x = ctx.first
    dims = _reduced_dims(ctx, x, ctx["dim"])
    keep = bool(ctx["keepdim"])
    out: AxisLayouts = []
    for i, layout in enumerate(ctx.layouts(x)):
        if i in dims:
            if keep:
                out.append(ctx.fresh(1))
        else:
            out.append(layout)
    return out


@register("aten.var_mean", "aten.std_mean")
def _var_mean(ctx: Context) -> RuleOutput:
    """Two reductions of the same axes."""
    out = _reduction(ctx)
    return TupleLayouts((out, list(out)))


@register("aten.max", "aten.min")
def _max_min(ctx: Context) -> RuleOutput:
    """``aten.max`` and ``aten.min`` each name three ops, told apart by their arguments:
    ``max(a, other)`` is elementwise, ``max(a, dim)`` reduces one axis and also returns the
    indices, ``max(a)`` reduces every axis to a scalar."""
    if "other" in ctx.args:
        return _elementwise_extreme(ctx)
    if "dim" in ctx.args:
        return _extreme_along_dim(ctx)
    return []


def _elementwise_extreme(ctx: Context) -> RuleOutput:
    return ctx.broadcast(ctx["self"], ctx["other"])


def _extreme_along_dim(ctx: Context) -> RuleOutput:
    """Values are a reduction; the indices say where the extreme was, which depends on
    the order of the reduced axis, so that axis is blocked."""
    t = ctx.layouts(ctx["self"])
    d = dim_index(ctx["dim"], len(t))
    vals = [layout for i, layout in enumerate(t) if i != d]
    if ctx["keepdim"]:
        vals.insert(d, ctx.fresh(1))
    idx = list(vals)
    ctx.block(t[d], "indices of the maximum depend on unit order")
    return TupleLayouts((vals, idx))


@register("aten.argmax", "aten.argmin")
def _argmax(ctx: Context) -> RuleOutput:
    """The result is a position along the reduced axis (every axis when ``dim`` is None):
    that axis is blocked."""
    x, d = ctx["self"], ctx["dim"]
    t = ctx.layouts(x)
    if d is None:
        for layout in t:
            ctx.block(layout, "index of an element depends on unit order")
        return ctx.fresh_layouts(ctx.out_shape())
    d = dim_index(d, len(t))
    ctx.block(t[d], "index of the maximum depends on unit order")
    out = [layout for i, layout in enumerate(t) if i != d]
    if ctx["keepdim"]:
        out.insert(d, ctx.fresh(1))
    return out


@register("aten.softmax", "aten._softmax", "aten.log_softmax", "aten._log_softmax", "aten._safe_softmax")
def _softmax(ctx: Context) -> RuleOutput:
    """Softmax along an axis commutes with permuting that axis (and every other)."""
    return ctx.layouts(ctx.first)
