"""`transfer run --no-trajectory` and the phases the command reports (transfer cost issue)."""

from __future__ import annotations

import json

from zoo.cli.transfer import main
from zoo.train import TrainControl, TrainRecipe, train

MODEL = "zoo:mlp2?width=8&in_features=32&num_classes=4"


def test_no_trajectory_and_the_commands_phases(tmp_path, monkeypatch):
    monkeypatch.setenv("PERMGRAPH_CACHE", str(tmp_path / "cache"))
    for seed in (1, 2):
        train(MODEL, "synthetic", TrainRecipe(epochs=2, lr=0.1), seed=seed, out=tmp_path / f"s{seed}",
              control=TrainControl(progress=False))  # fmt: skip
    out = tmp_path / "t"
    assert main(["run", "--method", "fgmt", "--source", str(tmp_path / "s1"), "--target-init", str(tmp_path / "s2"),
                 "--T", "2", "--grad-batches", "2", "--batch-size", "32", "--out", str(out), "--no-progress",
                 "--no-trajectory"]) == 0  # fmt: skip
    assert not (out / "fgmt").exists()
    entry = json.loads((out / "results.json").read_text())["methods"]["fgmt"]
    phases = entry["phases"]
    assert entry["trajectory"] is False
    assert phases["startup"] > 0 and phases["data"] >= 0 and phases["spec"] > 0
    assert entry["wall_seconds"] >= sum(v for k, v in phases.items() if k != "other") - 0.01
