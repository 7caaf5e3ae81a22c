"""What the by-hand checks share: run a model on a state it does not hold."""

from __future__ import annotations

import torch
from torch import nn


def output_with(model: nn.Module, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The model's output with ``state`` in place of its own tensors (the model is left as it is)."""
    with torch.no_grad():
        return torch.func.functional_call(model, state, (x,))
