"""Warm-started assignment solves (transfer cost issue): the auction from a previous solve's prices and
assignment reaches the optimum, a bad start is ignored, and a transfer resumed after an interruption
takes the uninterrupted run's path (the warm starts are saved with every step)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from transfer.lap import LapWarm, auction_lap, auction_solve, solve_lap
from transfer.matching import Matcher


def low_rank(n: int, rank: int, seed: int) -> np.ndarray:
    """A gradient-like cost: low rank, most rows prefer the same few columns (the auction's case)."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n, rank)) * np.linspace(2.0, 0.1, rank)
    v = rng.standard_normal((n, rank)) * (1 + 4 * (rng.random(n) < 0.05))[:, None]
    return u @ v.T


def objective(a: np.ndarray, cols: np.ndarray) -> float:
    return float(a[np.arange(len(cols)), cols].sum())


def best(a: np.ndarray) -> float:
    rows, cols = linear_sum_assignment(a, maximize=True)
    return float(a[rows, cols].sum())


def test_warm_auction_reaches_the_optimum_of_the_next_matrix():
    n = 1024
    a1 = low_rank(n, 16, 0)
    a2 = a1 + 0.05 * low_rank(n, 16, 1)  # one more pair's worth of change
    cols1, prices1 = auction_solve(a1)
    assert objective(a1, cols1) == pytest.approx(best(a1), rel=1e-9, abs=1e-9)
    warm_cols, _ = auction_solve(a2, LapWarm(cols1, prices1))
    cold_cols = auction_lap(a2)
    assert objective(a2, warm_cols) == pytest.approx(best(a2), rel=1e-9, abs=1e-9)
    assert objective(a2, warm_cols) == pytest.approx(objective(a2, cold_cols), rel=1e-12, abs=1e-12)
    assert sorted(warm_cols.tolist()) == list(range(n))


def test_solve_lap_reads_and_replaces_the_warm_start():
    a = low_rank(1024, 8, 2)
    warm = LapWarm()
    first = solve_lap(a, warm=warm)
    assert warm.cols is not None and np.array_equal(warm.cols, first)
    assert warm.prices is not None and warm.prices.shape == (1024,)  # the auction solved it
    again = solve_lap(a, warm=warm)
    assert objective(a, again) == pytest.approx(objective(a, first), rel=1e-12)


@pytest.mark.parametrize(
    "cols, prices",
    [
        (np.zeros(1024, dtype=np.int64), np.zeros(1024)),  # not a permutation
        (np.arange(1024), np.full(1024, np.nan)),  # prices not finite
        (np.arange(10), np.zeros(10)),  # another size
        (None, None),
    ],
)
def test_a_start_that_does_not_fit_is_ignored(cols, prices):
    warm = LapWarm(cols, prices)
    assert not warm.fits(1024)
    a = low_rank(1024, 8, 3)
    assert np.array_equal(solve_lap(a, warm=warm), auction_lap(a)), "a cold solve, as without a start"


def test_the_matcher_warm_starts_only_when_asked():
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2))
    import permgraph

    spec = permgraph.infer(model, (torch.randn(2, 4),))
    state = model.state_dict()
    m = Matcher(spec).add(state, state)
    assert m.warm is None
    m.solve()
    m.warm = {}
    perm = m.solve()
    assert set(m.warm) == {g.name for g in spec.free_groups}
    assert torch.equal(perm["0.out"], torch.arange(6))


def test_certified_solve_from_the_previous_duals_and_the_auctions_honest_gap():
    """The engine's next matrix, certified from the last solve's duals, reaches scipy's optimum; the
    auction's prices bound its own gap to the optimum from above (transfer.lap.auction_gap)."""
    from transfer.lap import auction_gap
    from transfer.lap_certified import certified_solve

    n = 1024
    a1 = low_rank(n, 16, 3)
    a2 = a1 + 0.05 * low_rank(n, 16, 4)
    cols1, prices1 = auction_solve(a1)
    gap = auction_gap(a1, cols1, prices1)
    assert 0.0 <= best(a1) - objective(a1, cols1) <= gap + 1e-9 * abs(best(a1))
    first = certified_solve(a1, prices1, cols1)
    second = certified_solve(a2, first.v, first.cols)
    assert second.certificate.holds
    assert objective(a2, second.cols) == pytest.approx(best(a2), rel=1e-12)


def test_the_matcher_records_what_its_solves_prove():
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2))
    import permgraph

    spec = permgraph.infer(model, (torch.randn(2, 4),))
    torch.manual_seed(0)
    other = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2))
    m = Matcher(spec).add(model.state_dict(), other.state_dict())
    m.solve(init=None)
    assert sum(m.stats.proofs.solves.values()) == m.stats.lsa_calls and m.stats.proofs.certified == 0
    m.certify = True
    m.solve(init=None)
    assert m.stats.proofs.certified == m.stats.lsa_calls > 0 and m.stats.proofs.unproven == 0


def test_results_json_carries_what_the_solves_proved(tmp_path, monkeypatch):
    import json

    from test_methods import MLP, record, tiny_data

    from transfer.engine import TransferEngine
    from transfer.options import TransferOptions
    from zoo.models import build

    monkeypatch.setenv("PERMGRAPH_CACHE", str(tmp_path / "cache"))
    data = tiny_data((6,), 3)
    src, init = record(tmp_path / "src", MLP, 0, data), record(tmp_path / "tgt", MLP, 1, data).init()
    engine = TransferEngine(build(MLP), data, TransferOptions(T=2, grad_batches=2, batch_size=16, progress=False))
    res = engine.run("fgmt", src, init, out=tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "results.json").read_text())["methods"]["fgmt"]
    proofs = saved["lap_proofs"]
    assert proofs == res["lap_proofs"] and sum(proofs["solves"].values()) == saved["lsa_calls"] > 0


def test_where_the_auction_gives_up_the_certified_solve_takes_over():
    """Rows sorted alike (the sorted start's matrices) make the auction fight price wars until its
    bid budget runs out; the certified core solve then answers, within its proven gap of scipy."""
    rng = np.random.default_rng(0)
    n = 1024
    a = np.tile(np.sort(rng.random(n)), (n, 1)) + 1e-9 * rng.random((n, n))
    from transfer.lap import solve_lap_result

    res = solve_lap_result(a)
    assert res.solver == "certified" and res.certificate.holds
    assert sorted(res.cols.tolist()) == list(range(n))
    assert -1e-12 * abs(best(a)) <= best(a) - objective(a, res.cols) <= res.gap_bound + 1e-12 * abs(best(a))
