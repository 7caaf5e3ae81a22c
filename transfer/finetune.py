"""Fine-tune from the best transferred point (the paper's Sec. 4.2), recording the trajectory.

``zoo.train`` always starts from a seeded fresh init, so this is a small SGD loop of its own: it
starts from checkpoint ``best_t`` of a transferred trajectory (chosen on validation accuracy), keeps
the minibatch order a function of ``(seed, epoch)`` as ``zoo.train`` does, and saves a checkpoint
with validation metrics after every epoch.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from transfer.gradients import default_loss, evaluate
from transfer.methods import TransferError, _build_model, _resolve_data, load_results
from transfer.trajectory import Trajectory, TrajectoryWriter

__all__ = ["finetune", "best_method"]

log = logging.getLogger(__name__)


def best_method(results: dict) -> str:
    """The method whose best transferred point has the highest validation accuracy."""
    methods = results.get("methods", {})
    if not methods:
        raise TransferError("results.json lists no method; run `transfer run` first")
    return max(methods, key=lambda m: methods[m]["val_acc"][methods[m]["best_t"]])


def finetune(
    out: str | os.PathLike,
    *,
    method: str | None = None,
    epochs: int = 1,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    batch_size: int = 128,
    seed: int = 0,
    data: Any = None,
    dest: str | os.PathLike | None = None,
    progress: bool = True,
) -> Trajectory:
    """Train from the best point of ``out/<method>`` (default: the best method) for ``epochs``;
    the trajectory goes to ``dest`` (default ``out/finetune_<method>``)."""
    out = Path(out)
    results = load_results(out)
    if results is None:
        raise TransferError(f"{out} holds no results.json; run `transfer run --out {out}` first")
    method = method or best_method(results)
    if method not in results["methods"]:
        raise TransferError(f"{out}/results.json has no {method!r} (it has {sorted(results['methods'])})")
    entry = results["methods"][method]
    best_t = int(entry["best_t"])
    traj = Trajectory(out / method)
    setting = results["setting"]
    _, splits = _resolve_data(data if data is not None else setting["data"])
    model = _build_model(setting["model"])
    model.load_state_dict(traj.load(best_t))
    dest = Path(dest) if dest is not None else out / f"finetune_{method}"
    config = {
        "from": str(out / method), "best_t": best_t, "epochs": epochs, "lr": lr, "momentum": momentum,
        "weight_decay": weight_decay, "batch_size": batch_size, "seed": seed,
    }  # fmt: skip
    writer = TrajectoryWriter(dest, model=setting["model"], data=setting["data"], seed=seed, config=config)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    x, y = splits.train
    n, ipe = len(y), -(-len(y) // batch_size)
    augment = getattr(splits, "augment", None)
    val_loss, val_acc = evaluate(model, *splits.val)
    writer.save(model.state_dict(), step=0, epoch=0.0, name=f"{method}_t{best_t}",
                metrics={"val_loss": val_loss, "val_acc": val_acc})  # fmt: skip
    bar = tqdm(total=epochs * ipe, disable=not progress, desc=f"finetune {method}", unit="it")
    model.train()
    for epoch in range(epochs):
        gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + epoch * 7919 + 17)
        order = torch.randperm(n, generator=gen)
        for i in range(ipe):
            idx = order[i * batch_size : (i + 1) * batch_size]
            xb = x[idx] if augment is None else augment(x[idx], gen)
            opt.zero_grad(set_to_none=True)
            loss = default_loss(model(xb), y[idx])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"fine-tuning diverged at epoch {epoch} (loss {float(loss)}); lower --lr")
            loss.backward()
            opt.step()
            bar.update(1)
        val_loss, val_acc = evaluate(model, *splits.val)
        bar.set_postfix(val_acc=f"{val_acc:.4f}")
        writer.save(model.state_dict(), step=(epoch + 1) * ipe, epoch=float(epoch + 1),
                    metrics={"val_loss": val_loss, "val_acc": val_acc})  # fmt: skip
    bar.close()
    writer.finish()
    return Trajectory(dest)
