"""The `transfer` command line: run / finetune / match end to end on a tiny run, and exit code 2."""

from __future__ import annotations

import json

import pytest

from zoo.cli.transfer import main
from zoo.train import TrainControl, TrainRecipe, train

MODEL = "zoo:mlp2?width=8&in_features=32&num_classes=4"




@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for seed in (1, 2):
        recipe = TrainRecipe(epochs=2, lr=0.1)
        train(MODEL, "synthetic", recipe, seed=seed, out=root / f"s{seed}", control=TrainControl(progress=False))
    return root


def test_run_finetune_and_match(runs, capsys):
    out = runs / "t"
    common = ["--source", str(runs / "s1"), "--target-init", str(runs / "s2"), "--T", "2", "--out", str(out),
              "--grad-batches", "2", "--batch-size", "32", "--no-progress"]  # fmt: skip
    assert main(["run", "--method", "fgmt,naive", *common]) == 0
    assert main(["run", "--method", "oracle", "--target", str(runs / "s2"), *common]) == 0
    printed = capsys.readouterr().out
    assert "fgmt" in printed and "oracle" in printed
    results = json.loads((out / "results.json").read_text())
    assert set(results["methods"]) == {"fgmt", "naive", "oracle"}
    entry = results["methods"]["fgmt"]
    assert entry["t"] == [0, 1, 2] and all(0.0 <= a <= 1.0 for a in entry["val_acc"])
    assert results["setting"]["data"] == "synthetic"

    assert main(["finetune", "--from", str(out), "--method", "fgmt", "--epochs", "1", "--lr", "0.05",
                 "--batch-size", "64", "--no-progress"]) == 0  # fmt: skip
    assert (out / "finetune_fgmt" / "manifest.json").exists()

    assert main(["match", str(runs / "s1"), str(runs / "s2")]) == 0
    printed = capsys.readouterr().out
    assert "after" in printed and "before" in printed


def test_user_errors_exit_2_with_one_line(runs, tmp_path, capsys):
    assert main(["run", "--method", "fgmt", "--source", str(tmp_path / "none"), "--target-init", "3",
                 "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.startswith("transfer: error:") and "does not exist" in err
    assert main(["run", "--method", "oracle", "--source", str(runs / "s1"), "--target-init", "2",
                 "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    assert "oracle needs" in capsys.readouterr().err
    assert main(["finetune", "--from", str(tmp_path)]) == 2
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit) as e:
        main(["run", "--method", "sgd", "--source", "x", "--target-init", "1"])
    assert e.value.code == 2


def test_method_given_twice_runs_each_once_in_order(runs, tmp_path):
    out = tmp_path / "twice"
    common = ["--source", str(runs / "s1"), "--target-init", str(runs / "s2"), "--T", "1", "--out", str(out),
              "--grad-batches", "2", "--batch-size", "32", "--no-progress"]  # fmt: skip
    assert main(["run", "--method", "naive", "--method", "fgmt,naive", *common]) == 0
    assert list(json.loads((out / "results.json").read_text())["methods"]) == ["naive", "fgmt"]


def test_each_step_is_logged_for_verbose(runs, tmp_path, caplog):
    common = ["--source", str(runs / "s1"), "--target-init", str(runs / "s2"), "--T", "2", "--out", str(tmp_path / "v"),
              "--grad-batches", "2", "--batch-size", "32", "--no-progress", "--method", "naive"]  # fmt: skip
    with caplog.at_level("INFO", logger="transfer"):
        assert main(["run", *common, "-v"]) == 0
    steps = [r.getMessage() for r in caplog.records if " t=" in r.getMessage()]
    assert [m.split(":")[0] for m in steps] == ["naive t=0/2", "naive t=1/2", "naive t=2/2"]
    assert all("val acc" in m and "solves" in m for m in steps)
