"""Convolutions: channels behave like a linear layer's features, positions do not move.

In-channels tie to the weight's in axis and out-channels come from its out axis. With
``groups`` > 1 both are factored as (group, within-group) and the group factors tie, so
groups move as blocks and units move within them (a depthwise conv ties its channels
straight through). Spatial and kernel axes are blocked: a convolution does not commute
with reordering positions.
"""

from __future__ import annotations

from permgraph.axisgraph import Layout, Prod
from permgraph.rules.context import AxisLayouts, Context, RuleOutput, register


@register("aten.conv1d", "aten.conv2d", "aten.conv3d", "aten.convolution", "aten._convolution",
          "aten.conv1d_padding", "aten.conv2d_padding")
def _convolution(ctx: Context) -> RuleOutput:
    """``conv*d`` and the general ``convolution``, transposed when its ``transposed`` says so."""
    return _conv(ctx, transposed=bool(ctx["transposed"]))


@register("aten.conv_transpose1d", "aten.conv_transpose2d", "aten.conv_transpose3d")
def _conv_transpose(ctx: Context) -> RuleOutput:
    """Transposed convolutions: the weight is (in, out / groups, kernel...)."""
    return _conv(ctx, transposed=True)


def _conv(ctx: Context, transposed: bool) -> RuleOutput:
    x, w, b = ctx["input"], ctx["weight"], ctx["bias"]
    groups = int(ctx["groups"] or 1)
    tx, tw = ctx.layouts(x), ctx.layouts(w)
    nsp = len(ctx.shape(w)) - 2
    cx = 1 if len(tx) == nsp + 2 else 0  # an unbatched input has its channels first
    for t in tx[cx + 1:]:
        ctx.block(t, "spatial axis of a convolution")
    for t in tw[2:]:
        ctx.block(t, "kernel axis of a convolution")
    if transposed:
        out_c = _transposed_channels(ctx, tx[cx], tw, groups, cx)
    else:
        out_c = _channels(ctx, tx[cx], tw, groups, ctx.shape(x)[cx])
    if ctx.is_tensor(b):
        ctx.unify(ctx.layouts(b)[0], out_c)
    out: AxisLayouts = []
    if cx:
        out.append(tx[0])
    out.append(out_c)
    out += ctx.fresh_layouts(ctx.out_shape()[len(out):], "spatial axis of a convolution")
    return out


def _channels(ctx: Context, channels: Layout, tw: AxisLayouts, groups: int, cin: int) -> Layout:
    """Weight (out, in / groups, ...): tie the input channels; the output's are the weight's out axis."""
    if groups == 1:
        ctx.unify(channels, tw[1])
        return tw[0]
    sw = ctx.shape(ctx["weight"])
    xparts = ctx.split_prod(channels, [groups, cin // groups])
    wparts = ctx.split_prod(tw[0], [groups, sw[0] // groups])
    if xparts is None or wparts is None:
        ctx.block(tw[0], "grouped convolution")
        ctx.block(tw[1], "grouped convolution")
    else:
        ctx.unify(xparts[0], wparts[0])
        ctx.unify(xparts[1], tw[1])
        ctx.g.add_role(xparts[0], "conv groups")
    return tw[0]


def _transposed_channels(ctx: Context, channels: Layout, tw: AxisLayouts, groups: int, cx: int) -> Layout:
    """Weight (in, out / groups, ...): tie the input channels to axis 0; the output's are
    (group, weight axis 1)."""
    if groups == 1:
        ctx.unify(channels, tw[0])
        return tw[1]
    cin = ctx.shape(ctx["weight"])[0]
    parts = ctx.split_prod(channels, [groups, cin // groups])
    wparts = ctx.split_prod(tw[0], [groups, cin // groups])
    if parts is None or wparts is None:
        ctx.block(tw[1], "grouped transposed convolution")
        return ctx.fresh(ctx.out_shape()[cx])
    ctx.unify(parts[0], wparts[0])
    ctx.unify(parts[1], wparts[1])
    ctx.g.add_role(parts[0], "conv groups")
    return Prod((parts[0], tw[1]))
