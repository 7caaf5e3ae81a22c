"""Outputs people look at: ``transfer run`` draws ``transfer.png`` (a line per method in the
registry's styles, accuracy and loss per t); ``permgraph inspect --out`` writes a file in every
format, and replaces only a file it wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.colors as mcolors
import pytest
from reliability_kit import MODEL, transfer_args

from transfer.methods import label, plot_style
from transfer.plots import results_figure
from zoo.cli.permgraph import main as permgraph_cli
from zoo.cli.transfer import main as transfer

ROOT = Path(__file__).resolve().parents[2]


def test_transfer_run_draws_every_method_of_results_json_in_the_registry_styles(work):
    out = work / "out"
    assert transfer(transfer_args(work, out, "--method", "fgmt,naive")) == 0
    head = (out / "transfer.png").read_bytes()[:4096]
    assert head.startswith(b"\x89PNG") and b"permgraph" in head
    results = json.loads((out / "results.json").read_text())
    fig = results_figure(results)
    acc, loss = fig.axes
    for ax, key, scale in ((acc, "val_acc", 100), (loss, "val_loss", 1)):
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert set(lines) == {label(m) for m in results["methods"]}
        for method, entry in results["methods"].items():
            line, style = lines[label(method)], plot_style(method)
            assert list(line.get_ydata()) == pytest.approx([scale * v for v in entry[key]])
            assert list(line.get_xdata()) == list(range(len(entry[key])))
            if "color" in style:
                assert mcolors.same_color(line.get_color(), style["color"])
    assert "accuracy" in acc.get_ylabel() and "loss" in loss.get_ylabel()


def test_drawing_the_figure_leaves_a_notebooks_backend_and_figures_alone(tmp_path):
    """``plot_results`` from a session with its own backend and an open pyplot figure (a notebook):
    the backend stays, the figure list is the user's, and the PNG is written all the same."""
    results = {"setting": {"model": "m", "data": "d", "T": 2},
               "methods": {"fgmt": {"val_acc": [0.1, 0.5, 0.9], "val_loss": [2.0, 1.0, 0.5]}}}  # fmt: skip
    code = (
        "import json, sys, matplotlib; matplotlib.use('svg'); import matplotlib.pyplot as plt; plt.figure(); "
        "from transfer.plots import plot_results; "
        f"plot_results(json.loads({json.dumps(results)!r}), {str(tmp_path / 'f.png')!r}); "
        "print(matplotlib.get_backend(), plt.get_fignums())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.split() == ["svg", "[1]"]
    assert (tmp_path / "f.png").read_bytes().startswith(b"\x89PNG")


def test_a_later_method_is_added_to_the_figure(work):
    out = work / "out"
    assert transfer(transfer_args(work, out)) == 0
    first = (out / "transfer.png").read_bytes()
    assert transfer(transfer_args(work, out, "--method", "naive")) == 0
    assert (out / "transfer.png").read_bytes() != first


@pytest.mark.parametrize("fmt, name", [("table", "table.txt"), ("json", "spec.json"), ("dot", "graph.dot"),
                                       ("png", "graph.png")])  # fmt: skip
def test_inspect_out_writes_a_file_in_every_format_and_replaces_only_its_own(tmp_path, fmt, name, capsys):
    out = tmp_path / name
    assert permgraph_cli(["inspect", MODEL, "--format", fmt, "--out", str(out)]) == 0
    assert out.exists() and out.stat().st_size > 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert permgraph_cli(["inspect", MODEL, "--format", fmt, "--out", str(out)]) == 0, "its own file is replaced"
    theirs = tmp_path / f"theirs_{name}"
    theirs.write_text("a user's file\n")
    assert permgraph_cli(["inspect", MODEL, "--format", fmt, "--out", str(theirs)]) == 2
    assert "was not written by permgraph" in capsys.readouterr().err
    assert theirs.read_text() == "a user's file\n"


def test_the_table_file_holds_what_the_terminal_shows(tmp_path, capsys):
    assert permgraph_cli(["inspect", MODEL]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert permgraph_cli(["inspect", MODEL, "--out", str(tmp_path / "table.txt")]) == 0
    written = (tmp_path / "table.txt").read_text().splitlines()
    assert written[0].startswith("# permgraph inspect --format table: " + MODEL)
    table, file_table = shown[2 : shown.index("")], written[3 : written.index("")]  # the group rows
    assert shown[shown.index("") :][:2] == written[written.index("") :][:2], "the same summary"
    assert [r.split()[0] for r in table] == [r.split()[0] for r in file_table], "the same groups, in order"
    for screen, file in zip(table, file_table):  # every member the terminal names, uncut in the file
        names = [n for n in screen.split("  ")[-1].split(", ") if not n.startswith("…") and not n.endswith("…")]
        assert all(n.strip() in file for n in names) and "… (+" not in file
