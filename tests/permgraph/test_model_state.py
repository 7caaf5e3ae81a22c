"""``infer`` leaves the caller's model exactly as it found it (parameters, buffers, every
module's training flag, attributes and caches), and ``verify`` checks models that cache
tensors derived from their parameters (timm's attention-bias caches) without reusing a
cache of the unpermuted parameters."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import permgraph


def _tensor_attributes(model: nn.Module) -> dict[str, Any]:
    """Every tensor held in a plain attribute (not a parameter or buffer) of any module,
    including inside dicts and lists, by path: cloned, with its identity."""
    out: dict[str, Any] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, torch.Tensor):
            out[path] = (id(value), value.detach().clone())
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}[{k!r}]")
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")

    for name, module in model.named_modules():
        for attr, value in vars(module).items():
            if attr not in ("_parameters", "_buffers", "_modules"):
                walk(value, f"{name}.{attr}")
    return out


def _snapshot(model: nn.Module) -> dict[str, Any]:
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": {name: m.training for name, m in model.named_modules()},
        "attributes": _tensor_attributes(model),
        "attribute names": {name: sorted(vars(m)) for name, m in model.named_modules()},
    }


def _assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before["state"].keys() == after["state"].keys()
    for k, v in before["state"].items():
        assert torch.equal(v, after["state"][k]), k
    assert before["training"] == after["training"]
    assert before["attribute names"] == after["attribute names"]
    assert before["attributes"].keys() == after["attributes"].keys()
    for path, (ident, value) in before["attributes"].items():
        ident_after, value_after = after["attributes"][path]
        assert ident == ident_after and torch.equal(value, value_after), path


def test_infer_keeps_each_modules_training_flag():
    """A model training with a frozen BatchNorm (eval) inside: tracing puts everything in
    eval mode, and must put back each module's own flag, not the root's."""
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    model.train()
    model[1].eval()
    before = _snapshot(model)
    permgraph.infer(model, (torch.randn(4, 4),))
    _assert_same(before, _snapshot(model))


@pytest.fixture(scope="module")
def levit():
    """The smallest timm model whose eval forward fills ``attention_bias_cache`` from the
    ``attention_biases`` parameter, at 64×64 pixels to stay fast (no weights downloaded)."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("levit_128s", pretrained=False, img_size=64, num_classes=4).eval()
    x = torch.randn(1, 3, 64, 64)
    return model, x, permgraph.infer(model, (x,))


def _caches(model: nn.Module) -> dict[str, dict]:
    return {n: m.attention_bias_cache for n, m in model.named_modules() if hasattr(m, "attention_bias_cache")}


def test_infer_leaves_a_filled_attention_bias_cache_as_it_was(levit):
    model, x, _ = levit
    with torch.no_grad():
        model(x)  # fills every attention_bias_cache
    assert all(_caches(model).values())
    before = _snapshot(model)
    permgraph.infer(model, (x,))  # model.eval() inside tracing clears timm's caches
    _assert_same(before, _snapshot(model))


def test_verify_does_not_reuse_a_cache_of_the_unpermuted_attention_biases(levit):
    model, x, spec = levit
    assert any(m.param.endswith("attention_biases") for g in spec.free_groups for m in g.members)
    report = permgraph.verify(model, spec, (x,), trials=2)
    assert report.ok, report
    assert report.precision == "float64"


def test_verify_runs_on_a_model_whose_cache_autograd_filled(levit):
    """An eval forward with gradients on leaves non-leaf tensors in the caches, which
    ``copy.deepcopy`` refuses to copy; the caller's caches stay as they were."""
    model, x, spec = levit
    model(x)
    before = _snapshot(model)
    assert permgraph.verify(model, spec, (x,)).ok
    _assert_same(before, _snapshot(model))
