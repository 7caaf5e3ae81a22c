"""The structured solve (transfer.lap_structured): scipy's assignment, a certificate that holds on every
dense entry and that can fail, on matrices whose rows want the same few columns."""

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import transfer.lap_certified as lc
from transfer.lap import LapProofs, LapWarm, solve_lap_result
from transfer.lap_certified import TOL, CoreFailure, certified_solve, certify_core, check_duals
from transfer.lap_structured import PriceWar, RoughOptions, rough_auction, row_lists, structured_solve


def _objective(a, cols):
    return float(a[np.arange(len(cols)), cols].sum())


def _scipy(a):
    return linear_sum_assignment(a, maximize=True)[1]


def _assert_exact_and_certified(a, sol, same_assignment=True):
    """The certificate recomputed here on the dense matrix, and scipy's optimum (its assignment
    where the optimum is unique, its objective where ties allow several)."""
    n, span = a.shape[0], float(a.max() - a.min())
    assert sorted(sol.cols.tolist()) == list(range(n))
    worst, slack = check_duals(a, sol.cols, sol.u, sol.v)
    assert sol.certificate.holds and worst <= TOL * span and slack <= TOL * span
    ref = _scipy(a)
    assert abs(_objective(a, sol.cols) - _objective(a, ref)) <= 1e-12 * max(abs(_objective(a, ref)), span)
    if same_assignment:
        assert (sol.cols == ref).all()


def _structured_or_fallback(a):
    """What solve_lap does with it: the structured solve, or where its auction fights a price war
    (many identical rows: an auction's worst case), the certified core solve."""
    try:
        return structured_solve(a)
    except PriceWar:
        return certified_solve(a)


def _popular(n, rng, popular=5, rank=3):
    """Low rank plus a few columns every row wants, like FGMT's gradient costs."""
    a = rng.standard_normal((n, rank)) @ rng.standard_normal((n, rank)).T
    a[:, rng.choice(n, popular, replace=False)] += 3.0
    return a


@pytest.mark.parametrize("n", [4, 37, 300])
def test_random_matrices_scipys_assignment(n):
    a = np.random.default_rng(n).standard_normal((n, n))
    _assert_exact_and_certified(a, structured_solve(a))


@pytest.mark.parametrize("seed", range(3))
def test_many_rows_wanting_the_same_columns(seed):
    rng = np.random.default_rng(10 + seed)
    a = _popular(400, rng)
    assert len(np.unique(a.argmax(axis=1))) <= 0.06 * 400  # the structure the solver is for
    sol = structured_solve(a, opts=RoughOptions(k=32))
    _assert_exact_and_certified(a, sol)
    assert sol.certificate.candidates < 400 * 400 / 8  # a core, not the whole matrix


def test_one_column_wanted_by_every_row_and_rank_one():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((200, 200)) * 0.01
    a[:, 17] += 5.0  # every row's best column is column 17
    _assert_exact_and_certified(a, structured_solve(a))
    x, y = np.sort(rng.random(150)) + 0.1, np.sort(rng.random(150)) + 0.1
    outer = np.outer(x, y)[rng.permutation(150)]  # rank one: a unique optimum, every row wants the last column
    _assert_exact_and_certified(outer, _structured_or_fallback(outer))


def test_ties_and_rank_deficient_matrices_reach_scipys_objective():
    rng = np.random.default_rng(4)
    ties = rng.integers(0, 3, size=(150, 150)).astype(np.float64)  # many optima
    _assert_exact_and_certified(ties, structured_solve(ties), same_assignment=False)
    rows = np.repeat(rng.standard_normal((120, 1)), 120, axis=1)  # constant rows: every permutation ties
    rows[:, :3] += 0.5
    _assert_exact_and_certified(rows, _structured_or_fallback(rows), same_assignment=False)
    low = rng.integers(-2, 3, size=(160, 2)) @ rng.integers(-2, 3, size=(2, 160))  # rank 2, integer: ties
    _assert_exact_and_certified(low.astype(np.float64), _structured_or_fallback(low), same_assignment=False)
    with pytest.raises(CoreFailure):
        structured_solve(np.full((30, 30), 1.5))  # constant: left to the dense solvers
    with pytest.raises(ValueError, match="square"):
        structured_solve(np.zeros((3, 5)))


def test_warm_from_the_previous_duals_along_a_growing_sum():
    """Consecutive FGMT costs: each the previous plus one more pair's; every solve warm from the
    previous one's duals and assignment, as solve_lap chains them through a LapWarm."""
    rng = np.random.default_rng(5)
    a, prev = np.zeros((300, 300)), None
    for _ in range(4):
        a = a + _popular(300, rng)
        sol = structured_solve(a, *((prev.v, prev.cols) if prev is not None else (None, None)), opts=RoughOptions(k=32))
        _assert_exact_and_certified(a, sol)
        prev = sol


def test_solve_lap_sends_low_spread_matrices_to_it_and_records_the_proof():
    rng = np.random.default_rng(6)
    warm, proofs, a = LapWarm(), LapProofs(), np.zeros((1024, 1024))
    for step in range(2):
        a = a + _popular(1024, rng, popular=8)
        res = solve_lap_result(a, warm)
        assert res.solver == "structured" and res.certificate.holds
        assert (res.cols == _scipy(a)).all()
        assert warm.cols is res.cols and warm.prices is res.prices and warm.fits(1024)
        proofs.add(res, _objective(a, res.cols))
        assert proofs.certified == step + 1 and proofs.rounds >= step + 1 and proofs.unproven == 0


def test_the_check_rejects_wrong_duals_and_a_wrong_assignment(monkeypatch):
    rng = np.random.default_rng(7)
    a = _popular(200, rng)
    sol = structured_solve(a)
    span = float(a.max() - a.min())
    v = sol.v.copy()
    v[sol.cols[3]] -= 1e-3 * span  # one price too low: entries of that column now beat the duals
    assert check_duals(a, sol.cols, sol.u, v)[0] > 1e-4 * span
    u = sol.u.copy()
    u[3] -= 1e-3 * span  # one row's dual too low
    assert check_duals(a, sol.cols, u, sol.v)[0] > 1e-4 * span
    wrong = sol.cols.copy()
    wrong[[0, 1]] = wrong[[1, 0]]
    assert _objective(a, wrong) < _objective(a, sol.cols)  # a worse assignment: no duals fit both
    assert check_duals(a, wrong, sol.u, sol.v)[1] > TOL * span
    # a sparse solver that returned the worse assignment: the dual recovery finds the negative cycle
    monkeypatch.setattr(lc, "_sparse_solve", lambda a_, lin, prices: wrong)
    lin = np.union1d(np.arange(200) * 200 + sol.cols, np.arange(200) * 200 + wrong)
    with pytest.raises(CoreFailure, match="negative cycle"):
        certify_core(a, lin, sol.v, span)


def test_a_core_missing_the_optimum_is_repaired():
    """A core of one entry per row (a wrong permutation's): the dense check finds violators, the
    repair rounds add them, and the answer is still scipy's, certified."""
    rng = np.random.default_rng(8)
    a = _popular(250, rng)
    n, span = 250, float(a.max() - a.min())
    sol = certify_core(a, np.arange(n) * n + rng.permutation(n), np.zeros(n), span)
    assert sol.certificate.rounds >= 2 and sol.certificate.violations[0] > 0
    _assert_exact_and_certified(a, sol)


def test_price_war_is_reported_and_solve_lap_still_exact():
    rng = np.random.default_rng(9)
    n = 1024
    alike = np.tile(np.sort(rng.random(n)), (n, 1)) + 1e-9 * rng.random((n, n))  # rows sorted alike
    with pytest.raises(PriceWar):
        rough_auction(alike, float(alike.max() - alike.min()), opts=RoughOptions(bids_per_row=2))
    res = solve_lap_result(alike)
    assert res.solver in ("certified", "structured") and res.certificate.holds
    ref = _scipy(alike)
    assert _objective(alike, ref) - _objective(alike, res.cols) <= res.gap_bound + 1e-12 * abs(_objective(alike, ref))


def test_row_lists_hold_each_rows_best_and_bound_the_rest():
    rng = np.random.default_rng(10)
    a, p = rng.standard_normal((70, 90)), rng.random(90)
    cand, bound = row_lists(a, p, 5, rows=16)
    red = a - p
    for i in range(70):
        order = np.sort(red[i])[::-1]
        assert set(cand[i].tolist()) == set(np.argsort(-red[i])[:5].tolist())
        assert bound[i] == order[5]


def _drifting(n, steps, rng):
    """Matrices like FGMT's consecutive costs: each the one before plus a smaller new term."""
    a = _popular(n, rng)
    out = [a]
    for _ in range(steps - 1):
        a = a + 0.3 * _popular(n, rng)
        out.append(a)
    return out


def test_warm_solves_from_the_previous_duals_are_scipys_and_certified(monkeypatch):
    """Warm from the solve before, the core is each row's best columns under its duals (no auction:
    it fails if called after the first solve): every answer is scipy's with a certificate on every
    entry, through solve_lap_result's LapWarm."""
    import transfer.lap_structured as ls

    rng = np.random.default_rng(21)
    warm = LapWarm()
    for t, a in enumerate(_drifting(1024, 4, rng)):
        if t == 1:
            monkeypatch.setattr(ls, "rough_auction", lambda *a, **k: pytest.fail("the warm solve ran the auction"))
        res = solve_lap_result(a.astype(np.float32), warm)
        assert res.solver == "structured" and res.certificate.holds
        assert (res.cols == _scipy(a.astype(np.float32).astype(np.float64))).all()
        assert warm.prices is res.prices and (warm.cols == res.cols).all()


def test_a_warm_start_from_another_matrix_still_gives_the_exact_answer():
    """Prices and a start that belong to an unrelated matrix: the warm core gives up or repairs,
    the answer is still scipy's and certified."""
    rng = np.random.default_rng(22)
    a = _popular(300, rng)
    bad_prices, bad_start = 50.0 * rng.standard_normal(300), rng.permutation(300)
    _assert_exact_and_certified(a, structured_solve(a, bad_prices, bad_start))


def test_the_warm_core_gives_up_when_its_core_keeps_growing():
    rng = np.random.default_rng(23)
    a = _popular(300, rng)
    span = float(a.max() - a.min())
    from transfer.lap_structured import warm_core_solve

    with pytest.raises(CoreFailure, match="rounds|grew"):
        warm_core_solve(a, 50.0 * rng.standard_normal(300), rng.permutation(300), span, k=2, max_rounds=1)
