"""Where the matcher keeps coupled pairs: files give the same bits as RAM, with memory that does not
grow with the number of pairs; cached and extended terms equal fresh ones; the fast row and gather
paths equal permgraph's."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import permgraph
from permgraph.apply import group_rows
from tests.transfer.test_matching import random_state, residual_spec
from transfer.matching import Matcher
from transfer.pairs import DiskPairs, MemoryPairs
from transfer.terms import gather_axis as _gather
from transfer.terms import member_rows as _rows

ROOT = Path(__file__).resolve().parents[2]


def _pairs(spec, count: int, seed: int = 0) -> list[tuple[dict, dict]]:
    return [(random_state(spec, seed + 2 * k, torch.float32), random_state(spec, seed + 2 * k + 1, torch.float32))
            for k in range(count)]


def _filled(spec, pairs, store) -> Matcher:
    m = Matcher(spec, pairs=store)
    for k, (t, s) in enumerate(pairs):
        m.add(t, s, weight=1.0 + 0.25 * k)
    return m


def test_disk_pairs_give_bit_identical_costs_objectives_and_permutations(tmp_path):
    spec = residual_spec(d_in=5, width=16, inner=12, blocks=3, d_out=4)
    pairs = _pairs(spec, 9)
    mem, disk = _filled(spec, pairs, MemoryPairs()), _filled(spec, pairs, DiskPairs(tmp_path / "pairs"))
    assert len(list((tmp_path / "pairs").glob("pair_*.safetensors"))) == 9
    for kw in ({"init": [None, "sorted"], "seed": 3}, {"init": None, "restarts": 2, "seed": 1}):
        p_mem, p_disk = mem.solve(**kw), disk.solve(**kw)
        assert all(torch.equal(p_mem[g], p_disk[g]) for g in p_mem)
        assert mem.stats.objective == disk.stats.objective
        assert mem.stats.objectives == disk.stats.objectives
    perm = permgraph.random_permutation(spec, torch.Generator().manual_seed(7))
    for g in mem.groups:
        assert torch.equal(mem._cost(g, perm), disk._cost(g, perm))
        assert torch.equal(mem._sorted_cost(g), disk._sorted_cost(g))
    assert mem.objective(perm) == disk.objective(perm)


def test_cached_and_extended_terms_equal_fresh_ones():
    """FGMT adds a pair, then solves: terms are extended by the new pair, not re-summed; the result
    must be the same tensor as a matcher that saw all pairs before its first solve."""
    spec = residual_spec(d_in=5, width=10, inner=8, blocks=2, d_out=3)
    pairs = _pairs(spec, 6, seed=50)
    grown = Matcher(spec, pairs=DiskPairs())
    for t, s in pairs[:3]:
        grown.add(t, s)
    grown.solve(init=[None, "sorted"])
    for t, s in pairs[3:]:
        grown.add(t, s)
    fresh_w = Matcher(spec)
    for t, s in pairs:
        fresh_w.add(t, s)
    perm = permgraph.random_permutation(spec, torch.Generator().manual_seed(1))
    for g in grown.groups:
        assert torch.equal(grown._sorted_cost(g), fresh_w._sorted_cost(g))
        assert torch.equal(grown._cost(g, perm), fresh_w._cost(g, perm))
        assert torch.equal(grown._cost(g, perm), fresh_w._cost(g, perm))  # now from the cache


def test_held_bytes_do_not_grow_with_the_number_of_pairs():
    spec = residual_spec(d_in=8, width=32, inner=24, blocks=2, d_out=4)
    held = {}
    for store in ("memory", "disk"):
        for count in (5, 40):
            m = _filled(spec, _pairs(spec, count), MemoryPairs() if store == "memory" else DiskPairs())
            m.solve(init=[None, "sorted"])
            held[store, count] = m.held_bytes
    assert held["disk", 5] == held["disk", 40]
    assert held["memory", 40] > held["memory", 5] + 30 * 4 * 2 * (2 * 32 * 24)  # every pair kept in RAM


_RSS_CHILD = textwrap.dedent(
    """
    import json, sys, torch
    from permgraph.spec import Group, Member, PermSpec
    from transfer.matching import Matcher
    from transfer.pairs import DiskPairs, MemoryPairs

    def plain(p, axis, n):
        return Member(p, axis, n, sizes=(n,), strides=(1,), group_dim=0)

    n = 512
    shapes = {"a": (n, 64), "b": (n, n), "c": (64, n)}
    spec = PermSpec(groups=(Group("g1", n, (plain("a", 0, n), plain("b", 0, n))),
                            Group("g2", n, (plain("b", 1, n), plain("c", 1, n)))), param_shapes=shapes)
    count, store = int(sys.argv[1]), sys.argv[2]
    m = Matcher(spec, pairs=DiskPairs() if store == "disk" else MemoryPairs())
    gen = torch.Generator().manual_seed(0)
    pair = lambda: {k: torch.randn(*s, generator=gen) for k, s in shapes.items()}
    def rss_kib():  # the resident set now (not the peak: imports may have peaked higher already)
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    m.add(pair(), pair()); m.solve(init=None, max_iter=1)
    base = rss_kib()
    for _ in range(count - 1):
        m.add(pair(), pair())
    m.solve(init=None, max_iter=1)  # one sweep streams every pair through both groups' costs
    print(json.dumps({"growth_kib": rss_kib() - base}))
    """
)


def _rss_growth(count: int, store: str) -> int:
    out = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(count), store], capture_output=True, text=True,
                         cwd=ROOT, check=True, env={"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    return json.loads(out.stdout.strip().splitlines()[-1])["growth_kib"]


def test_resident_memory_of_disk_pairs_does_not_grow_with_the_number_of_pairs():
    """60 pairs of a coupled 512 x 512 tensor are 120 MiB (target + source): held in RAM they raise
    the resident set by about that much; streamed from files, by a few MiB whatever the count."""
    pair_kib = 2 * 512 * 512 * 4 // 1024
    memory, disk = _rss_growth(60, "memory"), _rss_growth(60, "disk")
    assert memory > 40 * pair_kib, (disk, memory)
    assert disk < 12 * pair_kib, (disk, memory)  # measured: 0.5 MiB of 120


def test_fast_rows_and_gathers_equal_permgraphs():
    """Block-expanded (flatten after conv), plain, and per-block members: same tensors, bit for bit."""
    model = nn.Sequential(nn.Conv2d(2, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 5), nn.ReLU(),
                          nn.Linear(5, 3))
    spec = permgraph.infer(model, (torch.randn(1, 2, 6, 6),))
    vit_model, vit_inputs = _vit()
    vit = permgraph.infer(vit_model, vit_inputs, per_block=True)
    state = model.state_dict()
    members = [(m, state[m.param]) for g in spec.free_groups for m in g.members]
    members += [(m, torch.randn(*vit.param_shapes[m.param])) for g in vit.free_groups for m in g.members]
    assert any(m.sizes[1:] == (4, 4) for m, _ in members) and any(m.index_dim is not None for m, _ in members)
    gen = torch.Generator().manual_seed(0)
    for m, x in members:
        assert torch.equal(_rows(x, m), group_rows(x, m)), m.describe()
        for axis in range(x.dim()):
            index = torch.randperm(x.shape[axis], generator=gen)
            assert torch.equal(_gather(x, axis, index), x.index_select(axis, index))
    x = torch.randn(3, 6 * 16, 2)
    blocks = torch.randperm(6, generator=gen)
    index = (blocks[:, None] * 16 + torch.arange(16)).reshape(-1)
    assert torch.equal(_gather(x, 1, index), x.index_select(1, index))


def _vit():
    from zoo.models import build, example_inputs

    torch.manual_seed(0)
    model = build("zoo:vit_tiny")
    return model, example_inputs("zoo:vit_tiny")


def test_disk_pairs_clean_up_their_temporary_folder():
    pairs = DiskPairs()
    pairs.append({"w": torch.ones(2)}, {"w": torch.ones(2)})
    folder = pairs.folder
    assert folder.exists()
    del pairs
    assert not folder.exists()


@pytest.mark.parametrize("store", ["memory", "disk"])
def test_pairs_read_back_in_order_from_any_start(store, tmp_path):
    pairs = MemoryPairs() if store == "memory" else DiskPairs(tmp_path)
    for k in range(4):
        pairs.append({"w": torch.full((2,), float(k)), "v": torch.zeros(1)}, {"w": torch.full((2,), -float(k))})
    got = [(t["w"][0].item(), s["w"][0].item(), sorted(t)) for t, s in pairs.read(["w", "v"], start=1)]
    assert got == [(1.0, -1.0, ["v", "w"]), (2.0, -2.0, ["v", "w"]), (3.0, -3.0, ["v", "w"])]
