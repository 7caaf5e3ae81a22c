"""Pooling and resampling: each channel is processed alone, so channels pass through, while
the last ``n`` (spatial) axes mix neighbouring positions and are blocked."""

from __future__ import annotations

import torch

from permgraph.axisgraph import Prod
from permgraph.rules.context import AxisLayouts, Context, RuleOutput, TupleLayouts, register


def _spatial(ctx: Context, nsp: int) -> RuleOutput:
    """Block the input's last ``nsp`` axes; each output (pooled values, indices) keeps the
    leading axes and gets new blocked spatial ones."""
    t = ctx.layouts(ctx.first)
    for layout in t[-nsp:]:
        ctx.block(layout, "spatial axis")
    val = ctx.example_output

    def one(v: torch.Tensor) -> AxisLayouts:
        return t[:-nsp] + [ctx.fresh(int(s), "spatial axis") for s in v.shape[-nsp:]]

    if isinstance(val, (list, tuple)):
        return TupleLayouts(tuple(one(v) for v in val))
    return one(val)


def _pools(k: int) -> list[str]:
    return [f"aten.max_pool{k}d", f"aten.avg_pool{k}d", f"aten.adaptive_avg_pool{k}d", f"aten.adaptive_max_pool{k}d",
            f"aten.max_pool{k}d_with_indices", f"aten.lp_pool{k}d", f"aten._adaptive_avg_pool{k}d",
            f"aten.fractional_max_pool{k}d"]


@register(*_pools(1), "aten.upsample_nearest1d", "aten._upsample_nearest_exact1d", "aten.upsample_linear1d")
def _spatial_1d(ctx: Context) -> RuleOutput:
    return _spatial(ctx, 1)


@register(*_pools(2), "aten.upsample_nearest2d", "aten.upsample_bilinear2d", "aten.upsample_bicubic2d",
          "aten._upsample_nearest_exact2d", "aten._upsample_bilinear2d_aa", "aten.grid_sampler_2d")
def _spatial_2d(ctx: Context) -> RuleOutput:
    return _spatial(ctx, 2)


@register(*_pools(3), "aten.upsample_nearest3d", "aten.upsample_trilinear3d")
def _spatial_3d(ctx: Context) -> RuleOutput:
    return _spatial(ctx, 3)


@register("aten.pixel_shuffle")
def _pixel_shuffle(ctx: Context) -> RuleOutput:
    """``(…, c·r², h, w) → (…, c, h·r, w·r)`` with ``out[…, k, h·r + i, w·r + j] = x[…, k·r² + i·r + j, h, w]``:
    a reshape in disguise. The channel axis is cut into ``Prod(c, r, r)``; ``c`` passes to the
    output's channels, each ``r`` becomes the inner factor of a spatial axis (whose later
    convolutions or flattens decide whether it may move)."""
    r = int(ctx["upscale_factor"])
    t = ctx.layouts(ctx["self"])
    if r == 1:
        return t
    c = ctx.out_shape()[-3]
    parts = ctx.split_prod(t[-3], [c, r, r])
    if parts is None:
        lead = t[:-3]
        return lead + [ctx.fresh(s, "pixel_shuffle of a channel axis that cannot be cut") for s in ctx.out_shape()[-3:]]
    k, i, j = parts
    return t[:-3] + [k, Prod((t[-2], i)), Prod((t[-1], j))]


@register("aten.pixel_unshuffle")
def _pixel_unshuffle(ctx: Context) -> RuleOutput:
    """``(…, c, h·r, w·r) → (…, c·r², h, w)``, the inverse of ``pixel_shuffle``: each spatial
    axis is cut into ``Prod(h, r)`` and the ``r`` factors join the channels as ``Prod(c, r, r)``."""
    r = int(ctx["downscale_factor"])
    t = ctx.layouts(ctx["self"])
    if r == 1:
        return t
    h, w = ctx.out_shape()[-2:]
    rows = ctx.split_prod(t[-2], [h, r])
    cols = ctx.split_prod(t[-1], [w, r])
    if rows is None or cols is None:
        return t[:-3] + [ctx.fresh(s, "pixel_unshuffle of a spatial axis that cannot be cut") for s in ctx.out_shape()[-3:]]
    return t[:-3] + [Prod((t[-3], rows[1], cols[1])), rows[0], cols[0]]
