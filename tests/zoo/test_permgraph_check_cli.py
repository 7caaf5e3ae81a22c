"""``permgraph check MODEL --spec FILE``: the report, and exit codes 0 sound / 1 unsound / 2 bad input."""

from __future__ import annotations

import json

import pytest

from zoo.cli.permgraph import main

MODEL = "zoo:mlp2?width=16"  # fc1 (16 x 784) -> fc2 (10 x 16)
SOUND = {"axes_to_perm": {"fc1.weight": ["P0", None], "fc1.bias": ["P0"], "fc2.weight": [None, "P0"],
                          "fc2.bias": [None]}}  # fmt: skip


def write(tmp_path, text, name="spec.json"):
    path = tmp_path / name
    path.write_text(text if isinstance(text, str) else json.dumps(text, indent=1))
    return str(path)


def test_a_sound_spec_exits_0_with_the_table(tmp_path, capsys):
    assert main(["check", MODEL, "--spec", write(tmp_path, SOUND), "--trials", "1"]) == 0
    out = capsys.readouterr().out
    assert "check_spec: SOUND and complete" in out and "P0" in out and "alone: change" in out


def test_an_unsound_spec_exits_1_naming_the_left_out_tensor(tmp_path, capsys):
    spec = {"axes_to_perm": {"fc1.weight": ["P0", None], "fc2.weight": [None, "P0"]}}
    assert main(["check", MODEL, "--spec", write(tmp_path, spec), "--trials", "1"]) == 1
    out = capsys.readouterr().out
    assert "UNSOUND" in out and "leaves out a tied tensor" in out and "but not fc1.bias axis 0" in out


def test_missing_symmetries_are_notes_and_exit_0(tmp_path, capsys):
    assert main(["check", MODEL, "--spec", write(tmp_path, {"axes_to_perm": {}}), "--trials", "1"]) == 0
    out = capsys.readouterr().out
    assert "SOUND, incomplete" in out and "note" in out and "missing symmetry" in out


def test_json_format_for_machines(tmp_path, capsys):
    spec = {"perm_to_axes": {"P0": [["fc1.weight", 0], ["fc1.bias", 0], ["fc2.weight", 1], ["fc2.bias", 0]]}}
    assert main(["check", MODEL, "--spec", write(tmp_path, spec), "--format", "json", "--trials", "1"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    (f,) = [f for f in report["findings"] if f["kind"] == "permutes_output"]
    assert f["perm"] == "P0" and f["members"] == ["fc2.bias axis 0"] and f["severity"] == "error"


def test_a_repeated_key_is_bad_input_named_with_its_line(tmp_path, capsys):
    text = '{"axes_to_perm": {\n "fc1.weight": ["P0", null],\n "fc1.bias": ["P0"],\n "fc1.weight": ["P1", null]\n}}'
    assert main(["check", MODEL, "--spec", write(tmp_path, text)]) == 2
    err = capsys.readouterr().err
    assert "line 4" in err and "'fc1.weight' appears 2 times (lines 2, 4)" in err and "merge" in err


@pytest.mark.parametrize("content,expected", [
    ("not json at all", "is not JSON"),
    ('{"layers": {}}', "has none of axes_to_perm"),
    ('[1, 2]', "holds a JSON list"),
    ('{"axes_to_perm": {"fc1.weight": "P0"}}', "must be a tuple"),
    (b"\xff\xfe\x00garbage", "not a UTF-8 text file"),
])  # fmt: skip
def test_unreadable_or_unknown_spec_files_are_bad_input(tmp_path, capsys, content, expected):
    path = tmp_path / "spec.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main(["check", MODEL, "--spec", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1


def test_a_missing_spec_file_is_bad_input(tmp_path, capsys):
    assert main(["check", MODEL, "--spec", str(tmp_path / "nope.json")]) == 2
    assert "cannot access" in capsys.readouterr().err


def test_the_inferred_spec_of_inspect_checks_sound_and_complete(tmp_path, capsys):
    path = tmp_path / "vit.json"
    assert main(["inspect", "zoo:vit_tiny", "--format", "json", "--out", str(path)]) == 0
    capsys.readouterr()
    assert main(["check", "zoo:vit_tiny", "--spec", str(path), "--trials", "1"]) == 0
    assert "SOUND and complete" in capsys.readouterr().out
