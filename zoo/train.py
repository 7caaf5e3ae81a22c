"""The training loop that records a learning trajectory, and resumes it bit for bit.

``train`` seeds ``torch.manual_seed(seed)`` before building the model (so θ⁰ is a function of the
seed), records θ⁰ as checkpoint ``init`` (step 0), then a checkpoint every epoch (or every k
iterations) with validation metrics, through :class:`transfer.trajectory.TrajectoryWriter`.

Minibatch order is a function of ``(seed, epoch)`` only: epoch e shuffles with a generator seeded
from both, so two runs with one seed see the same batches, and a run resumed mid-epoch rebuilds the
order. After each checkpoint the optimizer state, the augmentation generator and the global RNG are
written to the sidecar ``OUT/train_state.pt`` (atomically); running the same command again on the same
``out`` continues from the last checkpoint and gives the same bits as an uninterrupted run. The
sidecar is removed when the run completes.

>>> traj = train("zoo:mlp2?width=16&in_features=32&num_classes=4", "synthetic", epochs=2, lr=0.1,
...              seed=0, out="runs/tiny")
>>> traj.steps, traj.metrics("val_acc")
([0, 4, 8], [...])
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from transfer.trajectory import Trajectory, TrajectoryWriter, atomic_write_bytes
from zoo.data import DataSplits, load
from zoo.errors import ZooError
from zoo.models import build, canonical_id

__all__ = ["train", "evaluate", "loss_fn", "logits_of", "lr_at", "TRAIN_STATE"]

log = logging.getLogger(__name__)

TRAIN_STATE = "train_state.pt"
OPTIMIZERS = ("sgd", "adamw")
LR_SCHEDULES = ("constant", "cosine")


def logits_of(output: Any) -> torch.Tensor:
    """The logits of a model's output: a tensor, or an object / dict with ``logits`` (Hugging Face)."""
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, dict) and "logits" in output:
        return output["logits"]
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise ZooError(f"cannot find logits in a model output of type {type(output).__name__}")


def loss_fn(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy; sequence outputs ``(B, T, V)`` against ``(B, T)`` targets are flattened."""
    if logits.dim() == 3:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction=reduction)
    return F.cross_entropy(logits, y, reduction=reduction)


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024, device: str | None = None
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (per token for sequences) of ``model`` in eval mode.

    The model's train/eval mode is restored afterwards.
    """
    if device is None:
        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else "cpu"
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    try:
        for start in range(0, len(y), batch_size):
            xb, yb = x[start : start + batch_size].to(device), y[start : start + batch_size].to(device)
            logits = logits_of(model(xb))
            total_loss += loss_fn(logits, yb, reduction="sum").item()
            correct += (logits.argmax(-1) == yb).sum().item()
            count += yb.numel()
    finally:
        model.train(was_training)
    if count == 0:
        raise ZooError("evaluate() got an empty dataset")
    return total_loss / count, correct / count


def lr_at(step: int, total_steps: int, lr: float, schedule: str) -> float:
    """Learning rate at iteration ``step``: constant, or cosine decay to 0 over ``total_steps``."""
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
    raise ZooError(f"unknown schedule {schedule!r}; valid: {', '.join(LR_SCHEDULES)}")


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch) * 7919 + 17) % (2**63))


def _make_optimizer(name: str, model: nn.Module, lr: float, momentum: float, weight_decay: float):
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    raise ZooError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


def _check_fits(model: nn.Module, model_id: str, splits: DataSplits, device: str) -> None:
    """Fail early, with the fix, when the model's input or output does not match the data."""
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


def _json_norm(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def _save_train_state(out: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(out / TRAIN_STATE, buf.getvalue())


def train(
    model_id: str,
    data: str | DataSplits,
    *,
    epochs: int,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    optimizer: str = "sgd",
    schedule: str = "constant",
    batch_size: int = 128,
    seed: int,
    out: str | os.PathLike,
    checkpoint_every: str | int = "epoch",
    subset: int | None = None,
    device: str = "cpu",
    data_root: str | os.PathLike | None = None,
    eval_batch_size: int = 1024,
    stop_after_epochs: int | None = None,
    stop_after_steps: int | None = None,
    progress: bool = True,
) -> Trajectory:
    """Train ``model_id`` on ``data`` and record its trajectory in ``out``; returns the trajectory.

    ``checkpoint_every``: ``"epoch"`` or an int number of iterations (the last step is always saved).
    ``stop_after_epochs`` / ``stop_after_steps`` end the run early, as an interruption would; calling
    ``train`` again with the same arguments resumes it. A finished run is returned as is.
    """
    if optimizer not in OPTIMIZERS:
        raise ZooError(f"unknown optimizer {optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
    if schedule not in LR_SCHEDULES:
        raise ZooError(f"unknown schedule {schedule!r}; valid: {', '.join(LR_SCHEDULES)}")
    if epochs < 1 or batch_size < 1:
        raise ZooError(f"epochs and batch_size must be >= 1 (got {epochs}, {batch_size})")
    if checkpoint_every != "epoch" and not (isinstance(checkpoint_every, int) and checkpoint_every >= 1):
        raise ZooError(f"checkpoint_every must be 'epoch' or an int >= 1, got {checkpoint_every!r}")
    out = Path(out)
    splits = data if isinstance(data, DataSplits) else load(data, data_root, subset=subset)
    if isinstance(data, DataSplits) and subset is not None:
        splits = DataSplits(
            splits.name, (splits.train[0][:subset], splits.train[1][:subset]), splits.val, splits.test,
            splits.num_classes, splits.input_shape, splits.mean, splits.std, splits.augment, splits.source,
        )  # fmt: skip
    model_id = canonical_id(model_id)
    config = _json_norm(
        {
            "model": model_id, "data": splits.name, "epochs": epochs, "lr": lr, "momentum": momentum,
            "weight_decay": weight_decay, "optimizer": optimizer, "schedule": schedule,
            "batch_size": batch_size, "seed": seed, "checkpoint_every": checkpoint_every, "subset": subset,
            "train_size": len(splits.train[1]), "augment": type(splits.augment).__name__
            if splits.augment is not None else None,
        }
    )  # fmt: skip

    torch.manual_seed(seed)
    model = build(model_id).to(device)
    model.train()
    _check_fits(model, model_id, splits, device)
    opt = _make_optimizer(optimizer, model, lr, momentum, weight_decay)
    x_train, y_train = splits.train
    n = len(y_train)
    ipe = math.ceil(n / batch_size)  # iterations per epoch
    total = epochs * ipe
    aug_gen = torch.Generator().manual_seed(int(seed) + 1)

    step = 0
    resumed = False
    if (out / "manifest.json").exists():
        traj = Trajectory(out)
        if not traj.checkpoints:  # an earlier start that saved nothing: start afresh
            (out / "manifest.json").unlink()
        if traj.checkpoints and _json_norm(traj.config) != config:
            diff = {k: (traj.config.get(k), v) for k, v in config.items() if traj.config.get(k) != v}
            raise ZooError(
                f"{out} already holds a run with another configuration (recorded vs asked: {diff}); "
                "use another --out, or delete the folder to start over"
            )
        if traj.complete and traj.steps and traj.steps[-1] == total:
            log.info("%s is already complete; nothing to do", out)
            return traj
        state_path = out / TRAIN_STATE
        if traj.checkpoints and state_path.exists():
            state = torch.load(state_path, map_location="cpu", weights_only=False)
            if state.get("config") == config and state["step"] in traj.steps:
                step = int(state["step"])
                model.load_state_dict(traj.load_step(step))
                opt.load_state_dict(state["optimizer"])
                aug_gen.set_state(state["aug_rng"])
                torch.set_rng_state(state["torch_rng"])
                resumed = True
                log.info("resuming %s from step %d", out, step)
        if traj.checkpoints and not resumed:
            log.warning("%s has checkpoints but no usable %s; restarting from step 0", out, TRAIN_STATE)

    writer = TrajectoryWriter(out, model=model_id, data=splits.name, seed=seed, config=config)

    def checkpoint(name: str, train_loss: float | None) -> dict:
        val_loss, val_acc = evaluate(model, *splits.val, batch_size=eval_batch_size, device=device)
        metrics = {"val_loss": val_loss, "val_acc": val_acc, "lr": lr_at(step, total, lr, schedule)}
        if train_loss is not None:
            metrics["train_loss"] = train_loss
        writer.save(model.state_dict(), step=step, epoch=step / ipe, name=name, metrics=metrics)
        _save_train_state(
            out,
            {
                "step": step,
                "config": config,
                "optimizer": opt.state_dict(),
                "aug_rng": aug_gen.get_state(),
                "torch_rng": torch.get_rng_state(),
            },
        )
        log.info("step %d (epoch %.2f): %s", step, step / ipe, metrics)
        return metrics

    if not resumed:
        checkpoint("init", None)

    stop_at = total
    if stop_after_epochs is not None:
        stop_at = min(stop_at, stop_after_epochs * ipe)
    if stop_after_steps is not None:
        stop_at = min(stop_at, stop_after_steps)

    bar = tqdm(total=total, initial=step, disable=not progress, desc=f"train {model_id}", unit="it")
    run_loss, run_count = 0.0, 0
    try:
        while step < stop_at:
            epoch, first = divmod(step, ipe)
            order = torch.randperm(n, generator=_epoch_generator(seed, epoch))
            for b in range(first, ipe):
                idx = order[b * batch_size : (b + 1) * batch_size]
                xb, yb = x_train[idx], y_train[idx]
                if splits.augment is not None:
                    xb = splits.augment(xb, aug_gen)
                xb, yb = xb.to(device), yb.to(device)
                for group in opt.param_groups:
                    group["lr"] = lr_at(step, total, lr, schedule)
                loss = loss_fn(logits_of(model(xb)), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                run_loss += loss.item()
                run_count += 1
                bar.update(1)
                at_epoch_end = step % ipe == 0
                due = at_epoch_end if checkpoint_every == "epoch" else step % checkpoint_every == 0
                if due or step == total:
                    name = f"epoch_{step // ipe}" if at_epoch_end else f"step_{step}"
                    m = checkpoint(name, run_loss / run_count)
                    bar.set_postfix(val_acc=f"{m['val_acc']:.4f}")
                    run_loss, run_count = 0.0, 0
                if step >= stop_at:
                    break
    finally:
        bar.close()
    if step == total:
        writer.finish()
        (out / TRAIN_STATE).unlink(missing_ok=True)
    return Trajectory(out)
