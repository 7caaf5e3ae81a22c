"""Soundness: model inputs and outputs are blocked, verify's trained-like values expose
mistakes that default init hides, and corners that once were unsound (``roll`` without
``dims``, an einsum over atom 0) stay fixed. How each op blocks or passes its axes is in
test_op_table.py."""

from __future__ import annotations

import copy
import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

import permgraph
from permgraph.spec import PermSpec


def test_model_inputs_and_outputs_are_blocked():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    spec = permgraph.infer(model, (torch.randn(2, 4),))
    reasons = {g.name: g.blocked for g in spec.blocked_groups}
    assert any("model input" in r for r in reasons.values())
    assert any("model output" in r for r in reasons.values())


def _without(spec: PermSpec, suffix: str) -> PermSpec:
    groups = tuple(
        dataclasses.replace(g, members=tuple(m for m in g.members if not m.param.endswith(suffix)))
        for g in spec.groups
    )
    return dataclasses.replace(spec, groups=groups)


def test_trained_like_values_expose_a_spec_that_forgets_running_stats():
    """A spec that leaves BatchNorm's running statistics unpermuted (a mistake hand-written
    specs make) looks exact on default init, where they are all 0 and 1, and fails on
    realistic statistics, which verify always uses."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 4, 3),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x = torch.randn(2, 3, 8, 8)
    broken = _without(_without(permgraph.infer(model, (x,)), "running_mean"), "running_var")
    default = copy.deepcopy(model).eval()
    permuted = copy.deepcopy(default)
    perm = permgraph.random_permutation(broken, torch.Generator().manual_seed(0))
    permuted.load_state_dict(permgraph.apply(broken, perm, default.state_dict()))
    with torch.no_grad():
        torch.testing.assert_close(permuted(x), default(x))
    assert not permgraph.verify(model, broken, (x,)).ok


def test_make_trained_like_leaves_no_constant_tensor():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.BatchNorm1d(4))
    nn.init.zeros_(model[0].weight)
    permgraph.make_trained_like(model, torch.Generator().manual_seed(0))
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and t.numel() > 1:
            assert not bool((t == t.reshape(-1)[0]).all()), name
    assert bool((model[2].running_var > 0).all())


def test_verify_rejects_a_spec_of_another_model():
    spec = permgraph.infer(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), (torch.randn(2, 4),))
    other = nn.Sequential(nn.Linear(4, 9), nn.ReLU(), nn.Linear(9, 3))
    try:
        permgraph.verify(other, spec, (torch.randn(2, 4),))
    except ValueError as e:
        assert "re-run permgraph.infer" in str(e)
    else:
        raise AssertionError("verify accepted a spec inferred on another width")


class _Hidden(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fc1, self.fc2, self.fn = nn.Linear(4, 8), nn.Linear(8, 3), fn

    def forward(self, x):
        return self.fc2(self.fn(self.fc1(x)))


def test_roll_without_dims_blocks_the_rolled_axes():
    model, x = _Hidden(lambda h: torch.roll(h, 1)), torch.randn(2, 4)
    spec = permgraph.infer(model, (x,))
    assert permgraph.verify(model, spec, (x,)).ok


class _EinsumOfFirstParameter(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 4))  # the first placeholder: its axis 0 is atom 0
        self.fc2, self.fc3 = nn.Linear(8, 3), nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(F.linear(x, self.w).relu()) + self.fc3(torch.einsum("bi,oi->bo", x, self.w).relu())


def test_einsum_output_from_atom_zero_keeps_its_ties():
    model, x = _EinsumOfFirstParameter(), torch.randn(2, 4)
    spec = permgraph.infer(model, (x,))
    assert permgraph.verify(model, spec, (x,)).ok
