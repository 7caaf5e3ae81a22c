"""The loss and the evaluation every layer shares: one ``logits_of``, one ``default_loss``, one ``evaluate``.

Training (``zoo.train``), transfer (``transfer.gradients``) and the experiments all measure a model
with these functions, so a validation accuracy means the same thing wherever it is printed.

>>> import torch
>>> model = torch.nn.Linear(4, 3)
>>> x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
>>> loss, acc = evaluate(model, x, y)
>>> 0.0 <= acc <= 1.0 and loss > 0
True
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LossFn", "logits_of", "default_loss", "evaluate", "model_device"]

LossFn = Callable[[object, torch.Tensor], torch.Tensor]
"""``loss_fn(outputs, targets) -> scalar``: a mean over samples (or tokens)."""


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


def default_loss(outputs: object, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy; logits ``(..., V)`` against integer targets ``(...)``, so a classifier
    ``(B, C)`` / ``(B,)`` and a language model ``(B, T, V)`` / ``(B, T)`` both work."""
    logits = logits_of(outputs)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 1000,
    loss_fn: LossFn | None = None,
    device: str | torch.device | None = None,
) -> tuple[float, float]:
    """(mean loss, accuracy as a fraction; per token for sequences) of ``model`` on ``(x, y)`` in eval
    mode; the model's train/eval mode is restored afterwards. ``device`` defaults to the model's."""
    loss_fn = loss_fn or default_loss
    device = model_device(model) if device is None else device
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    try:
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
            out = model(xb)
            n = yb.numel()
            total_loss += float(loss_fn(out, yb)) * n
            correct += int((logits_of(out).argmax(-1) == yb).sum())
            count += n
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluate() got an empty split")
    return total_loss / count, correct / count
