"""``transfer diagnose``: gradient cosines up to a permutation and init/change ratios, and a verdict."""

from __future__ import annotations

import json

import pytest
import torch
from test_methods import MLP, record, tiny_data

import permgraph
from permgraph.apply import apply, random_permutation
from transfer.diagnose import diagnose
from transfer.options import TransferOptions
from zoo.models import build

OPTIONS = TransferOptions(grad_batches=2, batch_size=16)


def test_a_permuted_copy_of_the_source_init_is_diagnosed_as_likely(tmp_path):
    data = tiny_data((6,), 3, n=64)
    src = record(tmp_path / "src", MLP, 0, data)
    spec = permgraph.infer(build(MLP), (data.train[0][:2],))
    planted = apply(spec, random_permutation(spec, torch.Generator().manual_seed(1)), src.init())
    d = diagnose(build(MLP), data, src, planted, OPTIONS)
    assert d.cos_permuted == pytest.approx(1.0, abs=1e-6), "the exact permutation is found on other minibatches"
    assert d.cos_identity < 0.9 and d.verdict == "likely"


def test_init_to_change_ratios_are_norms_per_tensor(tmp_path):
    data = tiny_data((6,), 3, n=64)
    src = record(tmp_path / "src", MLP, 0, data)
    init = record(tmp_path / "tgt", MLP, 1, data).init()
    d = diagnose(build(MLP), data, src, init, OPTIONS)
    delta = src.final()["fc1.weight"] - src.init()["fc1.weight"]
    assert d.init_to_change["fc1.weight"] == pytest.approx(float(init["fc1.weight"].norm() / delta.norm()), rel=1e-6)
    assert d.verdict in ("likely", "unlikely") and len(d.reasons) == 2
    assert json.loads(json.dumps(d.to_json()))["verdict"] == d.verdict


def test_the_command_prints_a_verdict_and_writes_json_and_png(tmp_path, capsys):
    from zoo.cli.transfer import main
    from zoo.train import TrainControl, TrainRecipe, train

    model = "zoo:mlp2?width=8&in_features=32&num_classes=4"
    for seed in (1, 2):
        train(model, "synthetic", TrainRecipe(epochs=1, lr=0.1), seed=seed, out=tmp_path / f"s{seed}",
              control=TrainControl(progress=False))  # fmt: skip
    argv = ["diagnose", str(tmp_path / "s1"), str(tmp_path / "s2"), "--grad-batches", "2", "--batch-size", "32",
            "--png", str(tmp_path / "d.png"), "--json", str(tmp_path / "d.json")]  # fmt: skip
    assert main(argv) == 0
    assert "verdict: transfer is" in capsys.readouterr().out
    assert (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"
    assert set(json.loads((tmp_path / "d.json").read_text())) >= {"cos_identity", "cos_permuted", "verdict"}
