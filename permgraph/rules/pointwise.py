"""Elementwise ops: every output axis moves with the input axes it broadcasts from.

An elementwise op applies one function to each unit, so it commutes with any permutation
applied to all its operands at once; broadcasting ties the operands' axes of equal length.
"""

from __future__ import annotations

from permgraph.rules.context import Context, RuleOutput, TupleLayouts, block_everything, flat_nodes, register

UNARY = """abs alias bitwise_not ceil clamp clamp_max clamp_min clone contiguous cos cosh detach
dropout alpha_dropout feature_dropout elu erf erfc exp exp2 expm1 fill float floor frac gelu
hardsigmoid hardswish hardtanh isinf isnan leaky_relu lift_fresh_copy log log10 log1p log2
logical_not logit mish nan_to_num neg reciprocal relu relu6 round rsqrt selu celu sgn sigmoid
sign silu sin sinh softplus sqrt square tan tanh threshold trunc zero _to_copy to
_assert_tensor_metadata bernoulli positive""".split()

BINARY = """add sub rsub mul div true_divide floor_divide remainder fmod pow maximum minimum where
masked_fill eq ne lt le gt ge logical_and logical_or logical_xor bitwise_and bitwise_or
bitwise_xor addcmul addcdiv lerp copy hypot atan2 xlogy fmax fmin __and__ __or__ __xor__""".split()


def with_inplace(names: list[str]) -> list[str]:
    """``aten.relu`` and its in-place twin ``aten.relu_`` for each name."""
    out = []
    for n in names:
        out += [f"aten.{n}", f"aten.{n}_"]
    return out


def _all_operands(ctx: Context) -> list:
    return flat_nodes(list(ctx.node.args) + list(ctx.node.kwargs.values()))


@register(*with_inplace(UNARY))
def _unary(ctx: Context) -> RuleOutput:
    """One tensor in, one out (a few, like ``clamp(min=Tensor)``, take more tensors: they
    broadcast with it)."""
    first = next((a for a in ctx.node.args if ctx.is_tensor(a)), None)
    if first is None:
        return block_everything(ctx, "no tensor input")
    return ctx.broadcast(*_all_operands(ctx))


@register(*with_inplace(BINARY))
def _binary(ctx: Context) -> RuleOutput:
    """Several operands, broadcast together."""
    return ctx.broadcast(*_all_operands(ctx))


@register("aten.type_as")
def _type_as(ctx: Context) -> RuleOutput:
    """A dtype cast: the output is the first operand's units (the second only gives a dtype)."""
    return ctx.layouts(ctx.first)


@register("aten.native_dropout")
def _native_dropout(ctx: Context) -> RuleOutput:
    """Output and mask, both shaped like the input."""
    t = ctx.layouts(ctx["input"])
    return TupleLayouts((t, t))


@register("aten.prelu", "aten._prelu_kernel")
def _prelu(ctx: Context) -> RuleOutput:
    """A per-channel slope (unless it is a single shared one) moves with channel axis 1."""
    x, w = ctx["self"], ctx["weight"]
    t = ctx.layouts(x)
    if ctx.shape(w) and ctx.shape(w)[0] > 1 and len(t) >= 2:
        ctx.unify(ctx.layouts(w)[0], t[1])
    return t
