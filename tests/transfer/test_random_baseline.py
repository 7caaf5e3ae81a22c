"""The random-permutation control: a registered method like the others, seeded, fixed over t, and
exactly theta_2^0 + pi(theta_1^t - theta_1^0) for the permutation it records."""

from __future__ import annotations

import torch
from test_methods import MLP, record, run, tiny_data

import permgraph
from permgraph.apply import apply
from transfer.methods import get_method, label, method_names
from transfer.store import RunStore
from transfer.trajectory import Trajectory
from zoo.models import build


def test_random_is_registered_after_naive_and_oracle_as_a_control():
    assert method_names()[:5] == ["gmt", "fgmt", "naive", "oracle", "random"]
    assert label("random") == "Random π" and not get_method("random").needs_target


def test_random_permutation_is_seeded_fixed_and_applied_exactly(tmp_path):
    data = tiny_data((6,), 3)
    src = record(tmp_path / "src", MLP, 0, data)
    init = record(tmp_path / "tgt", MLP, 1, data).init()
    spec = permgraph.infer(build(MLP), (data.train[0][:2],))
    perms = {}
    for name, seed in (("a", 4), ("b", 4), ("c", 5)):
        run("random", src, init, data, tmp_path / name, linear=False, T=3, seed=seed)
        store = RunStore(tmp_path / name / ".state" / "random")
        perms[name] = [store.load_perm(t) for t in range(4)]
    (group,) = spec.free_groups
    first = perms["a"][0][group.name]
    assert not torch.equal(first, torch.arange(group.size)), "a random permutation, not the identity"
    assert all(torch.equal(p[group.name], first) for p in perms["a"]), "one permutation for every step"
    assert torch.equal(perms["b"][0][group.name], first), "the same seed gives the same permutation"
    assert not torch.equal(perms["c"][0][group.name], first), "another seed, another permutation"
    traj, theta1_0 = Trajectory(tmp_path / "a" / "random"), src.init()
    params = [n for n, _ in build(MLP).named_parameters()]
    for t in range(4):
        delta = {k: src.load(t)[k] - theta1_0[k] for k in params}
        moved = apply(spec, perms["a"][0], delta)
        for k in params:
            assert torch.equal(traj.load(t)[k], init[k] + moved[k]), (t, k)


def test_every_steps_permutation_is_saved_with_the_transferred_trajectory(tmp_path):
    from transfer.engine import load_permutations

    data = tiny_data((6,), 3)
    src = record(tmp_path / "src", MLP, 0, data)
    init = record(tmp_path / "tgt", MLP, 1, data).init()
    run("fgmt", src, init, data, tmp_path / "out", T=2)
    perms = load_permutations(tmp_path / "out" / "fgmt")
    store = RunStore(tmp_path / "out" / ".state" / "fgmt")
    assert len(perms) == 3
    for t, perm in enumerate(perms):
        assert perm.keys() == store.load_perm(t).keys()
        assert all(torch.equal(perm[g], store.load_perm(t)[g]) for g in perm)
