"""Linear assignment: a Jonker-Volgenant library, scipy, or our epsilon-scaling auction, by the matrix.

Measured on the matrices transfer builds (``bench/solvers.py``, ``docs/results/solvers.md``, CPU
seconds on one core):

* Weight-matching costs (two random-init resnet50's channel groups, full rank): lapx's ``lapjv``
  solves n = 256 / 1024 / 2048 in 0.004 / 0.06 / 0.20 s, scipy in 0.5-0.7 s (a ~0.4 s import included) and our auction in
  0.6 / 1.0 / 1.7 s.
  So every matrix whose rows disagree on their best column goes to lapx when it is installed.
* Gradient costs (FGMT on mlp2, width 4096: low rank, most rows prefer the same few columns):
  scipy takes 14.6 s, lapx's fastest exact solver (``lapjvc``) 18.5 s, our exact auction 0.6-2.1 s
  (warm / cold); :func:`transfer.lap_structured.structured_solve` (an exact sparse solve on a core
  picked under the previous solve's duals, or a rough auction's prices when there is none, with a
  dual certificate on every dense entry) 0.1-0.6 s, so it takes them (``bench/lap_sequences.py``).
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

What each answer proves (:class:`LapResult`, added up per run in :class:`LapProofs`, which the engine
writes to ``results.json`` as ``lap_proofs``): the structured and certified solves carry a
:class:`~transfer.lap_certified.Certificate` (rounds, dense violations found, largest final
violation); the auction's prices bound its gap to the optimum (:func:`auction_gap`); lapx and scipy
give no duals. ``certify=True`` (``Matcher.certify``) certifies every other answer too
(:func:`transfer.lap_certified.certified_solve` from its prices). Where the structured solve fails
(a price war, as on vgg11_bn's nearly degenerate sorted-start 4096 matrix) the exact auction, then
the certified core solve from no prices (6.4 s there against scipy's 14 s), then scipy take over.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np

from transfer.lap_certified import Certificate, CoreFailure, certified_solve
from transfer.lap_structured import PriceWar, best_two, structured_solve, top_k

try:  # optional: pip install lapx (module "lap")
    import lap as _lapx
except ImportError:  # pragma: no cover - depends on the environment
    _lapx = None

__all__ = ["solve_lap", "solve_lap_result", "LapResult", "scipy_lap", "lapx_lap", "auction_lap", "auction_solve",
           "auction_gap", "LapProofs", "LapWarm", "AUCTION_MIN_SIZE", "HAVE_LAPX"]  # fmt: skip

log = logging.getLogger(__name__)

AUCTION_MIN_SIZE = 1024  # below this the auction never pays (resnet50 WM 1024: auction 1.0 s, scipy 0.1 s)
HAVE_LAPX = _lapx is not None and hasattr(_lapx, "lapjv")
_SPREAD = 0.3  # distinct row-argmax columns / n above which a matrix goes to lapx rather than the auction


class _BudgetExceeded(RuntimeError):
    pass


class LapWarm:
    """What one solve leaves for the next solve of a similar matrix (the same group's cost one step
    later): its assignment and, when an auction or a certified solve made it, its column prices or
    duals. :func:`solve_lap` reads it and writes the new ones back; the structured solve and the
    auction start from it (the libraries take no start).

    >>> warm = LapWarm()
    >>> solve_lap(np.array([[1.0, 5.0], [4.0, 1.0]]), warm=warm).tolist(), warm.cols.tolist()
    ([1, 0], [1, 0])
    """

    __slots__ = ("cols", "prices")

    def __init__(self, cols: np.ndarray | None = None, prices: np.ndarray | None = None) -> None:
        self.cols, self.prices = cols, prices

    def fits(self, n: int) -> bool:
        """Whether it holds a permutation of ``n`` columns and ``n`` finite prices."""
        c, p = self.cols, self.prices
        if c is None or p is None or np.shape(c) != (n,) or np.shape(p) != (n,) or not np.isfinite(p).all():
            return False
        return bool((np.sort(c) == np.arange(n)).all())


class LapResult(NamedTuple):
    """One solve: the assignment, the column prices it leaves (None from the libraries), the solver
    (``"lapx"``, ``"structured"``, ``"auction"``, ``"certified"``, ``"scipy"``), a proven bound on how far its objective
    may fall short of the optimum (None where the solver gives no duals), and the certified solver's
    :class:`~transfer.lap_certified.Certificate` (None for the others)."""

    cols: np.ndarray
    prices: np.ndarray | None
    solver: str
    gap_bound: float | None = None
    certificate: Certificate | None = None


@dataclass
class LapProofs:
    """What a run's solves proved, added up (``results.json``'s ``lap_proofs``): solves per solver,
    those whose solver gives no duals (``unproven``), the largest proven gap to the optimum relative
    to the objective's magnitude, and the certified solves' rounds, dense violations found (summed),
    largest final violation (relative to the span) and largest core."""

    solves: dict[str, int] = field(default_factory=dict)
    unproven: int = 0
    max_gap: float = 0.0
    certified: int = 0
    rounds: int = 0
    violations: int = 0
    max_violation: float = 0.0
    candidates: int = 0

    def add(self, res: LapResult, objective: float) -> None:
        self.solves[res.solver] = self.solves.get(res.solver, 0) + 1
        if res.gap_bound is None:
            self.unproven += 1
        else:
            self.max_gap = max(self.max_gap, res.gap_bound / max(abs(objective), 1e-300))
        c = res.certificate
        if c is not None and c.holds:
            self.certified += 1
        if c is not None:
            self.rounds += c.rounds
            self.violations += sum(c.violations)
            self.max_violation = max(self.max_violation, c.max_violation)
            self.candidates = max(self.candidates, c.candidates)

    def merge(self, other: LapProofs) -> LapProofs:
        for k, v in other.solves.items():
            self.solves[k] = self.solves.get(k, 0) + v
        self.unproven, self.certified = self.unproven + other.unproven, self.certified + other.certified
        self.rounds, self.violations = self.rounds + other.rounds, self.violations + other.violations
        self.max_gap, self.max_violation = max(self.max_gap, other.max_gap), max(self.max_violation, other.max_violation)
        self.candidates = max(self.candidates, other.candidates)
        return self

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Any) -> LapProofs:
        """From :meth:`to_json`'s dict; anything unreadable (an old record) starts empty."""
        try:
            out = cls(**d)
            if isinstance(out.solves, dict) and all(isinstance(v, int) for v in out.solves.values()):
                return out
        except TypeError:
            pass
        return cls()


def solve_lap(a: np.ndarray, warm: LapWarm | None = None) -> np.ndarray:
    """Column index per row maximising ``sum_i a[i, p[i]]`` for a square matrix (module docstring
    says which solver takes which matrix, and why). ``warm``: the previous solve's assignment and
    prices for a similar matrix, read by the auction and replaced by this solve's.

    >>> solve_lap(np.array([[1.0, 5.0], [4.0, 1.0]])).tolist()
    [1, 0]
    """
    return solve_lap_result(a, warm).cols


def solve_lap_result(a: np.ndarray, warm: LapWarm | None = None, certify: bool = False) -> LapResult:
    """:func:`solve_lap` with what the solve proves (:class:`LapResult`). ``certify``: make every
    answer exact and certified on the whole matrix (:func:`transfer.lap_certified.certified_solve`
    from the answer and its prices; about one sparse solve more per matrix). A float32 ``a`` is
    solved as it is, without a float64 copy: the structured solve computes in float64 from its
    entries (each exact in float64), the other solvers take a float64 copy."""
    a = np.asarray(a)
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)
    n = a.shape[0]
    if a.ndim != 2 or a.shape != (n, n):
        raise ValueError(f"cost matrix must be square, got {a.shape}")
    res = _dispatch(a, warm)
    if certify and res.certificate is None:
        try:
            sol = certified_solve(a, res.prices, res.cols)
            res = LapResult(sol.cols, sol.v, f"{res.solver}+certified", sol.certificate.gap_bound, sol.certificate)
        except CoreFailure as e:
            log.warning("could not certify the %s answer at n=%d: %s", res.solver, n, e)
    if warm is not None:
        warm.cols, warm.prices = res.cols, res.prices
    return res


def _dispatch(a: np.ndarray, warm: LapWarm | None) -> LapResult:
    n = a.shape[0]
    spread = len(np.unique(a.argmax(axis=1)))  # lapx_lap and scipy_lap take float64 copies themselves
    if HAVE_LAPX and spread >= _SPREAD * n:
        return LapResult(lapx_lap(a), None, "lapx")
    if n >= AUCTION_MIN_SIZE:
        fit = warm is not None and warm.fits(n)
        starts = [warm, None] if fit else [None]
        try:  # rough auction + certified core: FGMT's 4096 costs in 0.1-0.6 s, exact with a certificate
            sol = structured_solve(a, warm.prices if fit else None, warm.cols if fit else None)
            return LapResult(sol.cols, sol.v, "structured", sol.certificate.gap_bound, sol.certificate)
        except PriceWar as e:  # where every row wants one column the exact auction fights the same war (vgg's sorted start)
            log.debug("structured solve at n=%d: %s", n, e)
            starts = [] if spread < 0.01 * n else starts
        except CoreFailure as e:
            log.debug("structured solve failed at n=%d: %s", n, e)
        a = a.astype(np.float64, copy=False)  # the auction computes in its matrix's dtype
        for start in starts:
            try:
                cols, prices = auction_solve(a, start)
                return LapResult(cols, prices, "auction", auction_gap(a, cols, prices))
            except _BudgetExceeded:
                log.debug("auction bid budget exceeded at n=%d (warm start: %s)", n, start is not None)
        try:  # where the auctions give up (nearly degenerate rows): vgg11_bn's sorted start, 6.4 s against scipy's 14
            sol = certified_solve(a, start=warm.cols if warm is not None and warm.fits(n) else None)
            return LapResult(sol.cols, sol.v, "certified", sol.certificate.gap_bound, sol.certificate)
        except CoreFailure as e:
            log.debug("certified solve failed at n=%d: %s", n, e)
        log.debug("falling back to scipy at n=%d", n)
    return LapResult(scipy_lap(a), None, "scipy")


def auction_gap(a: np.ndarray, cols: np.ndarray, prices: np.ndarray) -> float:
    """What the auction's prices prove: with ``u[i] = max_j a[i, j] - prices[j]`` the pair
    ``(u, prices)`` is dual feasible on the whole matrix, so the optimum exceeds ``cols``' objective
    by at most ``sum_i u[i] - (a[i, cols[i]] - prices[cols[i]])`` (at most ``n * eps_final``)."""
    n, rows = len(cols), 128
    best, block = np.empty(n), np.empty((min(rows, n), a.shape[1]))
    for r in range(0, n, rows):  # in blocks that stay in cache: a whole n x n temporary costs 5x more
        b = block[: min(rows, n - r)]
        np.subtract(a[r : r + rows], prices, out=b)
        b.max(axis=1, out=best[r : r + rows])
    return float((best - (a[np.arange(n), cols] - prices[cols])).sum())


def lapx_lap(a: np.ndarray) -> np.ndarray:
    """lapx's Jonker-Volgenant ``lapjv`` (minimising, so on ``-a``), exact in float64."""
    a = np.asarray(a, dtype=np.float64)
    _, cols, _ = _lapx.lapjv(-a)
    return np.asarray(cols, dtype=np.int64)


def scipy_lap(a: np.ndarray) -> np.ndarray:
    """scipy's ``linear_sum_assignment`` (maximising) on ``a`` reduced by its row then column maxima:
    the argmax is unchanged and scipy's augmenting paths get shorter."""
    from scipy.optimize import linear_sum_assignment  # here, not at import: scipy.optimize costs ~0.5 s to import

    a = np.asarray(a, dtype=np.float64)
    n = a.shape[0]
    m = a - a.max(axis=1, keepdims=True)
    m -= m.max(axis=0, keepdims=True)
    rows, cols = linear_sum_assignment(m, maximize=True)
    assert (rows == np.arange(n)).all()
    return cols.astype(np.int64)


class _State:
    """One auction's matrix, candidate lists, prices and assignment, and its bid count."""

    def __init__(self, a: np.ndarray, k: int, prices: np.ndarray, budget: int) -> None:
        n = a.shape[0]
        self.a, self.k, self.prices, self.budget, self.bids = a, k, prices, budget, 0
        self.cand, self.bound = top_k(a if not prices.any() else a - prices, k)
        self.cand_a = np.take_along_axis(a, self.cand, axis=1)
        self.owner = np.full(n, -1)
        self.assign = np.full(n, -1)

    def bid(self, free: np.ndarray, eps: float) -> None:
        """Jacobi rounds until every row is assigned: each free row bids for its best column, each
        column goes to its highest bid, an outbid owner is free again."""
        a, k, cand, bound, cand_a, prices = self.a, self.k, self.cand, self.bound, self.cand_a, self.prices
        owner, assign = self.owner, self.assign
        while free.size:
            self.bids += free.size
            if self.bids > self.budget:
                raise _BudgetExceeded
            cidx = cand[free]
            jb, v1, v2 = best_two(cand_a[free] - prices[cidx])
            stale = v1 < bound[free]
            if stale.any():  # rebuild those lists; a fresh list always clears its own bound
                rows = free[stale]
                fresh, kth = top_k(a[rows] - prices, k)
                cand[rows], bound[rows] = fresh, kth
                cand_a[rows] = np.take_along_axis(a[rows], fresh, axis=1)
                cidx = cand[free]
                jb, v1, v2 = best_two(cand_a[free] - prices[cidx])
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

    def slack(self) -> np.ndarray:
        """Per row, how far its column falls short of its best one under the current prices: the row
        is eps-CS when slack <= eps. The best value comes from the row's candidate list, or from the
        full row where the list may be stale (its best no longer clears its bound)."""
        rows = np.arange(self.a.shape[0])
        best = (self.cand_a - self.prices[self.cand]).max(axis=1)
        stale = np.flatnonzero(best < self.bound)
        if stale.size:
            best[stale] = (self.a[stale] - self.prices).max(axis=1)
        return best - (self.a[rows, self.assign] - self.prices[self.assign])


def auction_lap(
    a: np.ndarray,
    k: int = 128,
    rel_eps: float = 1e-9,
    factor: float = 6.0,
    max_bids_per_row: int = 200,
) -> np.ndarray:
    """Maximising assignment by epsilon-scaling auction on candidate lists (see module docstring)."""
    return auction_solve(a, k=k, rel_eps=rel_eps, factor=factor, max_bids_per_row=max_bids_per_row)[0]


def auction_solve(
    a: np.ndarray,
    warm: LapWarm | None = None,
    *,
    k: int = 128,
    rel_eps: float = 1e-9,
    factor: float = 6.0,
    max_bids_per_row: int = 200,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`auction_lap`, also returning the final prices; from ``warm`` (a previous solve's
    assignment and prices) when it has both: see :func:`_warm_phases`."""
    n = a.shape[0]
    k = min(k, n - 2)
    span = float(a.max() - a.min())
    if span == 0.0:
        return np.arange(n), np.zeros(n)
    eps_final = span * rel_eps
    eps = max(span / n, eps_final)
    budget = max_bids_per_row * n
    if warm is not None and warm.fits(n):
        st = _State(a, k, warm.prices.astype(np.float64, copy=True), budget)
        _warm_phases(st, warm.cols, (eps, eps_final, factor))
        return st.assign.astype(np.int64), st.prices
    st = _State(a, k, np.zeros(n), budget)
    while True:
        st.owner.fill(-1)
        st.assign.fill(-1)
        st.bid(np.arange(n), eps)
        if eps <= eps_final:
            return st.assign.astype(np.int64), st.prices
        eps = max(eps / factor, eps_final)


def _warm_phases(st: _State, cols: np.ndarray, eps_range: tuple[float, float, float]) -> None:
    """epsilon scaling from a previous solve of a similar matrix: its prices, its assignment kept for
    every row that is eps-CS under them. Each phase frees only the rows that are not eps-CS at its
    eps (a kept row stays eps-CS while prices rise, so the auction's bound holds as in a cold start)
    and starts at the largest slack, never above the cold start's eps. Consecutive FGMT matrices
    share most of their optimal assignment and prices, so few rows bid."""
    eps_cold, eps_final, factor = eps_range
    st.assign[:] = cols
    st.owner[cols] = np.arange(len(cols))
    eps = min(eps_cold, max(float(st.slack().max()), eps_final))
    while True:
        free = np.flatnonzero(st.slack() > eps)
        st.owner[st.assign[free]] = -1
        st.assign[free] = -1
        st.bid(free, eps)
        if eps <= eps_final:
            return
        eps = max(eps / factor, eps_final)
