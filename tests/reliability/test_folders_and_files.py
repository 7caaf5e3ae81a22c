"""Folders and files: a refused command leaves no trace; a folder holding anything the tool did not
write is refused (method-named sub-folders included) unless the tool's marker says it is its own;
files and folders get the modes the umask gives (0644 / 0755 by default); a damaged manifest is
rebuilt from the checkpoints, never answered with "delete the folder"."""

from __future__ import annotations

import json
import os
import stat

import pytest
from reliability_kit import MODEL, RECIPE, transfer_args, tree_hash

from transfer.files import MARKER
from transfer.trajectory import Trajectory
from zoo.cli.permgraph import main as permgraph_cli
from zoo.cli.transfer import main as transfer
from zoo.cli.zoo import main as zoo


def train_argv(out, seed: int) -> list[str]:
    """The command that recorded the fixture runs (reliability_kit.record_run)."""
    return ["train", "--model", MODEL, "--data", "synthetic", "--epochs", str(RECIPE.epochs), "--lr", str(RECIPE.lr),
            "--batch-size", str(RECIPE.batch_size), "--seed", str(seed), "--out", str(out), "--no-progress"]  # fmt: skip


# ------------------------------------------------------------------------------- no trace, no foreign files


def test_a_refused_transfer_leaves_nothing_in_the_users_existing_folder(work, capsys):
    mine = work / "mine" / "project2"
    mine.mkdir(parents=True)
    # refused after the folder was claimed: the target init is another architecture
    argv = transfer_args(work, mine, "--model", MODEL.replace("width=8", "width=16"))
    assert transfer(argv) == 2
    assert "does not fit" in capsys.readouterr().err
    assert list(mine.iterdir()) == [], "no .lock, no marker"
    # so the folder is still the user's: a later run with a file of theirs in it is refused
    (mine / "notes.txt").write_text("mine")
    assert transfer(transfer_args(work, mine)) == 2
    assert "did not write (notes.txt)" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_a_refused_transfer_into_new_nested_folders_leaves_none_of_them(work):
    out = work / "a" / "b" / "c"
    assert transfer(transfer_args(work, out, "--model", MODEL.replace("width=8", "width=16"))) == 2
    assert not (work / "a").exists()


def test_a_users_file_inside_a_method_named_folder_makes_the_folder_foreign(work, capsys):
    folder = work / "project"
    (folder / "fgmt").mkdir(parents=True)
    (folder / "fgmt" / "readme.md").write_text("my notes on FGMT")
    before = tree_hash(folder)
    argv = ["run", "--method", "naive", "--source", str(work / "s1"), "--target-init", str(work / "s2"), "--T", "1",
            "--out", str(folder), "--no-progress"]  # fmt: skip
    assert transfer(argv) == 2
    assert "did not write (fgmt/readme.md)" in capsys.readouterr().err
    assert tree_hash(folder) == before and sorted(p.name for p in folder.iterdir()) == ["fgmt"]


def test_a_folder_the_tool_wrote_before_stays_its_own(work):
    out = work / "out"
    assert transfer(transfer_args(work, out)) == 0
    assert (out / MARKER).exists()
    argv = ["run", "--method", "naive", "--source", str(work / "s1"), "--target-init", str(work / "s2"), "--T", "2",
            "--grad-batches", "2", "--batch-size", "32", "--out", str(out), "--no-progress"]  # fmt: skip
    assert transfer(argv) == 0
    assert sorted(json.loads((out / "results.json").read_text())["methods"]) == ["fgmt", "naive"]


def test_an_unmarked_run_folder_of_the_tool_is_still_recognised(work):
    """A transfer output from before markers: only names the tool writes, trajectories inside."""
    out = work / "out"
    assert transfer(transfer_args(work, out)) == 0
    (out / MARKER).unlink()
    assert transfer(transfer_args(work, out)) == 0


# ------------------------------------------------------------------------------- modes


def modes(folder) -> dict[str, tuple[int, bool]]:
    return {str(p): (stat.S_IMODE(p.stat().st_mode), p.is_dir()) for p in [folder, *folder.rglob("*")]}


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_files_and_folders_get_the_modes_the_umask_gives(work, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        assert zoo(train_argv(work / "run", 5)) == 0
        assert transfer(transfer_args(work, work / "out")) == 0
        assert transfer(["match", str(work / "s1"), str(work / "s2"), "--out", str(work / "match"), "--no-progress"]) == 0
        assert permgraph_cli(["inspect", MODEL, "--format", "json", "--out", str(work / "spec.json")]) == 0
    finally:
        os.umask(old)
    seen = {**modes(work / "run"), **modes(work / "out"), **modes(work / "match"), **modes(work / "spec.json")}
    wrong = {k: oct(mode) for k, (mode, is_dir) in seen.items() if mode != (dir_mode if is_dir else file_mode)}
    assert not wrong
    assert any((work / "out").rglob("ckpt_*.safetensors")), "the transferred trajectory was checked too"


# ------------------------------------------------------------------------------- a damaged manifest


def test_a_truncated_manifest_is_rebuilt_from_the_checkpoints_never_deleted(work, capsys):
    run = work / "s1"
    good = json.loads((run / "manifest.json").read_text())
    ckpts = {k: v for k, v in tree_hash(run).items() if k.startswith("ckpt_")}
    text = (run / "manifest.json").read_text()
    (run / "manifest.json").write_text(text[: len(text) // 2])
    assert transfer(transfer_args(work, work / "out")) == 2
    err = capsys.readouterr().err
    assert f"zoo repair {run}" in err and "delete" not in err and "it keeps every file" in err
    assert zoo(["repair", str(run)]) == 0  # the advice, followed
    assert "rebuilt" in capsys.readouterr().out
    rebuilt = Trajectory(run)
    assert rebuilt.checkpoints == good["checkpoints"]
    assert {k: rebuilt.manifest[k] for k in ("model", "data", "seed", "config")} == \
        {k: good[k] for k in ("model", "data", "seed", "config")}  # fmt: skip
    assert not rebuilt.complete
    assert zoo(train_argv(run, 1)) == 0  # what `zoo repair` says next: confirm it finished
    assert json.loads((run / "manifest.json").read_text()) == good
    assert {k: v for k, v in tree_hash(run).items() if k.startswith("ckpt_")} == ckpts, "no checkpoint rewritten"
    assert (run / ".manifest.json.damaged").exists(), "the damaged manifest is kept for the user to look at"
    assert transfer(transfer_args(work, work / "out")) == 0


def test_a_missing_manifest_points_to_repair_and_a_bad_checkpoint_is_left_out(work, capsys):
    run = work / "s1"
    (run / "manifest.json").unlink()
    last = sorted(run.glob("ckpt_*.safetensors"))[-1]
    data = bytearray(last.read_bytes())
    data[-3] ^= 0xFF  # one flipped bit in the tensor data: the checkpoint's own hash catches it
    last.write_bytes(bytes(data))
    assert transfer(transfer_args(work, work / "out")) == 2
    assert f"zoo repair {run}" in capsys.readouterr().err
    assert zoo(["repair", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"{last.name} (its tensors do not match the hash it carries)" in out
    assert last.name not in [c["file"] for c in Trajectory(run).checkpoints]
    assert zoo(["repair", str(run)]) == 0
    assert "nothing to repair" in capsys.readouterr().out
