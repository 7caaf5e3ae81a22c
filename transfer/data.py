"""What the transfer engine reads data through: a training split for gradients and BatchNorm
statistics, a validation split for evaluation, and the seeded choice of samples behind gradient k.

The engine never resolves a dataset name; it takes objects. :func:`as_transfer_data` accepts an
object with ``.train`` and ``.val`` ``(x, y)`` tensor pairs (``zoo.data.DataSplits`` is one) or a
pair ``((x_train, y_train), (x_val, y_val))``.

Gradient ``k`` uses the minibatches :func:`synced_batches` draws from ``(seed, k)`` alone, so the
source and the target gradient of one step see the very same samples, and a resumed run draws them
again.

>>> import torch
>>> data = as_transfer_data(((torch.randn(8, 3), torch.arange(8) % 2), (torch.randn(4, 3), torch.arange(4) % 2)))
>>> [b.tolist() for b in synced_batches(seed=0, k=1, n=8, count=2, batch_size=4)] == \\
...     [b.tolist() for b in synced_batches(seed=0, k=1, n=8, count=2, batch_size=4)]
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["TensorData", "DataError", "as_transfer_data", "synced_batches", "mix_seed"]

Pair = tuple[torch.Tensor, torch.Tensor]


class DataError(ValueError):
    """Data the engine cannot read (wrong form, empty split, mismatched lengths)."""


def mix_seed(seed: int, k: int) -> int:
    """A 63-bit generator seed from (seed, k): distinct streams for distinct gradient numbers."""
    return (int(seed) * 1_000_003 + int(k) * 7_919 + 0x5EED) % (2**63 - 1)


def synced_batches(seed: int, k: int, n: int, count: int, batch_size: int) -> list[torch.Tensor]:
    """Index tensors of the ``count`` minibatches of gradient ``k`` over ``n`` samples: drawn without
    replacement within one gradient while the data allow, from ``(seed, k)`` only."""
    gen = torch.Generator().manual_seed(mix_seed(seed, k))
    need = count * batch_size
    order = torch.cat([torch.randperm(n, generator=gen) for _ in range(-(-need // n))])
    return list(order[:need].split(batch_size))


@dataclass(frozen=True)
class TensorData:
    """In-memory training and validation splits: the fast path (indexing, no loader)."""

    name: str
    train: Pair
    val: Pair

    def __post_init__(self) -> None:
        for split, (x, y) in (("train", self.train), ("val", self.val)):
            if len(x) != len(y):
                raise DataError(f"the {split} split's inputs and targets differ in length: {len(x)} vs {len(y)}")
            if len(y) == 0:
                raise DataError(f"the {split} split is empty")

    @property
    def train_size(self) -> int:
        return len(self.train[1])

    def train_batch(self, idx: torch.Tensor) -> Pair:
        """Inputs and targets of the training samples ``idx``."""
        return self.train[0][idx], self.train[1][idx]

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        """Two training inputs, to trace the model with."""
        return (self.train[0][:2],)


def as_transfer_data(data: Any) -> TensorData:
    """``data`` in the form the engine reads: see the module docstring for what is accepted."""
    if isinstance(data, TensorData):
        return data
    if hasattr(data, "train") and hasattr(data, "val"):
        name = getattr(data, "name", None) or type(data).__name__
        return TensorData(str(name), _pair(data.train, "train"), _pair(data.val, "val"))
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return TensorData("tensors", _pair(data[0], "train"), _pair(data[1], "val"))
    raise DataError(
        f"data must have .train and .val (x, y) tensor pairs, or be ((x_train, y_train), (x_val, y_val)); "
        f"got a {type(data).__name__}"
    )


def _pair(value: Any, split: str) -> Pair:
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, torch.Tensor) for v in value)
    ):
        return value[0], value[1]
    raise DataError(f"the {split} split must be an (inputs, targets) pair of tensors, got {type(value).__name__}")
