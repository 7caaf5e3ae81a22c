"""Embedding lookups: rows are picked by token id, so the vocabulary axis cannot move."""

from __future__ import annotations

from permgraph.rules.context import Context, RuleOutput, register
from permgraph.rules.experts import pick


@register("aten.embedding")
def _embedding(ctx: Context) -> RuleOutput:
    """The vocabulary axis is blocked; the embedding axis passes to the output (and ties
    to a head that shares the weight)."""
    w, ids = ctx["weight"], ctx["indices"]
    tw = ctx.layouts(w)
    pick(ctx, tw[0], ids, "embedding rows are indexed by token ids")
    return ctx.layouts(ids) + [tw[1]]
