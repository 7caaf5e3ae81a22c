"""What every dataset is: :class:`DataSplits` in memory, the paper's splits, normalisation,
augmentation, and the minibatch iterator."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

__all__ = [
    "Pair", "DataSplits", "CropFlip", "batches", "paper_split", "three_way", "normalize", "default_root",
    "MNIST_MEAN", "MNIST_STD", "FASHION_MEAN", "FASHION_STD", "IMAGENET_MEAN", "IMAGENET_STD", "SPLIT_SEED",
]  # fmt: skip

Pair = tuple[torch.Tensor, torch.Tensor]

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MEAN, FASHION_STD = (0.2860,), (0.3530,)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SPLIT_SEED = 777  # the paper's code: official train set split 9:1 into train/val with this seed


@dataclass(frozen=True)
class CropFlip:
    """Pad by ``pad`` pixels of black (in normalized units: ``fill`` per channel), crop back to the
    original size at a random offset, flip horizontally with probability 1/2. One draw per image."""

    pad: int = 4
    fill: tuple[float, ...] = (0.0,)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.pad
        fill = torch.tensor(self.fill, dtype=x.dtype).view(1, -1, 1, 1)
        padded = fill.expand(b, c, h + 2 * p, w + 2 * p).clone()
        padded[:, :, p : p + h, p : p + w] = x
        oy = torch.randint(0, 2 * p + 1, (b,), generator=generator)
        ox = torch.randint(0, 2 * p + 1, (b,), generator=generator)
        flip = torch.rand(b, generator=generator) < 0.5
        rows = (oy[:, None] + torch.arange(h))[:, :, None]  # (b, h, 1)
        cols = ox[:, None] + torch.arange(w)  # (b, w)
        cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, :]  # (b, 1, w)
        idx = torch.arange(b)[:, None, None]
        return padded.permute(0, 2, 3, 1)[idx, rows, cols].permute(0, 3, 1, 2).contiguous()


@dataclass(frozen=True)
class DataSplits:
    """A dataset held in memory: ``(x, y)`` tensors per split, plus what a model needs to know."""

    name: str
    train: Pair
    val: Pair
    test: Pair
    num_classes: int
    input_shape: tuple[int, ...]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    augment: Callable[..., torch.Tensor] | None = field(default=None, repr=False)
    source: str = ""

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train[1]), "val": len(self.val[1]), "test": len(self.test[1])}

    def describe(self) -> str:
        s = self.sizes()
        return (
            f"{self.name}: train {s['train']}, val {s['val']}, test {s['test']}; "
            f"{self.num_classes} classes; input {tuple(self.input_shape)}; source {self.source}"
        )


def paper_split(x: torch.Tensor, y: torch.Tensor, val_fraction: float = 0.1) -> tuple[Pair, Pair]:
    """9:1 split of the official training set, the permutation ``random_split`` draws with seed 777."""
    n = len(y)
    n_val = int(round(n * val_fraction))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    tr, va = perm[: n - n_val], perm[n - n_val :]
    return (x[tr], y[tr]), (x[va], y[va])


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


def default_root() -> Path:
    return Path(os.environ.get("PERMGRAPH_DATA", "data"))


def three_way(x: torch.Tensor, y: torch.Tensor, fractions=(0.7, 0.15)) -> tuple[Pair, Pair, Pair]:
    n = len(y)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    a = int(round(n * fractions[0]))
    b = a + int(round(n * fractions[1]))
    idx = perm[:a], perm[a:b], perm[b:]
    return tuple((x[i], y[i]) for i in idx)  # type: ignore[return-value]


def batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    augment: Callable[..., torch.Tensor] | None = None,
) -> Iterator[Pair]:
    """Minibatches ``(xb, yb)`` in order, or in a random order drawn from ``generator``; the last batch
    may be smaller. ``augment(xb, generator)`` is applied per batch (pass it for training only)."""
    n = len(y)
    order = torch.randperm(n, generator=generator) if shuffle else None
    for start in range(0, n, batch_size):
        if order is None:
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        else:
            idx = order[start : start + batch_size]
            xb, yb = x[idx], y[idx]
        if augment is not None:
            xb = augment(xb, generator)
        yield xb, yb
