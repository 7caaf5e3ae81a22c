"""``getitem`` and the ops that produce no tensor (size queries, assertions, Python
arithmetic on symbolic sizes): they tie nothing."""

from __future__ import annotations

import operator

from permgraph.rules.context import Context, RuleOutput, TupleLayouts, block_everything, register


@register("getitem")
def _getitem(ctx: Context) -> RuleOutput:
    """Element ``i`` of a multi-output op: the layouts its rule gave that element."""
    src, i = ctx.node.args
    val = ctx.values.get(src)
    if isinstance(val, TupleLayouts) and isinstance(i, int) and i < len(val.items):
        return val.items[i]
    return block_everything(ctx, "getitem on an untracked value")


NO_TENSOR = ["aten.sym_size", "aten.sym_numel", "aten.sym_stride", "aten._assert_async", "aten._assert_scalar",
             "aten.sym_constrain_range_for_size", "aten.item", "aten._local_scalar_dense", "aten.is_nonzero",
             "aten.sym_storage_offset", "aten._functional_assert_async", "aten.dim", "aten.size", "aten.numel"]

# Python-level scalar arithmetic on symbolic sizes, recorded by the function's name.
SCALAR_ARITHMETIC = [fn.__name__ for fn in (
    operator.add, operator.sub, operator.mul, operator.floordiv, operator.truediv, operator.mod, operator.neg,
    operator.pow, operator.eq, operator.lt, operator.le, operator.gt, operator.ge, operator.ne)]


@register(*NO_TENSOR, *SCALAR_ARITHMETIC)
def _no_tensor(ctx: Context) -> RuleOutput:
    """Nothing to tie: the result is a Python scalar or nothing at all."""
    return None
