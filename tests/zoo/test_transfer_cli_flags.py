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
