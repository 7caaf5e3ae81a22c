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

import copy
import dataclasses
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from permgraph.apply import apply, random_permutation
from permgraph.modstate import detached_copy, tensor_attributes
from permgraph.spec import PermSpec
from permgraph.trace import pick_outputs

__all__ = ["OutputCheck", "VerifyReport", "make_trained_like", "output_check", "verify"]

# Default tolerances, relative to the largest output. A correct spec moves a pure float64
# forward by about 1e-15 of its size and a float32 one by about 1e-6 (summation order changes
# with the permutation); a wrong one moves outputs by 1e-3 or more.
_RTOL_FLOAT64 = 1e-11
_RTOL_FLOAT64_WITH_FLOAT32_OPS = 1e-6  # Hugging Face RMSNorm upcasts to float32: about 1e-7
_RTOL_FLOAT32 = 1e-4
_RTOL_HALF = 1e-2  # some op computes in float16 / bfloat16


class _PrecisionWatch(TorchDispatchMode):
    """Notes the coarsest floating dtype any op of a forward produced: a float64 model that
    upcasts to float32 somewhere cannot be held to float64 round-off."""

    coarsest: torch.dtype | None = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                if self.coarsest is None or torch.finfo(t.dtype).eps > torch.finfo(self.coarsest).eps:
                    self.coarsest = t.dtype
        return out


def _default_rtol(precision: torch.dtype, coarsest: torch.dtype | None) -> float:
    eps = torch.finfo(coarsest or precision).eps
    if eps > torch.finfo(torch.float32).eps:
        return _RTOL_HALF
    if precision == torch.float32:
        return _RTOL_FLOAT32
    return _RTOL_FLOAT64 if eps <= torch.finfo(torch.float64).eps else _RTOL_FLOAT64_WITH_FLOAT32_OPS


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
            parts = [f"{self.free_groups} free groups permuted at random ({self.trials} trial(s))",
                     f"{len(self.permuted_params)} tensors changed"]
            if self.outputs_compared > self.exact_outputs:
                parts.append(f"max |Δoutput| = {self.max_abs_diff:.3g} (max |output| = {self.max_abs_output:.3g})")
            if self.exact_outputs:
                parts.append(f"{self.exact_outputs} integer/boolean output(s) compared exactly, "
                             f"{self.exact_mismatches} changed")
            if self.outputs is not None:
                parts.append(f"outputs compared: {', '.join(self.outputs)}")
            text = f"verify {status}: " + ", ".join(parts)
        return text + (f"; {self.note}" if self.note else "")


@torch.no_grad()
def make_trained_like(model: torch.nn.Module, generator: torch.Generator | None = None) -> None:
    """Give every floating tensor of ``model`` non-degenerate random values in place."""
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if not t.is_floating_point() or t.numel() == 0:
            continue
        flat = t.reshape(-1)
        # constant, or so small it cannot matter (timm's cls token starts at std 1e-6)
        constant = bool((flat == flat[0]).all()) or float(flat.abs().max()) < 1e-4
        if name.endswith("running_var"):
            t.copy_(torch.rand(t.shape, generator=generator, dtype=t.dtype) + 0.5)
        elif name.endswith("running_mean"):
            t.copy_(torch.randn(t.shape, generator=generator, dtype=t.dtype) * 0.1)
        elif not constant:
            continue
        elif t.dim() <= 1:
            if float(flat[0]) > 0:  # a scale: near 1 but unequal
                t.copy_(torch.rand(t.shape, generator=generator, dtype=t.dtype) + 0.5)
            else:  # a bias or offset
                t.copy_(torch.randn(t.shape, generator=generator, dtype=t.dtype) * 0.1)
        else:
            fan_in = max(1, t[0].numel())
            t.copy_(torch.randn(t.shape, generator=generator, dtype=t.dtype) / fan_in**0.5)


def _outputs(out: Any) -> list[torch.Tensor]:
    """Every tensor a model returned, of any dtype, in a fixed order."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, Mapping):
        return [t for v in out.values() for t in _outputs(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _outputs(v)]
    if hasattr(out, "to_tuple"):
        return _outputs(out.to_tuple())
    return []


def _numeric(t: torch.Tensor) -> bool:
    """Compared within a tolerance (floating, complex); anything else (integer, bool) exactly."""
    return t.is_floating_point() or t.is_complex()


def _cast(x: Any, dtype: torch.dtype) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(dtype) if x.is_floating_point() else x
    if isinstance(x, tuple):
        return tuple(_cast(v, dtype) for v in x)
    if isinstance(x, list):
        return [_cast(v, dtype) for v in x]
    if isinstance(x, dict):
        return {k: _cast(v, dtype) for k, v in x.items()}
    return x


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


@dataclass
class _Bench:
    """A copy of the model with trained-like values that never runs itself: every forward
    runs on a fresh deep copy of it. Models that cache tensors derived from their parameters
    (timm's ``attention_bias_cache``) fill the cache on their first forward; a copy made
    after that forward would reuse the unpermuted cache under permuted parameters."""

    template: torch.nn.Module
    state: dict[str, torch.Tensor]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    gen: torch.Generator  # drew the trained-like values; draws the permutations next
    precision: torch.dtype
    rtol: float = _RTOL_FLOAT64  # the default for what the reference forward computed in
    note: str = ""
    outputs: tuple[str, ...] | None = None  # the outputs compared (``PermSpec.outputs``)

    def fresh(self, state: Mapping[str, torch.Tensor] | None = None) -> torch.nn.Module:
        """A new copy of the template, with ``state`` loaded when given."""
        model = copy.deepcopy(self.template)
        if state is not None:
            model.load_state_dict(state)
        return model

    def run(self, state: Mapping[str, torch.Tensor] | None = None) -> list[torch.Tensor]:
        """The outputs of a fresh copy with ``state`` loaded."""
        return _outputs(pick_outputs(self.fresh(state)(*self.args, **self.kwargs), self.outputs))


def _prepare(model, dtype, seed, args, kwargs, watch: bool = True, outputs=None) -> tuple[_Bench, list[torch.Tensor]]:
    """The bench in ``dtype`` and its reference outputs. ``watch``: note the coarsest dtype the
    forward computes in, for the default tolerance; not needed when the caller gives ``rtol``, and
    worth skipping then: the first dispatch mode of a process imports torch._dynamo (3 s)."""
    gen = torch.Generator().manual_seed(seed)
    template = detached_copy(model)
    template = (template.double() if dtype == torch.float64 else template.float()).eval()
    make_trained_like(template, gen)
    bench = _Bench(template, template.state_dict(), _cast(args, dtype), _cast(kwargs, dtype), gen, dtype,
                   outputs=outputs)
    reference = bench.fresh()
    if not watch:
        return bench, _outputs(pick_outputs(reference(*bench.args, **bench.kwargs), outputs))
    with _PrecisionWatch() as watcher:
        y0 = _outputs(pick_outputs(reference(*bench.args, **bench.kwargs), outputs))
    bench.rtol = _default_rtol(dtype, watcher.coarsest)
    return bench, y0


def _reference(model, seed, args, kwargs, watch: bool = True, outputs=None) -> tuple[_Bench, list[torch.Tensor]]:
    """``_prepare`` in float64, or in float32 when the float64 forward fails (a model that
    builds a float32 tensor in ``forward``, say ``h @ torch.eye(16)``, mixes dtypes); the
    bench's ``note`` then says so, for the report."""
    try:
        return _prepare(model, torch.float64, seed, args, kwargs, watch, outputs)
    except Exception as e64:  # any failure of the float64 copy: the float32 one may still run
        try:
            bench, y0 = _prepare(model, torch.float32, seed, args, kwargs, watch, outputs)
        except Exception as e32:
            raise RuntimeError(
                f"verify could not run the model on the example inputs, neither in float64 "
                f"({_first_line(e64)}) nor in float32 ({_first_line(e32)})"
            ) from e32
        bench.note = f"checked in float32 because the float64 forward failed ({_first_line(e64)})"
        return bench, y0


def _compared(y0: list[torch.Tensor]) -> tuple[int, int, float]:
    """(output tensors compared, of which exactly, largest finite |output|); raise when
    nothing would be: a check that compares no value proves nothing."""
    compared = exact = 0
    scale = 0.0
    for t in y0:
        if _numeric(t):
            finite = t[torch.isfinite(t)]
            if finite.numel():
                compared += 1
                scale = max(scale, float(finite.abs().max()))
        elif t.numel():
            compared, exact = compared + 1, exact + 1
    if not compared:
        raise ValueError(
            "verify has nothing to compare: the model's outputs on these example inputs hold no "
            "finite value (an input with a 0-length dimension, such as an empty batch?); pass "
            "example inputs with at least one sample"
        )
    return compared, exact, scale


def _differences(y0: list[torch.Tensor], y1: list[torch.Tensor]) -> tuple[float, int]:
    """(largest change of a floating output, number of integer/boolean outputs that
    changed). Entries that are not finite in either must stay identical (else inf)."""
    if len(y1) != len(y0):
        raise RuntimeError("the permuted model returned a different number of outputs")
    worst, mismatches = 0.0, 0
    for a, b in zip(y0, y1):
        if a.shape != b.shape or a.dtype != b.dtype:
            worst = float("inf")
        elif not _numeric(a):
            mismatches += not torch.equal(a, b)
        elif a.numel():
            finite = torch.isfinite(a) & torch.isfinite(b)
            same = (a == b) | (torch.isnan(a) & torch.isnan(b))
            if not bool(same[~finite].all()):
                worst = float("inf")
            elif bool(finite.any()):
                worst = max(worst, float((a[finite] - b[finite]).abs().max()))
    return worst, mismatches


def _tolerance_note(bench: _Bench, rtol: float) -> str:
    """Why the check ran in float32, and what it could not see there."""
    if not bench.note:
        return ""
    return f"{bench.note}; tolerance {rtol:.0e} of the largest output, so smaller changes go unseen"


def _held_outside(model: torch.nn.Module) -> str:
    """For a failed check: the tensors the model keeps outside its state dict. The copies
    carry them unchanged, so a cache of the caller's parameters filled before ``verify`` and
    not cleared by ``.double()`` / ``.eval()`` (as timm's are) goes stale under permutation."""
    held = sorted(tensor_attributes(model))
    if not held:
        return ""
    shown = ", ".join(held[:4]) + (f" and {len(held) - 4} more" if len(held) > 4 else "")
    return (f"the model holds tensors outside its state dict ({shown}); if one is a cache derived from the "
            "parameters, clear it before verify: permuting the parameters leaves it as it was")


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
    bench, y0 = _reference(model, seed, example_args, example_kwargs or {}, watch=rtol is None,
                           outputs=spec.outputs)
    compared, exact, scale = _compared(y0)
    rtol = bench.rtol if rtol is None else rtol
    worst, mismatches, changed = 0.0, 0, set()
    for _ in range(trials if spec.free_groups else 0):
        new_state = apply(spec, _moving_permutation(spec, bench.gen), bench.state)
        changed |= {k for k in new_state if not torch.equal(new_state[k], bench.state[k])}
        diff, moved = _differences(y0, bench.run(new_state))
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
        note="; ".join(n for n in (_tolerance_note(bench, rtol), "" if ok else _held_outside(model)) if n),
    )


@dataclass(frozen=True)
class OutputCheck:
    """``verify``'s bench for callers that choose which groups to permute (``check_spec`` tries
    each permutation of a hand-written spec alone): one trained-like float64 copy and its reference
    outputs, so that each further check costs one forward. Build it with ``output_check``."""

    bench: _Bench
    reference: list[torch.Tensor]
    scale: float
    rtol: float

    @property
    def state(self) -> dict[str, torch.Tensor]:
        """The trained-like state dict the permutations are applied to."""
        return self.bench.state

    @property
    def precision(self) -> str:
        return str(self.bench.precision).removeprefix("torch.")

    def random_permutation(self, spec: PermSpec) -> dict[str, torch.Tensor]:
        """A draw that moves every free group of ``spec`` (as ``verify`` draws them)."""
        return _moving_permutation(spec, self.bench.gen)

    def change(self, state: Mapping[str, torch.Tensor]) -> float:
        """How far ``state`` moves the outputs, relative to the largest output (inf when an
        integer / boolean output changes)."""
        worst, mismatches = _differences(self.reference, self.bench.run(state))
        return float("inf") if mismatches else worst / max(self.scale, 1e-12)

    def holds(self, change: float) -> bool:
        """Whether a relative ``change`` is within ``verify``'s tolerance."""
        scale = max(self.scale, 1e-12)
        return change * scale <= self.rtol * scale + 1e-12


@torch.no_grad()
def output_check(model: torch.nn.Module, example_args: tuple[Any, ...] | Any,
                 example_kwargs: dict[str, Any] | None = None, *, seed: int = 0, rtol: float | None = None,
                 outputs: tuple[str, ...] | None = None) -> OutputCheck:
    """The bench ``verify`` runs on (float64, trained-like values, ``verify``'s default tolerance
    unless ``rtol`` is given), comparing ``outputs`` only when given (a spec's ``outputs``), for
    checks of one's own permutations."""
    example_args = example_args if isinstance(example_args, tuple) else (example_args,)
    bench, y0 = _reference(model, seed, example_args, example_kwargs or {}, watch=rtol is None, outputs=outputs)
    _, _, scale = _compared(y0)
    return OutputCheck(bench, y0, scale, bench.rtol if rtol is None else rtol)


def _moving_permutation(spec: PermSpec, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """A random permutation in which no group (or block) is left as the identity: with small
    groups a uniform draw often is, and proves nothing about that group."""
    perm = random_permutation(spec, gen)
    for p in perm.values():
        ident = torch.arange(p.shape[-1])
        still = (p == ident).all(dim=-1)
        if bool(still.any()):
            p[still] = torch.roll(ident, 1)
    return perm


def _control(spec: PermSpec, bench: _Bench, y0: list[torch.Tensor]) -> float:
    """How far the outputs move when one tensor of the first free group is permuted and the
    rest of its tie is not (inf when an integer/boolean output changes)."""
    group = spec.free_groups[0]
    key = group.members[0].param
    broken = dataclasses.replace(
        spec, groups=tuple(dataclasses.replace(group, members=tuple(m for m in group.members if m.param == key))
                           if g.name == group.name else g for g in spec.groups)
    )
    perm = {group.name: _moving_permutation(spec, bench.gen)[group.name]}
    worst, mismatches = _differences(y0, bench.run(apply(broken, perm, bench.state)))  # only ``key`` moves
    return float("inf") if mismatches else worst
