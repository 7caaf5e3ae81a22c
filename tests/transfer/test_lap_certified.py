"""The certified core solver (transfer.lap_certified): scipy's objective, an honest certificate."""

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from transfer.lap import LapProofs, solve_lap_result
from transfer.lap_certified import TOL, certified_solve, check_duals


def _objective(a, cols):
    return float(np.asarray(a, dtype=np.float64)[np.arange(len(cols)), cols].sum())


def _scipy(a):
    return _objective(a, linear_sum_assignment(np.asarray(a, dtype=np.float64), maximize=True)[1])


def _assert_certified(a, sol):
    a64 = np.asarray(a, dtype=np.float64)
    n = a64.shape[0]
    assert sorted(sol.cols.tolist()) == list(range(n))
    span = float(a64.max() - a64.min())
    worst, slack = check_duals(a64, sol.cols, sol.u, sol.v)
    assert sol.certificate.holds
    assert worst <= TOL * span + 1e-300 and slack <= 1e-9 * max(span, 1e-300)
    ref = _scipy(a64)
    assert abs(_objective(a64, sol.cols) - ref) <= 1e-12 * max(abs(ref), span, 1e-300)
    assert _objective(a64, sol.cols) >= ref - n * TOL * span - 1e-12 * abs(ref)


def _popular(n, rng, popular=5):
    """Low rank with a few popular columns, like FGMT's gradient costs."""
    x, y = rng.standard_normal((n, 3)), rng.standard_normal((n, 3))
    a = x @ y.T
    a[:, rng.choice(n, popular, replace=False)] += 3.0
    return a


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [3, 40, 257])
def test_random_matrices_reach_scipys_objective(n, dtype):
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, n)).astype(dtype)
    sol = certified_solve(a)
    _assert_certified(a, sol)
    # a generic random matrix has one optimum: the same assignment as scipy
    assert (sol.cols == linear_sum_assignment(a.astype(np.float64), maximize=True)[1]).all()


@pytest.mark.parametrize("seed", range(3))
def test_structured_matrices_with_popular_columns(seed):
    rng = np.random.default_rng(100 + seed)
    a = _popular(300, rng)
    sol = certified_solve(a, k=4, repair_k=4)
    _assert_certified(a, sol)
    assert sol.certificate.candidates < 300 * 300 / 4  # a core, not the whole matrix


def test_degenerate_ties_constant_rows_and_constant_matrix():
    rng = np.random.default_rng(7)
    ties = rng.integers(0, 3, size=(120, 120)).astype(np.float64)  # many optima
    _assert_certified(ties, certified_solve(ties))
    rows = np.repeat(rng.standard_normal((120, 1)), 120, axis=1)  # constant rows: every permutation ties
    rows[:, :3] += 0.5
    _assert_certified(rows, certified_solve(rows))
    const = np.full((50, 50), 2.5)
    sol = certified_solve(const)
    assert sorted(sol.cols.tolist()) == list(range(50)) and sol.certificate.holds
    assert check_duals(const, sol.cols, sol.u, sol.v) == (0.0, 0.0)


def test_repair_loop_runs_where_the_first_core_cannot_hold_the_optimum():
    """Rank one with distinct positive factors: the sorted matching is the only optimum
    (rearrangement inequality), but with k = 1 every row's best column is the same one and every
    column's best row too, so the first core holds only the start and that row and column."""
    rng = np.random.default_rng(3)
    n = 200
    alpha, beta = rng.permutation(n) + 1.0, rng.permutation(n) + 1.0
    a = np.outer(alpha, beta)
    start = rng.permutation(n)
    sol = certified_solve(a, start=start, k=1, repair_k=1)
    optimum = np.empty(n, dtype=np.int64)
    optimum[np.argsort(alpha)] = np.argsort(beta)
    assert sol.certificate.rounds >= 2 and sol.certificate.violations[0] > 0
    assert (sol.cols == optimum).all()
    _assert_certified(a, sol)


def test_the_certificate_is_honest():
    rng = np.random.default_rng(11)
    a = _popular(150, rng)
    sol = certified_solve(a)
    span = float(a.max() - a.min())
    worst, slack = check_duals(a, sol.cols, sol.u, sol.v)
    assert worst <= TOL * span and slack <= TOL * span
    v = sol.v.copy()
    v[sol.cols[0]] -= 1e-3 * span  # a column's price too low: some entry now beats its duals
    assert check_duals(a, sol.cols, sol.u, v)[0] > 1e-4 * span
    u = sol.u.copy()
    u[5] -= 1e-3 * span
    assert check_duals(a, sol.cols, u, sol.v)[0] > 1e-4 * span
    wrong = sol.cols.copy()
    wrong[[0, 1]] = wrong[[1, 0]]  # the duals of the optimum do not fit another assignment
    assert check_duals(a, wrong, sol.u, sol.v)[1] > 0.0 or _objective(a, wrong) == _objective(a, sol.cols)


def test_rectangular_is_refused():
    with pytest.raises(ValueError, match="square"):
        certified_solve(np.zeros((3, 4)))


def test_solve_lap_certify_and_the_proofs_record():
    rng = np.random.default_rng(5)
    a = _popular(200, rng)
    res = solve_lap_result(a, certify=True)
    assert res.solver.endswith("+certified") and res.certificate is not None and res.certificate.holds
    assert abs(_objective(a, res.cols) - _scipy(a)) <= 1e-12 * abs(_scipy(a))
    proofs = LapProofs()
    proofs.add(res, _objective(a, res.cols))
    proofs.add(solve_lap_result(a), _objective(a, res.cols))
    assert proofs.certified == 1 and sum(proofs.solves.values()) == 2
    back = LapProofs.from_json(proofs.to_json())
    assert back == proofs
    assert LapProofs.from_json({"solves": "x"}) == LapProofs() and LapProofs.from_json(None) == LapProofs()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_dense_checks_float32_screen_finds_the_exact_maximum_and_every_violator(dtype, offset):
    """The screened check computes in float32 and rechecks near entries in float64: its maximum and
    its violators must be exactly those of a float64 pass, with duals far from zero too (``offset``:
    large duals make float32's rounding large against the span) and entries below float32's
    resolution (float64 input)."""
    from transfer.lap_certified import dense_check

    rng = np.random.default_rng(5)
    n = 300
    a = (rng.standard_normal((n, n)) * 1e-3 + 1e-9 * rng.standard_normal((n, n))).astype(dtype)
    sol = certified_solve(a.astype(np.float64))
    u, v = sol.u - offset, sol.v + offset
    for shift in (0.0, 1e-12, 3e-4):  # none, tiny and large violations of one column's dual
        v2 = v.copy()
        v2[sol.cols[7]] -= shift
        red = a.astype(np.float64) - u[:, None] - v2[None, :]
        tol = 1e-13
        worst, bad, near = dense_check(torch.from_numpy(a), u, v2, tol, k=3)
        assert worst == red.max()
        assert sorted(bad.tolist()) == sorted(np.flatnonzero(red > tol).tolist())
        assert set(np.unique(bad // n).tolist()) == set(np.unique(near // n).tolist())
