"""Certified assignment on a sparse core: solve where the optimum can be, prove it on the whole matrix.

The problem: a permutation ``p`` maximising ``sum_i a[i, p[i]]`` for a dense square ``a``. Its
linear-programming dual: ``u`` (rows) and ``v`` (columns) with ``u[i] + v[j] >= a[i, j]`` for
every entry. For any permutation ``q``,
``sum_i a[i, q[i]] <= sum(u) + sum(v) + n * max(0, max_ij(a - u - v))``, so when
``u[i] + v[p[i]] = a[i, p[i]]`` on ``p`` (complementary slackness) ``p`` is within
``n * max(0, max violation)`` of the optimum: that bound is the certificate.

:func:`certified_solve` (Volgenant's core idea, with the structure of transfer's matrices):

1. **Core.** For every row its ``k`` best columns and for every column its ``k`` best rows under
   the prices at hand (``a - v``: a previous, similar solve's column duals, or a coarse auction's),
   plus a start assignment, which makes a perfect matching exist on the core.
2. **Sparse solve**, exact, by a library: lapx's ``lapmod`` (sparse Jonker-Volgenant), else scipy's
   ``min_weight_full_bipartite_matching``.
3. **Duals** of that optimum on the core (the libraries return none): with ``u[i] = a[i, p[i]] -
   v[p[i]]`` the core's constraints read ``v[p[i]] <= v[j] + a[i, p[i]] - a[i, j]``, a system of
   difference constraints, so ``v`` is a shortest-path distance from a virtual source
   (Bellman-Ford, vectorised: one pass per round over the core's edges grouped by row, about 100
   passes on a 4096-unit FGMT cost). Each edge gets ``delta = 2**-40 * span`` added, so that
   rounding cannot make a cycle of tied assignments look negative.
4. **Check** every entry of the dense matrix: ``a - u - v <= tol`` (``tol = 4 * delta``). If none
   violates, the sparse optimum is the dense optimum within ``n * tol`` (about ``4e-9 * span`` at
   n = 4096, far below the auction's ``n * 1e-9 * span``). Otherwise the violators (when there are
   at most ``2 n`` of them) and each violating row's and column's ``repair_k`` most violating
   entries join the core, and the loop solves again.

A core whose sparse optimum the Bellman-Ford cannot certify (a negative cycle: the library's answer
was not optimal on the core) raises :class:`CoreFailure`; the caller falls back to a dense solver.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np
import torch

try:  # optional: pip install lapx (module "lap")
    import lap as _lapx
except ImportError:  # pragma: no cover - depends on the environment
    _lapx = None

__all__ = ["Certificate", "CertifiedSolution", "CoreFailure", "certified_solve", "certify_core", "check_duals", "core_duals",
           "dense_check", "sorted_union"]

DELTA = 2.0**-40  # per-edge slack of the dual recovery, relative to the matrix's span
TOL = 4 * DELTA  # a dense entry violates the duals when a - u - v exceeds this (relative to the span)


class CoreFailure(RuntimeError):
    """The core's solution could not be given duals (not optimal on the core, or no matching)."""


@dataclass
class Certificate:
    """What one certified solve found: rounds of the core loop, dense entries found violating per
    round, the last round's largest ``a - u - v`` (relative to the span; certified when at most
    ``tolerance``), the core's size at the end, and the bound it proves on the gap to the optimum
    (``n * max(0, max_violation) * span``)."""

    rounds: int = 0
    violations: list[int] = field(default_factory=list)
    max_violation: float = 0.0
    tolerance: float = TOL
    candidates: int = 0
    gap_bound: float = 0.0

    @property
    def holds(self) -> bool:
        return self.max_violation <= self.tolerance

    def to_json(self) -> dict:
        return asdict(self)


class CertifiedSolution(NamedTuple):
    cols: np.ndarray
    u: np.ndarray
    v: np.ndarray
    certificate: Certificate


def check_duals(a: np.ndarray, cols: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[float, float]:
    """``(max_ij (a - u - v), max_i |a[i, cols[i]] - u[i] - v[cols[i]]|)``: the duals' largest
    violation on the dense matrix and their largest complementary-slackness gap on ``cols``. Both
    at most ``tol`` prove ``cols`` within ``2 * n * tol`` of the optimum."""
    red = torch.from_numpy(np.asarray(a, dtype=np.float64)) - torch.from_numpy(u)[:, None]
    red -= torch.from_numpy(v)
    n = len(cols)
    slack = red[torch.arange(n), torch.from_numpy(cols)].abs().max()
    return float(red.max()), float(slack)


def _top_both(m: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entries (rows, cols, values) that are among their row's ``k`` largest or their column's."""
    n = m.shape[0]
    rv, rc = torch.topk(m, k, dim=1)
    cv, cr = torch.topk(m, k, dim=0)
    rows = np.concatenate([np.repeat(np.arange(n), k), cr.numpy().reshape(-1)])
    cols = np.concatenate([rc.numpy().reshape(-1), np.tile(np.arange(n), k)])
    return rows, cols, np.concatenate([rv.numpy().reshape(-1), cv.numpy().reshape(-1)])


def _sparse_solve(a: np.ndarray, lin: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """The maximising perfect matching on the core ``lin`` (sorted ``i * n + j``), by a library, on
    costs reduced by ``prices`` and the rows' best reduced values (``u[i] + prices[j] - a[i, j] >= 0``,
    zero where a row meets its best): the same optimum, and with good prices the Jonker-Volgenant
    initialisation assigns nearly every row at once (5 ms instead of 0.35-1.1 s on a 4096-unit FGMT
    core of 22k-92k entries, measured in ``docs/results/solvers.md``)."""
    n = a.shape[0]
    i, j = np.divmod(lin, n)
    w = a[i, j] - prices[j]
    indptr = np.searchsorted(i, np.arange(n + 1))
    cost = np.maximum(np.maximum.reduceat(w, indptr[:-1])[i] - w, 0.0)
    if _lapx is not None and hasattr(_lapx, "lapmod"):
        x, _ = _lapx.lapmod(n, cost, indptr, j, return_cost=False)  # minimising, costs >= 0; the cost: a Python loop
        cols = np.asarray(x, dtype=np.int64)
    else:  # pragma: no cover - lapx is a dependency
        from scipy.sparse import csr_matrix
        from scipy.sparse.csgraph import min_weight_full_bipartite_matching

        try:  # scipy drops zero entries: every cost + 1 (the same n added to every perfect matching)
            _, cols = min_weight_full_bipartite_matching(csr_matrix((cost + 1.0, j, indptr), shape=(n, n)))
        except ValueError as e:
            raise CoreFailure(str(e)) from e
    if cols.shape != (n,) or not (np.sort(cols) == np.arange(n)).all():
        raise CoreFailure("the sparse solver returned no perfect matching on the core")
    return cols.astype(np.int64)


def core_duals(
    a: np.ndarray, lin: np.ndarray, cols: np.ndarray, delta: float, start: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Duals ``(u, v)`` for ``cols`` on the core ``lin`` (sorted ``i * n + j``, every row present):
    ``u + v = a`` on ``cols`` and ``u[i] + v[j] >= a[i, j] - delta`` on the core; ``v`` is the
    largest such vector at most ``start`` (zeros if None). Raises :class:`CoreFailure` when there
    are none (a negative cycle: ``cols`` not optimal on the core)."""
    n = a.shape[0]
    i, j = np.divmod(lin, n)
    w = a[i, cols[i]].astype(np.float64) - a[i, j] + delta  # edge j -> cols[i]: v[cols[i]] <= v[j] + w (float64 always)
    starts = np.searchsorted(i, np.arange(n))
    if starts.size and (np.diff(np.append(starts, len(lin))) == 0).any():
        raise CoreFailure("a row has no candidate column")
    d = np.zeros(n) if start is None else np.array(start, dtype=np.float64)  # v: distances from a virtual source
    for _ in range(2 * n + 2):
        best = np.minimum.reduceat(d[j] + w, starts)  # per row i: the tightest bound on v[cols[i]]
        lower = best < d[cols]
        if not lower.any():
            return a[np.arange(n), cols] - d[cols], d
        d[cols[lower]] = best[lower]
    raise CoreFailure("no duals on the core: its solution is not optimal there (negative cycle)")


def certified_solve(
    a: np.ndarray,
    prices: np.ndarray | None = None,
    start: np.ndarray | None = None,
    *,
    k: int = 8,
    repair_k: int = 8,
    max_rounds: int = 30,
) -> CertifiedSolution:
    """Maximising assignment of a square ``a`` with a dual certificate (module docstring).
    ``prices``: column prices to pick the core by (a previous solve's ``v``, an auction's prices;
    zeros if None); ``start``: a permutation put into the core (the identity if None)."""
    a = np.asarray(a, dtype=np.float64)
    n = a.shape[0]
    if a.ndim != 2 or a.shape != (n, n):
        raise ValueError(f"cost matrix must be square, got {a.shape}")
    start = np.arange(n) if start is None else np.asarray(start, dtype=np.int64)
    span = float(a.max() - a.min()) if n else 0.0
    if span == 0.0:  # every permutation is optimal: u = a, v = 0 prove it
        cert = Certificate(candidates=n)
        return CertifiedSolution(start, a[:, 0].copy() if n else np.zeros(0), np.zeros(n), cert)
    k, repair_k = min(k, n), min(repair_k, n)
    ta = torch.from_numpy(a)
    v = np.zeros(n) if prices is None else np.asarray(prices, dtype=np.float64)
    red = ta.float() - torch.from_numpy(v).float()  # only picks the core: float32 is enough
    red -= red.max(dim=1, keepdim=True).values
    rows, cols, _ = _top_both(red, k)
    del red
    lin = np.unique(np.concatenate([rows * n + cols, np.arange(n) * n + start]))
    return certify_core(a, lin, v, span, bf_start=np.zeros(n), repair_k=repair_k, max_rounds=max_rounds)


def certify_core(
    a: np.ndarray,
    lin: np.ndarray,
    prices: np.ndarray,
    span: float,
    *,
    bf_start: np.ndarray | None = None,
    repair_k: int = 8,
    max_rounds: int = 30,
    max_candidates: int | None = None,
) -> CertifiedSolution:
    """Steps 2-4 of the module docstring on the core ``lin`` (sorted ``i * n + j``, holding a
    perfect matching): solve it exactly, give it duals, check them on every dense entry, repair
    and repeat until no entry violates them. ``prices``: column prices to reduce the first sparse
    solve by; ``bf_start``: where the Bellman-Ford starts (default ``prices``; its answer is the
    largest feasible ``v`` below it, so good prices give duals that few dense entries violate).
    ``max_candidates``: give up (:class:`CoreFailure`) when the core grows beyond it (a start too
    far from this matrix's optimum: the caller has a better way to find prices)."""
    n = a.shape[0]
    ta = torch.from_numpy(a)  # shares a's memory
    a_max, k_rep = _abs_max(ta), min(repair_k, n)
    d0 = np.asarray(prices if bf_start is None else bf_start, dtype=np.float64)
    cert, delta, tol, v = Certificate(), DELTA * span, TOL * span, np.asarray(prices, dtype=np.float64)
    while True:
        p = _sparse_solve(a, lin, v)  # v: the prices given, then the last round's duals
        u, v = core_duals(a, lin, p, delta, d0 if cert.rounds == 0 else v)  # a repair round: from the last duals
        cert.rounds += 1
        worst, bad, near = dense_check(ta, u, v, tol, k_rep, a_max=a_max)
        cert.max_violation, cert.candidates = worst / span, len(lin)
        cert.violations.append(len(bad))
        if worst <= tol:
            break
        if cert.rounds >= max_rounds:
            raise CoreFailure(f"not certified after {max_rounds} rounds (max violation {worst / span:.3g} of the span)")
        extra = [near] if len(bad) > 2 * n else [bad, near]  # a poor first core: only the rows' best
        if len(bad) > 2 * n or cert.rounds > 2:  # and the violating columns' best rows
            extra.append(_column_repair(ta, u, v, bad, k_rep))
        lin = sorted_union(lin, *extra)
        if max_candidates is not None and len(lin) > max_candidates:
            raise CoreFailure(f"the core grew to {len(lin)} entries (limit {max_candidates})")
    cert.gap_bound = n * max(0.0, worst)
    return CertifiedSolution(p, u, v, cert)


def dense_check(
    ta: torch.Tensor, u: np.ndarray, v: np.ndarray, tol: float, k: int, rows: int = 256, a_max: float | None = None
) -> tuple[float, np.ndarray, np.ndarray]:
    """One pass over the dense matrix, ``rows`` rows at a time (torch: both cores, each block in
    cache): ``max(a - u - v)``, the entries above ``tol`` (``i * n + j``), and each violating row's
    ``k`` best entries under the duals (the alternatives the next core needs), from the same block.

    The pass runs in float32 (half the memory traffic of float64: 40 -> 15 ms at n = 4096) and
    proves nothing by itself: float32 ``a - v - u`` is within ``3 * 2**-24 * M`` of the exact value
    (``M = max|a| + max|u| + max|v|``; two roundings and the two duals' conversions), so every entry
    whose float32 value is above ``-2 * margin`` (``margin = 2**-21 * M``, a factor 2-3 to spare) is
    recomputed in float64, and every other entry is below ``-margin`` exactly. The recomputed set
    holds every entry within ``margin`` of its row's dual, the assigned (tight) ones among them, so
    the maximum returned is the exact float64 maximum and the violators are all found. ``a_max``:
    ``max|a|`` when the caller has it (one pass less per round of :func:`certify_core`)."""
    n = ta.shape[0]
    u32, v32 = torch.from_numpy(u).float(), torch.from_numpy(v).float()
    a_max = _abs_max(ta) if a_max is None else a_max
    margin = 2.0**-21 * (a_max + float(np.abs(u).max()) + float(np.abs(v).max()))
    tu, tv = torch.from_numpy(u), torch.from_numpy(v)
    worst, found, near = -np.inf, [], []
    for r in range(0, n, rows):
        red = ta[r : r + rows].float() - v32
        red -= u32[r : r + rows, None]
        i, j = torch.nonzero(red > -2.0 * margin, as_tuple=True)
        exact = ta[i + r, j].double() - tu[i + r] - tv[j]
        worst = max(worst, float(exact.max()))
        over = exact > tol
        if over.any():
            found.append(((i[over] + r) * n + j[over]).numpy())
            bad_rows = torch.unique(i[over])
            top = torch.topk(red[bad_rows], k, dim=1, sorted=False).indices
            near.append(((bad_rows[:, None] + r) * n + top).reshape(-1).numpy())
    empty = np.zeros(0, dtype=np.int64)
    return worst, np.concatenate(found) if found else empty, np.concatenate(near) if near else empty


def _abs_max(ta: torch.Tensor) -> float:
    lo, hi = torch.aminmax(ta)
    return max(abs(float(lo)), abs(float(hi)))


def sorted_union(*parts: np.ndarray) -> np.ndarray:
    """Sorted distinct values of the arrays (``np.union1d`` hashes first: 4x slower here)."""
    x = np.sort(np.concatenate(parts))
    return x[np.concatenate([[True], x[1:] != x[:-1]])] if x.size else x


def _column_repair(ta: torch.Tensor, u: np.ndarray, v: np.ndarray, bad: np.ndarray, k: int) -> np.ndarray:
    """Each violating column's ``k`` best entries under the duals (``a - u - v``): where the rows'
    best alone do not close the gap (a poor core, or rounds that keep finding violators)."""
    n = ta.shape[0]
    j = np.unique(bad % n)
    tu, tv = torch.from_numpy(u), torch.from_numpy(v)
    by_col = torch.topk(ta[:, torch.from_numpy(j)] - tu[:, None] - tv[j], k, dim=0).indices.numpy()
    return (by_col * n + j[None, :]).reshape(-1)
