"""pytest helpers: keep a model's permutation spec honest in your own test suite.

``assert_spec_sound`` fails when a hand-written spec (a ``PermSpec``, Git Re-Basin's dicts, a
JSON file) is not a symmetry of the model, with ``check_spec``'s report as the message.
``assert_symmetries`` pins the shape of the inferred spec, so that a refactor of the model that
silently loses (or gains) a symmetry fails a test instead of degrading matching.

>>> import torch
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
>>> spec = assert_symmetries(model, torch.randn(3, 4), free_groups=["0.out"],
...                          permuted_tensors=["0.weight", "0.bias", "2.weight"])
>>> assert_spec_sound(model, spec.to_rebasin(), torch.randn(3, 4)).ok
True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from permgraph.check import CheckReport, check_spec
from permgraph.draw import spec_table
from permgraph.infer import infer
from permgraph.rules.selfcheck import assert_rule_sound, check_rule  # a rule of your own (rules.selfcheck)
from permgraph.spec import PermSpec
from permgraph.verify import verify

__all__ = ["assert_rule_sound", "assert_spec_sound", "assert_symmetries", "check_rule"]


def _args(inputs: Any) -> tuple[Any, ...]:
    return inputs if isinstance(inputs, tuple) else (inputs,)


def assert_spec_sound(model: torch.nn.Module, spec: Any, inputs: Any, kwargs: dict[str, Any] | None = None, *,
                      complete: bool = False) -> CheckReport:  # fmt: skip
    """Fail (``AssertionError``, the report as message) unless ``spec`` is sound for ``model`` on
    ``inputs`` (a tensor or a tuple of positional inputs); with ``complete=True`` also unless it
    uses every symmetry permgraph infers. Returns the report."""
    report = check_spec(model, spec, _args(inputs), kwargs)
    if not report.ok or (complete and not report.complete):
        raise AssertionError(f"the permutation spec is {'unsound' if not report.ok else 'incomplete'}:\n{report}")
    return report


def _compare(what: str, expected: int | Iterable[str] | None, got: list[str]) -> str:
    if expected is None:
        return ""
    if isinstance(expected, int):
        return "" if expected == len(got) else f"expected {expected} {what}, inferred {len(got)}"
    want = set(expected)
    lost, new = sorted(want - set(got)), sorted(set(got) - want)
    if not lost and not new:
        return ""
    return f"{what}: lost {lost or 'none'}, new {new or 'none'}"


def assert_symmetries(model: torch.nn.Module, inputs: Any, *, free_groups: int | Iterable[str] | None = None,
                      permuted_tensors: int | Iterable[str] | None = None,
                      kwargs: dict[str, Any] | None = None) -> PermSpec:  # fmt: skip
    """Infer ``model``'s spec on ``inputs``, prove it (``verify``), and fail unless it has the
    given free groups and permuted state-dict tensors: counts, or the exact names (a refactor that
    renames a layer then says which names changed). Returns the spec."""
    spec = infer(model, _args(inputs), kwargs)
    report = verify(model, spec, _args(inputs), kwargs)
    if not report.ok:
        raise AssertionError(f"the inferred spec does not verify: {report}\n{spec_table(spec)}")
    problems = [p for p in (_compare("free groups", free_groups, [g.name for g in spec.free_groups]),
                            _compare("permuted tensors", permuted_tensors, spec.permuted_params)) if p]  # fmt: skip
    if problems:
        raise AssertionError("the model's symmetries changed: " + "; ".join(problems) + "\n" + spec_table(spec))
    return spec
