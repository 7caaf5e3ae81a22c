"""Normalisation layers: they commute with permuting the axes they normalise over, provided
their per-unit parameters and statistics move along."""

from __future__ import annotations

import torch

from permgraph.axisgraph import Layout
from permgraph.rules.context import AxisLayouts, Context, RuleOutput, TupleLayouts, fresh_like, register

BATCH_NORMS = ["aten.batch_norm", "aten._native_batch_norm_legit_no_training",
               "aten._native_batch_norm_legit", "aten.native_batch_norm",
               "aten._native_batch_norm_legit_functional", "aten.cudnn_batch_norm",
               "aten.instance_norm", "aten._batch_norm_with_update",
               "aten._batch_norm_no_update", "aten._batch_norm_with_update_functional"]


@register(*BATCH_NORMS)
def _batch_norm(ctx: Context) -> RuleOutput:
    """Per-channel affine and statistics (running or batch): channel axis 1 ties them.
    The fused forms also return per-channel statistics, which move with the channels."""
    x = ctx["input"]
    tx = ctx.layouts(x)
    channel = tx[1] if len(tx) > 1 else tx[0]
    for name in ("weight", "bias", "running_mean", "running_var"):
        p = ctx[name]
        if ctx.is_tensor(p) and ctx.shape(p):
            ctx.unify(ctx.layouts(p)[0], channel)
    val = ctx.example_output
    if not isinstance(val, (list, tuple)):
        return tx
    out: list[RuleOutput] = [tx]
    for v in val[1:]:
        if isinstance(v, torch.Tensor) and v.dim() == 1 and v.shape[0] == ctx.shape(x)[1]:
            out.append([channel])
        else:
            out.append(fresh_like(ctx, v, "batch-norm side output"))
    return TupleLayouts(tuple(out))


@register("aten.layer_norm", "aten.native_layer_norm", "aten.rms_norm", "aten._fused_rms_norm")
def _layer_norm(ctx: Context) -> RuleOutput:
    """Normalises over the last axes: commutes with permuting them, affine included. The
    fused forms also return per-row statistics, which have the normalised axes reduced."""
    x = ctx["input"]
    tx = ctx.layouts(x)
    k = len(ctx["normalized_shape"])
    for name in ("weight", "bias"):
        p = ctx[name]
        if ctx.is_tensor(p):
            for tp, t in zip(ctx.layouts(p), tx[-k:]):
                ctx.unify(tp, t)
    val = ctx.example_output
    if not isinstance(val, (list, tuple)):
        return tx
    stats = tx[:-k] + [ctx.fresh(1) for _ in range(k)]
    return TupleLayouts((tx, *(stats if isinstance(v, torch.Tensor) and v.dim() == len(tx) else
                               fresh_like(ctx, v, "norm statistics") for v in val[1:])))


def _tie_norm_groups(ctx: Context, groups: int) -> tuple[AxisLayouts, list[Layout] | None]:
    """Factor channel axis 1 as (group, within-group) and tie the per-channel affine to it:
    whole groups move, and units move within them (the same way in every group, which a
    per-channel affine can express). Returns the input layouts and the two factors."""
    x = ctx["input"]
    tx = ctx.layouts(x)
    c = ctx.shape(x)[1]
    parts = ctx.split_prod(tx[1], [groups, c // groups])
    if parts is not None:
        ctx.g.add_role(parts[0], "norm groups")
        ctx.g.add_role(parts[1], "within a norm group")
    for name in ("weight", "bias"):
        p = ctx[name]
        if ctx.is_tensor(p):
            ctx.unify(ctx.layouts(p)[0], tx[1])
    return tx, parts


@register("aten.group_norm")
def _group_norm(ctx: Context) -> RuleOutput:
    tx, _ = _tie_norm_groups(ctx, int(ctx["num_groups"]))
    return tx


@register("aten.native_group_norm")
def _native_group_norm(ctx: Context) -> RuleOutput:
    """Also returns mean and rstd per (sample, group)."""
    groups = int(ctx["group"])
    tx, parts = _tie_norm_groups(ctx, groups)
    g_layout = parts[0] if parts is not None else ctx.fresh(groups)
    return TupleLayouts((tx, [tx[0], g_layout], [tx[0], g_layout]))
