"""Rules from the user's own code: register, replace and remove them in permgraph's registry.

permgraph's own rules live in ``permgraph/rules/<family>.py``; a model that uses an op with
no rule gets every axis that op touches blocked (``permgraph inspect --blocked`` shows
``"mylib.my_op (node): no rule"``). ``register_rule`` adds a rule for such an op from any
module, in the very registry ours use, so ``infer``, ``verify`` and ``check_rule``
(``permgraph.rules.selfcheck``) treat it exactly like a built-in one:

>>> import torch, permgraph
>>> from permgraph.rules import Context, RuleOutput
>>> @permgraph.register_rule("mylib::doc_scale")       # or "mylib.doc_scale", or the op object
... def _scale(ctx: Context) -> RuleOutput:
...     return ctx.layouts(ctx["x"])                    # every output axis moves with x's
>>> rule_key("mylib::doc_scale"), "mylib.doc_scale" in permgraph.rules.RULES
('mylib.doc_scale', True)
>>> permgraph.unregister_rule("mylib::doc_scale")

Ops are named by their overload packet, as ``torch.export`` graphs show them: a
``torch.library.custom_op("mylib::my_op")`` appears as ``mylib.my_op.default`` and is
registered as ``"mylib.my_op"`` (every overload shares the rule); ``"mylib::my_op"``, the
``CustomOpDef`` the decorator returns, ``torch.ops.mylib.my_op`` and
``torch.ops.mylib.my_op.default`` name it too. A custom ``torch.autograd.Function`` needs
no rule: non-strict ``torch.export`` traces through its ``forward`` into the ATen ops it
calls, whose rules apply.

Replacing a rule that already exists (ours or another of yours) is refused unless
``override=True``; ``unregister_rule`` removes a rule registered here and puts back the
built-in one it replaced. ``registered_rule`` does both around a block (for tests).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from permgraph.rules.context import RULES, Rule, op_name

__all__ = ["register_rule", "registered_rule", "rule_key", "unregister_rule", "user_rules"]

_REPLACED: dict[str, Rule | None] = {}  # key -> the rule it replaced (None: there was none)


def rule_key(op: Any) -> str:
    """The registry key for ``op``: an op name (``"mylib::my_op"``, ``"mylib.my_op"``,
    ``"aten.add.Tensor"``), an ``OpOverload`` / ``OpOverloadPacket``, or the ``CustomOpDef``
    that ``torch.library.custom_op`` returns.

    >>> import torch
    >>> rule_key("mylib::my_op"), rule_key(torch.ops.aten.add.Tensor), rule_key("aten.add.Tensor")
    ('mylib.my_op', 'aten.add', 'aten.add')
    """
    qualname = getattr(op, "_qualname", None)  # torch.library.custom_op's CustomOpDef
    if isinstance(qualname, str):
        op = qualname
    if not isinstance(op, str):
        key = str(op) if hasattr(op, "overloads") else op_name(op)  # a packet names itself
        if not callable(op) or not key or key.startswith("<"):
            raise TypeError(f"cannot name a rule for {op!r}: pass the op's name, e.g. 'mylib::my_op'")
        return key
    name = op.strip().replace("::", ".")
    parts = name.split(".")
    if not name or any(not p.isidentifier() for p in parts):
        raise ValueError(f"{op!r} is not an op name: write 'namespace::op' (e.g. 'mylib::my_op') or 'aten.add'")
    if len(parts) == 3:  # namespace.op.overload: the rule covers the whole packet
        return ".".join(parts[:2])
    if len(parts) == 1 and hasattr(torch.ops.aten, name):
        raise ValueError(f"{op!r} names no op packet: did you mean 'aten.{name}'?")
    return name


def _describe(rule: Rule) -> str:
    return f"{getattr(rule, '__module__', '?')}.{getattr(rule, '__qualname__', repr(rule))}"


def _same_function(a: Rule, b: Rule) -> bool:
    """The same module-level function defined again (its module imported twice, or reloaded);
    lambdas and nested functions share names, so only the very same object counts for them."""
    qualname = getattr(b, "__qualname__", "<")
    return a is b or ("<" not in qualname and _describe(a) == _describe(b) and getattr(b, "__module__", None) is not None)


def register_rule(*ops: Any, override: bool = False) -> Callable[[Rule], Rule]:
    """Decorator: make the function the rule of every op in ``ops`` (see ``rule_key``).

    A rule receives a ``permgraph.rules.Context`` and returns a ``RuleOutput`` (see
    ``permgraph.rules.context``). An op that already has a rule raises ``ValueError``
    unless ``override=True``: a built-in rule is never replaced by accident. Registering the
    same function again (its module imported twice) is allowed."""
    if not ops:
        raise TypeError("register_rule needs at least one op, e.g. @register_rule('mylib::my_op')")
    keys = [rule_key(op) for op in ops]

    def deco(fn: Rule) -> Rule:
        if not callable(fn):
            raise TypeError(f"a rule must be a function of a Context, got {fn!r}")
        for key in keys:
            old = RULES.get(key)
            if old is not None and not override and not _same_function(old, fn):
                owner = "your rule" if key in _REPLACED else "permgraph's built-in rule"
                raise ValueError(f"{key} already has {owner} {_describe(old)}; pass override=True to replace it, "
                                 f"or unregister_rule({key!r}) first")
        for key in keys:
            if key not in _REPLACED:
                _REPLACED[key] = RULES.get(key)
            RULES[key] = fn
        return fn

    return deco


def unregister_rule(*ops: Any) -> None:
    """Remove rules registered with ``register_rule``; a built-in rule they replaced comes
    back. permgraph's own rules cannot be removed (override them instead)."""
    keys = [rule_key(op) for op in ops]
    for key in keys:
        if key not in _REPLACED:
            why = "it is permgraph's built-in rule" if key in RULES else "it has no rule"
            raise ValueError(f"{key} was not registered with register_rule ({why})")
    for key in keys:
        old = _REPLACED.pop(key)
        if old is None:
            RULES.pop(key, None)
        else:
            RULES[key] = old


@contextlib.contextmanager
def registered_rule(ops: Any, rule: Rule, *, override: bool = False) -> Iterator[Rule]:
    """``register_rule`` for the duration of a ``with`` block (one op or a list of them);
    the registry is as it was afterwards, even when the block raises.

    >>> import permgraph
    >>> with registered_rule("mylib::tmp_op", lambda ctx: ctx.layouts(ctx.first)):
    ...     "mylib.tmp_op" in permgraph.rules.RULES
    True
    >>> "mylib.tmp_op" in permgraph.rules.RULES
    False
    """
    names = list(ops) if isinstance(ops, (list, tuple)) else [ops]
    keys = [rule_key(op) for op in names]
    before = {k: (RULES.get(k), k in _REPLACED, _REPLACED.get(k)) for k in keys}
    register_rule(*names, override=override)(rule)
    try:
        yield rule
    finally:
        for key, (old, was_user, replaced) in before.items():
            if old is None:
                RULES.pop(key, None)
            else:
                RULES[key] = old
            if was_user:
                _REPLACED[key] = replaced
            else:
                _REPLACED.pop(key, None)


def user_rules() -> dict[str, Rule]:
    """The rules registered with ``register_rule`` and still in place, by op key."""
    return {k: RULES[k] for k in _REPLACED if k in RULES}
