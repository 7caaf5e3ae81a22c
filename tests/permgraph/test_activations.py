"""Activations a group permutes: recorded soundly in the spec, serialised, and collected on data.

The soundness statement: permuting the weights by a random permutation of every free group permutes
every collected activation matrix by that group's permutation, and nothing else."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import permgraph
from permgraph.activations import GraphRunner, collect_activations
from permgraph.spec import PermSpec


class ConvNet(nn.Module):
    """conv + BN + residual + flatten into a linear: plain, residual and block-expanded sites."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.c2, self.b2 = nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.fc, self.out = nn.Linear(6 * 4 * 4, 10), nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.b1(self.c1(x)))
        h = F.relu(h + self.b2(self.c2(h)))
        h = F.adaptive_avg_pool2d(h, 4).flatten(1)
        return self.out(F.relu(self.fc(h)))


class Attention(nn.Module):
    """One pre-LN attention block with heads and an MLP, on token embeddings."""

    def __init__(self, vocab: int = 11, dim: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.emb, self.heads = nn.Embedding(vocab, dim), heads
        self.ln, self.qkv, self.proj = nn.LayerNorm(dim), nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc1, self.fc2, self.head = nn.Linear(dim, 16), nn.Linear(16, dim), nn.Linear(dim, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.emb(idx)
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(a)
        x = x + self.fc2(F.gelu(self.fc1(x)))
        return self.head(x)


def _mlp() -> tuple[nn.Module, list[torch.Tensor]]:
    model = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 9), nn.Tanh(), nn.Linear(9, 2))
    return model, [torch.randn(7, 5, dtype=torch.float64) for _ in range(2)]


def _conv() -> tuple[nn.Module, list[torch.Tensor]]:
    model = ConvNet()
    for m in model.modules():  # trained-like BN statistics, so a wrong site cannot hide behind zeros
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return model, [torch.randn(3, 3, 8, 8, dtype=torch.float64) for _ in range(2)]


def _attention() -> tuple[nn.Module, list[torch.Tensor]]:
    return Attention(), [torch.randint(0, 11, (2, 6)) for _ in range(2)]


@pytest.mark.parametrize("build", [_mlp, _conv, _attention], ids=["mlp", "conv_bn_residual", "attention"])
def test_permuting_the_weights_permutes_the_collected_activations(build) -> None:
    torch.manual_seed(0)
    model, batches = build()
    model = model.double()
    spec = permgraph.infer(model, (batches[0],))
    readable = [g for g in spec.free_groups if any(a.clean for a in g.activations)]
    assert readable, spec
    perm = permgraph.random_permutation(spec, torch.Generator().manual_seed(1))
    assert any(not torch.equal(perm[g.name], torch.arange(g.size)) for g in readable)
    permuted = permgraph.apply(spec, perm, model.state_dict())
    names = [g.name for g in readable]
    before = collect_activations(model, spec, batches, groups=names, dtype=torch.float64)
    after = collect_activations(model, spec, batches, groups=names, state=permuted, dtype=torch.float64)
    for g in names:
        assert before[g].shape[0] == spec.group(g).size
        torch.testing.assert_close(after[g], before[g][perm[g]], rtol=1e-9, atol=1e-9)
        if not torch.equal(perm[g], torch.arange(len(perm[g]))):  # the test can fail: unpermuted rows differ
            assert not torch.allclose(after[g], before[g])


def test_sites_are_values_computed_from_the_inputs_with_the_group_on_the_stated_axis() -> None:
    model, batches = _mlp()
    spec = permgraph.infer(model.double(), (batches[0],))
    sites = spec.group("0.out").activations
    assert [(a.node, a.op, a.axis, a.axis_size) for a in sites] == [
        ("linear", "aten.linear", 1, 12),
        ("relu", "aten.relu", 1, 12),
    ]
    assert all(a.shape == (7, 12) and a.clean for a in sites)
    # the weights' transposes carry the group too, but they are not activations
    assert not any("weight" in a.node or a.op == "aten.t" for g in spec.free_groups for a in g.activations)


def test_attention_heads_are_mixed_with_their_dims_and_not_collected_by_default() -> None:
    model, batches = _attention()
    spec = permgraph.infer(model, (batches[0],))
    heads = [g for g in spec.free_groups if g.size == 2 and g.activations]
    assert heads and all(not a.clean for g in heads for a in g.activations)
    with pytest.raises(ValueError, match="also moves another group"):
        collect_activations(model, spec, batches, groups=[heads[0].name])


def test_activations_round_trip_through_json_and_old_json_still_loads() -> None:
    model, batches = _conv()
    spec = permgraph.infer(model.double(), (batches[0],))
    back = PermSpec.from_json(spec.to_json())
    assert back == spec
    assert [g.activations for g in back.groups] == [g.activations for g in spec.groups]
    data = json.loads(spec.to_json())
    for g in data["groups"]:
        del g["activations"]  # a spec written before groups named their activations
    old = PermSpec.from_dict(data)
    assert old == spec and all(g.activations == () for g in old.groups)
    with pytest.raises(ValueError, match="infer it again"):
        collect_activations(model, old, batches)


def test_a_graph_that_lacks_the_specs_values_is_refused() -> None:
    model, batches = _mlp()
    runner = GraphRunner(model.double(), {"no_such_node"})
    with pytest.raises(ValueError, match="no value 'no_such_node'"):
        runner(batches[0])


def test_a_smaller_last_batch_is_exported_again_and_collected() -> None:
    model, _ = _mlp()
    model = model.double()
    spec = permgraph.infer(model, (torch.randn(4, 5, dtype=torch.float64),))
    acts = collect_activations(
        model, spec, [torch.randn(4, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)], dtype=torch.float64
    )
    assert acts["0.out"].shape == (12, 2 * (4 + 3))


def test_a_hook_that_returns_a_tensor_replaces_the_value_downstream() -> None:
    model, batches = _mlp()
    model = model.double()
    runner = GraphRunner(model, {"relu"})
    zeroed = runner(batches[0], lambda name, v: torch.zeros_like(v))
    expected = model[4](torch.tanh(model[2](torch.zeros(7, 12, dtype=torch.float64))))
    torch.testing.assert_close(zeroed, expected)
    torch.testing.assert_close(runner(batches[0]), model(batches[0]))


def test_running_other_weights_leaves_the_model_and_its_state_dict_alone() -> None:
    model, batches = _mlp()
    model = model.double()
    own = model.state_dict()  # shares storage with the model's parameters
    before = {k: v.clone() for k, v in own.items()}
    other = {k: torch.randn_like(v) for k, v in own.items()}
    runner = GraphRunner(model, {"relu"})
    runner(batches[0])
    runner.load(other)
    torch.testing.assert_close(runner(batches[0]), torch.func.functional_call(model, other, (batches[0],)))
    assert all(torch.equal(own[k], before[k]) for k in own)
