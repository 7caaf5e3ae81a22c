"""CIFAR / ImageNet-stem ResNets of BasicBlocks, and the CIFAR ResNet-20."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ZooError
from zoo.models.common import example_images, scaled_channels


class BasicBlock(nn.Module):
    """Two 3×3 conv+BN with a residual; the shortcut is 1×1 conv+BN when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + identity)


class ResNet(nn.Module):
    """ResNet of BasicBlocks. ``stem="cifar"``: one 3×3 conv, no pooling (kuangliu-style, 32×32 input);
    ``stem="imagenet"``: 7×7/2 conv + 3×3/2 max pool (224×224 input)."""

    def __init__(
        self,
        blocks: tuple[int, ...] = (2, 2, 2, 2),
        channels: tuple[int, ...] = (64, 128, 256, 512),
        num_classes: int = 10,
        stem: str = "cifar",
        width: float = 1.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if stem not in ("cifar", "imagenet"):
            raise ZooError(f"unknown stem {stem!r}; use 'cifar' (32×32 inputs) or 'imagenet' (224×224)")
        chans = [scaled_channels(c, width) for c in channels]
        if stem == "cifar":
            self.conv1 = nn.Conv2d(in_channels, chans[0], 3, padding=1, bias=False)
            self.maxpool: nn.Module | None = None
        else:
            self.conv1 = nn.Conv2d(in_channels, chans[0], 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(chans[0])
        c_in = chans[0]
        for i, (n, c) in enumerate(zip(blocks, chans)):
            stage = []
            for j in range(n):
                stage.append(BasicBlock(c_in, c, stride=2 if (i > 0 and j == 0) else 1))
                c_in = c
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
        self.num_stages = len(blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        self.stem = stem
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            x = self.maxpool(x)
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        return example_images(batch, self.in_channels, 32 if self.stem == "cifar" else 224)


class ResNet20(ResNet):
    """CIFAR ResNet-20: 3×3 stem, 3 stages × 3 BasicBlocks of 16/32/64 × width channels."""

    def __init__(self, width: float = 1, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__((3, 3, 3), (16, 32, 64), num_classes, "cifar", width, in_channels)


def resnet18(num_classes: int = 10, stem: str = "cifar", width: float = 1.0, in_channels: int = 3) -> ResNet:
    return ResNet((2, 2, 2, 2), (64, 128, 256, 512), num_classes, stem, width, in_channels)


def resnet20(width: float = 1, num_classes: int = 10, in_channels: int = 3) -> ResNet20:
    return ResNet20(width=width, num_classes=num_classes, in_channels=in_channels)
