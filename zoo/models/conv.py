"""Plain convolutional nets: the paper's Conv8 and a CIFAR VGG16."""

from __future__ import annotations

import torch
from torch import nn

from zoo.errors import ZooError
from zoo.models.common import example_images, scale_init, scaled_channels


class Conv8(nn.Module):
    """The paper's Conv8: 8 conv3×3 layers [64,64]-pool-[128,128]-pool-[256,256]-pool-[512,512], a global
    max pool (the paper's MaxPool(4) on 32×32; adaptive so 28×28 works too), then 512→256→256→classes.

    The paper's code writes the last three layers as 1×1 convs on a 1×1 map; they are ``nn.Linear``
    here, which is the same function. ReLU after every layer but the last, biases, no BatchNorm.
    """

    def __init__(self, width: float = 1.0, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for stage, c in enumerate((64, 128, 256, 512)):
            for _ in range(2):
                layers += [nn.Conv2d(c_in, scaled_channels(c, width), 3, padding=1), nn.ReLU()]
                c_in = scaled_channels(c, width)
            if stage < 3:
                layers.append(nn.MaxPool2d(2))
        layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        h = scaled_channels(256, width)
        self.classifier = nn.Sequential(
            nn.Linear(c_in, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, num_classes)
        )
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        return example_images(batch, self.in_channels, 32)


def conv8(
    width: float = 1.0,
    num_classes: int = 10,
    in_channels: int = 3,
    init: str = "default",
    init_scale: float = 1.0,
    io_scale: float = 1.0,
) -> Conv8:
    """The paper's Conv8. ``init="he"``: He (Kaiming-normal, fan-in, ReLU gain) weights and zero
    biases instead of PyTorch's default, which shrinks the signal ~6x in variance per layer, so the
    plain 8-layer net sits at chance for thousands of steps (the paper's CIFAR-10 scratch run is at
    13.5 % after a whole epoch). ``init_scale`` multiplies every parameter of the init (as for
    :func:`mlp2`); ``io_scale`` only the first conv and the last linear layer. The defaults draw the
    very same numbers as before these options existed."""
    model = Conv8(width=width, num_classes=num_classes, in_channels=in_channels)
    if init == "he":
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)
    elif init != "default":
        raise ZooError(f"conv8: init must be 'default' or 'he', got {init!r}")
    scale_init(model, init_scale)
    if io_scale != 1.0:  # the first conv and the last linear layer only
        first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        for m in (first, last):
            scale_init(m, io_scale)
    return model


_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG(nn.Module):
    """CIFAR VGG16 (32×32 inputs → 1×1×512 after five pools), classifier Linear→ReLU→Linear."""

    def __init__(
        self, num_classes: int = 10, width: float = 1.0, batch_norm: bool = False, in_channels: int = 3
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for v in _VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            c = scaled_channels(int(v), width)
            layers.append(nn.Conv2d(c_in, c, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.ReLU())
            c_in = c
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        h = scaled_channels(512, width)
        self.classifier = nn.Sequential(nn.Linear(c_in, h), nn.ReLU(), nn.Linear(h, num_classes))
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        return example_images(batch, self.in_channels, 32)


def vgg16(num_classes: int = 10, width: float = 1.0, batch_norm: bool = False, in_channels: int = 3) -> VGG:
    return VGG(num_classes=num_classes, width=width, batch_norm=batch_norm, in_channels=in_channels)
