"""PermSpec as data (JSON, Git Re-Basin export) and apply on state dicts and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import permgraph
from permgraph.spec import Member, PermSpec


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))


def conv_flatten():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))


def test_json_round_trip_is_exact():
    spec = permgraph.infer(conv_flatten(), (torch.randn(1, 2, 6, 6),))
    assert PermSpec.from_json(spec.to_json()) == spec


def test_from_json_rejects_garbage_with_a_clear_message():
    with pytest.raises(ValueError, match="not a PermSpec JSON"):
        PermSpec.from_json("{not json")
    with pytest.raises(ValueError, match="unsupported PermSpec format"):
        PermSpec.from_json('{"format": 99, "groups": []}')


def test_to_rebasin_lists_plain_axes_and_structured_members():
    spec = permgraph.infer(mlp(), (torch.randn(2, 4),))
    rb = spec.to_rebasin()
    assert sorted(map(sorted, rb["perm_to_axes"].values())) == [
        [("0.bias", 0), ("0.weight", 0), ("2.weight", 1)],
        [("2.bias", 0), ("2.weight", 0), ("4.weight", 1)],
    ]
    assert rb["axes_to_perm"]["2.weight"] == [spec.free_groups[1].name, spec.free_groups[0].name]
    spec2 = permgraph.infer(conv_flatten(), (torch.randn(1, 2, 6, 6),))
    rb2 = spec2.to_rebasin()
    (structured,) = rb2["structured"].values()  # the group moves whole: Re-Basin cannot express its blocks
    assert [Member(**m).describe() for m in structured["members"]] == [
        "0.weight[axis 0] plain", "0.bias[axis 0] plain", "3.weight[axis 1] block-expanded x16"]
    assert rb2["perm_to_axes"] == {} and rb2["axes_to_perm"]["0.weight"] == [None] * 4


def test_block_expanded_member_moves_whole_blocks():
    model = conv_flatten()
    spec = permgraph.infer(model, (torch.randn(1, 2, 6, 6),))
    (group,) = spec.free_groups
    perm = {group.name: torch.tensor([2, 0, 1])}
    new = permgraph.apply(spec, perm, model.state_dict())
    w, w2 = model.state_dict()["3.weight"], new["3.weight"]
    assert torch.equal(w2[:, 0:16], w[:, 32:48]) and torch.equal(w2[:, 16:32], w[:, 0:16])
    assert torch.equal(new["0.weight"], model.state_dict()["0.weight"][[2, 0, 1]])


def test_apply_then_inverse_is_identity_and_compose_matches_sequential_apply():
    model = mlp()
    spec = permgraph.infer(model, (torch.randn(2, 4),))
    g = torch.Generator().manual_seed(1)
    p, q = permgraph.random_permutation(spec, g), permgraph.random_permutation(spec, g)
    state = model.state_dict()
    back = permgraph.apply(spec, permgraph.invert(p), permgraph.apply(spec, p, state))
    assert all(torch.equal(back[k], state[k]) for k in state)
    two = permgraph.apply(spec, q, permgraph.apply(spec, p, state))
    one = permgraph.apply(spec, permgraph.compose(q, p), state)
    assert all(torch.equal(two[k], one[k]) for k in state)


def test_gradients_are_permuted_like_parameters():
    """∇L(πθ) = π∇L(θ): apply works on gradient dicts, the basis of gradient matching."""
    model = mlp()
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    spec = permgraph.infer(model, (x,))
    perm = permgraph.random_permutation(spec, torch.Generator().manual_seed(0))

    def grads(m):
        m.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        return {k: p.grad.clone() for k, p in m.named_parameters()}

    g = grads(model)
    permuted = mlp()
    permuted.load_state_dict(permgraph.apply(spec, perm, model.state_dict()))
    gp = grads(permuted)
    expected = permgraph.apply(spec, perm, g)
    for k in g:
        torch.testing.assert_close(gp[k], expected[k], rtol=1e-5, atol=1e-6)


def test_apply_refuses_a_state_dict_of_another_width():
    spec = permgraph.infer(mlp(), (torch.randn(2, 4),))
    other = nn.Sequential(nn.Linear(4, 7), nn.ReLU(), nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 2))
    perm = permgraph.random_permutation(spec)
    with pytest.raises(ValueError, match="another architecture or width"):
        permgraph.apply(spec, perm, other.state_dict())


def test_apply_refuses_bad_permutations():
    spec = permgraph.infer(mlp(), (torch.randn(2, 4),))
    name = spec.free_groups[0].name
    with pytest.raises(ValueError, match="expected \\(6,\\)"):
        permgraph.apply(spec, {name: torch.arange(5)}, mlp().state_dict())
    with pytest.raises(KeyError, match="not free groups"):
        permgraph.apply(spec, {"nope": torch.arange(5)}, mlp().state_dict())


def test_per_block_groups_round_trip_invert_and_compose():
    from zoo.models import build, example_inputs

    torch.manual_seed(0)
    model = build("zoo:vit_tiny")
    spec = permgraph.infer(model, example_inputs("zoo:vit_tiny"), per_block=True)
    inner = [g for g in spec.free_groups if g.indexed_by]
    assert {g.structure.split(",")[0] for g in inner} == {"query/key dims", "value dims"}
    assert PermSpec.from_json(spec.to_json()) == spec
    gen = torch.Generator().manual_seed(0)
    p, q = permgraph.random_permutation(spec, gen), permgraph.random_permutation(spec, gen)
    assert p[inner[0].name].shape == (4, 16)
    state = model.state_dict()
    back = permgraph.apply(spec, permgraph.invert(p, spec), permgraph.apply(spec, p, state))
    assert all(torch.equal(back[k], state[k]) for k in state)
    two = permgraph.apply(spec, q, permgraph.apply(spec, p, state))
    one = permgraph.apply(spec, permgraph.compose(q, p, spec), state)
    assert all(torch.equal(two[k], one[k]) for k in state)
    with pytest.raises(ValueError, match="needs the spec"):
        permgraph.invert(p)
