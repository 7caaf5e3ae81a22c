"""Merge N >= 2 models: align every model to a reference, or Git Re-Basin's MergeMany loop.

``merge(model, [a, b, c], method="activation", batches=...)`` aligns every state onto the first
(``mergemany=False``) and averages; with ``mergemany=True`` it then runs MergeMany (Ainsworth et al.,
2023, Algorithm 3): visit the models in a seeded random order, align each onto the mean of the others
(as they are aligned so far), until a full sweep moves no unit or ``max_sweeps`` sweeps. With
``repair=True`` the average is REPAIRed toward the mean of the aligned models' statistics.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from permgraph.apply import State, identity_permutation
from permgraph.spec import PermSpec
from transfer.merge.alignment import Alignment, align_models
from transfer.merge.path import interpolate, reiterable
from transfer.merge.repair import Repair

__all__ = ["MergeOptions", "MergeResult", "merge"]


@dataclass(frozen=True)
class MergeOptions:
    """How to merge: ``method`` weight | activation | none; ``mergemany`` (Git Re-Basin's loop, up to
    ``max_sweeps``), ``repair`` (REPAIR / BN reset on the average), ``weights`` of the average
    (default equal), ``seed`` (MergeMany's order and the solver), ``restarts`` (extra solver starts)."""

    method: str = "weight"
    mergemany: bool = False
    max_sweeps: int = 10
    repair: bool = False
    weights: tuple[float, ...] | None = None
    seed: int = 0
    restarts: int = 0

    def __post_init__(self) -> None:
        if self.max_sweeps < 1:
            raise ValueError(f"max_sweeps must be >= 1, got {self.max_sweeps}")


@dataclass
class MergeResult:
    """The merged ``state``, every input aligned to the first (``aligned[0]`` is the reference itself),
    the per-model alignments, and the seconds per phase."""

    state: State
    aligned: list[State]
    alignments: list[Alignment | None]
    timings: dict[str, float] = field(default_factory=dict)
    sweeps: int = 0


def _check(states: Sequence[Mapping[str, torch.Tensor]], options: MergeOptions, batches: Any) -> None:
    if len(states) < 2:
        raise ValueError(f"merge needs at least 2 models, got {len(states)}")
    if options.weights is not None and len(options.weights) != len(states):
        raise ValueError(f"{len(options.weights)} weights for {len(states)} models")
    if (options.method == "activation" or options.repair) and batches is None:
        raise ValueError("activation matching and REPAIR need batches= (a few batches of data)")


def merge(
    model: nn.Module,
    states: Sequence[Mapping[str, torch.Tensor]],
    *,
    spec: PermSpec,
    batches: Iterable[Any] | None = None,
    options: MergeOptions | None = None,
) -> MergeResult:
    """Merge ``states`` (state dicts of ``model``'s architecture) under ``spec`` (module docstring).
    ``batches``: data for activation matching and REPAIR (a list or a DataLoader)."""
    options = options or MergeOptions()
    _check(states, options, batches)
    batches = reiterable(batches) if batches is not None else None
    t0 = time.perf_counter()
    ref = dict(states[0])
    alignments: list[Alignment | None] = [None]
    aligned = [ref]
    for s in states[1:]:
        al = align_models(model, spec, ref, s, method=options.method, batches=batches, seed=options.seed,
                          restarts=options.restarts)  # fmt: skip
        alignments.append(al)
        aligned.append(al.state)
    timings = {"align": time.perf_counter() - t0}
    sweeps = 0
    if options.mergemany and options.method != "none":
        t1 = time.perf_counter()
        sweeps = _merge_many(model, spec, states, aligned, alignments, options, batches)
        timings["mergemany"] = time.perf_counter() - t1
    weights = list(options.weights) if options.weights is not None else [1.0 / len(states)] * len(states)
    merged = interpolate(aligned, weights)
    if options.repair:
        t2 = time.perf_counter()
        merged = Repair(model, spec, aligned, batches)(merged, weights)
        timings["repair"] = time.perf_counter() - t2
    timings["total"] = time.perf_counter() - t0
    return MergeResult(merged, aligned, alignments, timings, sweeps)


def _merge_many(model: nn.Module, spec: PermSpec, states: Sequence[Mapping[str, torch.Tensor]],
                aligned: list[State], alignments: list[Alignment | None], options: MergeOptions,
                batches: Any) -> int:  # fmt: skip
    """Git Re-Basin's MergeMany: align each model onto the mean of the others until nothing moves."""
    rng = np.random.default_rng(options.seed)
    for sweep in range(1, options.max_sweeps + 1):
        changed = False
        for i in rng.permutation(len(states)):
            others = interpolate([aligned[j] for j in range(len(states)) if j != i])
            al = align_models(model, spec, others, states[i], method=options.method, batches=batches,
                              seed=options.seed, restarts=options.restarts)  # fmt: skip
            old = alignments[i].perm if alignments[i] is not None else identity_permutation(spec)
            changed = changed or any(not torch.equal(p, old[g]) for g, p in al.perm.items())
            alignments[i], aligned[i] = al, al.state
        if not changed:
            return sweep
    return options.max_sweeps
