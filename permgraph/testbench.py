"""The bench every check runs on: a float64 copy of the model given trained-like values, a fresh
deep copy of it for each forward, its reference outputs and how far another forward moves them.

``verify`` and ``check_spec`` build one each (``output_check`` for callers that choose which groups
to permute); the default tolerances are theirs.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from permgraph.apply import random_permutation
from permgraph.modstate import detached_copy
from permgraph.spec import PermSpec
from permgraph.trace import pick_outputs

__all__ = [
    "Bench",
    "OutputCheck",
    "differences",
    "make_trained_like",
    "moving_permutation",
    "output_check",
    "output_counts",
    "reference_bench",
    "tolerance_note",
]

# Default tolerances, relative to the largest output. A correct spec moves a pure float64
# forward by about 1e-15 of its size and a float32 one by about 1e-6 (summation order changes
# with the permutation); a wrong one moves outputs by 1e-3 or more.
RTOL_FLOAT64 = 1e-11
RTOL_FLOAT64_WITH_FLOAT32_OPS = 1e-6  # Hugging Face RMSNorm upcasts to float32: about 1e-7
RTOL_FLOAT32 = 1e-4
RTOL_HALF = 1e-2  # some op computes in float16 / bfloat16


class PrecisionWatch(TorchDispatchMode):
    """Notes the coarsest floating dtype any op of a forward produced: a float64 model that
    upcasts to float32 somewhere cannot be held to float64 round-off."""

    coarsest: torch.dtype | None = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                if self.coarsest is None or torch.finfo(t.dtype).eps > torch.finfo(self.coarsest).eps:
                    self.coarsest = t.dtype
        return out


def default_rtol(precision: torch.dtype, coarsest: torch.dtype | None) -> float:
    eps = torch.finfo(coarsest or precision).eps
    if eps > torch.finfo(torch.float32).eps:
        return RTOL_HALF
    if precision == torch.float32:
        return RTOL_FLOAT32
    return RTOL_FLOAT64 if eps <= torch.finfo(torch.float64).eps else RTOL_FLOAT64_WITH_FLOAT32_OPS


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


def outputs_of(out: Any) -> list[torch.Tensor]:
    """Every tensor a model returned, of any dtype, in a fixed order."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, Mapping):
        return [t for v in out.values() for t in outputs_of(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in outputs_of(v)]
    if hasattr(out, "to_tuple"):
        return outputs_of(out.to_tuple())
    return []


def numeric(t: torch.Tensor) -> bool:
    """Compared within a tolerance (floating, complex); anything else (integer, bool) exactly."""
    return t.is_floating_point() or t.is_complex()


def cast(x: Any, dtype: torch.dtype) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(dtype) if x.is_floating_point() else x
    if isinstance(x, tuple):
        return tuple(cast(v, dtype) for v in x)
    if isinstance(x, list):
        return [cast(v, dtype) for v in x]
    if isinstance(x, dict):
        return {k: cast(v, dtype) for k, v in x.items()}
    return x


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


@dataclass
class Bench:
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
    rtol: float = RTOL_FLOAT64  # the default for what the reference forward computed in
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
        return outputs_of(pick_outputs(self.fresh(state)(*self.args, **self.kwargs), self.outputs))


def prepare(model, dtype, seed, args, kwargs, watch: bool = True, outputs=None) -> tuple[Bench, list[torch.Tensor]]:
    """The bench in ``dtype`` and its reference outputs. ``watch``: note the coarsest dtype the
    forward computes in, for the default tolerance; not needed when the caller gives ``rtol``, and
    worth skipping then: the first dispatch mode of a process imports torch._dynamo (3 s)."""
    gen = torch.Generator().manual_seed(seed)
    template = detached_copy(model)
    template = (template.double() if dtype == torch.float64 else template.float()).eval()
    make_trained_like(template, gen)
    bench = Bench(template, template.state_dict(), cast(args, dtype), cast(kwargs, dtype), gen, dtype, outputs=outputs)
    reference = bench.fresh()
    if not watch:
        return bench, outputs_of(pick_outputs(reference(*bench.args, **bench.kwargs), outputs))
    with PrecisionWatch() as watcher:
        y0 = outputs_of(pick_outputs(reference(*bench.args, **bench.kwargs), outputs))
    bench.rtol = default_rtol(dtype, watcher.coarsest)
    return bench, y0


def reference_bench(model, seed, args, kwargs, watch: bool = True, outputs=None) -> tuple[Bench, list[torch.Tensor]]:
    """``prepare`` in float64, or in float32 when the float64 forward fails (a model that
    builds a float32 tensor in ``forward``, say ``h @ torch.eye(16)``, mixes dtypes); the
    bench's ``note`` then says so, for the report."""
    try:
        return prepare(model, torch.float64, seed, args, kwargs, watch, outputs)
    except Exception as e64:  # any failure of the float64 copy: the float32 one may still run
        try:
            bench, y0 = prepare(model, torch.float32, seed, args, kwargs, watch, outputs)
        except Exception as e32:
            raise RuntimeError(
                f"verify could not run the model on the example inputs, neither in float64 "
                f"({first_line(e64)}) nor in float32 ({first_line(e32)})"
            ) from e32
        bench.note = f"checked in float32 because the float64 forward failed ({first_line(e64)})"
        return bench, y0


def output_counts(y0: list[torch.Tensor]) -> tuple[int, int, float]:
    """(output tensors compared, of which exactly, largest finite |output|); raise when
    nothing would be: a check that compares no value proves nothing."""
    compared = exact = 0
    scale = 0.0
    for t in y0:
        if numeric(t):
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


def differences(y0: list[torch.Tensor], y1: list[torch.Tensor]) -> tuple[float, int]:
    """(largest change of a floating output, number of integer/boolean outputs that
    changed). Entries that are not finite in either must stay identical (else inf)."""
    if len(y1) != len(y0):
        raise RuntimeError("the permuted model returned a different number of outputs")
    worst, mismatches = 0.0, 0
    for a, b in zip(y0, y1):
        if a.shape != b.shape or a.dtype != b.dtype:
            worst = float("inf")
        elif not numeric(a):
            mismatches += not torch.equal(a, b)
        elif a.numel():
            finite = torch.isfinite(a) & torch.isfinite(b)
            same = (a == b) | (torch.isnan(a) & torch.isnan(b))
            if not bool(same[~finite].all()):
                worst = float("inf")
            elif bool(finite.any()):
                worst = max(worst, float((a[finite] - b[finite]).abs().max()))
    return worst, mismatches


def tolerance_note(bench: Bench, rtol: float) -> str:
    """Why the check ran in float32, and what it could not see there."""
    if not bench.note:
        return ""
    return f"{bench.note}; tolerance {rtol:.0e} of the largest output, so smaller changes go unseen"


@dataclass(frozen=True)
class OutputCheck:
    """``verify``'s bench for callers that choose which groups to permute (``check_spec`` tries
    each permutation of a hand-written spec alone): one trained-like float64 copy and its reference
    outputs, so that each further check costs one forward. Build it with ``output_check``."""

    bench: Bench
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
        return moving_permutation(spec, self.bench.gen)

    def change(self, state: Mapping[str, torch.Tensor]) -> float:
        """How far ``state`` moves the outputs, relative to the largest output (inf when an
        integer / boolean output changes)."""
        worst, mismatches = differences(self.reference, self.bench.run(state))
        return float("inf") if mismatches else worst / max(self.scale, 1e-12)

    def holds(self, change: float) -> bool:
        """Whether a relative ``change`` is within ``verify``'s tolerance."""
        scale = max(self.scale, 1e-12)
        return change * scale <= self.rtol * scale + 1e-12


@torch.no_grad()
def output_check(
    model: torch.nn.Module,
    example_args: tuple[Any, ...] | Any,
    example_kwargs: dict[str, Any] | None = None,
    *,
    seed: int = 0,
    rtol: float | None = None,
    outputs: tuple[str, ...] | None = None,
) -> OutputCheck:
    """The bench ``verify`` runs on (float64, trained-like values, ``verify``'s default tolerance
    unless ``rtol`` is given), comparing ``outputs`` only when given (a spec's ``outputs``), for
    checks of one's own permutations."""
    example_args = example_args if isinstance(example_args, tuple) else (example_args,)
    bench, y0 = reference_bench(model, seed, example_args, example_kwargs or {}, watch=rtol is None, outputs=outputs)
    _, _, scale = output_counts(y0)
    return OutputCheck(bench, y0, scale, bench.rtol if rtol is None else rtol)


def moving_permutation(spec: PermSpec, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """A random permutation in which no group (or block) is left as the identity: with small
    groups a uniform draw often is, and proves nothing about that group."""
    perm = random_permutation(spec, gen)
    for p in perm.values():
        ident = torch.arange(p.shape[-1])
        still = (p == ident).all(dim=-1)
        if bool(still.any()):
            p[still] = torch.roll(ident, 1)
    return perm
