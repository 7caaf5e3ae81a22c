"""Promise 2: a command never deletes or overwrites what it did not write, and never writes where an
input lives; it says so before any work, and leaves every input byte for byte as it was."""

from __future__ import annotations

import shutil

from reliability_kit import MODEL, transfer_args, tree_hash

from zoo.cli.permgraph import main as permgraph
from zoo.cli.transfer import main as transfer
from zoo.cli.zoo import main as zoo


def test_an_out_folder_holding_the_real_target_run_is_refused(work, capsys):
    """--out runs with the target kept as runs/oracle: oracle would replace it."""
    shutil.move(str(work / "s2"), str(work / "oracle"))
    before = tree_hash(work / "oracle")
    args = ["run", "--method", "oracle", "--source", str(work / "s1"), "--target-init", str(work / "oracle"),
            "--target", str(work / "oracle"), "--out", str(work), "--T", "1", "--no-progress"]  # fmt: skip
    assert transfer(args) == 2
    err = capsys.readouterr().err
    assert "transfer: error:" in err and err.count("\n") == 1
    assert tree_hash(work / "oracle") == before


def test_a_users_file_in_a_method_folder_is_never_deleted(work, capsys):
    out = work / "out"
    assert transfer(transfer_args(work, out)) == 0
    (out / "fgmt" / "notes.txt").write_text("mine")
    assert transfer(transfer_args(work, out, "--seed", "1")) == 2  # would replace out/fgmt
    assert "not a transferred trajectory this tool wrote (notes.txt)" in capsys.readouterr().err
    assert (out / "fgmt" / "notes.txt").read_text() == "mine"


def test_a_folder_of_someone_elses_files_is_refused_before_any_work(work, capsys):
    foreign = work / "papers"
    foreign.mkdir()
    (foreign / "draft.tex").write_text("x")
    assert transfer(transfer_args(work, foreign)) == 2
    assert "did not write (draft.tex)" in capsys.readouterr().err
    argv = ["train", "--model", MODEL, "--data", "synthetic", "--epochs", "1", "--lr", "0.1", "--seed", "0",
            "--out", str(foreign), "--no-progress"]  # fmt: skip
    assert zoo(argv) == 2
    assert sorted(p.name for p in foreign.iterdir()) == ["draft.tex"]


def test_out_paths_that_cannot_be_folders_or_files_exit_2_and_leave_nothing(work, capsys):
    a_file = work / "a_file"
    a_file.write_text("x")
    base = ["train", "--model", MODEL, "--data", "synthetic", "--epochs", "1", "--lr", "0.1", "--seed", "0",
            "--no-progress", "--out"]  # fmt: skip
    assert zoo([*base, str(a_file)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert zoo([*base, str(a_file / "run")]) == 2
    assert "lies below" in capsys.readouterr().err
    assert permgraph(["inspect", MODEL, "--format", "json", "--out", str(work)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert permgraph(["inspect", MODEL, "--format", "json", "--out", str(a_file / "spec.json")]) == 2
    assert "lies below" in capsys.readouterr().err
    assert permgraph(["inspect", MODEL, "--format", "json", "--out", str(a_file)]) == 2
    assert "was not written by permgraph" in capsys.readouterr().err
    assert a_file.read_text() == "x"
    assert not list(work.glob(".*.tmp")) and not list(work.glob(".a_file*"))


def test_a_failed_transfer_into_a_new_folder_leaves_no_folder(work):
    out = work / "new"
    assert transfer(["run", "--method", "oracle", "--source", str(work / "s1"), "--target-init", "3",
                     "--out", str(out), "--no-progress"]) == 2  # fmt: skip
    assert not out.exists()
