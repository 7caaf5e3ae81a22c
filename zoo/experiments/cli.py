"""``python -m zoo.experiments NAME``: run one experiment from its config file.

Errors a user can fix (missing dataset, bad config) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import torch

from transfer.methods import TransferError
from transfer.trajectory import TrajectoryError
from zoo.errors import ZooError
from zoo.experiments import EXPERIMENTS, get
from zoo.experiments.common import Context, load_config

__all__ = ["main", "run_experiment", "build_parser"]


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
        from zoo.experiments.common import deep_merge

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


def parse_sets(items: list[str]) -> dict:
    """``["train.epochs=3", 'only=["base"]']`` -> ``{"train": {"epochs": 3}, "only": ["base"]}``;
    values are TOML (bare words are taken as strings)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    out: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ZooError(f"--set {item!r}: use KEY=VALUE, e.g. --set train.epochs=3")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        node = out
        *parents, last = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m zoo.experiments", description=__doc__.split("\n")[0])
    p.add_argument("name", help="experiment name, or 'list'")
    p.add_argument("--config", default=None, help="config file (default configs/NAME.toml)")
    p.add_argument("--tiny", action="store_true", help="the seconds-long configuration the tests run")
    p.add_argument(
        "--runs",
        default=None,
        help="experiment folder (default runs/experiments/NAME; runs are pooled in its sibling _runs)",
    )
    p.add_argument("--docs", default=None, help="folder for results (default docs/results)")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value (dotted key, TOML value), e.g. --set train.epochs=3",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        overrides = parse_sets(args.sets)
    except ZooError as e:
        print(f"experiments: error: {e}", file=sys.stderr)
        return 2
    if args.name == "list":
        for name, (_, line) in EXPERIMENTS.items():
            print(f"{name:14s} {line}")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    try:
        run_experiment(
            args.name,
            config=args.config,
            tiny=args.tiny,
            runs=args.runs,
            docs=args.docs,
            progress=not args.no_progress,
            overrides=overrides,
        )
    except (ZooError, TransferError, TrajectoryError) as e:
        print(f"experiments: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("experiments: interrupted; run the same command again to reuse what finished", file=sys.stderr)
        return 130
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0
