"""What a transfer method sees: the source's points, the target init, synced gradients, the solver.

The engine (:mod:`transfer.engine`) builds one :class:`TransferContext` per run and hands it to the
method; a method never opens files or loops over steps itself. The transferred parameter at step t
under permutation ``pi`` is always

    theta_2^t = theta_2^0 + pi(theta_1^t - theta_1^0)

(:meth:`TransferContext.theta2`); buffers come from the target init.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from permgraph.apply import Permutation, State, apply, identity_permutation
from permgraph.spec import PermSpec
from transfer import distributed as dist
from transfer.gradients import SyncedGradients
from transfer.lap import LapProofs
from transfer.matching import Matcher
from transfer.options import TransferOptions
from transfer.pairs import PairSource
from transfer.store import MemoryStore
from transfer.trajectory import LinearTrajectory, Trajectory

__all__ = ["SourcePoints", "TransferContext", "SolveTotals", "transferred_state"]


def transferred_state(spec: PermSpec, perm: Permutation, theta2_0: Mapping[str, torch.Tensor], delta1: State) -> State:
    """theta_2^0 + perm(delta1) on the keys of ``delta1`` (parameters); every other entry of
    ``theta2_0`` (buffers) is copied."""
    moved = apply(spec, perm, delta1)
    out = {k: v.clone() for k, v in theta2_0.items()}
    for k, d in moved.items():
        out[k] = theta2_0[k] + d.to(theta2_0[k].dtype)
    return out


class SourcePoints:
    """The source trajectory at t = 0..T: the paper's linear trajectory between its first and last
    checkpoints (``linear``), or T+1 of its recorded checkpoints, evenly spaced."""

    def __init__(self, source: Trajectory, param_keys: list[str], options: TransferOptions, *,
                 ends: tuple[State, State] | None = None) -> None:  # fmt: skip
        """``ends``: the source's first and last checkpoints when the caller has read them already."""
        self.source, self.param_keys, self.T = source, param_keys, options.T
        theta1_0 = ends[0] if ends is not None else source.init()
        self.theta1_0 = {k: theta1_0[k] for k in param_keys}
        self._buffers = {k: v for k, v in theta1_0.items() if k not in self.theta1_0}
        self.index: list[int] | None = None
        if options.linear:
            final = ends[1] if ends is not None else source.final()
            final_params = {k: final[k] for k in param_keys}
            self._linear = LinearTrajectory(self.theta1_0, final_params, options.T, options.schedule)
        else:
            n = len(source)
            if options.T > n - 1:
                raise ValueError(f"T={options.T} but the source trajectory has only {n} checkpoints (T <= {n - 1})")
            self.index = [round(i * (n - 1) / options.T) for i in range(options.T + 1)]

    def params(self, t: int) -> State:
        """theta_1^t (parameters only)."""
        if self.index is None:
            return self._linear.at(t)
        full = self.source.load(self.index[t])
        return {k: full[k] for k in self.param_keys}

    def delta(self, t: int) -> State:
        """theta_1^t - theta_1^0 (parameters only)."""
        th = self.params(t)
        return {k: th[k] - self.theta1_0[k] for k in self.param_keys}

    def state(self, t: int) -> State:
        """A full state dict of the source at t, for its gradient (buffers from the source init)."""
        if self.index is None:
            return {**self._buffers, **self.params(t)}
        return self.source.load(self.index[t])

    def steps(self) -> list[int]:
        """The recorded steps used (actual trajectories only)."""
        return [self.source.steps[i] for i in self.index or []]


@dataclass
class SolveTotals:
    """Assignment solves of one run: how many LAPs and how long they took."""

    lsa_calls: int = 0
    lsa_seconds: float = 0.0
    proofs: LapProofs = field(default_factory=LapProofs)  # what the solves' duals proved (transfer.lap)

    def add(self, matcher: Matcher) -> None:
        self.lsa_calls += matcher.stats.lsa_calls
        self.lsa_seconds += matcher.stats.lsa_seconds
        self.proofs.merge(matcher.stats.proofs)


@dataclass
class TransferContext:
    """Everything a :class:`~transfer.methods.TransferMethod` may use."""

    spec: PermSpec
    options: TransferOptions
    gradients: SyncedGradients
    source: SourcePoints
    theta2_0: State
    store: MemoryStore
    target: Trajectory | None = None
    totals: SolveTotals = field(default_factory=SolveTotals)
    solve_seconds: float = 0.0

    def theta2(self, perm: Permutation, t: int) -> State:
        """The transferred state at t under ``perm`` (full state dict, target buffers)."""
        return transferred_state(self.spec, perm, self.theta2_0, self.source.delta(t))

    def source_gradient(self, t: int) -> State:
        """Gradient number t of the source, taken at theta_1^{t-1} on minibatch set t."""
        return self.gradients.gradient(self.source.state(t - 1), k=t)

    def target_gradient(self, perm: Permutation, t: int) -> State:
        """Gradient number t of the target, taken at theta_2^{t-1} under ``perm``, same minibatches."""
        return self.gradients.gradient(self.theta2(perm, t - 1), k=t)

    def new_matcher(self, pairs: PairSource | None = None) -> Matcher:
        """A matcher for this step's pairs (``pairs``: where it keeps coupled ones; RAM by default):
        on rank 0; elsewhere (torch.distributed) a stand-in that keeps nothing, since rank 0 solves
        and broadcasts the permutation."""
        return Matcher(self.spec, pairs=pairs) if dist.is_main() else _NoMatcher(self.spec)

    def solve(self, matcher: Matcher, init: list, seed: int) -> Permutation:
        """``matcher.solve`` with the run's restarts (rank 0), broadcast to every rank; its LAP count
        and time go to the run's totals."""
        t0 = time.perf_counter()
        if dist.is_main():
            perm = matcher.solve(init=init, seed=seed, restarts=self.options.restarts)
            self.totals.add(matcher)
        else:
            perm = identity_permutation(self.spec)  # shapes and dtypes to receive into
        perm = dist.broadcast_tensors(perm, self.options.device if self.options.device != "cpu" else "cpu")
        self.solve_seconds += time.perf_counter() - t0
        return perm

    @property
    def param_keys(self) -> list[str]:
        return self.source.param_keys


class _NoMatcher:
    """What a rank other than 0 holds instead of a :class:`Matcher`: pairs are dropped."""

    def __init__(self, spec: PermSpec) -> None:
        self.spec = spec

    def add(self, target, source, weight: float = 1.0) -> _NoMatcher:
        return self
