"""Ops that make a tensor from nothing but sizes: whether its axes may move depends on
whether its values depend on position."""

from __future__ import annotations

from permgraph.rules.context import Context, RuleOutput, register

CONSTANT_FACTORIES = """zeros ones full zeros_like ones_like full_like new_zeros new_ones new_full
scalar_tensor""".split()
OTHER_FACTORIES = """empty empty_like new_empty arange rand randn randint rand_like randn_like
randint_like linspace tensor empty_strided eye tril_indices triu_indices""".split()


@register(*[f"aten.{n}" for n in CONSTANT_FACTORIES])
def _constant_factory(ctx: Context) -> RuleOutput:
    """Every unit holds the same value, so its axes may be permuted freely (they take the
    permutation of whatever they meet)."""
    return [ctx.fresh(s, blocked=None) for s in ctx.out_shape()]


@register(*[f"aten.{n}" for n in OTHER_FACTORIES])
def _positional_factory(ctx: Context) -> RuleOutput:
    """``arange``, random or uninitialised values: unit ``i`` differs from unit ``j``."""
    return ctx.fresh_layouts(ctx.out_shape(), "values depend on position")
