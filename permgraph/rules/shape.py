"""Ops that rearrange a tensor's axes without touching its values: views and reshapes,
axis permutations, and broadcasting or tiling copies.

A reshape merges axes into products and cuts them into factors (``Prod`` layouts), so a
channel axis flattened with the spatial ones still moves as whole blocks; a transpose just
reorders the layouts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch.fx

from permgraph.axisgraph import Layout, LayoutMismatch, Prod
from permgraph.rules.context import AxisLayouts, Context, RuleOutput, block_everything, dim_index, op_name, register


def reshape_layouts(ctx: Context, t: AxisLayouts, in_shape: Sequence[int], out_shape: Sequence[int]) -> AxisLayouts:
    """Layouts after a reshape: merged axes become products, split axes factors."""
    ins = [(layout, s) for layout, s in zip(t, in_shape) if s != 1]
    out_sizes = [s for s in out_shape if s != 1]
    result: list[Layout] = []
    i = 0
    j = 0
    while j < len(out_sizes) or i < len(ins):
        # gather the smallest chunk of input and output axes with equal products
        chunk_in = [ins[i]] if i < len(ins) else []
        chunk_out = [out_sizes[j]] if j < len(out_sizes) else []
        i += 1
        j += 1
        pin = chunk_in[0][1] if chunk_in else 1
        pout = chunk_out[0] if chunk_out else 1
        while pin != pout:
            if pin < pout and i < len(ins):
                chunk_in.append(ins[i])
                pin *= ins[i][1]
                i += 1
            elif pout < pin and j < len(out_sizes):
                chunk_out.append(out_sizes[j])
                pout *= out_sizes[j]
                j += 1
            else:
                break
        merged: Layout = chunk_in[0][0] if len(chunk_in) == 1 else Prod(tuple(x for x, _ in chunk_in))
        if pin != pout:
            ctx.block(merged, "reshape with mismatched sizes")
            result += [ctx.fresh(s) for s in chunk_out]
            continue
        if len(chunk_out) == 1:
            result.append(merged)
            continue
        parts = ctx.split_prod(merged, chunk_out)
        result += parts if parts is not None else [ctx.fresh(s) for s in chunk_out]
    # put size-1 axes back
    out: AxisLayouts = []
    it = iter(result)
    for s in out_shape:
        out.append(ctx.fresh(1) if s == 1 else next(it))
    return out


@register("aten.view", "aten._unsafe_view", "aten.reshape", "aten.view_copy", "aten._reshape_alias",
          "aten.flatten", "aten.unflatten", "aten.view_as", "aten.reshape_as", "aten.squeeze",
          "aten.unsqueeze", "aten.squeeze_copy", "aten.unsqueeze_copy", "aten._unsafe_view_copy")
def _reshape(ctx: Context) -> RuleOutput:
    """Every op that keeps the row-major order of the units and changes only the shape.
    An axis cut into (slices, ...) whose slices are only ever picked one by one gets a
    layout per slice (see ``sliced_reshape``)."""
    x = ctx.first
    sliced = sliced_reshape(ctx, ctx.layouts(x), ctx.shape(x), ctx.out_shape())
    if sliced is not None:
        return sliced
    return reshape_layouts(ctx, ctx.layouts(x), ctx.shape(x), ctx.out_shape())


# ops that move a tensor's axes or copy it without looking at its values, and nothing else
AXIS_MOVERS = {"aten.permute", "aten.transpose", "aten.swapaxes", "aten.swapdims"}
SIZE_ONE_RESHAPES = {"aten.view", "aten._unsafe_view", "aten.reshape", "aten.unsqueeze", "aten.squeeze"}
COPIES = {"aten.contiguous", "aten.clone", "aten.alias", "aten.detach", "aten._to_copy", "aten.lift_fresh_copy"}


def _non_one(shape: Sequence[int]) -> list[int]:
    return [s for s in shape if s != 1]


def _axis_after(user: torch.fx.Node, k: int, ndim: int) -> int | None:
    """Where axis ``k`` of ``user``'s input sits in its output, for an op that only moves
    axes or adds and removes axes of size 1; None for any other op."""
    name = op_name(user.target)
    if name in COPIES:
        return k
    if name == "aten.permute":
        return [dim_index(d, ndim) for d in user.args[1]].index(k)
    if name in AXIS_MOVERS:
        a, b = dim_index(user.args[1], ndim), dim_index(user.args[2], ndim)
        return b if k == a else a if k == b else k
    if name in SIZE_ONE_RESHAPES:
        ins, out = Context.shape(user.args[0]), Context.shape(user)
        if _non_one(ins) != _non_one(out) or ins[k] == 1:
            return None
        rank = sum(1 for s in ins[:k] if s != 1)
        return [i for i, s in enumerate(out) if s != 1][rank]
    return None


def picked_one_by_one(node: torch.fx.Node, k: int, depth: int = 0) -> bool:
    """Whether every use of axis ``k`` of ``node``'s value, through ops that only move axes
    or copy, picks its slices by a fixed position (``select`` or ``unbind`` along it), so
    that no op ever sees two slices together (a value nothing reads qualifies)."""
    if depth > 32:
        return False
    for user in node.users:
        if user.op != "call_function" or not user.args or user.args[0] is not node:
            return False
        if node in user.args[1:] or node in user.kwargs.values():
            return False
        name, ndim = op_name(user.target), len(Context.shape(node))
        if name in ("aten.select", "aten.unbind"):
            dim = user.args[1] if len(user.args) > 1 else user.kwargs.get("dim", 0)
            if not isinstance(dim, int) or dim_index(dim, ndim) != k:
                return False
            continue
        try:
            after = _axis_after(user, k, ndim)
        except (ValueError, IndexError, TypeError):
            return False
        if after is None or not picked_one_by_one(user, after, depth + 1):
            return False
    return True


def _find_cut(in_shape: Sequence[int], out_shape: Sequence[int]) -> tuple[int, int, int] | None:
    """``(d, k, m)``: input axis ``d`` becomes output axes ``k .. k+m-1`` (``m >= 2``, none of
    length 1); the axes around it keep their products."""
    for d, n in enumerate(in_shape):
        before = math.prod(in_shape[:d])
        for k in range(len(out_shape)):
            if math.prod(out_shape[:k]) != before or n % out_shape[k]:
                continue
            for m in range(2, len(out_shape) - k + 1):
                if math.prod(out_shape[k:k + m]) == n and min(out_shape[k:k + m]) >= 2:
                    return d, k, m
    return None


def sliced_reshape(ctx: Context, t: AxisLayouts, in_shape: Sequence[int], out_shape: Sequence[int]) -> AxisLayouts | None:
    """A reshape that cuts an axis into (slices, rest...) where the slices are only picked
    one by one (``qkv.reshape(B, N, 3, heads, dim)`` then ``unbind`` or ``select``).

    Each slice is its own piece of the input axis (``Sum``) cut into its own factors, so the
    query, key and value parts of a fused projection get their own heads and dims. The
    output's slice-dependent axes get stand-in atoms (``AxisGraph.add_slices`` records what
    each stands for in each slice); ``select`` / ``unbind`` along the slice axis put the real
    layouts back. None when the reshape is not of that form (the plain rule applies)."""
    cut = _find_cut(in_shape, out_shape)
    if cut is None or not picked_one_by_one(ctx.node, cut[1]):
        return None
    d, k, m = cut
    n, rest = out_shape[k], list(out_shape[k + 1:k + m])
    try:
        pieces = ctx.g.split_sum(t[d], [math.prod(rest)] * n, ctx.where)
        per_slice = [ctx.g.split_prod(p, rest, ctx.where) if len(rest) > 1 else [p] for p in pieces]
    except LayoutMismatch:
        return None
    position = ctx.fresh(n, "slices are picked by position")
    stand_ins = [ctx.fresh(s, blocked=None) for s in rest]
    ctx.g.add_slices(position, tuple(dict(zip(stand_ins, factors)) for factors in per_slice))
    before = reshape_layouts(ctx, t[:d], in_shape[:d], out_shape[:k])
    after = reshape_layouts(ctx, t[d + 1:], in_shape[d + 1:], out_shape[k + m:])
    return before + [position, *stand_ins] + after


@register("aten.permute", "aten.permute_copy")
def _permute(ctx: Context) -> RuleOutput:
    """Output axis ``i`` is input axis ``dims[i]``."""
    t = ctx.layouts(ctx.first)
    return [t[dim_index(d, len(t))] for d in ctx["dims"]]


@register("aten.movedim")
def _movedim(ctx: Context) -> RuleOutput:
    """Axes ``source`` go to positions ``destination``; the rest keep their order."""
    t = ctx.layouts(ctx.first)
    n = len(t)
    src, dst = ctx["source"], ctx["destination"]
    src = [src] if isinstance(src, int) else list(src)
    dst = [dst] if isinstance(dst, int) else list(dst)
    order: list[int | None] = [None] * n
    for s, d in zip(src, dst):
        order[dim_index(d, n)] = dim_index(s, n)
    rest = iter(d for d in range(n) if d not in {dim_index(s, n) for s in src})
    return [t[o if o is not None else next(rest)] for o in order]


@register("aten.transpose", "aten.swapaxes", "aten.swapdims", "aten.transpose_copy")
def _transpose(ctx: Context) -> RuleOutput:
    """Swap the two axes given by the second and third arguments."""
    t = ctx.layouts(ctx.first)
    if len(t) < 2:
        return t
    a, b = dim_index(ctx.node.args[1], len(t)), dim_index(ctx.node.args[2], len(t))
    t[a], t[b] = t[b], t[a]
    return t


@register("aten.t", "aten.numpy_T")
def _reverse_axes(ctx: Context) -> RuleOutput:
    """Reverse the order of all axes (``t`` on at most 2 of them)."""
    return list(reversed(ctx.layouts(ctx.first)))


@register("aten.mT", "aten.adjoint")
def _swap_last_two(ctx: Context) -> RuleOutput:
    """Transpose the last two axes of a batch of matrices."""
    t = ctx.layouts(ctx.first)
    if len(t) < 2:
        return t
    return t[:-2] + [t[-1], t[-2]]


@register("aten.expand", "aten.expand_as", "aten.expand_copy", "aten.broadcast_to")
def _expand(ctx: Context) -> RuleOutput:
    """Expanded axes repeat one value, so any permutation of them is harmless: free."""
    x = ctx.first
    t, s = ctx.layouts(x), ctx.shape(x)
    out_shape = ctx.out_shape()
    lead = len(out_shape) - len(t)
    out: AxisLayouts = [ctx.fresh(n, blocked=None) for n in out_shape[:lead]]
    for layout, si, so in zip(t, s, out_shape[lead:]):
        out.append(layout if si == so else ctx.fresh(so, blocked=None))
    return out


@register("aten.repeat")
def _repeat(ctx: Context) -> RuleOutput:
    """Tiles are identical, so the tile index may be permuted freely."""
    x = ctx.first
    t, s = ctx.layouts(x), ctx.shape(x)
    reps = list(ctx["repeats"])
    lead = len(reps) - len(t)
    out: AxisLayouts = [ctx.fresh(r, blocked=None) for r in reps[:lead]]
    for layout, si, r in zip(t, s, reps[lead:]):
        if r == 1:
            out.append(layout)
        elif si == 1:
            out.append(ctx.fresh(r, blocked=None))
        else:
            out.append(Prod((ctx.fresh(r, blocked=None), layout)))
    return out


@register("aten.repeat_interleave")
def _repeat_interleave(ctx: Context) -> RuleOutput:
    """Each unit is repeated ``repeats`` times in place: the axis becomes (unit, copy), and
    the copies of one unit are interchangeable."""
    x = ctx["self"]
    reps, d = ctx["repeats"], ctx["dim"]
    if not isinstance(reps, int) or d is None or not ctx.is_tensor(x):
        return block_everything(ctx, "repeat_interleave with tensor repeats")
    t = ctx.layouts(x)
    d = dim_index(d, len(t))
    out = list(t)
    out[d] = Prod((t[d], ctx.fresh(reps, blocked=None)))
    return out
