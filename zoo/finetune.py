"""Fine-tune from the best transferred point (the paper's Sec. 4.2): ``transfer finetune``.

The best point of a method is chosen on validation accuracy (``best_t`` in ``results.json``); the
fine-tuning is the one training loop (:func:`zoo.train.train`) started from it, with any recipe,
on the whole training split or on its first N samples (``--subset N``; in Python
``data=finetune_data(results_dir, subset=N)``), as ``zoo train --subset`` trains (the trajectory's
manifest records the ``train_size`` it saw).

Trust: what the caller passes (``model=``, ``data=``: a dataset name, your own ``pkg.mod:factory``,
or the datasets themselves) is used as given; the ids ``results.json`` records are read from a file,
so they may only name built-in models and datasets (give your own again as ``model=`` / ``data=``).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from transfer.checks import check_finite
from transfer.data import DatasetData
from transfer.records import ResultsFile
from transfer.results import TransferError, best_method, load_results
from transfer.trajectory import Trajectory
from zoo.data.training import Data, open_data
from zoo.errors import ZooError
from zoo.train import TrainControl, TrainRecipe, train

__all__ = ["finetune", "finetune_data", "first_samples"]


def finetune(
    results_dir: str | os.PathLike,
    recipe: TrainRecipe,
    *,
    method: str | None = None,
    seed: int = 0,
    data: str | Any | None = None,
    dest: str | os.PathLike | None = None,
    control: TrainControl | None = None,
    model: str | None = None,
) -> Trajectory:
    """Train from the best point of ``results_dir/<method>`` (default: the best method) with
    ``recipe``; the trajectory goes to ``dest`` (default ``results_dir/finetune_<method>``).
    ``model``: the model id to build, ``data``: what to train on (defaults: the ones ``results.json``
    records, built-ins only; see the module docstring on trust; a prefix of the training split:
    :func:`finetune_data`)."""
    results_dir = Path(results_dir)
    results = _results(results_dir)
    method = method or best_method(results)
    if method not in results.methods:
        raise TransferError(f"{results_dir}/results.json has no {method!r} (it has {sorted(results.methods)})")
    best_t = results.methods[method].best_t
    start = Trajectory(results_dir / method).load(best_t)
    check_finite(start, f"the transferred point t={best_t} of {results_dir / method}")
    splits = _training_data(results, data)
    control = replace(control or TrainControl(), trust_code=model is not None)
    dest = Path(dest) if dest is not None else results_dir / f"finetune_{method}"
    return train(model or results.setting["model"], splits, recipe, seed=seed, out=dest, init=start, control=control)


def finetune_data(results_dir: str | os.PathLike, data: str | Any | None = None, *, subset: int | None = None) -> Data:
    """What :func:`finetune` trains on, opened: ``data`` (the caller's, trusted: a name, your own
    ``pkg.mod:factory``, or the datasets) or the dataset ``results.json`` records (a built-in name
    only), with its first ``subset`` training samples only (None: all), as ``zoo train --subset``
    cuts it. Pass it on as ``finetune(..., data=...)``."""
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int) or subset < 1):
        raise ZooError(f"subset must be >= 1, got {subset}")  # as zoo train refuses it, before any work
    splits = _training_data(_results(Path(results_dir)), data)
    return first_samples(splits, subset) if subset is not None else splits


def _results(results_dir: Path) -> ResultsFile:
    results = load_results(results_dir)
    if results is None:
        raise TransferError(f"{results_dir} holds no results.json; run `transfer run --out {results_dir}` first")
    return results


def _training_data(results: ResultsFile, data: str | Any | None) -> Data:
    """``data`` as given (trusted), or the dataset ``results`` records (built-ins only)."""
    return open_data(data if data is not None else results.setting["data"], trust_code=data is not None)


def first_samples(data: Data, n: int) -> Data:
    """``data`` with its first ``n`` training samples only (all of them when it has fewer), the
    validation split whole: what ``open_data(subset=n)`` gives for a name, for data already opened."""
    if isinstance(data, DatasetData):
        return replace(data, train=torch.utils.data.Subset(data.train, range(min(n, len(data.train)))))
    x, y = data.train
    return replace(data, train=(x[:n], y[:n]))
