"""Matcher: index convention, brute-force optimality, planted-permutation recovery, caching."""

from __future__ import annotations

import itertools

import pytest
import torch

from permgraph.apply import apply, random_permutation
from permgraph.spec import Group, Member, PermSpec
from transfer.matching import Matcher, permuted_distance, weight_matching


def plain(param: str, axis: int, shape: tuple[int, ...]) -> Member:
    n = shape[axis]
    return Member(param, axis, n, sizes=(n,), strides=(1,), group_dim=0)


def mlp_spec(dims: list[int], bias: bool = True) -> PermSpec:
    """Hand-written spec of Linear(dims[0], dims[1]) -> ... with one group per hidden layer."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(len(dims) - 1):
        shapes[f"l{i}.weight"] = (dims[i + 1], dims[i])
        if bias:
            shapes[f"l{i}.bias"] = (dims[i + 1],)
    groups = []
    for i in range(len(dims) - 2):
        members = [plain(f"l{i}.weight", 0, shapes[f"l{i}.weight"])]
        if bias:
            members.append(plain(f"l{i}.bias", 0, shapes[f"l{i}.bias"]))
        members.append(plain(f"l{i + 1}.weight", 1, shapes[f"l{i + 1}.weight"]))
        groups.append(Group(f"h{i}", dims[i + 1], tuple(members)))
    return PermSpec(groups=tuple(groups), param_shapes=shapes)


def residual_spec(d_in: int, width: int, inner: int, blocks: int, d_out: int) -> PermSpec:
    """x -> in -> [h + b{k}.w2 relu(b{k}.w1 h)]*blocks -> out, no biases: a residual stream group
    plus one inner group per block, the case where coordinate descent from identity gets stuck."""
    shapes = {"in.weight": (width, d_in), "out.weight": (d_out, width)}
    stream = [plain("in.weight", 0, shapes["in.weight"]), plain("out.weight", 1, shapes["out.weight"])]
    groups = []
    for k in range(blocks):
        shapes[f"b{k}.w1"] = (inner, width)
        shapes[f"b{k}.w2"] = (width, inner)
        stream += [plain(f"b{k}.w1", 1, shapes[f"b{k}.w1"]), plain(f"b{k}.w2", 0, shapes[f"b{k}.w2"])]
        groups.append(
            Group(
                f"inner{k}",
                inner,
                (plain(f"b{k}.w1", 0, shapes[f"b{k}.w1"]), plain(f"b{k}.w2", 1, shapes[f"b{k}.w2"])),
            )
        )
    groups.insert(0, Group("stream", width, tuple(stream)))
    return PermSpec(groups=tuple(groups), param_shapes=shapes)


def random_state(spec: PermSpec, seed: int, dtype=torch.float64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(*s, generator=g, dtype=dtype) for k, s in spec.param_shapes.items()}


def inner(a: dict, b: dict) -> float:
    return sum(float((a[k].double() * b[k].double()).sum()) for k in a)


def all_perms(spec: PermSpec):
    names = [g.name for g in spec.free_groups]
    choices = [list(itertools.permutations(range(g.size))) for g in spec.free_groups]
    for combo in itertools.product(*choices):
        yield {n: torch.tensor(p) for n, p in zip(names, combo)}


def test_recovered_perm_maps_source_onto_target():
    """Convention check: solve() returns p with apply(spec, p, source) == target (gather form)."""
    spec = mlp_spec([7, 9, 6, 3])
    source = random_state(spec, 0)
    planted = random_permutation(spec, torch.Generator().manual_seed(1))
    target = apply(spec, planted, source)
    perm = Matcher(spec).add(target, source).solve()
    for name in planted:
        assert torch.equal(perm[name], planted[name])
    assert permuted_distance(spec, perm, target, source) < 1e-9


def test_single_group_matches_brute_force_with_one_lsa():
    spec = mlp_spec([3, 5, 2])
    m = Matcher(spec)
    for seed in range(3):  # three unrelated pairs
        m.add(random_state(spec, 10 + seed), random_state(spec, 20 + seed))
    perm = m.solve()
    assert m.stats.lsa_calls == 1, "one group: the second sweep must be skipped, not re-solved"
    pairs = [(random_state(spec, 10 + s), random_state(spec, 20 + s)) for s in range(3)]
    best = max(sum(inner(t, apply(spec, p, s)) for t, s in pairs) for p in all_perms(spec))
    got = sum(inner(t, apply(spec, perm, s)) for t, s in pairs)
    assert got == pytest.approx(best, rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_two_groups_reach_brute_force_optimum(seed):
    """A 3-layer MLP of width 4: 24 x 24 joint permutations, enumerated."""
    spec = mlp_spec([3, 4, 4, 2])
    target, source = random_state(spec, 100 + seed), random_state(spec, 200 + seed)
    m = Matcher(spec).add(target, source)
    values = {tuple(tuple(p.tolist()) for p in q.values()): inner(target, apply(spec, q, source)) for q in all_perms(spec)}
    perm = m.solve(restarts=30, seed=seed)
    got = inner(target, apply(spec, perm, source))
    assert got == pytest.approx(max(values.values()), rel=1e-12)
    # and plain coordinate descent ends at a coordinate-wise optimum
    perm = m.solve(seed=seed)
    got = inner(target, apply(spec, perm, source))
    for name in perm:
        for alt in itertools.permutations(range(4)):
            q = dict(perm, **{name: torch.tensor(alt)})
            assert inner(target, apply(spec, q, source)) <= got + 1e-12


def test_objective_equals_inner_product_up_to_a_constant():
    spec = mlp_spec([3, 4, 4, 2])
    target, source = random_state(spec, 1), random_state(spec, 2)
    m = Matcher(spec).add(target, source, weight=0.5).add(source, target, weight=2.0)
    p1, p2 = random_permutation(spec, torch.Generator().manual_seed(3)), random_permutation(spec)
    direct = [0.5 * inner(target, apply(spec, p, source)) + 2.0 * inner(source, apply(spec, p, target)) for p in (p1, p2)]
    assert m.objective(p1) - m.objective(p2) == pytest.approx(direct[0] - direct[1], rel=1e-9)


@pytest.mark.parametrize("seed", range(20))
def test_weight_matching_recovers_planted_permutation_on_residual_net(seed):
    spec = residual_spec(d_in=6, width=12, inner=10, blocks=3, d_out=4)
    source = random_state(spec, seed)
    planted = random_permutation(spec, torch.Generator().manual_seed(1000 + seed))
    target = apply(spec, planted, source)
    perm = weight_matching(spec, target, source, seed=seed)
    for name in planted:
        assert torch.equal(perm[name], planted[name]), name


def test_restarts_help_where_identity_start_gets_stuck():
    """Coordinate descent from the identity misses planted permutations on residual nets
    (Git Re-Basin #8: 10/100 at d=30/50); random restarts, or the sorted start, recover them."""
    spec = residual_spec(d_in=2, width=50, inner=50, blocks=2, d_out=2)
    plain_hits = restart_hits = 0
    for seed in range(6):
        source = random_state(spec, seed)
        planted = random_permutation(spec, torch.Generator().manual_seed(1000 + seed))
        target = apply(spec, planted, source)
        m = Matcher(spec).add(target, source)
        plain_hits += all(torch.equal(m.solve(init=None, seed=seed)[n], planted[n]) for n in planted)
        restart_hits += all(torch.equal(m.solve(seed=seed, restarts=5)[n], planted[n]) for n in planted)
    assert plain_hits < 6, "the identity start should get stuck on some of these"
    assert restart_hits == 6


def test_warm_start_and_skip_logic():
    spec = mlp_spec([5, 6, 6, 3])
    source = random_state(spec, 0)
    planted = random_permutation(spec, torch.Generator().manual_seed(5))
    target = apply(spec, planted, source)
    m = Matcher(spec).add(target, source)
    perm = m.solve(init=planted)
    assert all(torch.equal(perm[n], planted[n]) for n in planted)
    # from the optimum each group is solved once; that sweep changes nothing, so it is the last
    assert m.stats.lsa_calls == 2 and m.stats.sweeps == 1


def test_bad_pairs_raise_clear_errors():
    spec = mlp_spec([3, 4, 2])
    good = random_state(spec, 0)
    bad = dict(good, **{"l0.weight": torch.zeros(5, 3, dtype=torch.float64)})
    with pytest.raises(ValueError, match="another|architecture"):
        Matcher(spec).add(bad, good)
    with pytest.raises(ValueError, match="shares no tensor"):
        Matcher(spec).add({"x": torch.zeros(1)}, {"x": torch.zeros(1)})
    with pytest.raises(RuntimeError, match="before any add"):
        Matcher(spec).solve()
    nan = dict(good, **{"l0.bias": torch.full((4,), float("nan"), dtype=torch.float64)})
    with pytest.raises(FloatingPointError):
        Matcher(spec).add(nan, good).solve()


def test_auction_matches_scipy_on_a_low_rank_matrix_and_falls_back_on_price_wars():
    """The large-n solver: same optimum as scipy on the hard (low-rank) case it exists for."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    from transfer.lap import AUCTION_MIN_SIZE, auction_lap, solve_lap

    g = torch.Generator().manual_seed(0)
    n = AUCTION_MIN_SIZE
    a = (torch.randn(n, 8, generator=g) @ torch.randn(8, n, generator=g)).double().numpy()
    a += 1e-3 * torch.randn(n, n, generator=g).double().numpy()
    rows, cols = linear_sum_assignment(a, maximize=True)
    p = solve_lap(a)
    assert sorted(p.tolist()) == list(range(n))
    assert a[np.arange(n), p].sum() == pytest.approx(a[rows, cols].sum(), rel=1e-9)
    same_rows = np.repeat(np.arange(n, dtype=float)[:, None], n, axis=1)  # every assignment optimal
    with pytest.raises(RuntimeError):
        auction_lap(same_rows, max_bids_per_row=5)
    assert sorted(solve_lap(same_rows).tolist()) == list(range(n))


@pytest.fixture(scope="module")
def resnet20():
    import permgraph
    from zoo.models import build

    model = build("zoo:resnet20?width=1")
    return model, permgraph.infer(model, (torch.randn(2, 3, 8, 8),))


@pytest.mark.parametrize("seed", range(20))
def test_weight_matching_recovers_planted_permutation_on_inferred_resnet20(resnet20, seed):
    """Default init (BN weight 1, bias 0, running stats 0/1): only the conv weights carry signal,
    the case where Git Re-Basin's coordinate descent recovers 10 of 100."""
    from zoo.models import build

    _, spec = resnet20
    torch.manual_seed(seed)
    source = build("zoo:resnet20?width=1").state_dict()
    planted = random_permutation(spec, torch.Generator().manual_seed(2000 + seed))
    target = apply(spec, planted, source)
    perm = weight_matching(spec, target, source, seed=seed)
    assert all(torch.equal(perm[n], planted[n]) for n in planted)
    assert permuted_distance(spec, perm, target, source) < 1e-5
