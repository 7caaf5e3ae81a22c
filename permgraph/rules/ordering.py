"""Ops along an axis whose result depends on the order of its units (scans, sorts, rolls,
flips): that axis is blocked, the others pass through."""

from __future__ import annotations

from typing import Any

from permgraph.rules.context import Context, RuleOutput, TupleLayouts, dim_index, register


def _block_order(ctx: Context, dims: Any) -> RuleOutput:
    """Block the ``dims`` axes (all of them for None) of the first argument; every output
    has its shape and layouts."""
    t = ctx.layouts(ctx.first)
    if dims is None:
        dims = list(range(len(t)))
    if isinstance(dims, int):
        dims = [dims]
    for d in dims:
        ctx.block(t[dim_index(d, len(t))], "depends on the order of units")
    val = ctx.example_output
    if isinstance(val, (list, tuple)):
        return TupleLayouts(tuple(list(t) for _ in val))
    return t


@register("aten.cumsum", "aten.cumprod", "aten.cummax", "aten.cummin", "aten.sort", "aten.argsort")
def _along_dim(ctx: Context) -> RuleOutput:
    """Scans and sorts along ``dim``."""
    return _block_order(ctx, ctx["dim"])


@register("aten.flip")
def _flip(ctx: Context) -> RuleOutput:
    """Flips along the axes in ``dims`` (an empty ``dims`` flips nothing)."""
    return _block_order(ctx, ctx["dims"])


@register("aten.roll")
def _roll(ctx: Context) -> RuleOutput:
    """Rolls along the axes in ``dims``. Without ``dims`` (its default, ``[]``) torch rolls the
    flattened tensor, which moves units across every axis: all of them are blocked."""
    dims = ctx["dims"]
    return _block_order(ctx, None if not dims else dims)
