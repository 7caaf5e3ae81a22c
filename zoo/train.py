"""The one training loop: it records a learning trajectory, resumes it bit for bit, and fine-tunes.

``train(model_id, data, recipe, seed=..., out=...)`` seeds ``torch.manual_seed(seed)`` before building
the model (so θ⁰ is a function of the seed), records θ⁰ as checkpoint ``init`` (step 0), then a
checkpoint every epoch (or every k iterations) with validation metrics, through
:class:`transfer.trajectory.TrajectoryWriter`. Given ``init=`` (a state dict: a transferred point,
a pretrained network) it starts from there instead (checkpoint ``start``): fine-tuning, the
experiments' standard runs and ``zoo train`` are this one loop.

Minibatch order is a function of ``(seed, epoch)`` only (:func:`epoch_order`), so two runs with one
seed see the same batches and a run resumed mid-epoch rebuilds the order. After each checkpoint the
optimizer state, the augmentation generator and the global RNG are written beside the run as
safetensors + JSON (``train_state.*``, never a pickle); running the same command again on the same
``out`` continues from the last checkpoint and gives the same bits as an uninterrupted run. The
resume files are removed when the run completes.

>>> import tempfile
>>> from zoo.data import load
>>> out = tempfile.mkdtemp()
>>> traj = train("zoo:mlp2?width=16&in_features=32&num_classes=4", load("synthetic"),
...              TrainRecipe(epochs=2, lr=0.1), seed=0, out=out, control=TrainControl(progress=False))
>>> traj.steps
[0, 4, 8]
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import nn
from tqdm.auto import tqdm

from transfer.data import DatasetData
from transfer.evaluation import batch_to, call_model, default_loss, evaluate, evaluate_batches, logits_of
from transfer.files import MARKER, atomic_write_json, output_folder
from transfer.identity import state_sha
from transfer.inputs import check_call, inputs_from_batch
from transfer.options import OptionsError, check_finite, check_positive_int, options_from
from transfer.trajectory import Trajectory, TrajectoryWriter
from zoo.data.training import Data, open_data, train_batches, train_size
from zoo.errors import ZooError
from zoo.models import build, canonical_id
from zoo.resume import TRAIN_STATE_FILES, clear_train_state, load_train_state, save_train_state

__all__ = [
    "train", "TrainRecipe", "TrainControl", "lr_at", "epoch_order", "evaluate", "TRAIN_STATE_FILES",
]  # fmt: skip

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adamw")
LRSchedule = Literal["constant", "cosine"]  # learning-rate schedules (not the trajectory's: transfer.schedules)
LR_SCHEDULES: tuple[str, ...] = get_args(LRSchedule)


@dataclass(frozen=True)
class TrainRecipe:
    """How to train: the optimizer, its learning-rate schedule, weight decay, batches, augmentation.

    ``checkpoint_every``: ``"epoch"`` or a number of iterations (the last step is always saved).
    ``augment``: apply the dataset's training augmentation (CIFAR's crop and flip) when it has one.
    """

    epochs: int
    lr: float
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: LRSchedule = "constant"
    batch_size: int = 128
    checkpoint_every: str | int = "epoch"
    augment: bool = True

    def __post_init__(self) -> None:
        check_positive_int("epochs", self.epochs)
        check_positive_int("batch_size", self.batch_size)
        check_finite("lr", self.lr, minimum=0.0, strict=True)
        check_finite("momentum", self.momentum, minimum=0.0)
        check_finite("weight_decay", self.weight_decay, minimum=0.0)
        if self.optimizer not in OPTIMIZERS:
            raise OptionsError(f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        if self.schedule not in LR_SCHEDULES:
            raise OptionsError(f"unknown schedule {self.schedule!r}; valid: {', '.join(LR_SCHEDULES)}")
        if self.checkpoint_every != "epoch":
            check_positive_int("checkpoint_every ('epoch' or)", self.checkpoint_every)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], what: str | None = None) -> TrainRecipe:
        """A recipe from a config table; an unknown key fails here, naming it."""
        return options_from(cls, mapping, what)


@dataclass(frozen=True)
class TrainControl:
    """How a run is carried out, not what it computes: device, progress bar, evaluation batch size,
    and an early stop (``stop_after_epochs`` / ``stop_after_steps``) that acts as an interruption:
    calling :func:`train` again with the same arguments resumes the run. ``trust_code``: the model
    id is the caller's own, so a ``package.module:factory`` id may be imported (see :mod:`zoo.models`);
    False for an id read from a file (``zoo.finetune`` without ``model=``)."""

    device: str = "cpu"
    progress: bool = True
    eval_batch_size: int = 1024
    stop_after_epochs: int | None = None
    stop_after_steps: int | None = None
    trust_code: bool = True


def lr_at(step: int, total_steps: int, lr: float, schedule: str) -> float:
    """Learning rate at iteration ``step``: constant, or cosine decay to 0 over ``total_steps``."""
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
    raise ZooError(f"unknown schedule {schedule!r}; valid: {', '.join(LR_SCHEDULES)}")


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order of the ``n`` training samples in ``epoch``: a function of ``(seed, epoch)`` alone."""
    gen = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch) * 7919 + 17) % (2**63))
    return torch.randperm(n, generator=gen)


def _make_optimizer(recipe: TrainRecipe, model: nn.Module) -> torch.optim.Optimizer:
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                               weight_decay=recipe.weight_decay)  # fmt: skip
    return torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)


def _check_fits(model: nn.Module, model_id: str, splits: Data, device: str) -> None:
    """Fail early, with the fix, when the model's input or output does not match the data."""
    if isinstance(splits, DatasetData):  # the user's datasets: the call itself is what can fail
        check_call(model, inputs_from_batch(model, batch_to(splits.example_batch(), device)))
        return
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = logits_of(model(splits.val[0][:2].to(device)))
    except RuntimeError as e:
        raise ZooError(
            f"model {model_id} does not accept {splits.name} inputs of shape {tuple(splits.input_shape)} "
            f"({str(e).splitlines()[0]}); adjust the model id (e.g. in_features=, in_channels=, image_size=)"
        ) from e
    finally:
        model.train(was_training)
    if logits.shape[-1] != splits.num_classes:
        raise ZooError(
            f"model {model_id} outputs {logits.shape[-1]} classes but {splits.name} has "
            f"{splits.num_classes}; add num_classes={splits.num_classes} to the model id (--num-classes)"
        )


def run_config(model_id: str, splits: Data, recipe: TrainRecipe, seed: int, init_sha: str | None) -> dict:
    """What the manifest records as the run's configuration; a resumed run must match it."""
    augment = getattr(splits, "augment", None) if recipe.augment else None
    config = {
        "model": model_id, "data": splits.name, "epochs": recipe.epochs, "lr": recipe.lr,
        "momentum": recipe.momentum, "weight_decay": recipe.weight_decay, "optimizer": recipe.optimizer,
        "schedule": recipe.schedule, "batch_size": recipe.batch_size, "seed": seed,
        "checkpoint_every": recipe.checkpoint_every, "train_size": train_size(splits),
        "augment": type(augment).__name__ if augment is not None else None,
    }  # fmt: skip
    if init_sha is not None:
        config["init_sha"] = init_sha
    return config


class _Run:
    """One training run in ``out``: model, optimizer, generators, and where it stands."""

    def __init__(self, model_id: str, splits: Data, recipe: TrainRecipe, seed: int, control: TrainControl):
        self.model_id, self.splits, self.recipe, self.seed, self.control = model_id, splits, recipe, seed, control
        torch.manual_seed(seed)
        self.model = build(model_id, trust_code=control.trust_code).to(control.device)
        self.model.train()
        self.opt = _make_optimizer(recipe, self.model)
        self.augment = getattr(splits, "augment", None) if recipe.augment else None
        self.aug_gen = torch.Generator().manual_seed(int(seed) + 1)
        self.ipe = math.ceil(train_size(splits) / recipe.batch_size)  # iterations per epoch
        self.total = recipe.epochs * self.ipe
        self.step = 0

    def lr(self) -> float:
        return lr_at(self.step, self.total, self.recipe.lr, self.recipe.schedule)

    def checkpoint(self, writer: TrajectoryWriter, out: Path, name: str, train_loss: float | None) -> dict:
        val_loss, val_acc = self.evaluate()
        metrics = {"val_loss": val_loss, "val_acc": val_acc, "lr": self.lr()}
        if train_loss is not None:
            metrics["train_loss"] = train_loss
        writer.save(self.model.state_dict(), step=self.step, epoch=self.step / self.ipe, name=name, metrics=metrics)
        save_train_state(out, self.step, writer.manifest["config"], self.opt, self.aug_gen)
        log.info("step %d (epoch %.2f): %s", self.step, self.step / self.ipe, metrics)
        return metrics

    def evaluate(self) -> tuple[float, float]:
        """(val loss, val accuracy) of the model now."""
        c = self.control
        if not isinstance(self.splits, DatasetData):
            return evaluate(self.model, *self.splits.val, batch_size=c.eval_batch_size, device=c.device)
        total, correct, count = evaluate_batches(self.model, self.splits.val_batches(c.eval_batch_size), device=c.device)
        if count == 0:
            raise ZooError(f"the validation split of {self.splits.name} has no targets to evaluate")
        return total / count, correct / count

    def stop_at(self) -> int:
        stop, c = self.total, self.control
        if c.stop_after_epochs is not None:
            stop = min(stop, c.stop_after_epochs * self.ipe)
        if c.stop_after_steps is not None:
            stop = min(stop, c.stop_after_steps)
        return stop

    def due(self) -> str | None:
        """The checkpoint name if one is due after the current step."""
        at_epoch_end = self.step % self.ipe == 0
        every = self.recipe.checkpoint_every
        due = at_epoch_end if every == "epoch" else self.step % every == 0
        if not (due or self.step == self.total):
            return None
        return f"epoch_{self.step // self.ipe}" if at_epoch_end else f"step_{self.step}"

    def train_step(self, batch: Any) -> float:
        """One optimizer step on a batch: an ``(x, y)`` pair or a dict, called as :mod:`transfer.inputs` says."""
        if self.augment is not None and isinstance(batch, tuple):
            batch = (self.augment(batch[0], self.aug_gen), batch[1])
        batch = batch_to(batch, self.control.device)
        for group in self.opt.param_groups:
            group["lr"] = self.lr()
        loss = default_loss(call_model(self.model, batch), batch)
        if not torch.isfinite(loss):
            raise ZooError(
                f"training diverged at step {self.step} (loss {float(loss)}); lower the learning rate "
                f"(lr={self.recipe.lr})"
            )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        return loss.item()


def _resume(run: _Run, out: Path, config: dict) -> Trajectory | bool:
    """Continue a run recorded in ``out``: the finished trajectory when it is complete (every
    checkpoint intact), True when the run was restored mid-way, False for a fresh start. Refuses a
    run of another configuration. Damaged or missing checkpoints are regenerated: training is
    deterministic, so rerunning from the last intact resume point (or from the start) rewrites the
    very same bits."""
    if not (out / "manifest.json").exists():
        return False
    traj = Trajectory(out, check_files=False)
    if not traj.checkpoints:  # an earlier start that saved nothing: start afresh
        (out / "manifest.json").unlink()
        return False
    recorded = traj.config
    if recorded != config:
        diff = {k: (recorded.get(k), v) for k, v in config.items() if recorded.get(k) != v}
        raise ZooError(
            f"{out} already holds a run with another configuration (recorded vs asked: {diff}); "
            "use another --out, or delete the folder to start over"
        )
    damaged = traj.damaged()
    if damaged:
        first = damaged[0]["step"]
        log.warning("%s: %d damaged or missing checkpoint(s) from step %d (%s); regenerating them", out,
                    len(damaged), first, ", ".join(c["file"] for c in damaged[:3]))  # fmt: skip
        _forget_from(out, traj, first)
        traj = Trajectory(out, check_files=False)
    elif traj.complete and traj.steps and traj.steps[-1] == run.total:
        log.info("%s is already complete; nothing to do", out)
        return traj
    step = load_train_state(out, config, run.opt, run.aug_gen, traj.steps)
    if step is None:
        if traj.checkpoints and not damaged:
            log.warning("%s has checkpoints but no usable resume state; restarting from step 0", out)
        return False
    run.model.load_state_dict(traj.load_step(step))
    run.step = step
    log.info("resuming %s from step %d", out, step)
    return True


def _forget_from(out: Path, traj: Trajectory, step: int) -> None:
    """Drop the manifest's checkpoints from ``step`` on (and a resume state past them): they will be
    written again. The files stay until overwritten; the manifest is the only index."""
    manifest = dict(traj.manifest)
    manifest["checkpoints"] = [c for c in traj.checkpoints if c["step"] < step]
    manifest["complete"] = False
    atomic_write_json(out / "manifest.json", manifest)


def _loop(run: _Run, writer: TrajectoryWriter, out: Path) -> None:
    stop_at, n, size = run.stop_at(), train_size(run.splits), run.recipe.batch_size
    bar = tqdm(total=run.total, initial=run.step, disable=not run.control.progress, desc=f"train {run.model_id}",
               unit="it")  # fmt: skip
    run_loss, run_count = 0.0, 0
    try:
        while run.step < stop_at:
            epoch, first = divmod(run.step, run.ipe)
            order = epoch_order(run.seed, epoch, n)
            index_batches = [order[b * size : (b + 1) * size] for b in range(first, run.ipe)]
            for batch in train_batches(run.splits, index_batches):
                run_loss += run.train_step(batch)
                run_count += 1
                bar.update(1)
                name = run.due()
                if name is not None:
                    m = run.checkpoint(writer, out, name, run_loss / run_count)
                    bar.set_postfix(val_acc=f"{m['val_acc']:.4f}")
                    run_loss, run_count = 0.0, 0
                if run.step >= stop_at:
                    break
    finally:
        bar.close()


def train(
    model_id: str,
    data: str | Data | tuple,
    recipe: TrainRecipe,
    *,
    seed: int,
    out: str | os.PathLike,
    init: Mapping[str, torch.Tensor] | None = None,
    control: TrainControl | None = None,
) -> Trajectory:
    """Train ``model_id`` on ``data`` with ``recipe`` and record its trajectory in ``out``; returns the
    trajectory. ``data``: a dataset name, your own ``pkg.mod:factory``, a :class:`DataSplits`, or
    ``(train_dataset, val_dataset)`` whose items are ``(x, y)`` pairs or dicts (:func:`zoo.data.training.open_data`).
    ``init``: start from this state dict instead of the seed's fresh init (fine-tuning). A finished
    run is returned as is."""
    control = control or TrainControl()
    out = Path(out)
    splits = open_data(data, trust_code=control.trust_code)
    model_id = canonical_id(model_id)
    with output_folder(out, "zoo train", owned_by_train, f"zoo train --model {model_id} --seed {seed}"):
        return _train_locked(model_id, splits, recipe, seed, out, init, control)


def owned_by_train(name: str) -> bool:
    """Whether a folder entry is one the training loop writes (a run recorded before markers)."""
    return (
        name in ("manifest.json", ".lock", MARKER, *TRAIN_STATE_FILES)
        or (name.startswith("ckpt_") and name.endswith(".safetensors"))
        or name.startswith(".")
    )


def _train_locked(
    model_id: str,
    splits: Data,
    recipe: TrainRecipe,
    seed: int,
    out: Path,
    init: Mapping[str, torch.Tensor] | None,
    control: TrainControl,
) -> Trajectory:
    run = _Run(model_id, splits, recipe, seed, control)
    if init is not None:
        run.model.load_state_dict(dict(init))
    _check_fits(run.model, model_id, splits, control.device)
    config = run_config(model_id, splits, recipe, seed, state_sha(init) if init is not None else None)
    resumed = _resume(run, out, config)
    if isinstance(resumed, Trajectory):
        return resumed
    writer = TrajectoryWriter(out, model=model_id, data=splits.name, seed=seed, config=config)
    if not resumed:
        run.checkpoint(writer, out, "init" if init is None else "start", None)
    _loop(run, writer, out)
    if run.step == run.total:
        writer.finish()
        clear_train_state(out)
    return Trajectory(out)
