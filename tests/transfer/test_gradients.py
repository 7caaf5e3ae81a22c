"""Synced gradients: shared seeded batches, exact mean loss, BN re-estimation, clear NaN errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transfer.data import TensorData
from transfer.evaluation import default_loss
from transfer.gradients import SyncedGradients
from transfer.options import TransferOptions


def synced(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **options) -> SyncedGradients:
    """SyncedGradients over (x, y) used as both the training and the validation split."""
    return SyncedGradients(model, TensorData("tiny", (x, y), (x, y)), TransferOptions(**options))


def tiny_data(n: int = 96, d: int = 5, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


def mlp(seed: int, bn: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Linear(5, 8)] + ([nn.BatchNorm1d(8)] if bn else []) + [nn.ReLU(), nn.Linear(8, 3)]
    return nn.Sequential(*layers)


def test_same_batches_for_same_k_and_rerun():
    x, y = tiny_data()
    a = synced(mlp(0), x, y, grad_batches=3, batch_size=8, seed=5)
    b = synced(mlp(1), x, y, grad_batches=3, batch_size=8, seed=5)
    for k in (1, 2):
        assert all(torch.equal(p, q) for p, q in zip(a.batches(k), b.batches(k)))
    assert not torch.equal(torch.cat(a.batches(1)), torch.cat(a.batches(2)))
    assert len(torch.cat(a.batches(1)).unique()) == 24, "no sample twice within one gradient"
    s = mlp(3).state_dict()
    g1, g2 = a.gradient(s, 1), b.gradient(s, 1)
    assert all(torch.equal(g1[k], g2[k]) for k in g1)


def test_gradient_is_the_mean_cross_entropy_over_the_chosen_batches():
    x, y = tiny_data()
    model = mlp(0)
    sg = synced(model, x, y, grad_batches=2, batch_size=16, seed=1)
    state = {k: v.clone() for k, v in mlp(7).state_dict().items()}
    got = sg.gradient(state, 3)
    ref = mlp(7)
    loss = sum(F.cross_entropy(ref(x[i]), y[i]) for i in sg.batches(3)) / 2
    loss.backward()
    for name, p in ref.named_parameters():
        torch.testing.assert_close(got[name], p.grad)
    assert all(torch.equal(state[k], v) for k, v in mlp(7).state_dict().items()), "input state untouched"


def test_nan_gradient_names_the_parameter():
    x, y = tiny_data()
    model = mlp(0)
    sg = synced(model, x, y, grad_batches=1, batch_size=8)
    model[2].weight.register_hook(lambda g: g * float("nan"))
    with pytest.raises(FloatingPointError, match=r"'2\.weight'"):
        sg.gradient(mlp(1).state_dict(), 0)
    bad = mlp(1).state_dict()
    bad["0.bias"][0] = float("inf")
    with pytest.raises(FloatingPointError, match=r"0\.bias"):
        synced(mlp(0), x, y, grad_batches=1, batch_size=8).gradient(bad, 0)


def test_batchnorm_stats_are_the_exact_average_over_bn_batches():
    x, y = tiny_data()
    sg = synced(mlp(0, bn=True), x, y, batch_size=16, bn_batches=3, seed=2)
    state = mlp(4, bn=True).state_dict()
    state["1.running_mean"] += 5.0  # stale stats must not survive
    new = sg.reestimate_bn(state)
    ref = mlp(4, bn=True)
    h = [ref[0](x[i]) for i in sg.batches(SyncedGradients.BN_STREAM, count=3)]
    torch.testing.assert_close(new["1.running_mean"], torch.stack([t.mean(0) for t in h]).mean(0))
    torch.testing.assert_close(new["1.running_var"], torch.stack([t.var(0) for t in h]).mean(0))
    assert sg.bn[0].momentum == 0.1, "momentum restored"
    loss, acc = sg.evaluate(state)
    assert 0.0 <= acc <= 1.0 and loss > 0


def test_language_model_logits_against_token_targets():
    from zoo.models import build

    torch.manual_seed(0)
    model = build("zoo:gpt_tiny?vocab_size=16&block_size=8&dim=8&depth=1&heads=2")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 16, (12, 8), generator=g)
    y = torch.roll(x, -1, dims=1)
    sg = synced(model, x, y, grad_batches=2, batch_size=4)
    grads = sg.gradient(model.state_dict(), 1)
    assert set(grads) == {n for n, _ in model.named_parameters()}
    assert default_loss(model(x[:2]), y[:2]).ndim == 0
    _, acc = sg.evaluate(model.state_dict())
    assert 0.0 <= acc <= 1.0
