"""``--output NAME`` on `transfer run / match / diagnose / merge` (the outputs the spec preserves) on
tiny runs: it reaches the options and the setting, and a name the model does not return exits 2."""

from __future__ import annotations

import json

import pytest

from zoo.cli.transfer import _options, build_parser, main
from zoo.train import TrainControl, TrainRecipe, train

MODEL = "zoo:mlp2?width=8&in_features=32&num_classes=4"  # one output, a tensor: its name is "0"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for seed in (1, 2):
        train(MODEL, "synthetic", TrainRecipe(epochs=1, lr=0.1), seed=seed, out=root / f"s{seed}",
              control=TrainControl(progress=False))  # fmt: skip
    return root


def _run(runs, out, *extra: str) -> int:
    return main(["run", "--method", "naive", "--source", str(runs / "s1"), "--target-init", str(runs / "s2"),
                 "--T", "1", "--grad-batches", "1", "--bn-batches", "0", "--out", str(out), "--no-progress",
                 *extra])  # fmt: skip


def test_output_is_repeatable_beside_out_on_every_command_that_infers_a_spec():
    p = build_parser()
    args = p.parse_args(["run", "--method", "gmt", "--source", "s", "--target-init", "1", "--out", "o",
                         "--output", "logits", "--output", "loss"])  # fmt: skip
    assert args.out == "o" and _options(args).outputs == ("logits", "loss")
    assert p.parse_args(["match", "a", "b", "--out", "o", "--output", "logits"]).output == ["logits"]
    assert p.parse_args(["diagnose", "a", "1", "--output", "logits"]).output == ["logits"]
    assert p.parse_args(["merge", "a", "b", "--out", "o", "--output", "logits"]).output == ["logits"]
    assert p.parse_args(["match", "a", "b"]).output is None


def test_the_chosen_outputs_are_part_of_the_setting(runs, tmp_path, capsys):
    out = tmp_path / "t"
    assert _run(runs, out, "--output", "0") == 0
    results = json.loads((out / "results.json").read_text())
    assert results["setting"]["outputs"] == ["0"]
    assert json.loads((out / ".state" / "spec.json").read_text())["spec"]["outputs"] == ["0"]
    capsys.readouterr()
    assert _run(runs, out) == 2  # every output: another spec, so another setting in the same folder
    assert "another setting" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "match", "diagnose", "merge"])
def test_an_output_the_model_does_not_return_exits_2_naming_those_it_has(runs, tmp_path, capsys, command):
    out = tmp_path / "o"
    a, b = str(runs / "s1"), str(runs / "s2")
    argv = {"run": None, "match": ["match", a, b, "--out", str(out)], "diagnose": ["diagnose", a, b],
            "merge": ["merge", a, b, "--out", str(out), "--no-progress"]}[command]  # fmt: skip
    code = _run(runs, out, "--output", "logits") if argv is None else main([*argv, "--output", "logits"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "no output 'logits'; its outputs are: 0" in err, err
    assert not (out / "results.json").exists()


def test_finetune_subset_trains_on_a_prefix_of_the_training_split_and_records_it(runs, tmp_path, capsys):
    out = tmp_path / "t"
    assert _run(runs, out) == 0
    manifest = json.loads((runs / "s1" / "manifest.json").read_text())
    full = manifest["config"]["train_size"]
    assert full > 40

    def finetune(dest: str, *extra: str) -> int:
        return main(["finetune", "--from", str(out), "--method", "naive", "--epochs", "1", "--lr", "0.05",
                     "--batch-size", "16", "--no-progress", "--out", str(tmp_path / dest), *extra])  # fmt: skip

    from zoo.errors import ZooError
    from zoo.finetune import finetune_data

    assert len(finetune_data(out, subset=40).train[1]) == 40  # the dataset results.json records, cut (Python)
    assert len(finetune_data(out).train[1]) == full
    with pytest.raises(ZooError, match="subset must be >= 1"):
        finetune_data(out, subset=0)
    assert finetune("ft", "--subset", "40") == 0
    config = json.loads((tmp_path / "ft" / "manifest.json").read_text())["config"]
    assert config["train_size"] == 40 and config["data"] == manifest["config"]["data"]
    steps = [c["step"] for c in json.loads((tmp_path / "ft" / "manifest.json").read_text())["checkpoints"]]
    assert steps[-1] == 40 // 16 + 1  # one epoch of 40 samples in batches of 16 (the last one short)
    capsys.readouterr()
    assert finetune("ft", "--subset", "50") == 2  # another training split: not a resume of the first
    assert "train_size" in capsys.readouterr().err
    assert finetune("whole") == 0
    assert json.loads((tmp_path / "whole" / "manifest.json").read_text())["config"]["train_size"] == full
    for bad in ("0", "-3"):
        assert finetune("bad", "--subset", bad) == 2
        err = capsys.readouterr().err.strip()
        assert err.endswith(f"subset must be >= 1, got {bad}") and len(err.splitlines()) == 1, err
        assert not (tmp_path / "bad").exists()


def test_finetune_subset_cuts_data_given_as_objects_as_a_name_is_cut():
    import torch

    from transfer.data import DatasetData
    from zoo.data import load
    from zoo.finetune import first_samples

    named = load("synthetic", subset=30)
    cut = first_samples(load("synthetic"), 30)
    assert torch.equal(cut.train[0], named.train[0]) and torch.equal(cut.val[1], named.val[1])
    x, y = named.train
    pairs = DatasetData("pairs", torch.utils.data.TensorDataset(x, y), torch.utils.data.TensorDataset(x, y))
    assert len(first_samples(pairs, 7).train) == 7 and len(first_samples(pairs, 10**6).train) == 30
