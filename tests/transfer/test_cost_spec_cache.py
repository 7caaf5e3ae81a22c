"""The spec cache (transfer cost issue): the key names everything a spec depends on, and a cached
spec is used only when it is of that key and describes the model's tensors; anything else is None."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import permgraph
from transfer.cache import cache_dir, load_spec, save_spec, spec_key


class Net(nn.Module):
    def __init__(self, width: int = 8, residual: bool = False) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, width), nn.Linear(width, width)
        self.c = nn.Linear(width, 2)
        self.residual = residual  # a switch that leaves no parameter behind

    def forward(self, x):
        h = torch.relu(self.a(x))
        g = torch.relu(self.b(h))
        return self.c(g + h if self.residual else g)


X = (torch.randn(2, 4),)


def test_the_key_follows_everything_the_spec_depends_on():
    key = spec_key(Net(), X)
    assert key == spec_key(Net(), (torch.randn(2, 4),)), "input values do not matter, shapes do"
    assert key != spec_key(Net(residual=True), X), "a flag that changes the graph changes the key"
    assert key != spec_key(Net(width=9), X)
    assert key != spec_key(Net(), (torch.randn(3, 4),))
    assert key != spec_key(Net(), (torch.randn(2, 4, dtype=torch.float64),))


def test_a_model_whose_source_cannot_be_found_is_not_cached():
    Dynamic = type("Dynamic", (nn.Module,), {"forward": lambda self, x: x})
    Dynamic.__module__ = "nowhere"
    assert spec_key(Dynamic(), X) is None


def test_a_cached_spec_round_trips(tmp_path):
    model = Net()
    spec, key = permgraph.infer(model, X), spec_key(model, X)
    save_spec(tmp_path / "s.json", key, spec)
    assert load_spec(tmp_path / "s.json", key, model) == spec


def mutate(data: dict, how: str) -> None:
    g = data["spec"]["groups"][0]
    if how == "key":
        data["key"] = "0" * 64
    elif how == "shape":
        data["spec"]["param_shapes"]["a.weight"] = [9, 4]
    elif how == "axis":
        g["members"][0]["axis"] = 5
    elif how == "positions":
        g["members"][0]["offset"] = 100
    elif how == "size":
        g["size"] = 3
    elif how == "names":
        data["spec"]["param_shapes"]["extra"] = [1]
    elif how == "format":
        data["spec"]["format"] = 99


@pytest.mark.parametrize("how", ["key", "shape", "axis", "positions", "size", "names", "format"])
def test_a_cached_spec_that_does_not_fit_is_ignored(tmp_path, how):
    model = Net()
    key = spec_key(model, X)
    save_spec(tmp_path / "s.json", key, permgraph.infer(model, X))
    data = json.loads((tmp_path / "s.json").read_text())
    mutate(data, how)
    (tmp_path / "s.json").write_text(json.dumps(data))
    assert load_spec(tmp_path / "s.json", key, model) is None


@pytest.mark.parametrize("text", ["", "not json", "[]", '{"format": "permgraph-spec-cache", "version": 1}', "\x00" * 10])
def test_a_damaged_cache_file_is_none_never_an_error(tmp_path, text):
    (tmp_path / "s.json").write_text(text)
    assert load_spec(tmp_path / "s.json", spec_key(Net(), X), Net()) is None
    assert load_spec(tmp_path / "missing.json", spec_key(Net(), X), Net()) is None


def test_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("PERMGRAPH_CACHE", str(tmp_path / "c"))
    assert cache_dir("specs") == tmp_path / "c" / "specs"
    monkeypatch.setenv("PERMGRAPH_CACHE", "off")
    assert cache_dir() is None
    monkeypatch.delenv("PERMGRAPH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x" / "permgraph"
    (tmp_path / "blocker").write_text("")
    save_spec(tmp_path / "blocker" / "s.json", "k", permgraph.infer(Net(), X))  # unwritable: skipped, no error
    assert not (tmp_path / "blocker").is_dir()
