"""Small helpers every zoo model shares: width scaling and deterministic example images."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["scaled_channels", "example_images", "scale_init"]


def scaled_channels(channels: int, width: float) -> int:
    """Channel count scaled by a width multiplier, at least 1."""
    return max(1, int(round(channels * width)))


def example_images(batch: int, channels: int, size: int) -> tuple[torch.Tensor]:
    """``batch`` seeded N(0, 1) images of ``channels`` × ``size`` × ``size`` (the same every call)."""
    g = torch.Generator().manual_seed(0)
    return (torch.randn(batch, channels, size, size, generator=g),)


def scale_init(model: nn.Module, scale: float) -> nn.Module:
    """Multiply every parameter of ``model``'s init by ``scale`` (in place; returns the model).

    The init scale decides whether the training change Δ dominates θ⁰ (|θ⁰|/|Δ|): Naive transfer
    (θ₂⁰ + Δ₁) can only work where it does, which is what the Fig. 5a gap experiment varies."""
    if scale != 1.0:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(float(scale))
    return model

