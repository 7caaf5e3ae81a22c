"""``permgraph inspect`` / ``permgraph verify``: outputs and exit codes."""

from __future__ import annotations

import json

from permgraph.spec import PermSpec
from zoo.cli.permgraph import main


def test_inspect_table_lists_groups(capsys):
    assert main(["inspect", "zoo:mlp2?width=16"]) == 0
    out = capsys.readouterr().out
    assert "fc1" in out or "0.out" in out or ".out" in out
    assert "1 free groups" in out


def test_inspect_table_marks_what_it_cuts_and_a_file_shows_everything(tmp_path, capsys):
    spec = PermSpec.from_json(_resnet20_json(tmp_path))
    every = [m.describe() for g in spec.free_groups for m in g.members]
    assert main(["inspect", "zoo:resnet20"]) == 0
    screen = capsys.readouterr().out
    assert "… (+" in screen  # the members left out are counted
    assert not all(name in screen for name in every)
    path = tmp_path / "spec.txt"
    assert main(["inspect", "zoo:resnet20", "--out", str(path)]) == 0
    text = path.read_text()
    assert all(name in text for name in every) and "… (+" not in text


def _resnet20_json(tmp_path):
    assert main(["inspect", "zoo:resnet20", "--format", "json", "--out", str(tmp_path / "r.json")]) == 0
    return (tmp_path / "r.json").read_text()


def test_inspect_json_round_trips(tmp_path):
    path = tmp_path / "spec.json"
    assert main(["inspect", "zoo:resnet20", "--format", "json", "--out", str(path)]) == 0
    spec = PermSpec.from_json(path.read_text())
    assert len(spec.free_groups) == 12
    assert json.loads(path.read_text())["format"] == 1


def test_inspect_dot_and_png(tmp_path, capsys):
    assert main(["inspect", "zoo:conv8?width=0.125", "--format", "dot"]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith("digraph") and "conv2d" in dot and "fillcolor" in dot
    png = tmp_path / "g.png"
    assert main(["inspect", "zoo:conv8?width=0.125", "--format", "png", "--out", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_inspect_blocked_shows_reasons(capsys):
    assert main(["inspect", "zoo:mlp2?width=8", "--blocked"]) == 0
    assert "model input" in capsys.readouterr().out


def test_verify_prints_report_and_exit_code(capsys):
    assert main(["verify", "zoo:vit_tiny"]) == 0
    assert "verify OK" in capsys.readouterr().out


def test_bad_model_id_exits_2(capsys):
    assert main(["inspect", "zoo:nonexistent"]) == 2
    assert "error" in capsys.readouterr().err
    assert main(["inspect", "zoo:mlp2", "--input-shape", "a,b"]) == 2


T5 = "hf:t5?d_model=32&d_ff=64&num_layers=1&num_heads=2&d_kv=16&vocab_size=64"


def test_t5_infers_from_its_default_inputs(capsys):
    assert main(["inspect", T5]) == 0  # input_ids and decoder_input_ids, as keyword inputs
    assert "free groups" in capsys.readouterr().out


def test_too_many_inputs_are_named_with_the_forward_s_arity(capsys):
    assert main(["inspect", "zoo:mlp2?width=8", "--input", "2,784", "--input", "2,784"]) == 2
    assert "forward takes at most 1 inputs and got 2" in capsys.readouterr().err
