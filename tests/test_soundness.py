"""Soundness: an op without a rule, or one that depends on unit order, blocks its axes with
a reason; and verify's trained-like values expose mistakes that default init hides."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

import permgraph
from permgraph.spec import PermSpec


class Wrap(nn.Module):
    def __init__(self, fn, width: int = 8):
        super().__init__()
        self.fc1, self.fc2, self.fn = nn.Linear(4, width), nn.Linear(width, 3), fn

    def forward(self, x):
        return self.fc2(self.fn(self.fc1(x)))


def hidden_group(spec: PermSpec):
    (group,) = [g for g in spec.groups if "fc1.weight" in g.params and g.members[0].axis == 0]
    return group


def test_op_without_rule_blocks_its_axes_with_the_reason():
    model = Wrap(torch.special.i0)  # aten.i0 is pointwise, but permgraph has no rule for it
    spec = permgraph.infer(model, (torch.randn(2, 4),))
    group = hidden_group(spec)
    assert not group.is_free
    assert "aten.special_i0 (special_i0): no rule" in group.blocked
    assert spec.free_groups == []


def test_order_dependent_ops_block_their_axis():
    for fn, why in [(lambda h: torch.cumsum(h, dim=-1), "order"),
                    (lambda h: torch.roll(h, 1, dims=-1), "order"),
                    (lambda h: h[:, ::2].repeat(1, 2), "strided"),
                    (lambda h: h.argmax(-1, keepdim=True).float() * h, "index")]:
        spec = permgraph.infer(Wrap(fn), (torch.randn(2, 4),))
        group = hidden_group(spec)
        assert not group.is_free and why in group.blocked, group.blocked


def test_axis_reduced_by_a_sum_stays_free():
    model = Wrap(lambda h: h - h.mean(-1, keepdim=True))
    spec = permgraph.infer(model, (torch.randn(2, 4),))
    assert hidden_group(spec).is_free
    assert permgraph.verify(model, spec, (torch.randn(2, 4),), rtol=1e-9).ok


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
    """The mistake rebasin makes (reference/anchors-measured.md): BN running stats left
    unpermuted look exact on default init (mean 0, var 1) and fail on realistic stats."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 4, 3),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x = torch.randn(2, 3, 8, 8)
    broken = _without(_without(permgraph.infer(model, (x,)), "running_mean"), "running_var")
    assert permgraph.verify(model, broken, (x,), randomize=False).ok
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
