"""The runner's promises: a partial rerun (``only = [...]``) merges into the recorded results instead
of erasing the other rows, and a page's hand-written ``## Reading`` survives every rewrite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zoo.experiments.kit.base import get
from zoo.experiments.kit.runner import run_experiment

ROWS = ["base", "init x0.25", "1 gradient batch"]


@pytest.fixture(scope="module")
def gap(tmp_path_factory) -> Path:
    """A tiny fig5a_gap run of every row, published under ``docs``."""
    root = tmp_path_factory.mktemp("gap")
    run_experiment("fig5a_gap", tiny=True, runs=root / "fig5a_gap", docs=root / "docs", progress=False)
    return root


def rerun(root: Path, **kw) -> dict:
    return run_experiment("fig5a_gap", tiny=True, runs=root / "fig5a_gap", docs=root / "docs", progress=False, **kw)


def test_a_partial_rerun_merges_into_the_recorded_rows(gap):
    path = gap / "docs" / "fig5a_gap.json"
    recorded = json.loads(path.read_text())
    assert [r["name"] for r in recorded["variants"]] == ROWS
    # mark two rows: the kept one must come back from the record, the rerun one be computed again
    recorded["variants"][0]["source_val_acc"] = 0.123
    recorded["variants"][1]["source_val_acc"] = 0.456
    path.write_text(json.dumps(recorded))

    out = rerun(gap, overrides={"only": ["init x0.25"]})
    assert [r["name"] for r in out["variants"]] == ROWS
    assert out["variants"][0]["source_val_acc"] == 0.123  # kept from the record
    assert out["variants"][1]["source_val_acc"] != 0.456  # recomputed
    assert out["rows_updated"] == ["init x0.25"] and out["rows_kept"] == ["base", "1 gradient batch"]
    assert json.loads(path.read_text()) == out
    md = (gap / "docs" / "fig5a_gap.md").read_text()
    for name in ROWS:
        assert f"| {name} |" in md
    assert "--set 'only=[\"init x0.25\"]'" in md and "are kept from earlier runs" in md
    assert "| base | (base) | 12.3 |" in md  # the page is made from the merged results

    full = rerun(gap)  # a rerun of everything replaces every row and says nothing of kept ones
    assert full["variants"][0]["source_val_acc"] != 0.123 and "rows_kept" not in full
    assert "kept from earlier runs" not in (gap / "docs" / "fig5a_gap.md").read_text()


def test_the_reading_is_kept_verbatim_at_the_end(gap):
    page = gap / "docs" / "fig5a_gap.md"
    reading = "## Reading\n\nWritten by a person, after looking.\n\n### Details\n\n- *kept*  as is\n"
    page.write_text(page.read_text().replace("| base |", "| stale |") + "\n" + reading)
    rerun(gap)
    text = page.read_text()
    assert text.endswith("\n\n" + reading) and text.count("## Reading") == 1
    assert "| stale |" not in text and "| base |" in text  # everything before the reading is regenerated


def test_records_written_before_rows_had_names_still_merge():
    legacy_fig5a = {
        "pairs": [{"source": "s", "variants": {"uniform, 20 batches": {"gmt": {"val_acc": [0.1]}}}}],
        "variants": {"uniform, 20 batches": {"setting": {"schedule": "uniform"}, "curves": {}}},
    }
    rows = get("fig5a").recorded_rows(legacy_fig5a)
    assert rows == [{"name": "uniform, 20 batches", "setting": {"schedule": "uniform"}, "curves": {},
                     "pairs": [{"gmt": {"val_acc": [0.1]}}]}]  # fmt: skip
    assert get("connectivity").recorded_rows({"cases": [{"case": {"from": "conv8"}}]})[0]["name"] == "conv8"
    assert get("trajectories").recorded_rows({"cases": [{"from": "fig5a"}]})[0]["name"] == "fig5a"


@pytest.mark.parametrize("name", ["connectivity", "trajectories"])
def test_a_partial_rerun_of_cases_keeps_the_other_cases(tmp_path, name):
    """Two cases (the second one named apart); rerunning one keeps the other's numbers."""
    cases = [{"from": "fig5a"}, {"from": "fig5a", "name": "again"}]
    kw = dict(tiny=True, runs=tmp_path / name, docs=tmp_path / "docs", progress=False)
    out = run_experiment(name, overrides={"cases": cases}, **kw)
    assert [c["name"] for c in out["cases"]] == ["fig5a", "again"]
    out = run_experiment(name, overrides={"cases": cases, "only": ["again"]}, **kw)
    assert [c["name"] for c in out["cases"]] == ["fig5a", "again"] and out["rows_kept"] == ["fig5a"]
    assert "## fig5a:" in (tmp_path / "docs" / f"{name}.md").read_text()


def test_every_published_page_has_a_reading_the_runner_keeps():
    """The readings moved from the configs into docs/results/NAME.md: the runner must find each one."""
    from zoo.experiments import names
    from zoo.experiments.kit.runner import reading_of

    docs = Path(__file__).resolve().parents[2] / "docs" / "results"
    for name in names():
        page = docs / f"{name}.md"
        if page.exists():
            reading = reading_of(page.read_text())
            assert reading is not None and reading.startswith("## Reading\n\n") and len(reading) > 200, name
