"""``python -m zoo.experiments NAME``: run one experiment from its config file.

Errors a user can fix (missing dataset, a misspelled config key) print one line and exit with
status 2, before anything trains.
"""

from __future__ import annotations

import argparse
import time

import torch

from transfer.distributed import default_device
from zoo.cli.common import add_common_flags, leave, run_command, show_progress
from zoo.errors import ZooError
from zoo.experiments.kit.base import experiments
from zoo.experiments.kit.runner import run_experiment

__all__ = ["main", "build_parser", "parse_sets"]


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
    p.add_argument("--device", default="cpu", help="cpu (default: the published pages' numbers), auto, cuda, cuda:1")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_common_flags(p)
    return p


def _run(args: argparse.Namespace) -> int:
    overrides = parse_sets(args.sets)
    if args.name == "list":
        for name, experiment in experiments().items():
            print(f"{name:14s} {experiment.title}")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    run_experiment(
        args.name, config=args.config, tiny=args.tiny, runs=args.runs, docs=args.docs,
        progress=show_progress(args), overrides=overrides, device=default_device(args.device),
    )  # fmt: skip
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("experiments", _run, args, resume_hint="; run the same command again to reuse what finished")


def console() -> None:
    """The installed command: :func:`main`, then a fast exit (:func:`zoo.cli.common.leave`)."""
    leave(main())


if __name__ == "__main__":
    console()
