"""Contractions (linear, matmul and its fused-bias forms, einsum): the contracted axes of the
two operands are tied (the sum over them is invariant to permuting them together), and the
free axes pass to the output."""

from __future__ import annotations

from typing import Any

from permgraph.axisgraph import Layout, Prod
from permgraph.rules.context import AxisLayouts, Context, RuleOutput, block_everything, register


@register("aten.linear")
def _linear(ctx: Context) -> RuleOutput:
    """``x @ W.T + b``: x's features tie to W's in axis; W's out axis (and b) is the output's."""
    x, w, b = ctx["input"], ctx["weight"], ctx["bias"]
    tx, tw = ctx.layouts(x), ctx.layouts(w)
    if len(tw) == 1:  # weight (in,): output drops the feature axis
        ctx.unify(tx[-1], tw[0])
        out = tx[:-1]
    else:
        ctx.unify(tx[-1], tw[1])
        out = tx[:-1] + [tw[0]]
    if ctx.is_tensor(b) and ctx.shape(b) and len(tw) == 2:
        ctx.unify(ctx.layouts(b)[-1], tw[0])
    return out


def _batch_axes(ctx: Context, ta: AxisLayouts, tb: AxisLayouts, sa: tuple, sb: tuple) -> AxisLayouts:
    """The leading (batch) axes of a matmul broadcast like an elementwise op's."""
    nb = max(len(ta), len(tb)) - 2
    batch: AxisLayouts = []
    for i in range(nb):
        da, db = len(ta) - 2 - nb + i, len(tb) - 2 - nb + i
        cands = []
        if da >= 0 and sa[da] != 1:
            cands.append(ta[da])
        if db >= 0 and sb[db] != 1:
            cands.append(tb[db])
        if not cands:
            batch.append(ctx.fresh(1))
            continue
        if len(cands) == 2:
            ctx.unify(cands[0], cands[1])
        batch.append(cands[0])
    return batch


def matmul_layouts(ctx: Context, a: Any, b: Any) -> AxisLayouts:
    """The output layouts of ``a @ b`` with numpy's matmul semantics (1-D operands gain and
    lose a size-1 axis, batch axes broadcast), tying a's last axis to b's second-to-last."""
    ta, tb = ctx.layouts(a), ctx.layouts(b)
    sa, sb = ctx.shape(a), ctx.shape(b)
    if len(ta) == 1 and len(tb) == 1:
        ctx.unify(ta[0], tb[0])
        return []
    squeeze_a = len(ta) == 1
    squeeze_b = len(tb) == 1
    if squeeze_a:
        ta, sa = [ctx.fresh(1)] + ta, (1,) + sa
    if squeeze_b:
        tb, sb = tb + [ctx.fresh(1)], sb + (1,)
    ctx.unify(ta[-1], tb[-2])
    batch = _batch_axes(ctx, ta, tb, sa, sb)
    merged = ctx.g.resolve(batch[-1]) if len(batch) == 1 else None  # (batch · heads), as in nn.MultiheadAttention
    if len(batch) >= 2 or isinstance(merged, Prod):  # name the parts for display, as SDPA does
        ctx.g.add_role(batch[-1] if len(batch) >= 2 else merged.factors[-1], "heads")
        ctx.g.add_role(ta[-1], "query/key dims")
        ctx.g.add_role(tb[-1], "value dims")
    return batch + ([] if squeeze_a else [ta[-2]]) + ([] if squeeze_b else [tb[-1]])


@register("aten.matmul", "aten.mm", "aten.bmm")
def _matmul(ctx: Context) -> RuleOutput:
    return matmul_layouts(ctx, ctx.node.args[0], ctx.node.args[1])


def _add_bias(ctx: Context, bias: Any, prod: AxisLayouts) -> AxisLayouts:
    """``bias + prod``: the bias broadcasts into the product, right-aligned."""
    out_shape = ctx.out_shape()
    tb, sb = ctx.layouts(bias), ctx.shape(bias)
    for i in range(1, len(tb) + 1):
        if sb[-i] != 1 and out_shape[-i] == sb[-i]:
            ctx.unify(tb[-i], prod[-i])
    return prod


@register("aten.addmm")
def _addmm(ctx: Context) -> RuleOutput:
    """``self + mat1 @ mat2`` (Hugging Face's ``Conv1D`` is one, with an (in, out) weight)."""
    return _add_bias(ctx, ctx["self"], matmul_layouts(ctx, ctx["mat1"], ctx["mat2"]))


@register("aten.baddbmm")
def _baddbmm(ctx: Context) -> RuleOutput:
    """``self + batch1 @ batch2``, batch by batch."""
    return _add_bias(ctx, ctx["self"], matmul_layouts(ctx, ctx["batch1"], ctx["batch2"]))


@register("aten.addbmm")
def _addbmm(ctx: Context) -> RuleOutput:
    """``self + sum over the batch of batch1 @ batch2``: the batch axis is consumed."""
    prod = matmul_layouts(ctx, ctx["batch1"], ctx["batch2"])
    return _add_bias(ctx, ctx["self"], prod[1:])


@register("aten.addmv")
def _addmv(ctx: Context) -> RuleOutput:
    """``self + mat @ vec``."""
    return _add_bias(ctx, ctx["self"], matmul_layouts(ctx, ctx["mat"], ctx["vec"]))


@register("aten.einsum")
def _einsum(ctx: Context) -> RuleOutput:
    """Every index letter is one axis: equal letters are tied, summed letters consumed."""
    eq, operands = ctx["equation"], ctx["tensors"]
    eq = eq.replace(" ", "")
    if "..." in eq or "->" not in eq:
        return block_everything(ctx, f"einsum {eq!r} with ellipsis or implicit output")
    lhs, rhs = eq.split("->")
    letters: dict[str, Layout] = {}
    for spec, op in zip(lhs.split(","), operands):
        shp = ctx.shape(op)
        for ch, t, s in zip(spec, ctx.layouts(op), shp):
            if s == 1:
                continue
            if ch in letters:
                ctx.unify(letters[ch], t)
            else:
                letters[ch] = t
    out_shape = ctx.out_shape()
    # a layout may be atom 0, which is falsy: test membership, never truthiness
    return [letters[ch] if ch in letters else ctx.fresh(s) for ch, s in zip(rhs, out_shape)]
