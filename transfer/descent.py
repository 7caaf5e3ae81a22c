"""Solving a matching by coordinate descent: one group's LAP at a time, from one or more starts (the
identity, :data:`SORTED`, a warm permutation, random restarts), keeping the start with the best
objective. :class:`transfer.matching.Matcher` builds the costs; this is the solve it inherits."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from permgraph.apply import Permutation
from transfer.lap import LapProofs, LapWarm, solve_lap_result

__all__ = ["CoordinateDescent", "DEFAULT_INIT", "InitArg", "SORTED", "SolveStats", "SortedStart"]

log = logging.getLogger("transfer.matching")


class SortedStart:
    """The type of :data:`SORTED`, the start from an LSA on rows sorted within themselves (module
    docstring): a start that is neither the identity (None) nor a permutation dict."""

    def __repr__(self) -> str:
        return "SORTED"


SORTED = SortedStart()
InitArg = Permutation | SortedStart | None

# Starts of a default solve: Git Re-Basin's identity, and the sorted-rows start (module docstring).
DEFAULT_INIT: list[InitArg] = [None, SORTED]


@dataclass
class SolveStats:
    """What the last ``solve`` did; handy for benchmarks and for spotting slow specs."""

    lsa_calls: int = 0
    skipped: int = 0
    sweeps: int = 0
    starts: int = 0
    objective: float = float("nan")
    lsa_seconds: float = 0.0
    cost_seconds: float = 0.0
    objectives: list[float] = field(default_factory=list)
    proofs: LapProofs = field(default_factory=LapProofs)  # what each LAP's duals prove (transfer.lap)


class CoordinateDescent:
    """The solve of a :class:`transfer.matching.Matcher`: it reads the matcher's groups, block counts,
    costs (``_cost``, ``_sorted_cost``), ``objective``, ``separable``, ``warm`` and ``certify``."""

    def solve(
        self,
        init: InitArg | list[InitArg] = DEFAULT_INIT,
        max_iter: int = 100,
        tol: float = 1e-7,
        seed: int = 0,
        restarts: int = 0,
    ) -> Permutation:
        """Coordinate descent: solve one group's LAP at a time, in a seeded random order,
        until a sweep gains nothing (relative gain <= ``tol``) or ``max_iter`` sweeps.

        ``init``: None (identity), a permutation dict (warm start, e.g. the previous step's),
        :data:`SORTED` (see module docstring; the string ``"sorted"`` is read as it), or a list
        of these to try each. ``restarts``:
        extra starts from random permutations. The start with the best objective wins. When
        the problem is separable only the first start runs: it is already exact.

        The default, ``DEFAULT_INIT`` = ``[None, SORTED]``, is the robust choice: it keeps the
        better of the identity start and the sorted start, so it is never worse than the identity
        alone, and it recovers planted permutations where the identity gets stuck (the residual
        specs of ``tests/transfer/test_matching.py``; on 20 planted seeds of torchvision resnet18
        and zoo resnet20 both starts recovered all 20, ``docs/results/solvers.md``). It is what
        ``weight_matching`` and ``transfer.align`` always used. ``init=None``: the identity alone.
        """
        if self.num_pairs == 0:
            raise RuntimeError("Matcher.solve() called before any add(): there is nothing to match")
        rng = np.random.default_rng(seed)
        self.stats = SolveStats()
        starts: list[InitArg] = list(init) if isinstance(init, list) else [init]
        if not starts:
            raise ValueError("init=[] gives no start; pass None for the identity")
        if self.separable:
            starts = starts[:1]
        elif restarts:
            gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
            for _ in range(restarts):
                starts.append({n: self._random(n, gen) for n in self.groups})
        best: tuple[float, Permutation] | None = None
        for start in starts:
            perm = self._descend(self._initial(start), max_iter, tol, rng)
            obj = self.objective(perm)
            self.stats.starts += 1
            self.stats.objectives.append(obj)
            if best is None or obj > best[0] + tol * abs(best[0]):
                best = (obj, perm)
        assert best is not None
        self.stats.objective = best[0]
        log.debug("solve: %s", self.stats)
        return best[1]

    def _identity(self, name: str) -> torch.Tensor:
        ident = torch.arange(self.groups[name].size)
        return ident if name not in self._blocks else ident.repeat(self._blocks[name], 1)

    def _random(self, name: str, gen: torch.Generator) -> torch.Tensor:
        size = self.groups[name].size
        if name not in self._blocks:
            return torch.randperm(size, generator=gen)
        return torch.stack([torch.randperm(size, generator=gen) for _ in range(self._blocks[name])])

    def _initial(self, init: InitArg) -> Permutation:
        if init is None:
            return {n: self._identity(n) for n in self.groups}
        if isinstance(init, SortedStart) or (isinstance(init, str) and init == "sorted"):
            return {n: self._lsa(self._sorted_cost(n)) for n in self.groups}
        if not isinstance(init, Mapping):
            raise ValueError(f"init must be None, SORTED or a permutation dict, not {init!r}")
        perm = {n: self._identity(n) for n in self.groups}
        for n, p in init.items():
            if n not in self.groups:
                raise KeyError(f"init names group {n!r}, which is not a free group of the spec")
            p = torch.as_tensor(p, dtype=torch.long).cpu()
            expected = tuple(perm[n].shape)
            if n in self._blocks and p.dim() == 1:
                p = p.expand(*expected)
            if tuple(p.shape) != expected:
                raise ValueError(f"init for group {n!r} has shape {tuple(p.shape)}, expected {expected}")
            perm[n] = p.clone()
        return perm

    def _descend(self, perm: Permutation, max_iter: int, tol: float, rng: np.random.Generator) -> Permutation:
        names = sorted(self.groups)
        changes = dict.fromkeys(names, 0)
        last: dict[str, tuple] = {}
        for _ in range(max_iter):
            self.stats.sweeps += 1
            progressed = False
            for i in rng.permutation(len(names)):
                name = names[i]
                key = (self.version, tuple(changes[h] for h in self._neighbours[name]))
                if last.get(name) == key:
                    self.stats.skipped += 1
                    continue
                last[name] = key
                t0 = time.perf_counter()
                a = self._cost(name, perm)
                self.stats.cost_seconds += time.perf_counter() - t0
                new = self._lsa(a, self.warm.setdefault(name, LapWarm()) if self.warm is not None else None)
                old_val, new_val = _score(a, perm[name]), _score(a, new)
                if new_val - old_val > tol * max(abs(old_val), abs(new_val), 1e-300):
                    perm[name] = new
                    changes[name] += 1
                    progressed = True
            if not progressed:
                break
        return perm

    def _lsa(self, a: torch.Tensor, warm: LapWarm | None = None) -> torch.Tensor:
        if a.dim() == 3:  # a per-block group: one assignment per block (no warm start)
            return torch.stack([self._lsa(block) for block in a])
        t0 = time.perf_counter()
        a = a.detach().cpu()
        if not all(map(math.isfinite, map(float, torch.aminmax(a)))):  # NaN propagates: 2 ms, isfinite().all() 54
            raise FloatingPointError("cost matrix has NaN/inf entries: a pair holds non-finite values")
        m = a.numpy() if a.dtype in (torch.float32, torch.float64) else a.double().numpy()  # float32: no copy (lap)
        res = solve_lap_result(m, warm=warm, certify=self.certify)
        cols = res.cols
        self.stats.proofs.add(res, float(m[np.arange(len(cols)), cols].sum(dtype=np.float64)))
        self.stats.lsa_calls += 1
        self.stats.lsa_seconds += time.perf_counter() - t0
        return torch.from_numpy(cols)


def _score(a: torch.Tensor, p: torch.Tensor) -> float:
    """sum_c a[c, p[c]] (per block and summed, for a (blocks, n, n) cost)."""
    return float(torch.gather(a, -1, p.unsqueeze(-1)).double().sum())
