"""Prove a spec: permute every free group at random and check the outputs do not move.

Default initialisation hides wrong permutations (BatchNorm 1/0 with running stats 0/1,
layer-scale 1e-6, zero-initialised heads), so ``verify`` first gives a float64 copy of the
model random "trained-like" values: scales near 1 but unequal, small random biases and
statistics, no all-zero or constant tensor left.

>>> from permgraph.infer import infer
>>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
...                             torch.nn.Conv2d(4, 2, 3))
>>> x = torch.randn(2, 3, 8, 8)
>>> report = verify(model, infer(model, (x,)), (x,))
>>> report.ok, report.max_abs_diff < 1e-9, report.precision
(True, True, 'float64')

A spec with no free group has nothing to permute: ``ok`` stays True (nothing is wrong with
it), and the report says that nothing was checked rather than claiming a proof.

>>> head = torch.nn.Linear(4, 2)
>>> print(verify(head, infer(head, (torch.randn(3, 4),)), (torch.randn(3, 4),)))
verify OK: nothing to permute (the spec has no free group), so no permutation was checked
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from permgraph.apply import apply
from permgraph.modstate import tensor_attributes
from permgraph.spec import PermSpec
from permgraph.testbench import (
    Bench,
    OutputCheck,
    differences,
    make_trained_like,
    moving_permutation,
    output_check,
    output_counts,
    reference_bench,
    tolerance_note,
)

__all__ = ["OutputCheck", "VerifyReport", "make_trained_like", "output_check", "verify"]


@dataclass(frozen=True)
class VerifyReport:
    """What ``verify`` measured: the largest change of a floating output under random
    permutations of the free groups (``max_abs_diff``) against the largest output, and which
    tensors moved.

    Integer and boolean outputs (an ``argmax`` head) are compared exactly:
    ``exact_outputs`` of the ``outputs_compared`` output tensors were, and
    ``exact_mismatches`` counts how many of those changed. ``precision`` is the dtype the
    check ran in; ``note`` says why when it is not float64 (a model that builds float32
    tensors in ``forward`` cannot run in float64). ``free_groups == 0`` means there was
    nothing to permute: ``ok`` is True but nothing was proved, and the text says so."""

    ok: bool
    max_abs_diff: float
    max_abs_output: float
    permuted_params: list[str] = field(default_factory=list)
    free_groups: int = 0
    trials: int = 1
    control_diff: float | None = None
    outputs_compared: int = 0
    exact_outputs: int = 0
    exact_mismatches: int = 0
    precision: str = "float64"
    note: str = ""
    outputs: tuple[str, ...] | None = None  # the outputs compared (the spec's choice); None: all

    @property
    def nothing_to_permute(self) -> bool:
        """The spec had no free group: the check ran the model but proved no symmetry."""
        return self.free_groups == 0

    def __str__(self) -> str:
        status = "OK" if self.ok else "FAILED"
        if self.nothing_to_permute:
            text = f"verify {status}: nothing to permute (the spec has no free group), so no permutation was checked"
        else:
            parts = [
                f"{self.free_groups} free groups permuted at random ({self.trials} trial(s))",
                f"{len(self.permuted_params)} tensors changed",
            ]
            if self.outputs_compared > self.exact_outputs:
                parts.append(f"max |Δoutput| = {self.max_abs_diff:.3g} (max |output| = {self.max_abs_output:.3g})")
            if self.exact_outputs:
                parts.append(
                    f"{self.exact_outputs} integer/boolean output(s) compared exactly, {self.exact_mismatches} changed"
                )
            if self.outputs is not None:
                parts.append(f"outputs compared: {', '.join(self.outputs)}")
            text = f"verify {status}: " + ", ".join(parts)
        return text + (f"; {self.note}" if self.note else "")


def _held_outside(model: torch.nn.Module) -> str:
    """For a failed check: the tensors the model keeps outside its state dict. The copies
    carry them unchanged, so a cache of the caller's parameters filled before ``verify`` and
    not cleared by ``.double()`` / ``.eval()`` (as timm's are) goes stale under permutation."""
    held = sorted(tensor_attributes(model))
    if not held:
        return ""
    shown = ", ".join(held[:4]) + (f" and {len(held) - 4} more" if len(held) > 4 else "")
    return (
        f"the model holds tensors outside its state dict ({shown}); if one is a cache derived from the "
        "parameters, clear it before verify: permuting the parameters leaves it as it was"
    )


def _check_trials(trials: Any) -> int:
    try:
        n = operator.index(trials)
    except TypeError:
        raise TypeError(f"trials must be an integer, got {type(trials).__name__}") from None
    if n < 1:
        raise ValueError(f"trials must be at least 1 (got {n}): with no trial verify would compare nothing")
    return n


def _check_fits(spec: PermSpec, state: Mapping[str, torch.Tensor]) -> None:
    for key, shape in spec.param_shapes.items():
        if key in state and tuple(state[key].shape) != tuple(shape):
            raise ValueError(
                f"spec does not fit this model: {key!r} is {tuple(state[key].shape)} in the model "
                f"but {tuple(shape)} in the spec; re-run permgraph.infer on this model"
            )


@torch.no_grad()
def verify(
    model: torch.nn.Module,
    spec: PermSpec,
    example_args: tuple[Any, ...] | Any,
    example_kwargs: dict[str, Any] | None = None,
    *,
    seed: int = 0,
    trials: int = 1,
    rtol: float | None = None,
    control: bool = False,
) -> VerifyReport:
    """Apply independent random permutations to every free group and compare outputs in
    float64. ``ok`` when the largest change is within ``rtol`` of the largest output and no
    integer or boolean output (an ``argmax``) changed at all.

    The comparison always runs on a copy given trained-like values (``make_trained_like``,
    seeded by ``seed``): on default initialisation a spec that forgets, say, BatchNorm's
    running statistics looks exact, because they are all 0 and 1. ``model`` itself is never
    run or changed, and every forward runs on a fresh copy, so a cache a model fills from
    its parameters is never reused under other parameters.

    A correct spec moves pure-float64 outputs by about 1e-15 of their size; a wrong one by
    1e-3 or more, but deep mobile nets dilute a wrong permutation of an early layer to 1e-9.
    So the default ``rtol`` is 1e-11 when the whole float64 forward stays in float64, and 1e-6
    when some op computes in lower precision (Hugging Face RMSNorm upcasts to float32, which
    costs about 1e-7); ``rtol`` overrides it. A model whose float64 copy cannot run (it builds
    float32 tensors in ``forward``) is checked in float32 with ``rtol`` 1e-4, and the report
    says so (``precision``, ``note``).

    Raises ``ValueError`` for ``trials < 1`` and when the outputs hold nothing to compare
    (an empty batch): either would report a proof of nothing. A spec with no free group is
    reported as "nothing to permute", with ``ok`` True.

    ``control=True`` also runs a negative control: the first free group's permutation is
    applied to its first tensor only, breaking the tie; ``control_diff`` is how far that
    moves the outputs (it should be far above the tolerance, or the check proves little).

    A spec inferred with ``infer(..., outputs=("logits",))`` is checked on those outputs only
    (``spec.outputs``, also in the report): the others may move under its permutations."""
    trials = _check_trials(trials)
    example_args = example_args if isinstance(example_args, tuple) else (example_args,)
    _check_fits(spec, model.state_dict())
    bench, y0 = reference_bench(model, seed, example_args, example_kwargs or {}, watch=rtol is None, outputs=spec.outputs)
    compared, exact, scale = output_counts(y0)
    rtol = bench.rtol if rtol is None else rtol
    worst, mismatches, changed = 0.0, 0, set()
    for _ in range(trials if spec.free_groups else 0):
        new_state = apply(spec, moving_permutation(spec, bench.gen), bench.state)
        changed |= {k for k in new_state if not torch.equal(new_state[k], bench.state[k])}
        diff, moved = differences(y0, bench.run(new_state))
        worst, mismatches = max(worst, diff), mismatches + moved
    control_diff = _control(spec, bench, y0) if control and spec.free_groups else None
    ok = mismatches == 0 and worst <= rtol * max(scale, 1e-12) + 1e-12
    return VerifyReport(
        ok=ok,
        max_abs_diff=worst,
        max_abs_output=scale,
        permuted_params=sorted(changed),
        free_groups=len(spec.free_groups),
        trials=trials,
        control_diff=control_diff,
        outputs_compared=compared,
        exact_outputs=exact,
        exact_mismatches=mismatches,
        precision=str(bench.precision).removeprefix("torch."),
        outputs=spec.outputs,
        note="; ".join(n for n in (tolerance_note(bench, rtol), "" if ok else _held_outside(model)) if n),
    )


def _control(spec: PermSpec, bench: Bench, y0: list[torch.Tensor]) -> float:
    """How far the outputs move when one tensor of the first free group is permuted and the
    rest of its tie is not (inf when an integer/boolean output changes)."""
    group = spec.free_groups[0]
    key = group.members[0].param
    broken = dataclasses.replace(
        spec,
        groups=tuple(
            dataclasses.replace(group, members=tuple(m for m in group.members if m.param == key))
            if g.name == group.name
            else g
            for g in spec.groups
        ),
    )
    perm = {group.name: moving_permutation(spec, bench.gen)[group.name]}
    worst, mismatches = differences(y0, bench.run(apply(broken, perm, bench.state)))  # only ``key`` moves
    return float("inf") if mismatches else worst
