"""Matching over per-block groups (per-head dims, per-GroupNorm-group channels): planted
permutations are recovered and the matcher agrees with brute force."""

from __future__ import annotations

import itertools

import torch
from torch import nn

import permgraph
from transfer.matching import Matcher, weight_matching
from zoo.models import build, example_inputs


def test_weight_matching_recovers_planted_per_head_permutation():
    torch.manual_seed(0)
    model = build("zoo:vit_tiny")
    spec = permgraph.infer(model, example_inputs("zoo:vit_tiny"), per_block=True)
    assert any(g.indexed_by for g in spec.free_groups)
    state = model.state_dict()
    for seed in range(3):
        planted = permgraph.random_permutation(spec, torch.Generator().manual_seed(seed))
        target = permgraph.apply(spec, planted, state)
        found = weight_matching(spec, target, state)
        moved = permgraph.apply(spec, found, state)
        assert all(torch.allclose(moved[k], target[k]) for k in target), seed


def test_per_block_matcher_equals_brute_force_on_a_tiny_group_norm_net():
    """2 norm groups x 2 channels: every (outer, per-block inner) permutation enumerated."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 1), nn.GroupNorm(2, 4), nn.ReLU(), nn.Conv2d(4, 2, 1))
    spec = permgraph.infer(model, (torch.randn(1, 2, 3, 3),), per_block=True)
    outer = next(g for g in spec.free_groups if not g.indexed_by)
    inner = next(g for g in spec.free_groups if g.indexed_by)
    a = model.state_dict()
    b = nn.Sequential(nn.Conv2d(2, 4, 1), nn.GroupNorm(2, 4), nn.ReLU(), nn.Conv2d(4, 2, 1)).state_dict()
    matcher = Matcher(spec).add(a, b)
    found = matcher.solve(init=[None, "sorted"], restarts=4)

    def score(perm):
        moved = permgraph.apply(spec, perm, b)
        return sum(float((a[k].double() * moved[k].double()).sum()) for k in spec.permuted_params)

    perms2 = [torch.tensor(p) for p in itertools.permutations(range(2))]
    best = max(
        score({outer.name: s, inner.name: torch.stack([p0, p1])})
        for s in perms2 for p0 in perms2 for p1 in perms2
    )
    assert abs(score(found) - best) < 1e-9 * max(1.0, abs(best))
