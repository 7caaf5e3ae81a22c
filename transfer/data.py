"""What the transfer engine reads data through: a training split for gradients and BatchNorm
statistics, a validation split for evaluation, and the seeded choice of samples behind gradient k.

The engine never resolves a dataset name; it takes objects (:func:`as_transfer_data`):

* a pair of map-style ``torch.utils.data.Dataset`` objects ``(train, val)`` whose items are
  ``(input, target)`` pairs or dicts (Hugging Face style, targets under ``"labels"``), read through
  ``DataLoader`` workers with the datasets' own transforms (:class:`DatasetData`);
* in-memory tensors, the fast path: an object with ``.train`` and ``.val`` ``(x, y)`` pairs
  (``zoo.data.DataSplits`` is one), or ``((x_train, y_train), (x_val, y_val))`` (:class:`TensorData`).

Gradient ``k`` uses the minibatches :func:`synced_batches` draws from ``(seed, k)`` alone, so the
source and the target gradient of one step see the very same samples, a resumed run draws them
again, and any number of processes split the same minibatches between them.

>>> import torch
>>> a = synced_batches(seed=0, k=1, n=8, count=2, batch_size=4)
>>> b = synced_batches(seed=0, k=1, n=8, count=2, batch_size=4)
>>> all(torch.equal(p, q) for p, q in zip(a, b)), sorted(torch.cat(a).tolist())
(True, [0, 1, 2, 3, 4, 5, 6, 7])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["TensorData", "DatasetData", "DataError", "as_transfer_data", "synced_batches", "mix_seed"]

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


def _in_order(n: int, batch_size: int) -> list[torch.Tensor]:
    return list(torch.arange(n).split(batch_size))


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

    def train_batches(self, index_batches: Sequence[torch.Tensor]) -> Iterator[Pair]:
        """The training batches with these sample indices, in order."""
        x, y = self.train
        for idx in index_batches:
            yield x[idx], y[idx]

    def val_batches(self, batch_size: int) -> list[Pair]:
        """The validation split in order, in batches of ``batch_size`` (slices: no copies)."""
        x, y = self.val
        return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size)]

    def example_batch(self) -> Pair:
        """Two training samples, as a batch: what a spec is inferred from (:mod:`transfer.inputs`)."""
        return self.train[0][:2], self.train[1][:2]


@dataclass(frozen=True)
class DatasetData:
    """Map-style datasets read through ``DataLoader`` (``num_workers`` processes, ``collate_fn``)."""

    name: str
    train: Dataset
    val: Dataset
    num_workers: int = 0
    collate_fn: Callable[[list], Any] | None = None

    def __post_init__(self) -> None:
        for split in ("train", "val"):
            ds = getattr(self, split)
            if not hasattr(ds, "__getitem__") or not hasattr(ds, "__len__"):
                raise DataError(f"the {split} dataset must be map-style (__getitem__ and __len__)")
            if len(ds) == 0:
                raise DataError(f"the {split} dataset is empty")

    @property
    def train_size(self) -> int:
        return len(self.train)

    def _load(self, dataset: Dataset, index_batches: Sequence[torch.Tensor]) -> Iterator[Any]:
        sampler = [idx.tolist() for idx in index_batches]
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=self.num_workers, collate_fn=self.collate_fn)
        yield from loader

    def train_batches(self, index_batches: Sequence[torch.Tensor]) -> Iterator[Any]:
        return self._load(self.train, index_batches)

    def val_batches(self, batch_size: int) -> Iterator[Any]:
        return self._load(self.val, _in_order(len(self.val), batch_size))

    def example_batch(self) -> Any:
        """Two training samples, collated as the loader yields them: what a spec is inferred from
        (:func:`transfer.inputs.inputs_from_batch`: a dict batch is called as ``model(**batch)``)."""
        return next(iter(self.train_batches([torch.arange(min(2, self.train_size))])))


def as_transfer_data(data: Any, *, num_workers: int = 0) -> TensorData | DatasetData:
    """``data`` in the form the engine reads: see the module docstring for what is accepted."""
    if isinstance(data, (TensorData, DatasetData)):
        return data
    if hasattr(data, "train") and hasattr(data, "val") and _is_pair(data.train) and _is_pair(data.val):
        name = getattr(data, "name", None) or type(data).__name__
        return TensorData(str(name), (data.train[0], data.train[1]), (data.val[0], data.val[1]))
    if isinstance(data, (tuple, list)) and len(data) == 2:
        train, val = data
        if _is_pair(train) and _is_pair(val):
            return TensorData("tensors", (train[0], train[1]), (val[0], val[1]))
        if isinstance(train, Dataset) and isinstance(val, Dataset):
            return DatasetData(type(train).__name__, train, val, num_workers=num_workers)
    raise DataError(
        "data must be (train_dataset, val_dataset) map-style Datasets, ((x_train, y_train), (x_val, y_val)) "
        f"tensors, or have .train and .val (x, y) tensor pairs; got a {type(data).__name__}"
    )


def _is_pair(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, torch.Tensor) for v in value)
