"""Pooling and resampling: each channel is processed alone, so channels pass through, while
the last ``n`` (spatial) axes mix neighbouring positions and are blocked."""

from __future__ import annotations

import torch

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
