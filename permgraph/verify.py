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
>>> report.ok, report.max_abs_diff < 1e-9
(True, True)
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from permgraph.apply import apply, random_permutation
from permgraph.spec import PermSpec

__all__ = ["VerifyReport", "make_trained_like", "verify"]


class _PrecisionWatch(TorchDispatchMode):
    """Notes whether any op of a float64 forward produced a lower-precision float tensor."""

    low_precision = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64:
                self.low_precision = True
        return out


@dataclass(frozen=True)
class VerifyReport:
    """What ``verify`` measured: the largest output change under random permutations of the
    free groups (``max_abs_diff``) against the largest output, and which tensors moved."""

    ok: bool
    max_abs_diff: float
    max_abs_output: float
    permuted_params: list[str] = field(default_factory=list)
    free_groups: int = 0
    trials: int = 1
    control_diff: float | None = None

    def __str__(self) -> str:
        status = "OK" if self.ok else "FAILED"
        return (
            f"verify {status}: {self.free_groups} free groups permuted at random "
            f"({self.trials} trial(s)), {len(self.permuted_params)} tensors changed, "
            f"max |Δoutput| = {self.max_abs_diff:.3g} (max |output| = {self.max_abs_output:.3g})"
        )


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


def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out] if out.is_floating_point() else []
    if isinstance(out, Mapping):
        return [t for v in out.values() for t in _tensors(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _tensors(v)]
    if hasattr(out, "to_tuple"):
        return _tensors(out.to_tuple())
    return []


def _to64(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.double() if x.is_floating_point() else x
    if isinstance(x, tuple):
        return tuple(_to64(v) for v in x)
    if isinstance(x, list):
        return [_to64(v) for v in x]
    if isinstance(x, dict):
        return {k: _to64(v) for k, v in x.items()}
    return x


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
    float64. ``ok`` when the largest change is within ``rtol`` of the largest output.

    The comparison always runs on a copy given trained-like values (``make_trained_like``,
    seeded by ``seed``): on default initialisation a spec that forgets, say, BatchNorm's
    running statistics looks exact, because they are all 0 and 1.

    A correct spec moves pure-float64 outputs by about 1e-15 of their size; a wrong one by
    1e-3 or more, but deep mobile nets dilute a wrong permutation of an early layer to 1e-9.
    So the default ``rtol`` is 1e-11 when the whole float64 forward stays in float64, and 1e-6
    when some op computes in lower precision (Hugging Face RMSNorm upcasts to float32, which
    costs about 1e-7); ``rtol`` overrides it.

    ``control=True`` also runs a negative control: the first free group's permutation is
    applied to its first tensor only, breaking the tie; ``control_diff`` is how far that
    moves the outputs (it should be far above the tolerance, or the check proves little)."""
    if not isinstance(example_args, tuple):
        example_args = (example_args,)
    gen = torch.Generator().manual_seed(seed)
    reference = copy.deepcopy(model).double().eval()
    make_trained_like(reference, gen)
    state = reference.state_dict()
    for key, shape in spec.param_shapes.items():
        if key in state and tuple(state[key].shape) != tuple(shape):
            raise ValueError(
                f"spec does not fit this model: {key!r} is {tuple(state[key].shape)} in the model "
                f"but {tuple(shape)} in the spec; re-run permgraph.infer on this model"
            )
    args, kwargs = _to64(example_args), _to64(example_kwargs or {})
    with _PrecisionWatch() as watch:
        y0 = _tensors(reference(*args, **kwargs))
    if rtol is None:
        rtol = 1e-6 if watch.low_precision else 1e-11
    permuted = copy.deepcopy(reference)
    worst, changed = 0.0, set()
    for _ in range(trials):
        perm = _moving_permutation(spec, gen)
        new_state = apply(spec, perm, state)
        changed |= {k for k in new_state if not torch.equal(new_state[k], state[k])}
        permuted.load_state_dict(new_state)
        y1 = _tensors(permuted(*args, **kwargs))
        if len(y1) != len(y0):
            raise RuntimeError("the permuted model returned a different number of outputs")
        for a, b in zip(y0, y1):
            worst = max(worst, float((a - b).abs().max()) if a.numel() else 0.0)
    scale = max((float(a.abs().max()) for a in y0 if a.numel()), default=0.0)
    ok = worst <= rtol * max(scale, 1e-12) + 1e-12
    control_diff = None
    if control and spec.free_groups:
        control_diff = _control(spec, reference, permuted, state, args, kwargs, y0, gen)
    return VerifyReport(
        ok=ok,
        max_abs_diff=worst,
        max_abs_output=scale,
        permuted_params=sorted(changed),
        free_groups=len(spec.free_groups),
        trials=trials,
        control_diff=control_diff,
    )


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


def _control(spec, reference, permuted, state, args, kwargs, y0, gen) -> float:
    group = spec.free_groups[0]
    key = group.members[0].param
    broken = dataclasses.replace(
        spec, groups=tuple(dataclasses.replace(group, members=tuple(m for m in group.members if m.param == key))
                           if g.name == group.name else g for g in spec.groups)
    )
    perm = {group.name: _moving_permutation(spec, gen)[group.name]}
    permuted.load_state_dict(apply(broken, perm, state))  # only ``key`` moves: the broken spec has no other member
    y1 = _tensors(permuted(*args, **kwargs))
    return max((float((a - b).abs().max()) for a, b in zip(y0, y1) if a.numel()), default=0.0)
