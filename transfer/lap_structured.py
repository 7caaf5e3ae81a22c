"""Certified assignment for matrices whose rows want the same few columns: a core, its prices from
the previous solve or from a rough auction.

FGMT's gradient costs (mlp2, width 4096) have few distinct row-argmax columns (0.06 n), so every row
fights for the same columns and exact dense solvers are slow on them (``docs/results/solvers.md``:
scipy 15 s, lapx 18 s, our exact auction 0.6-1.8 s). An exact answer needs good column prices
more than it needs exact bidding, so :func:`structured_solve` splits the work:

1. **Prices.** From a previous solve of a similar matrix (``LapWarm``: the same group one step
   earlier) its duals as they are: on the paper setting's FGMT costs every row's optimal column is
   among its 22 best under the previous step's duals from the third step on (102 at the second),
   so no auction is needed (:func:`warm_core_solve`; the auction runs only where that core fails).
   Cold, a Jacobi auction (Bertsekas, epsilon scaling) on each row's ``k`` best columns under the
   prices at the time, stopped at ``eps = rel_eps * span`` (1e-5, against 1e-9 for the exact
   auction) and, in every phase, as soon as at most ``stop`` rows are still free: 93 % of the
   exact auction's rounds were that tail, a few rows bidding per round in Python.
2. **Core.** Warm: each row's ``warm_k`` best columns under the previous duals, plus the previous
   assignment. Cold: every list entry within ``theta * span`` of its row's best value under the
   final prices (all of a row's list where the list may be stale), plus the auction's assignment
   with its free rows given the free columns. Either way the core holds a perfect matching.
3. **Exact and certified** by :func:`transfer.lap_certified.certify_core`: lapx's sparse
   Jonker-Volgenant solve on the core, duals by Bellman-Ford from the prices, a check of every
   dense entry (``a - u - v <= 2**-38 * span``), repair rounds where it fails.

Nothing here needs the prices to be exact or even eps-optimal: whatever they are, the answer is
the core's optimum and it is returned only with a certificate on the whole matrix. A price war
(nearly identical rows) exceeds ``RoughOptions.bids_per_row`` bids per row and raises
:class:`PriceWar` (a :class:`CoreFailure`); :func:`transfer.lap.solve_lap` then moves on (to the
exact auction, or where every row wants one column straight to the certified core solve).
Every pass over the dense matrix goes through torch in blocks of rows (both cores, each block in
cache); the ones that only choose candidates run in float32.

Measured on the five FGMT costs of the paper setting's run, solved in order as the engine does
(``bench/solvers.py warm``, ``docs/results/solvers.md``): 0.6 s for the cold first solve, 0.45 s
for the second, 0.1-0.25 s for each later one, every one certified and equal to scipy's assignment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from transfer.lap_certified import CertifiedSolution, CoreFailure, certify_core, sorted_union

__all__ = ["structured_solve", "warm_core_solve", "best_columns", "row_lists", "rough_auction", "RoughAuction",
           "RoughOptions", "PriceWar", "top_k", "best_two"]  # fmt: skip


class PriceWar(CoreFailure):
    """The rough auction exceeded its bid budget: the matrix makes auctions fight price wars."""


def row_lists(a: np.ndarray, prices: np.ndarray, k: int, rows: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``a - prices``: the columns of its ``k`` largest values (unordered) and the
    (k+1)-th largest value, ``rows`` rows at a time (one temporary block that stays in cache)."""
    n = a.shape[0]
    cand, bound = np.empty((n, k), dtype=np.int64), np.empty(n)
    ta, tp = torch.from_numpy(a), torch.from_numpy(np.asarray(prices, dtype=np.float64))  # float64 blocks, float32 a too
    for r in range(0, n, rows):
        cand[r : r + rows], bound[r : r + rows] = _top_k(ta[r : r + rows] - tp, k)
    return cand, bound


def best_columns(a: np.ndarray, prices: np.ndarray, k: int, rows: int = 256) -> np.ndarray:
    """Per row, the columns of its ``k`` largest ``a - prices`` (unordered), computed in float32:
    they only pick a core, whose optimum the float64 check then proves or repairs (twice as fast
    as :func:`row_lists` in float64, which the auction needs exact)."""
    n = a.shape[0]
    out = np.empty((n, k), dtype=np.int64)
    ta, tp = torch.from_numpy(a), torch.from_numpy(np.asarray(prices, dtype=np.float32))
    for r in range(0, n, rows):
        out[r : r + rows] = torch.topk(ta[r : r + rows].float() - tp, k, dim=1, sorted=False).indices.numpy()
    return out


def top_k(red: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the indices of the k largest values (unordered) and the (k+1)-th largest value."""
    return _top_k(torch.from_numpy(np.ascontiguousarray(red, dtype=np.float64)), k)


def _top_k(red: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_k` on a tensor: torch's ``topk`` of k + 1 (both cores; numpy's ``argpartition``
    took 0.17 s per 4096 x 4096 pass and 40 % of a cold FGMT solve), less the smallest of them."""
    vals, idx = torch.topk(red, k + 1, dim=1, sorted=False)
    last = vals.argmin(dim=1, keepdim=True)
    keep = torch.ones_like(idx, dtype=torch.bool).scatter_(1, last, False)
    return idx[keep].view(len(idx), k).numpy(), vals.gather(1, last)[:, 0].numpy()


def best_two(vals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: position of the largest value (the first of equals), the largest and the second
    largest. Overwrites the largest of ``vals`` (a temporary): an argmax and a max cost a third of
    an ``argpartition`` (40 % of an mlp2 auction solve before; same permutations on the paper
    setting's FGMT and GMT matrices, only the choice among exactly equal bids can differ)."""
    rows = np.arange(vals.shape[0])
    j = vals.argmax(axis=1)
    v1 = vals[rows, j]
    vals[rows, j] = -np.inf
    return j, v1, vals.max(axis=1)


class RoughAuction:
    """A Jacobi auction's state on candidate lists: prices, partial assignment, bids made. Prices
    only rise, so a column outside a row's list can never beat the list's bound: a bid is taken
    from the list while its best value clears the bound, and the list is rebuilt otherwise."""

    def __init__(self, a: np.ndarray, k: int, prices: np.ndarray, budget: int) -> None:
        n = a.shape[0]
        self.a, self.k, self.prices, self.budget, self.bids = a, k, prices, budget, 0
        self.cand, self.bound = row_lists(a, prices, k)
        self.cand_a = np.take_along_axis(a, self.cand, axis=1)
        self.owner, self.assign = np.full(n, -1), np.full(n, -1)

    def bid(self, free: np.ndarray, eps: float, stop: int, block: int = 512) -> None:
        """Rounds until at most ``stop`` rows are free: the first ``block`` free rows bid for their
        best columns, each column goes to its highest bid (then lowest row), an outbid owner is free
        again. Blocks: when thousands of rows want the same few hundred columns most of their bids
        lose; fewer bidders per round see fresher prices (cold FGMT 4096 solve 0.74 -> 0.65 s)."""
        a, k, cand, bound, cand_a, prices = self.a, self.k, self.cand, self.bound, self.cand_a, self.prices
        owner, assign = self.owner, self.assign
        while free.size > stop:
            free = free[:block]
            self.bids += free.size
            if self.bids > self.budget:
                raise PriceWar(f"rough auction exceeded its budget of {self.budget} bids (a price war)")
            cidx = cand[free]
            jb, v1, v2 = best_two(cand_a[free] - prices[cidx])
            stale = v1 < bound[free]
            if stale.any():  # rebuild those lists from the full rows
                rows = free[stale]
                cand[rows], bound[rows] = top_k(a[rows] - prices, k)
                cand_a[rows] = np.take_along_axis(a[rows], cand[rows], axis=1)
                cidx = cand[free]
                jb, v1, v2 = best_two(cand_a[free] - prices[cidx])
            best = cidx[np.arange(free.size), jb]
            bids = prices[best] + (v1 - np.maximum(v2, bound[free])) + eps
            order = np.lexsort((-bids, best))
            first = np.ones(order.size, dtype=bool)
            first[1:] = best[order][1:] != best[order][:-1]
            win = order[first]
            objs, winners = best[win], free[win]
            outbid = owner[objs]
            assign[outbid[outbid >= 0]] = -1
            owner[objs], assign[winners], prices[objs] = winners, objs, bids[win]
            free = np.flatnonzero(assign < 0)

    def values(self) -> tuple[np.ndarray, np.ndarray]:
        """The lists' values under the current prices, and each row's best value (from its full
        row where the list may be stale: its best no longer clears its bound)."""
        vals = self.cand_a - self.prices[self.cand]
        best = vals.max(axis=1)
        stale = np.flatnonzero(best < self.bound)
        if stale.size:
            best[stale] = (self.a[stale] - self.prices).max(axis=1)
        return vals, best

    def free_not_eps_cs(self, eps: float) -> np.ndarray:
        """Unassign and return the rows that are free or not eps-CS (slack above ``eps``)."""
        _, best = self.values()
        ok = np.flatnonzero(self.assign >= 0)
        slack = np.full(len(best), np.inf)
        slack[ok] = best[ok] - (self.a[ok, self.assign[ok]] - self.prices[self.assign[ok]])
        free = np.flatnonzero(slack > eps)
        held = self.assign[free]
        self.owner[held[held >= 0]] = -1
        self.assign[free] = -1
        return free


@dataclass(frozen=True)
class RoughOptions:
    """The rough auction's settings (module docstring; each measured on consecutive FGMT costs in
    ``docs/results/solvers.md``): candidate list length ``k``, final eps relative to the span,
    eps-scaling ``factor``, the free rows at which a phase stops, the bid budget per row before a
    price war is declared, the first eps relative to the span (None: ``1 / n``), and how many free
    rows bid per round."""

    k: int = 32
    rel_eps: float = 1e-5
    factor: float = 6.0
    stop: int = 16
    bids_per_row: int = 100
    first_eps: float | None = None
    block: int = 512


def rough_auction(
    a: np.ndarray,
    span: float,
    prices: np.ndarray | None = None,
    start: np.ndarray | None = None,
    opts: RoughOptions = RoughOptions(),
) -> RoughAuction:
    """Epsilon scaling from ``opts.first_eps * span`` down to ``opts.rel_eps * span``, each phase
    stopped at ``opts.stop`` free rows; from ``prices`` and the assignment ``start`` when given
    (its eps-CS rows kept)."""
    n = a.shape[0]
    st = RoughAuction(a, min(opts.k, n - 2), np.zeros(n) if prices is None else prices.astype(np.float64, copy=True),
                      opts.bids_per_row * n)  # fmt: skip
    eps, eps_final = span * (1.0 / n if opts.first_eps is None else opts.first_eps), opts.rel_eps * span
    if start is not None:
        st.assign[:] = start
        st.owner[start] = np.arange(n)
    while True:
        st.bid(st.free_not_eps_cs(eps), eps, opts.stop, opts.block)
        if eps <= eps_final:
            return st
        eps = max(eps / opts.factor, eps_final)


def structured_solve(
    a: np.ndarray,
    prices: np.ndarray | None = None,
    start: np.ndarray | None = None,
    *,
    theta: float = 1e-3,
    warm_k: int = 32,
    opts: RoughOptions = RoughOptions(),
) -> CertifiedSolution:
    """Maximising assignment of a square float64 or float32 ``a`` (float32 entries are exact in
    float64, where every computation here is done) with a dual certificate on every entry
    (module docstring). ``prices`` / ``start``: a previous solve's column duals and assignment
    for a similar matrix (both or neither): the core is then each row's ``warm_k`` best columns
    under them (no auction), and the rough auction runs only where that core fails. Raises
    :class:`CoreFailure` where it cannot certify."""
    a = np.asarray(a)
    a = a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)
    n = a.shape[0]
    if a.ndim != 2 or a.shape != (n, n):
        raise ValueError(f"cost matrix must be square, got {a.shape}")
    lo, hi = torch.aminmax(torch.from_numpy(a))
    span = float(hi) - float(lo)
    if n < 4 or span == 0.0:
        raise CoreFailure("too small or constant: the dense solvers take it")
    if prices is not None and start is not None:
        try:
            return warm_core_solve(a, prices, start, span, min(warm_k, n - 1))
        except CoreFailure:
            pass  # the rough auction from the same start finds better prices
    st = rough_auction(a, span, prices, start, opts)
    vals, best = st.values()
    keep = vals >= (best - theta * span)[:, None]
    keep[best - theta * span < st.bound] = True  # a possibly stale list: all of it
    i, jj = np.nonzero(keep)
    assign = st.assign.copy()
    used = np.zeros(n, dtype=bool)
    used[assign[assign >= 0]] = True
    assign[assign < 0] = np.flatnonzero(~used)  # a perfect matching in the core
    lin = sorted_union(i * n + st.cand[i, jj], np.arange(n) * n + assign)
    return certify_core(a, lin, st.prices, span)


def warm_core_solve(a: np.ndarray, prices: np.ndarray, start: np.ndarray, span: float, k: int = 32,
                    max_rounds: int = 8) -> CertifiedSolution:  # fmt: skip
    """The certified core solve from a previous solve of a similar matrix: each row's ``k`` best
    columns under its duals ``prices``, plus its assignment ``start``. On the paper setting's FGMT
    costs the optimal column of every row is within the 22 best under the previous step's duals
    from the third step on (102 at the second), so one or two rounds certify it. Gives up
    (:class:`CoreFailure`) after ``max_rounds`` rounds or when the core has grown fourfold: the start
    was too far from this matrix's optimum, and :func:`structured_solve` runs the rough auction."""
    n = a.shape[0]
    cand = best_columns(a, prices, k)
    lin = sorted_union((np.arange(n)[:, None] * n + cand).reshape(-1), np.arange(n) * n + np.asarray(start))
    return certify_core(a, lin, np.asarray(prices, dtype=np.float64), span, repair_k=16, max_rounds=max_rounds,
                        max_candidates=4 * len(lin))  # fmt: skip
