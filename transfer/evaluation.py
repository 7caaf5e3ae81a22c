"""The loss and the evaluation every layer shares: one ``logits_of``, one ``default_loss``, one ``evaluate``.

Training (``zoo.train``), transfer (``transfer.gradients``) and the experiments all measure a model
with these functions, so a validation accuracy means the same thing wherever it is printed.

A *batch* is what a ``DataLoader`` yields: an ``(inputs, targets)`` pair, called as
``model(inputs)``; or a dict (Hugging Face style), called as ``model(**batch)`` with the keys its
``forward`` takes (:func:`transfer.inputs.call_model`) and the targets under ``"labels"``
(positions labelled -100 are ignored, as in Hugging Face). A loss is
``loss_fn(outputs, batch) -> scalar``, a mean over the batch's samples (or tokens).

>>> import torch
>>> model = torch.nn.Linear(4, 3)
>>> x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
>>> loss, acc = evaluate(model, x, y)
>>> 0.0 <= acc <= 1.0 and loss > 0
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from transfer.inputs import call_model  # the one rule for calling a model on a batch (re-exported)

__all__ = [
    "LossFn", "logits_of", "default_loss", "evaluate", "evaluate_batches", "model_device", "call_model",
    "targets_of", "batch_to", "IGNORE",
]  # fmt: skip

LossFn = Callable[[object, Any], torch.Tensor]
"""``loss_fn(outputs, batch) -> scalar``: a mean over samples (or tokens)."""

IGNORE = -100  # target value that does not count (Hugging Face's convention)


def logits_of(outputs: object) -> torch.Tensor:
    """The logits of a model's output: a tensor, ``.logits`` or ``["logits"]`` (Hugging Face), or
    the first item of a tuple."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    if hasattr(outputs, "logits"):
        return outputs.logits
    if isinstance(outputs, dict) and "logits" in outputs:
        return outputs["logits"]
    if isinstance(outputs, (tuple, list)) and outputs and isinstance(outputs[0], torch.Tensor):
        return outputs[0]
    raise TypeError(f"cannot find logits in a model output of type {type(outputs).__name__}; pass loss_fn")


def targets_of(batch: Any) -> torch.Tensor:
    """The targets of a batch: the second item of a pair, ``batch["labels"]``, or the batch itself
    when it is a tensor of targets."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, Mapping):
        if "labels" not in batch:
            raise TypeError("a dict batch needs its targets under 'labels' (or pass loss_fn)")
        return batch["labels"]
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[1]
    raise TypeError(f"cannot find targets in a batch of type {type(batch).__name__}; pass loss_fn")


def batch_to(batch: Any, device: torch.device | str) -> Any:
    """Every tensor of ``batch`` (nested in tuples, lists, dicts) on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {k: batch_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(batch_to(v, device) for v in batch)
    return batch


def default_loss(outputs: object, batch: Any) -> torch.Tensor:
    """Mean cross-entropy of the logits ``(..., V)`` against integer targets ``(...)`` (a classifier
    ``(B, C)`` / ``(B,)`` and a language model ``(B, T, V)`` / ``(B, T)`` both work); a Hugging Face
    output that computed its own ``loss`` from the batch's labels is used as it is."""
    if isinstance(batch, Mapping) and getattr(outputs, "loss", None) is not None:
        return outputs.loss
    logits = logits_of(outputs)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets_of(batch).reshape(-1), ignore_index=IGNORE)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def evaluate_batches(
    model: nn.Module, batches: Iterable[Any], loss_fn: LossFn | None = None, device: str | torch.device | None = None
) -> tuple[float, int, int]:
    """(summed loss, correct, counted targets) of ``model`` in eval mode over ``batches``: the parts
    that add up across processes. The model's train/eval mode is restored afterwards."""
    loss_fn = loss_fn or default_loss
    device = model_device(model) if device is None else device
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    try:
        for batch in batches:
            batch = batch_to(batch, device)
            out = call_model(model, batch)
            targets = targets_of(batch)
            valid = targets != IGNORE
            n = int(valid.sum())
            total_loss += float(loss_fn(out, batch)) * n
            correct += int(((logits_of(out).argmax(-1) == targets) & valid).sum())
            count += n
    finally:
        model.train(was_training)
    return total_loss, correct, count


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 1000,
    loss_fn: LossFn | None = None,
    device: str | torch.device | None = None,
) -> tuple[float, float]:
    """(mean loss, accuracy as a fraction; per token for sequences) of ``model`` on ``(x, y)`` in eval
    mode; ``device`` defaults to the model's."""
    batches = ((x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size))
    total, correct, count = evaluate_batches(model, batches, loss_fn, device)
    if count == 0:
        raise ValueError("evaluate() got an empty split")
    return total / count, correct / count
