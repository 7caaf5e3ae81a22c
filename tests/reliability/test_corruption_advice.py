"""Promise 5: damage is found and named, and every printed advice works when followed. Identical runs
write identical bytes, so a regenerated file is the very file that was lost."""

from __future__ import annotations

import json
import shutil

from reliability_kit import MODEL, RECIPE, transfer_args, tree_hash

from zoo.cli.transfer import main as transfer
from zoo.cli.zoo import main as zoo


def train_argv(out, seed: int) -> list[str]:
    """The command that recorded the fixture runs (conftest.record_run)."""
    return ["train", "--model", MODEL, "--data", "synthetic", "--epochs", str(RECIPE.epochs), "--lr", str(RECIPE.lr),
            "--batch-size", str(RECIPE.batch_size), "--seed", str(seed), "--out", str(out), "--no-progress"]  # fmt: skip


def test_identical_runs_write_identical_bytes(tmp_path, runs):
    assert zoo(train_argv(tmp_path / "again", 1)) == 0
    mine = {k: v for k, v in tree_hash(tmp_path / "again").items() if k.endswith((".safetensors", "manifest.json"))}
    theirs = {k: v for k, v in tree_hash(runs / "s1").items() if k.endswith((".safetensors", "manifest.json"))}
    assert mine == theirs


def test_a_damaged_or_missing_checkpoint_advice_works_when_followed(work, capsys):
    before = tree_hash(work / "s1")
    ckpts = sorted((work / "s1").glob("ckpt_*.safetensors"))
    ckpts[-1].write_bytes(ckpts[-1].read_bytes()[:64])
    ckpts[1].unlink()
    assert transfer(transfer_args(work, work / "out")) == 2
    err = capsys.readouterr().err
    assert "re-run the command that recorded this trajectory with the same arguments" in err
    assert zoo(train_argv(work / "s1", 1)) == 0  # the advice, followed: the recording command again
    after = tree_hash(work / "s1")
    ckpts_before = {k: v for k, v in before.items() if k.startswith("ckpt_")}
    assert {k: after[k] for k in ckpts_before} == ckpts_before, "the very same bytes again"
    assert transfer(transfer_args(work, work / "out")) == 0


def test_a_damaged_results_file_advice_works_when_followed(work, capsys):
    out = work / "out"
    assert transfer(transfer_args(work, out)) == 0
    good = json.loads((out / "results.json").read_text())
    (out / "results.json").write_text("{\"methods\": ")
    assert transfer(transfer_args(work, out)) == 2
    err = capsys.readouterr().err
    assert "delete" in err and "re-run the same transfer command" in err
    (out / "results.json").unlink()  # the advice, followed
    assert transfer(transfer_args(work, out)) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["methods"]["fgmt"]["val_acc"] == good["methods"]["fgmt"]["val_acc"]


def test_a_damaged_transfer_state_advice_works_when_followed(work, capsys):
    out = work / "out"
    assert transfer(transfer_args(work, out)) == 0
    good = json.loads((out / "results.json").read_text())["methods"]["fgmt"]["val_acc"]
    (out / ".state" / "fgmt" / "state.json").write_text("garbage")
    assert transfer(transfer_args(work, out)) == 2
    assert "delete" in (err := capsys.readouterr().err) and str(out / ".state" / "fgmt") in err
    shutil.rmtree(out / ".state" / "fgmt")  # the advice, followed
    assert transfer(transfer_args(work, out)) == 0
    assert json.loads((out / "results.json").read_text())["methods"]["fgmt"]["val_acc"] == good
