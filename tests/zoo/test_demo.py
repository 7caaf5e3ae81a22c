"""``make demo`` (python -m zoo.demo): a tiny run writes the results.json schema and the plot, a rerun
reuses every finished piece, and a user error exits with status 2."""

from __future__ import annotations

import json

from transfer.methods import method_names
from zoo.demo import main

TINY = ["--data", "synthetic", "--width", "16", "--epochs", "1", "--grad-batches", "2", "--no-progress"]




def test_demo_writes_results_and_plot_and_reuses_runs(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main([*TINY, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"setting", "methods"}
    assert list(results["methods"]) == method_names()  # every registered method, the control included
    assert "random" in results["methods"]
    for entry in results["methods"].values():
        assert entry["t"] == [0, 1, 2, 3, 4, 5]
        assert len(entry["val_acc"]) == len(entry["val_loss"]) == 6
        assert all(0.0 <= a <= 1.0 for a in entry["val_acc"])
    # at t=0 every method is the target's init
    assert len({round(e["val_acc"][0], 6) for e in results["methods"].values()}) == 1
    assert (out / "transfer.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "fgmt" in printed and "t=5" in printed

    assert main([*TINY, "--out", str(out)]) == 0  # second run: everything reused
    printed = capsys.readouterr().out
    assert "training source" not in printed and "transfer gmt" not in printed
    assert json.loads((out / "results.json").read_text())["methods"] == results["methods"]


def test_demo_unknown_dataset_exits_2(tmp_path, capsys):
    assert main(["--data", "no-such-data", "--out", str(tmp_path)]) == 2
    assert "unknown dataset" in capsys.readouterr().err
