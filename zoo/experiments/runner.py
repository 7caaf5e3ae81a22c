"""Run one experiment: its config (with ``--tiny`` and ``--set`` overrides), its folders, its context."""

from __future__ import annotations

import os
from pathlib import Path

from zoo.experiments import get
from zoo.experiments.common import Context, deep_merge, load_config

__all__ = ["run_experiment"]


def run_experiment(
    name: str,
    *,
    config: str | os.PathLike | None = None,
    tiny: bool = False,
    runs: str | os.PathLike | None = None,
    docs: str | os.PathLike | None = None,
    progress: bool = True,
    overrides: dict | None = None,
) -> dict:
    """Run experiment ``name`` and return its results (also written to ``DOCS/NAME.json``).

    ``runs`` defaults to ``runs/experiments/NAME`` (``runs/experiments-tiny/NAME`` with ``tiny``);
    training runs and transfers go to the pool ``_runs`` beside it, shared by all experiments;
    ``docs`` to ``docs/results`` (``runs/experiments-tiny/NAME/docs`` with ``tiny``)."""
    module = get(name)
    cfg = load_config(name, config, tiny=tiny)
    if overrides:
        cfg = deep_merge(cfg, overrides)
    base = Path("runs") / ("experiments-tiny" if tiny else "experiments") / name
    run_dir = Path(runs) if runs is not None else base
    ctx = Context(
        name=name,
        config=cfg,
        runs=run_dir,
        pool=run_dir.parent / "_runs",
        docs=Path(docs) if docs is not None else (base / "docs" if tiny else Path("docs") / "results"),
        tiny=tiny,
        progress=progress,
        command=f"python -m zoo.experiments {name}"
        + (f" --config {config}" if config is not None else "")
        + (" --tiny" if tiny else ""),
    )
    if overrides:
        sets = " ".join(f"--set {k}" for k in _flat(overrides))
        ctx.command += f" {sets}"
    ctx.runs.mkdir(parents=True, exist_ok=True)
    return module.run(ctx)


def _flat(d: dict, prefix: str = "") -> list[str]:
    import json

    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _flat(v, f"{prefix}{k}.")
        else:
            out.append(f"'{prefix}{k}={json.dumps(v)}'")
    return out
