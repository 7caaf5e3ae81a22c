"""Inferred specs equal hand-derived ones (hand_specs.py) on the classic architectures."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import permgraph
from tests.permgraph import hand_specs
from zoo.models import build, example_inputs


def partition(spec: permgraph.PermSpec) -> set[frozenset[tuple[str, int]]]:
    return {frozenset((m.param, m.axis) for m in g.members) for g in spec.free_groups}


def infer_zoo(model_id: str) -> tuple[nn.Module, permgraph.PermSpec]:
    torch.manual_seed(0)
    model = build(model_id)
    return model, permgraph.infer(model, example_inputs(model_id))


def test_mlp2_has_one_hidden_group():
    model, spec = infer_zoo("zoo:mlp2?width=32")
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert partition(spec) == hand_specs.mlp_chain(linears)
    (group,) = spec.free_groups
    assert group.size == 32


def test_three_layer_mlp_has_two_groups():
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 9), nn.Tanh(), nn.Linear(9, 3))
    spec = permgraph.infer(model, (torch.randn(2, 5),))
    assert partition(spec) == hand_specs.mlp_chain(["0", "2", "4"])
    assert sorted(g.size for g in spec.free_groups) == [7, 9]


@pytest.mark.parametrize("model_id", ["zoo:conv8?width=0.125", "zoo:vgg16?width=0.125"])
def test_plain_convnets_match_hand_spec(model_id):
    model, spec = infer_zoo(model_id)
    assert partition(spec) == hand_specs.sequential_convnet(model)
    assert all(m.structure == "plain" for g in spec.free_groups for m in g.members)


@pytest.mark.parametrize("model_id", ["zoo:resnet20?width=1", "zoo:resnet18?width=0.125",
                                      "zoo:resnet18?width=0.125&stem=imagenet"])
def test_zoo_resnets_match_hand_spec(model_id):
    model, spec = infer_zoo(model_id)
    expected = hand_specs.resnet(model)
    assert partition(spec) == expected
    stages = sum(1 for i in range(1, 5) if hasattr(model, f"layer{i}"))
    blocks = sum(len(getattr(model, f"layer{i}")) for i in range(1, stages + 1))
    assert len(spec.free_groups) == stages + blocks


def test_torchvision_resnet18_matches_hand_spec():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    spec = permgraph.infer(model, (torch.randn(1, 3, 64, 64),))
    assert partition(spec) == hand_specs.resnet(model)
