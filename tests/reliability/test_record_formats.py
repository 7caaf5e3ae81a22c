"""``results.json`` and the resume state carry their format (:mod:`transfer.records`): a folder written by
another version is refused with exit 2 and one line saying what it is and what to do, and is left exactly
as it was; a command claims its output folder once and reads its ``results.json`` once."""

from __future__ import annotations

import json

from reliability_kit import transfer_args, tree_hash

from transfer.records import FORMAT
from zoo.cli.transfer import main as transfer


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def _rewrite(path, **fields) -> None:
    data = json.loads(path.read_text())
    for key, value in fields.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def test_an_old_results_file_exits_2_and_the_folder_is_left_untouched(work, capsys):
    out = work / "out"
    assert transfer(transfer_args(work, out)) == 0
    _rewrite(out / "results.json", format=None)  # as the versions before the field wrote it
    before = tree_hash(out)
    capsys.readouterr()
    assert transfer(transfer_args(work, out)) == 2
    err = one_line(capsys)
    assert "results.json was written by another version of transfer run (no format field: format 1" in err
    assert f"reads format {FORMAT}" in err and "new --out folder" in err
    assert transfer(["finetune", "--from", str(out), "--no-progress"]) == 2  # every reader refuses it
    assert "new --out folder" in one_line(capsys)
    assert tree_hash(out) == before


def test_an_old_resume_state_exits_2_and_the_folder_is_left_untouched(work, capsys):
    out = work / "out"
    assert transfer(transfer_args(work, out)) == 0
    (out / "results.json").unlink()  # an interrupted run of an older version: only its resume state
    _rewrite(out / ".state" / "fgmt" / "state.json", format=None)
    before = tree_hash(out)
    capsys.readouterr()
    assert transfer(transfer_args(work, out)) == 2
    err = one_line(capsys)
    assert "the resume state of fgmt, was written by another version" in err and "new --out folder" in err
    assert tree_hash(out) == before


def test_a_newer_format_is_refused_too(work, capsys):
    out = work / "out"
    assert transfer(transfer_args(work, out)) == 0
    _rewrite(out / "results.json", format=FORMAT + 1)
    before = tree_hash(out)
    capsys.readouterr()
    assert transfer(transfer_args(work, out)) == 2
    assert f"(format {FORMAT + 1}; this version reads format {FORMAT})" in one_line(capsys)
    assert tree_hash(out) == before


def test_a_command_claims_its_folder_once_and_reads_results_once(work, monkeypatch):
    import transfer.files as files
    import transfer.outputs as outputs

    out = work / "out"
    assert transfer(transfer_args(work, out)) == 0  # results.json exists: the next command reads it
    reads, claims = [], []
    load, claim = outputs.load_results, files.claim_folder
    monkeypatch.setattr(outputs, "load_results", lambda path: reads.append(path) or load(path))
    monkeypatch.setattr(files, "claim_folder", lambda *a, **k: claims.append(a[0]) or claim(*a, **k))
    args = transfer_args(work, out)
    args[args.index("fgmt")] = "fgmt,naive"
    assert transfer(args) == 0
    assert len(reads) == 1 and len(claims) == 1
    results = json.loads((out / "results.json").read_text())
    assert results["format"] == FORMAT and sorted(results["methods"]) == ["fgmt", "naive"]
