"""Linear trajectories in memory: θ_t = θ⁰ + λ_t (θᵀ − θ⁰), with the schedules of
:func:`schedule_lambdas`. ``Schedule`` is the one list of those schedules: the options, the command
line and the trajectory take theirs from it."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    import torch

__all__ = ["Schedule", "SCHEDULES", "LinearTrajectory", "schedule_lambdas"]

Schedule = Literal["uniform", "cosine"]
SCHEDULES: tuple[str, ...] = get_args(Schedule)


def schedule_lambdas(T: int, schedule: Schedule = "uniform") -> list[float]:
    """Interpolation weights λ_0..λ_T (λ_0 = 0, λ_T = 1) of a linear trajectory with T steps.

    ``uniform``: λ_t = t/T (the paper's v2 text). ``cosine`` (the paper's released configs):
    λ_k = Σ_{j<k} w_j / Σ_{j<T} w_j with w_j = 1 + cos(πj/T), so steps shrink like a cosine LR.

    >>> schedule_lambdas(2, "cosine")
    [0.0, 0.6666666666666666, 1.0]
    """
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be an int >= 1, got {T!r}")
    if schedule == "uniform":
        lam = [t / T for t in range(T + 1)]
    elif schedule == "cosine":
        w = [1.0 + math.cos(math.pi * j / T) for j in range(T)]
        total = sum(w)
        lam, acc = [0.0], 0.0
        for j in range(T):
            acc += w[j]
            lam.append(acc / total)
    else:
        raise ValueError(f"unknown schedule {schedule!r}; valid schedules: {', '.join(SCHEDULES)}")
    lam[0], lam[-1] = 0.0, 1.0
    return lam


class LinearTrajectory:
    """θ_t = θ⁰ + λ_t (θᵀ − θ⁰): the trajectory the paper uses when only θ⁰ and θᵀ are stored.

    Floating-point tensors are interpolated; other tensors (e.g. BatchNorm's ``num_batches_tracked``)
    are taken from θᵀ. ``at(0)`` and ``at(T)`` return exact copies of θ⁰ and θᵀ.
    """

    def __init__(
        self,
        theta0: Mapping[str, torch.Tensor],
        thetaT: Mapping[str, torch.Tensor],
        T: int,
        schedule: Schedule = "uniform",
    ) -> None:
        if set(theta0) != set(thetaT):
            diff = sorted(set(theta0) ^ set(thetaT))[:5]
            raise ValueError(
                f"theta0 and thetaT hold different tensors (e.g. {diff}); pass two checkpoints of the same model"
            )
        for k in theta0:
            if theta0[k].shape != thetaT[k].shape:
                raise ValueError(
                    f"tensor {k!r}: theta0 has shape {tuple(theta0[k].shape)}, thetaT "
                    f"{tuple(thetaT[k].shape)}; pass two checkpoints of the same model"
                )
        self.theta0 = dict(theta0)
        self.thetaT = dict(thetaT)
        self.T = T
        self.schedule = schedule
        self.lambdas = schedule_lambdas(T, schedule)

    def __len__(self) -> int:
        return self.T + 1

    def at(self, t: int) -> dict[str, torch.Tensor]:
        """θ_t for t in 0..T."""
        if not 0 <= t <= self.T:
            raise IndexError(f"t={t} out of range 0..{self.T}")
        lam = self.lambdas[t]
        out: dict[str, torch.Tensor] = {}
        for k, a in self.theta0.items():
            b = self.thetaT[k]
            if not (a.is_floating_point() or a.is_complex()):
                out[k] = b.clone()
            elif t == 0:
                out[k] = a.clone()
            elif t == self.T:
                out[k] = b.clone()
            else:
                out[k] = a + lam * (b.to(a.dtype) - a)
        return out

    def __getitem__(self, t: int) -> dict[str, torch.Tensor]:
        return self.at(t)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for t in range(self.T + 1):
            yield self.at(t)

    def __repr__(self) -> str:
        return f"LinearTrajectory(T={self.T}, schedule={self.schedule!r}, {len(self.theta0)} tensors)"
