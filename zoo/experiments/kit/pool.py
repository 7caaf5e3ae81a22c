"""The shared pool of runs: every expensive piece (a training run, a transfer, a fine-tuning) is
stored in a folder named after its settings and reused when any experiment asks for it again.

So a rerun after an interruption, after editing only the plots, or of an experiment that builds on
another's runs (``from = "fig5a"``) costs seconds. Folder names hash the config tables *as written*
(not the normalised :class:`zoo.train.TrainRecipe`): a recorded pool stays found as long as the
config says the same thing the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from transfer.engine import TransferEngine
from transfer.options import TransferOptions, options_from
from transfer.records import FORMAT
from transfer.results import load_results
from transfer.trajectory import Trajectory
from zoo.data import DataSplits
from zoo.experiments.kit.context import Context
from zoo.experiments.kit.report import pct
from zoo.models import build, parse_model_id
from zoo.train import TrainControl, TrainRecipe, train

__all__ = ["settings_key", "pool_folder", "run_folder", "ensure_run", "transfer_methods", "train_from"]


def settings_key(*parts: Any) -> str:
    """A short stable hash of settings: folder names that change whenever a setting does.

    >>> settings_key("zoo:mlp2", {"lr": 0.1, "epochs": 2}) == settings_key("zoo:mlp2", {"epochs": 2, "lr": 0.1})
    True
    """
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def pool_folder(ctx: Context, kind: str, *parts: Any) -> Path:
    """``POOL/<kind>_<hash of parts>``: the folder of a transfer, fine-tuning or control."""
    return ctx.pool / f"{kind}_{settings_key(*parts)}"


def run_folder(ctx: Context, model: str, data: DataSplits, seed: int, recipe: Mapping[str, Any]) -> Path:
    """Where the run of (model, data, recipe, seed) lives in the pool: every experiment that asks
    for the same run gets the same folder, so it is trained once."""
    _, name, _ = parse_model_id(model)
    slug = "".join(c if c.isalnum() else "-" for c in data.name).strip("-")
    return ctx.pool / f"{name}_{slug}_{settings_key(model, data.name, dict(recipe))}_s{seed}"


def _complete(out: Path) -> bool:
    return (out / "manifest.json").exists() and Trajectory(out).complete


def ensure_run(
    ctx: Context,
    model: str,
    data: DataSplits,
    recipe: Mapping[str, Any],
    *,
    seed: int,
    what: str = "",
    out: Path | None = None,
) -> Trajectory:
    """A complete training run (``zoo.train.train``) of ``recipe`` (a ``[train]`` table): reused
    when it is there, resumed when it was interrupted, trained otherwise. ``out`` defaults to the
    run's folder in the pool."""
    out = out if out is not None else run_folder(ctx, model, data, seed, recipe)
    t0 = time.perf_counter()
    done = _complete(out)
    if not done:
        ctx.say(f"training {what or out.name}: {model} on {data.name}, seed {seed}, {dict(recipe)} -> {out}")
    control = TrainControl(progress=ctx.progress and not done, device=ctx.device)
    traj = train(model, data, TrainRecipe.from_mapping(recipe, "the [train] table"), seed=seed, out=out, control=control)
    verb = "reused" if done else "trained"
    ctx.say(f"{verb} {what or out.name}: val acc {pct(traj.metrics('val_acc')[-1])} ({time.perf_counter() - t0:.0f} s)")
    return traj


def transfer_methods(
    ctx: Context,
    methods: Iterable[str],
    source: Trajectory,
    target: Trajectory,
    data: DataSplits,
    options: Mapping[str, Any],
    out: Path | None = None,
) -> dict[str, dict]:
    """Transfer ``source`` onto ``target``'s init with each method (``options``: a ``[transfer]``
    table) into ``out``, resumably: a finished method is read back from ``out/results.json``.
    ``target`` is also the reference of methods that need one (Oracle). ``out`` defaults to a pool folder named after the
    inputs, so experiments share transfers too; each transferred trajectory is ``out/<method>/``."""
    kw = dict(options)
    if out is None:
        # the results format in the key: a folder of an older format is left alone (the engine refuses it)
        out = pool_folder(ctx, "transfer", str(source.path), str(target.path), None, data.name, kw, FORMAT)
    existing = load_results(out)  # a ResultsFile, checked; the engine reads it again only to run a method
    options_ = options_from(TransferOptions, {**kw, "progress": ctx.progress, "device": ctx.device}, "the transfer options")
    engine = TransferEngine(build(source.model), data, options_)
    results: dict[str, dict] = {}
    for m in methods:
        prev = existing.methods.get(m) if existing is not None else None
        reusable = prev is not None and len(prev.val_acc) == options_.T + 1
        if reusable and _same_transfer(existing.setting, source, target, data, options_):
            results[m] = prev.to_json()
            continue
        ctx.say(f"transfer {m}: T={options_.T}, {options_.schedule} schedule -> {out}")
        results[m] = engine.run(m, source, target, target=target, out=out)  # used by methods that need it
        accs = " ".join(f"{100 * a:5.1f}" for a in results[m]["val_acc"])
        ctx.say(f"  {m:6s} val acc t=0..: {accs}  ({results[m]['seconds']:.0f} s)")
    return {m: {**r, "trajectory": str(out / m)} for m, r in results.items()}


def _same_transfer(
    setting: Mapping[str, Any], source: Trajectory, init: Trajectory, data: DataSplits, options: TransferOptions
) -> bool:
    """Whether a stored results.json was made with these inputs and every option that decides the
    numbers (``TransferOptions.setting``; the engine would refuse a different setting in the same
    folder anyway; this only decides whether to skip the call)."""
    fields = {f.name for f in dataclasses.fields(TransferOptions)}
    return (
        setting.get("source") == str(source.path)
        and setting.get("target_init") == str(init.path)
        and setting.get("data") == data.name
        and {k: v for k, v in setting.items() if k in fields} == options.setting()
    )


def train_from(
    ctx: Context,
    state: Mapping[str, torch.Tensor],
    model: str,
    data: DataSplits,
    out: Path,
    recipe: Mapping[str, Any],
    *,
    seed: int = 0,
    what: str = "",
) -> Trajectory:
    """The one training loop (``zoo.train``) from a given state: the same minibatch order,
    learning-rate schedule and per-epoch checkpoints as a run from scratch, so a fine-tuning curve
    and a from-scratch curve differ only in where they start. Reused when complete."""
    recipe_ = TrainRecipe.from_mapping(recipe, "the fine-tuning recipe")
    done = _complete(out)
    ctx.say(f"{'reusing' if done else 'fine-tuning'} {what or out.name}: {recipe_.epochs} epochs, lr {recipe_.lr} "
            f"{recipe_.schedule}")  # fmt: skip
    control = TrainControl(progress=ctx.progress, device=ctx.device)
    traj = train(model, data, recipe_, seed=seed, out=out, init=state, control=control)
    ctx.say(f"fine-tuned {what or out.name}: val acc per epoch {' '.join(pct(a) for a in traj.metrics('val_acc'))}")
    return traj
