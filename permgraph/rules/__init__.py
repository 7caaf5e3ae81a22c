"""One rule per ATen op: which axes of its inputs and outputs share a permutation.

A rule receives the op's bound arguments with the layouts of their axes and returns the
layouts of its outputs. It states the op's equivariance: outputs reuse input layouts where
the op commutes with permuting them, ``ctx.unify`` ties axes that must move together
(contractions, broadcasting), and every axis the op does not commute with is blocked with
a reason. An op without a rule blocks every axis it touches (see ``block_everything``).

Rules follow each op's semantics, never a model family: Hugging Face GPT-2's ``Conv1D`` is
just an ``addmm`` with an (in, out) weight and needs nothing special.

``context`` holds the API a rule is written against (``Context``, ``register``, the
``RuleOutput`` shapes); each other module holds one family of ops. Adding an op is one
``@register``-ed function in the module of its family (and one row of
``tests/permgraph/test_op_table.py``). A user's own module adds rules with
``register_rule`` (``public``) and proves them with ``check_rule`` (``selfcheck``).

>>> "aten.linear" in RULES and "aten.special_i0" not in RULES
True
"""

from permgraph.rules import (  # noqa: F401  (imported for their @register side effects)
    attention,
    bookkeeping,
    contractions,
    conv,
    embedding,
    experts,
    factories,
    norms,
    ordering,
    pointwise,
    recurrent,
    reductions,
    shape,
    slicing,
    spatial,
)
from permgraph.rules.context import (
    RULES,
    AxisLayouts,
    Context,
    Rule,
    RuleOutput,
    TupleLayouts,
    block_everything,
    dim_index,
    flat_nodes,
    op_name,
    register,
    rule_for,
)
from permgraph.rules.public import register_rule, registered_rule, rule_key, unregister_rule, user_rules

__all__ = [
    "RULES",
    "AxisLayouts",
    "Context",
    "Rule",
    "RuleOutput",
    "TupleLayouts",
    "block_everything",
    "dim_index",
    "flat_nodes",
    "op_name",
    "register",
    "register_rule",
    "registered_rule",
    "rule_for",
    "rule_key",
    "unregister_rule",
    "user_rules",
]
