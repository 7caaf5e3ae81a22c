"""Multilayer perceptrons: the paper's 2-MLP and a plain deep MLP of any depth and width."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from zoo.errors import ZooError
from zoo.models.common import example_images, scale_init


class MLP2(nn.Sequential):
    """Flatten → Linear → ReLU → Linear, the paper's 2-MLP (784→4096→10, with biases)."""

    def __init__(self, width: int = 4096, in_features: int = 784, num_classes: int = 10) -> None:
        super().__init__(
            OrderedDict(
                flatten=nn.Flatten(),
                fc1=nn.Linear(in_features, width),
                relu=nn.ReLU(),
                fc2=nn.Linear(width, num_classes),
            )
        )
        self.in_features = in_features

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        if self.in_features == 784:
            return example_images(batch, 1, 28)
        g = torch.Generator().manual_seed(0)
        return (torch.randn(batch, self.in_features, generator=g),)


def mlp2(width: int = 4096, in_features: int = 784, num_classes: int = 10, init_scale: float = 1.0) -> MLP2:
    """The paper's 2-MLP; ``init_scale`` multiplies PyTorch's default init (1: the same numbers)."""
    return scale_init(MLP2(width=width, in_features=in_features, num_classes=num_classes), init_scale)


class MLP(nn.Sequential):
    """Flatten, then ``depth`` hidden Linear → ReLU layers of ``width`` units, then a Linear to the classes.

    ``depth + 1`` linear layers in all: REPAIR's MNIST MLP (8 linear layers of width 128) is
    ``mlp?depth=7&width=128``, Git Re-Basin's (3 hidden layers of 512) is ``mlp?depth=3&width=512``."""

    def __init__(self, depth: int = 3, width: int = 512, in_features: int = 784, num_classes: int = 10) -> None:
        if depth < 1 or width < 1:
            raise ZooError(f"mlp: depth and width must be >= 1, got depth={depth}, width={width}")
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        fan_in = in_features
        for i in range(depth):
            layers[f"fc{i + 1}"] = nn.Linear(fan_in, width)
            layers[f"relu{i + 1}"] = nn.ReLU()
            fan_in = width
        layers["out"] = nn.Linear(fan_in, num_classes)
        super().__init__(layers)
        self.in_features = in_features

    example_inputs = MLP2.example_inputs


def mlp(depth: int = 3, width: int = 512, in_features: int = 784, num_classes: int = 10) -> MLP:
    """A plain MLP with ``depth`` hidden layers of ``width`` units (see :class:`MLP`)."""
    return MLP(depth=depth, width=width, in_features=in_features, num_classes=num_classes)
