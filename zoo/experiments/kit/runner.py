"""Run one experiment the same way for all: check its config, compute, merge, publish.

``run_experiment(NAME)`` loads ``configs/NAME.toml`` (with ``--tiny`` and ``--set`` merged in) and
checks every key before anything trains, calls the experiment's ``compute``, merges a partial rerun
into the recorded ``NAME.json``, and writes ``NAME.json``, ``NAME*.png`` and ``NAME.md``. The page
is one standard header (title, the command that made it, the config file, the date), the
experiment's sections, then the page's existing ``## Reading``: the reading is written by a person
who looked at the numbers, so the runner keeps it verbatim and never writes one.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zoo.experiments.kit.base import Experiment, get, load_config
from zoo.experiments.kit.config import config_path, shown_path
from zoo.experiments.kit.context import Context
from zoo.experiments.kit.report import save_figure, write_json, write_text

__all__ = ["run_experiment", "publish", "render_page", "reading_of", "merge_rows", "READING"]

READING = "## Reading"


def run_experiment(
    name: str,
    *,
    config: str | os.PathLike | None = None,
    tiny: bool = False,
    runs: str | os.PathLike | None = None,
    docs: str | os.PathLike | None = None,
    progress: bool = True,
    overrides: dict | None = None,
    device: str = "cpu",
) -> dict:
    """Run experiment ``name`` and return its results (as recorded in ``DOCS/NAME.json``, merged).

    ``runs`` defaults to ``runs/experiments/NAME`` (``runs/experiments-tiny/NAME`` with ``tiny``);
    training runs and transfers go to the pool ``_runs`` beside it, shared by all experiments;
    ``docs`` to ``docs/results`` (``runs/experiments-tiny/NAME/docs`` with ``tiny``), so a tiny run
    never overwrites the published results."""
    experiment = get(name)
    cfg = load_config(name, config, tiny=tiny, overrides=overrides)
    base = Path("runs") / ("experiments-tiny" if tiny else "experiments") / name
    run_dir = Path(runs) if runs is not None else base
    ctx = Context(
        name=name, config=cfg, runs=run_dir, pool=run_dir.parent / "_runs",
        docs=Path(docs) if docs is not None else (base / "docs" if tiny else Path("docs") / "results"),
        tiny=tiny, progress=progress, device=device, command=_command(name, config, tiny, overrides),
        config_file=shown_path(config_path(name, config)),
    )  # fmt: skip
    ctx.runs.mkdir(parents=True, exist_ok=True)
    results = {
        "experiment": name, "command": ctx.command, "config": ctx.config_file,
        "date": datetime.date.today().isoformat(), **experiment.compute(ctx),
    }  # fmt: skip
    ctx.docs.mkdir(parents=True, exist_ok=True)
    results = _merge_recorded(ctx, experiment, results)
    publish(ctx, experiment, results)
    return results


def publish(ctx: Context, experiment: Experiment, results: Mapping[str, Any]) -> None:
    """Write ``NAME.json``, the plots and ``NAME.md`` (keeping the page's reading)."""
    write_json(ctx.docs / f"{ctx.name}.json", results)
    for suffix, fig in experiment.plots(ctx, results):
        save_figure(fig, ctx.docs / ctx.figure(suffix))
    page = ctx.docs / f"{ctx.name}.md"
    reading = reading_of(page.read_text()) if page.exists() else None
    write_text(page, render_page(ctx, experiment, results, reading))


def render_page(ctx: Context, experiment: Experiment, results: Mapping[str, Any], reading: str | None) -> str:
    """The standard header, the experiment's sections, and ``reading`` (verbatim) last."""
    header = f"Command: `{results['command']}`; config `{results['config']}`; {results['date']}."
    if results.get("rows_kept"):
        header += (f" This command computed {_names(results['rows_updated'])}; "
                   f"{_names(results['rows_kept'])} are kept from earlier runs.")  # fmt: skip
    blocks = [f"# {ctx.config.get('title') or experiment.title}", header, *experiment.sections(ctx, results)]
    text = "\n\n".join(b.strip("\n") for b in blocks) + "\n"
    return text + ("\n" + reading if reading else "")


def _names(names: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def reading_of(page: str) -> str | None:
    """The page's reading: from its ``## Reading`` heading (outside code blocks) to the end, verbatim,
    since the runner writes every section before it; None when the page has none.

    >>> reading_of("# T\\n\\n## Setting\\n\\nx\\n\\n## Reading\\n\\n- it works\\n\\n### More\\n")
    '## Reading\\n\\n- it works\\n\\n### More\\n'
    >>> reading_of("# T\\n\\n```\\n## Reading\\n```\\n") is None
    True
    """
    lines = page.splitlines(keepends=True)
    fenced = False
    for i, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.rstrip() == READING:
            return "".join(lines[i:])
    return None


def merge_rows(recorded: list[dict], computed: list[dict], order: list[str]) -> tuple[list[dict], list[str]]:
    """The rows of a partial rerun merged into the recorded ones: a computed row replaces the
    recorded row of its name, recorded rows the config still defines are kept, and the rows come in
    the config's ``order``. Returns the rows and the names of those kept from the record.

    >>> rows, kept = merge_rows([{"name": "a", "v": 1}, {"name": "b", "v": 2}], [{"name": "b", "v": 3}], ["a", "b"])
    >>> rows, kept
    ([{'name': 'a', 'v': 1}, {'name': 'b', 'v': 3}], ['a'])
    """
    fresh = {r["name"] for r in computed}
    by_name = {r["name"]: r for r in recorded if r["name"] in order and r["name"] not in fresh}
    kept = [n for n in order if n in by_name]
    by_name.update({r["name"]: r for r in computed})
    return [by_name[n] for n in order if n in by_name], kept


def _merge_recorded(ctx: Context, experiment: Experiment, results: dict[str, Any]) -> dict[str, Any]:
    """``results`` with the rows of the recorded ``NAME.json`` that this run did not compute."""
    field, path = experiment.rows, ctx.docs / f"{ctx.name}.json"
    if field is None or not path.exists():
        return results
    recorded = experiment.recorded_rows(json.loads(path.read_text()))
    rows, kept = merge_rows(recorded, results[field], experiment.row_names(ctx.config))
    if kept:
        ctx.say(f"kept {len(kept)} recorded row(s) of {path}: {', '.join(kept)}")
        return {**results, field: rows, "rows_updated": [r["name"] for r in results[field]], "rows_kept": kept}
    return {**results, field: rows}


def _command(name: str, config: Any, tiny: bool, overrides: Mapping[str, Any] | None) -> str:
    """The command line that reruns this experiment (the page shows it)."""
    parts = [f"python -m zoo.experiments {name}"]
    if config is not None:
        parts.append(f"--config {config}")
    if tiny:
        parts.append("--tiny")
    parts += [f"--set {item}" for item in _flat(overrides or {})]
    return " ".join(parts)


def _flat(d: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        if isinstance(v, Mapping):
            out += _flat(v, f"{prefix}{k}.")
        else:
            out.append(f"'{prefix}{k}={json.dumps(v)}'")
    return out
