"""Fused scaled-dot-product attention: ``softmax(q kᵀ) v`` per head.

Heads (a batch axis of q, k and v) move together, q and k share their feature permutation,
v and the output share theirs, and keys may be permuted together with values (but they
come from positions, which are blocked elsewhere). Grouped-query attention factors the
query heads as (key head, query head within it).
"""

from __future__ import annotations

from typing import Any

from permgraph.rules.context import AxisLayouts, Context, RuleOutput, TupleLayouts, fresh_like, register


@register("aten.scaled_dot_product_attention", "aten._scaled_dot_product_flash_attention_for_cpu",
          "aten._scaled_dot_product_efficient_attention", "aten._scaled_dot_product_flash_attention")
def _sdpa(ctx: Context) -> RuleOutput:
    q, k, v = ctx["query"], ctx["key"], ctx["value"]
    tq, tk, tv = ctx.layouts(q), ctx.layouts(k), ctx.layouts(v)
    ctx.unify(tq[-1], tk[-1])
    ctx.unify(tk[-2], tv[-2])
    ctx.g.add_role(tq[-1], "query/key dims")
    ctx.g.add_role(tv[-1], "value dims")
    _tie_batch_axes(ctx, tq, tk, tv)
    mask = ctx["attn_mask"]
    if ctx.is_tensor(mask):
        _tie_mask(ctx, mask, tq, tk)
    if ctx["is_causal"]:
        ctx.block(tq[-2], "causal attention depends on position order")
        ctx.block(tk[-2], "causal attention depends on position order")
    out = tq[:-1] + [tv[-1]]
    val = ctx.example_output
    if isinstance(val, (list, tuple)):
        return TupleLayouts((out, *(fresh_like(ctx, x, "attention side output") for x in val[1:])))
    return out


def _tie_batch_axes(ctx: Context, tq: AxisLayouts, tk: AxisLayouts, tv: AxisLayouts) -> None:
    """Tie the leading axes of q, k and v (broadcast); with ``enable_gqa`` and fewer key
    heads than query heads, split the query heads into (key head, query head within it)."""
    sq, sk, sv = ctx.shape(ctx["query"]), ctx.shape(ctx["key"]), ctx.shape(ctx["value"])
    nb = len(tq) - 2
    gqa = bool(ctx["enable_gqa"]) and nb >= 1 and sq[-3] != sk[-3]
    for i in range(nb):
        d = i - nb - 2
        if gqa and d == -3:
            hkv = sk[-3]
            parts = ctx.split_prod(tq[-3], [hkv, sq[-3] // hkv])
            if parts is not None:
                ctx.unify(parts[0], tk[-3])
                ctx.unify(parts[0], tv[-3])
                ctx.g.add_role(tk[-3], "heads")
                ctx.g.add_role(parts[1], "query heads per key head")
            continue
        cands = [t[d] for t, s in ((tq, sq), (tk, sk), (tv, sv)) if len(t) >= -d and s[d] != 1]
        for c in cands[1:]:
            ctx.unify(cands[0], c)
        if i == nb - 1 and nb >= 2:
            ctx.g.add_role(tq[d], "heads")


def _tie_mask(ctx: Context, mask: Any, tq: AxisLayouts, tk: AxisLayouts) -> None:
    """An additive or boolean mask (..., queries, keys) broadcasts onto the scores."""
    q, k = ctx["query"], ctx["key"]
    sq, sk = ctx.shape(q), ctx.shape(k)
    nb = len(tq) - 2
    tm, smk = ctx.layouts(mask), ctx.shape(mask)
    targets = tq[:-1] + [tk[-2]]
    full = [sq[i] for i in range(nb)] + [sq[-2], sk[-2]]
    for i in range(1, len(tm) + 1):
        if smk[-i] != 1 and full[-i] == smk[-i]:
            ctx.unify(tm[-i], targets[-i])
