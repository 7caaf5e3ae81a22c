"""Model variants the experiments need beyond :mod:`zoo.models`, addressable by model id.

``zoo.experiments.models:mlp2?width=1024&init_scale=0.25`` is the zoo's 2-MLP with every parameter of
PyTorch's default init multiplied by ``init_scale``. With ``init_scale=1`` it draws the very same
numbers as ``zoo:mlp2`` under the same seed. It exists for the Fig. 5a gap ablation: Naive transfer
(θ₂⁰ + Δ₁) can only work when the training change Δ dominates the init, and the init scale is the
knob that decides it (``docs/results/fig5a_gap.md``).
"""

from __future__ import annotations

import torch

from zoo.models import MLP2

__all__ = ["mlp2", "conv8"]


def mlp2(width: int = 4096, in_features: int = 784, num_classes: int = 10, init_scale: float = 1.0) -> MLP2:
    """The paper's 2-MLP with its default init scaled by ``init_scale`` (weights and biases)."""
    model = MLP2(width=width, in_features=in_features, num_classes=num_classes)
    if init_scale != 1.0:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(float(init_scale))
    return model


def conv8(
    width: float = 1.0,
    num_classes: int = 10,
    in_channels: int = 3,
    init: str = "default",
    init_scale: float = 1.0,
    io_scale: float = 1.0,
) -> torch.nn.Module:
    """The zoo's Conv8 with ``init="he"``: He (Kaiming-normal, fan-in, ReLU gain) weights and zero
    biases instead of PyTorch's default. Why: PyTorch's default init shrinks the signal ~6x in
    variance per layer, so the plain 8-layer Conv8 sits at chance (loss log 10) for thousands of
    steps before it learns (the paper's CIFAR-10 scratch run is at 13.5 % after a whole epoch); on a
    CPU budget of a few epochs it never leaves that plateau. Without BatchNorm, He init needs a
    smaller learning rate than the paper's 0.05 (0.01 trained every seed tried; 0.05 killed or
    diverged 3 of 4). ``init="default"`` is ``zoo:conv8``. ``init_scale`` multiplies every parameter
    of the init, as for :func:`mlp2`: with AdamW (which does not see the gradient's scale) a smaller
    init puts the run in the regime where the training change dominates the init."""
    from zoo.models import Conv8

    model = Conv8(width=width, num_classes=num_classes, in_channels=in_channels)
    if init == "he":
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                torch.nn.init.zeros_(m.bias)
    elif init != "default":
        raise ValueError(f"init must be 'default' or 'he', got {init!r}")
    with torch.no_grad():
        if init_scale != 1.0:
            for p in model.parameters():
                p.mul_(float(init_scale))
        if io_scale != 1.0:  # the first conv and the last linear layer only
            first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
            last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
            for m in (first, last):
                for p in m.parameters():
                    p.mul_(float(io_scale))
    return model
