"""Interpolate state dicts and evaluate the linear path between two models.

The barriers follow Git Re-Basin (Ainsworth et al., 2023, eq. 2): on a grid of ``lambdas``,

    loss barrier = max_λ L(λ) − ½ (L(0) + L(1))
    accuracy barrier = ½ (acc(0) + acc(1)) − min_λ acc(λ)

(the ½(L0 + L1) form, not max_λ of L(λ) − ((1 − λ) L(0) + λ L(1)); both are 0 for a flat path and
differ only when the endpoints' losses differ). ``PathCurve.interpolated_barrier`` gives the second.

>>> curve = PathCurve(lambdas=[0.0, 0.5, 1.0], loss=[0.1, 0.9, 0.3], acc=[0.97, 0.6, 0.95])
>>> round(curve.loss_barrier, 6), round(curve.acc_barrier, 6), curve.midpoint_acc
(0.7, 0.36, 0.6)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from permgraph.apply import State
from transfer.evaluation import evaluate_batches

__all__ = ["PathCurve", "interpolate", "lerp", "lambda_grid", "evaluate_path", "reiterable"]

Transform = Callable[[State, float], State]
"""``transform(state, lam) -> state``: applied to each interpolated state before it is evaluated
(REPAIR: :meth:`transfer.merge.Repair.at`)."""


def interpolate(states: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float] | None = None) -> State:
    """The weighted mean ``sum_i w_i * states[i]`` of the floating tensors (default: equal weights);
    integer tensors (``num_batches_tracked``) are taken from the first state. Every state must hold
    the same keys and shapes."""
    if len(states) < 1:
        raise ValueError("interpolate needs at least one state dict")
    w = [1.0 / len(states)] * len(states) if weights is None else [float(x) for x in weights]
    if len(w) != len(states):
        raise ValueError(f"{len(w)} weights for {len(states)} state dicts")
    first = states[0]
    for i, s in enumerate(states[1:], 1):
        if set(s) != set(first):
            diff = sorted(set(s) ^ set(first))
            raise ValueError(f"state dict {i} does not have the keys of state dict 0 (e.g. {diff[0]!r})")
    out: State = {}
    for key, t in first.items():
        if not torch.is_floating_point(t):
            out[key] = t.clone()
            continue
        acc = t.detach().to(torch.float64) * w[0]
        for wi, s in zip(w[1:], states[1:]):
            if s[key].shape != t.shape:
                raise ValueError(f"{key!r}: shapes {tuple(t.shape)} and {tuple(s[key].shape)} differ")
            acc += s[key].detach().to(torch.float64) * wi
        out[key] = acc.to(t.dtype)
    return out


def lerp(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], lam: float) -> State:
    """``(1 − lam) a + lam b``: ``lam = 0`` is ``a``, ``lam = 1`` is ``b``."""
    return interpolate([a, b], [1.0 - lam, lam])


def lambda_grid(n: int = 25) -> list[float]:
    """``n`` evenly spaced values from 0 to 1 (Git Re-Basin uses 25)."""
    if n < 2:
        raise ValueError(f"a path needs at least 2 values of lambda, got {n}")
    return [i / (n - 1) for i in range(n)]


@dataclass(frozen=True)
class PathCurve:
    """Loss and accuracy (fractions) at each ``lambda`` of a linear path from model 0 to model 1."""

    lambdas: list[float]
    loss: list[float]
    acc: list[float]

    def __post_init__(self) -> None:
        if not (len(self.lambdas) == len(self.loss) == len(self.acc)) or len(self.lambdas) < 2:
            raise ValueError("a PathCurve needs as many losses and accuracies as lambdas, at least 2")

    def _ends(self, values: list[float]) -> tuple[float, float]:
        i0, i1 = self.lambdas.index(min(self.lambdas)), self.lambdas.index(max(self.lambdas))
        return values[i0], values[i1]

    @property
    def loss_barrier(self) -> float:
        """Git Re-Basin's: ``max_λ L(λ) − ½ (L(0) + L(1))``."""
        l0, l1 = self._ends(self.loss)
        return max(self.loss) - 0.5 * (l0 + l1)

    @property
    def acc_barrier(self) -> float:
        """``½ (acc(0) + acc(1)) − min_λ acc(λ)``: how far accuracy dips (positive = a barrier)."""
        a0, a1 = self._ends(self.acc)
        return 0.5 * (a0 + a1) - min(self.acc)

    @property
    def interpolated_barrier(self) -> float:
        """``max_λ L(λ) − ((1 − λ) L(0) + λ L(1))``, the other form in use."""
        l0, l1 = self._ends(self.loss)
        return max(v - ((1 - t) * l0 + t * l1) for t, v in zip(self.lambdas, self.loss))

    @property
    def midpoint_acc(self) -> float:
        """Accuracy at the ``lambda`` nearest 0.5."""
        i = min(range(len(self.lambdas)), key=lambda k: abs(self.lambdas[k] - 0.5))
        return self.acc[i]

    def to_dict(self) -> dict[str, Any]:
        """``{"lambdas", "loss", "acc", "loss_barrier", "acc_barrier", "midpoint_acc"}`` (``results.json``)."""
        return {"lambdas": list(self.lambdas), "loss": list(self.loss), "acc": list(self.acc),
                "loss_barrier": self.loss_barrier, "acc_barrier": self.acc_barrier,
                "midpoint_acc": self.midpoint_acc}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PathCurve:
        """The inverse of ``to_dict`` (the barriers are recomputed, not read)."""
        return cls([float(x) for x in data["lambdas"]], [float(x) for x in data["loss"]],
                   [float(x) for x in data["acc"]])  # fmt: skip


def reiterable(batches: Iterable[Any]) -> Iterable[Any]:
    """``batches`` itself when it can be iterated again (a list, a DataLoader), else a list of it."""
    return list(batches) if iter(batches) is batches else batches


def evaluate_path(
    model: nn.Module,
    a: Mapping[str, torch.Tensor],
    b: Mapping[str, torch.Tensor],
    batches: Iterable[Any],
    *,
    lambdas: int | Sequence[float] = 25,
    transform: Transform | None = None,
    points: MutableMapping[float, tuple[float, float]] | None = None,
    progress: bool = False,
) -> PathCurve:
    """Loss and accuracy of ``lerp(a, b, lam)`` on ``batches`` at each ``lam`` (an int: that many
    evenly spaced values). ``transform(state, lam)`` runs on each state first (REPAIR).

    ``points`` ({lam: (loss, acc)}) makes it resumable: values already there are not evaluated
    again, and each new one is stored as soon as it is measured (a mapping that writes itself to
    disk resumes a killed run). ``model`` is not modified: a copy is evaluated, on its device."""
    grid = lambda_grid(lambdas) if isinstance(lambdas, int) else [float(x) for x in lambdas]
    batches = reiterable(batches)
    points = {} if points is None else points
    work = copy.deepcopy(model)
    for lam in tqdm(grid, desc="path", unit="λ", disable=not progress, leave=False):
        if lam in points:
            continue
        state = lerp(a, b, lam)
        if transform is not None:
            state = transform(state, lam)
        work.load_state_dict(state)
        total, correct, count = evaluate_batches(work, batches)
        if count == 0:
            raise ValueError("evaluate_path got no targets to evaluate on")
        points[lam] = (total / count, correct / count)
    return PathCurve(grid, [float(points[t][0]) for t in grid], [float(points[t][1]) for t in grid])
