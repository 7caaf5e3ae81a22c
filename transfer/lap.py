"""Linear assignment: a Jonker-Volgenant library, scipy, or our epsilon-scaling auction, by the matrix.

Measured on the matrices transfer builds (``bench/solvers.py``, ``docs/results/solvers.md``, CPU
seconds on one core):

* Weight-matching costs (two random-init resnet50's channel groups, full rank): lapx's ``lapjv``
  solves n = 256 / 1024 / 2048 in 0.004 / 0.06 / 0.20 s, scipy in 0.5-0.7 s (a ~0.4 s import included) and our auction in
  0.6 / 1.0 / 1.7 s.
  So every matrix whose rows disagree on their best column goes to lapx when it is installed.
* Gradient costs (FGMT on mlp2, width 4096: low rank, most rows prefer the same few columns): the
  auction takes 2.8 s, scipy 14.6 s, lapx's fastest exact solver (``lapjvc``) 18.5 s;
  the other lapx / lapjv solvers ran out of 60 s. The auction stays hand-written for these.
* What tells the two apart cheaply: the share of distinct row-argmax columns, 0.6 on the
  weight-matching matrices, 0.06 on the gradient ones (``_SPREAD``).
* Without lapx (an optional dependency) scipy takes every matrix below ``AUCTION_MIN_SIZE`` and
  the auction every larger one, scipy being the fallback whatever happens.

The auction (Bertsekas' Jacobi auction with epsilon scaling) keeps, for every row, its ``k`` best
columns under the prices at the time the list was made, and the (k+1)-th best value as a bound.
Prices only rise, so no column outside the list can ever beat that bound: a bid computed from the
list is exact whenever its best value clears the bound, and otherwise the list is rebuilt from the
full row. A bid may use the bound in place of an unknown second-best value; that only makes the
bid smaller, which keeps epsilon-complementary slackness. The final assignment is within
``n * eps_final`` (= ``n * 1e-9 * span``) of the optimum. A problem that makes the auction fight
price wars (many identical rows) exceeds a bid budget and goes to an exact solver.

Every solver here is exact: where two reach the optimum they differ only on exact ties.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.optimize import linear_sum_assignment

try:  # optional: pip install lapx (module "lap")
    import lap as _lapx
except ImportError:  # pragma: no cover - depends on the environment
    _lapx = None

__all__ = ["solve_lap", "scipy_lap", "lapx_lap", "auction_lap", "AUCTION_MIN_SIZE", "HAVE_LAPX"]

log = logging.getLogger(__name__)

AUCTION_MIN_SIZE = 1024  # below this the auction never pays (resnet50 WM 1024: auction 1.0 s, scipy 0.1 s)
HAVE_LAPX = _lapx is not None and hasattr(_lapx, "lapjv")
_SPREAD = 0.3  # distinct row-argmax columns / n above which a matrix goes to lapx rather than the auction


class _BudgetExceeded(RuntimeError):
    pass


def solve_lap(a: np.ndarray) -> np.ndarray:
    """Column index per row maximising ``sum_i a[i, p[i]]`` for a square matrix (module docstring
    says which solver takes which matrix, and why).

    >>> solve_lap(np.array([[1.0, 5.0], [4.0, 1.0]])).tolist()
    [1, 0]
    """
    a = np.asarray(a, dtype=np.float64)
    n = a.shape[0]
    if a.shape != (n, n):
        raise ValueError(f"cost matrix must be square, got {a.shape}")
    if HAVE_LAPX and len(np.unique(a.argmax(axis=1))) >= _SPREAD * n:
        return lapx_lap(a)
    if n >= AUCTION_MIN_SIZE:
        try:
            return auction_lap(a)
        except _BudgetExceeded:
            log.debug("auction bid budget exceeded at n=%d; falling back to scipy", n)
    return scipy_lap(a)


def lapx_lap(a: np.ndarray) -> np.ndarray:
    """lapx's Jonker-Volgenant ``lapjv`` (minimising, so on ``-a``), exact in float64."""
    a = np.asarray(a, dtype=np.float64)
    _, cols, _ = _lapx.lapjv(-a)
    return np.asarray(cols, dtype=np.int64)


def scipy_lap(a: np.ndarray) -> np.ndarray:
    """scipy's ``linear_sum_assignment`` (maximising) on ``a`` reduced by its row then column maxima:
    the argmax is unchanged and scipy's augmenting paths get shorter."""
    a = np.asarray(a, dtype=np.float64)
    n = a.shape[0]
    m = a - a.max(axis=1, keepdims=True)
    m -= m.max(axis=0, keepdims=True)
    rows, cols = linear_sum_assignment(m, maximize=True)
    assert (rows == np.arange(n)).all()
    return cols.astype(np.int64)


def _top_k(red: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the indices of the k largest values (unordered) and the (k+1)-th largest value."""
    n = red.shape[1]
    part = np.argpartition(red, n - k - 1, axis=1)
    return part[:, n - k :], np.take_along_axis(red, part[:, n - k - 1 : n - k], axis=1)[:, 0]


def _best_two(vals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: position of the largest value, the largest and the second largest."""
    k = vals.shape[1]
    j2 = np.argpartition(vals, k - 2, axis=1)[:, -2:]
    v = np.take_along_axis(vals, j2, axis=1)
    hi = v[:, 1] >= v[:, 0]
    return np.where(hi, j2[:, 1], j2[:, 0]), v.max(axis=1), v.min(axis=1)


def auction_lap(
    a: np.ndarray,
    k: int = 128,
    rel_eps: float = 1e-9,
    factor: float = 6.0,
    max_bids_per_row: int = 200,
) -> np.ndarray:
    """Maximising assignment by epsilon-scaling auction on candidate lists (see module docstring)."""
    n = a.shape[0]
    k = min(k, n - 2)
    span = float(a.max() - a.min())
    if span == 0.0:
        return np.arange(n)
    prices = np.zeros(n)
    eps_final = span * rel_eps
    eps = max(span / n, eps_final)
    cand, bound = _top_k(a, k)
    cand_a = np.take_along_axis(a, cand, axis=1)
    budget, bids = max_bids_per_row * n, 0
    while True:
        owner = np.full(n, -1)
        assign = np.full(n, -1)
        free = np.arange(n)
        while free.size:
            bids += free.size
            if bids > budget:
                raise _BudgetExceeded
            cidx = cand[free]
            jb, v1, v2 = _best_two(cand_a[free] - prices[cidx])
            stale = v1 < bound[free]
            if stale.any():  # rebuild those lists; a fresh list always clears its own bound
                rows = free[stale]
                fresh, kth = _top_k(a[rows] - prices, k)
                cand[rows], bound[rows] = fresh, kth
                cand_a[rows] = np.take_along_axis(a[rows], fresh, axis=1)
                cidx = cand[free]
                jb, v1, v2 = _best_two(cand_a[free] - prices[cidx])
            b = bound[free]
            best = cidx[np.arange(free.size), jb]
            bid = prices[best] + (v1 - np.maximum(v2, b)) + eps
            order = np.lexsort((-bid, best))  # per object: highest bid first, then lowest row
            sorted_best = best[order]
            first = np.ones(order.size, dtype=bool)
            first[1:] = sorted_best[1:] != sorted_best[:-1]
            win = order[first]
            objs, winners = best[win], free[win]
            outbid = owner[objs]
            assign[outbid[outbid >= 0]] = -1
            owner[objs] = winners
            assign[winners] = objs
            prices[objs] = bid[win]
            free = np.flatnonzero(assign < 0)
        if eps <= eps_final:
            return assign.astype(np.int64)
        eps = max(eps / factor, eps_final)
