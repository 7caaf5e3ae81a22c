"""The data a training run or a transfer reads, as one object: in-memory splits or your own datasets.

:func:`open_data` takes a dataset name (:func:`zoo.data.load`), your own ``pkg.mod:factory`` returning
``(train_dataset, val_dataset)`` (:func:`zoo.data.resolve`: imported only when the caller gives the id,
never because a file records it), a :class:`~zoo.data.DataSplits`, or the pair of datasets itself.
Your datasets' items may be ``(x, y)`` pairs or dicts (Hugging Face style); they are read through
:class:`transfer.data.DatasetData`, and every batch is called as :mod:`transfer.inputs` says.
``zoo train``, ``transfer run / diagnose / match / finetune`` and :func:`zoo.finetune` all read
their data through it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from transfer.data import DatasetData
from zoo.data import DataSplits, resolve
from zoo.errors import ZooError

__all__ = ["Data", "open_data", "train_size", "train_batches"]

Data = DataSplits | DatasetData  # in memory (x, y) tensors, or the user's map-style datasets (dicts or pairs)


def open_data(
    data: str | Any,
    *,
    trust_code: bool = True,
    root: str | os.PathLike | None = None,
    subset: int | None = None,
    num_workers: int = 0,
) -> Data:
    """``data`` as a :data:`Data` object (see the module docstring). ``trust_code``: the id is the
    caller's own (False for one read from a file). ``subset``: the first N training samples only."""
    if isinstance(data, str):
        name, data = data, resolve(data, root, subset=subset, trust_code=trust_code)
    else:
        name = type(data[0]).__name__ if isinstance(data, (tuple, list)) and data else ""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        train_ds, val_ds = (_dataset(split, which) for split, which in zip(data, ("train", "val")))
        if subset is not None:
            train_ds = torch.utils.data.Subset(train_ds, range(min(subset, len(train_ds))))
        return DatasetData(name, train_ds, val_ds, num_workers=num_workers)
    if not isinstance(data, (DataSplits, DatasetData)):
        raise ZooError(f"data must be a dataset name, DataSplits or (train_dataset, val_dataset); got {type(data).__name__}")
    return data


def _dataset(split: Any, which: str) -> Any:
    """``split`` if it can be a map-style dataset; a clear error for the usual mistake, a split
    given as its tensors ``(x, y)`` (a dataset of two samples, each a whole tensor)."""
    if isinstance(split, (tuple, list)) and 2 <= len(split) <= 3 and all(isinstance(t, torch.Tensor) for t in split):
        lengths = {len(t) if t.dim() else 0 for t in split}
        if len(lengths) == 1 and lengths.pop() > len(split):
            raise ZooError(f"the {which} split is a {type(split).__name__} of {len(split)} tensors, not a dataset of "
                           "samples; return torch.utils.data.TensorDataset(x, y) for it")  # fmt: skip
    if not (hasattr(split, "__len__") and hasattr(split, "__getitem__")):
        raise ZooError(f"the {which} split is a {type(split).__name__}, not a dataset with len() and indexing "
                       "(a torch.utils.data.Dataset, a Hugging Face datasets.Dataset or a list of samples)")  # fmt: skip
    return split


def train_size(data: Data) -> int:
    """The number of training samples."""
    return data.train_size if isinstance(data, DatasetData) else len(data.train[1])


def train_batches(data: Data, index_batches: Sequence[torch.Tensor]) -> Iterator[Any]:
    """The training batches with these sample indices, in order: ``(x, y)`` slices of in-memory
    splits, or what the datasets' loader yields (pairs or dicts)."""
    if isinstance(data, DatasetData):
        yield from data.train_batches(index_batches)
        return
    x, y = data.train
    for idx in index_batches:
        yield x[idx], y[idx]
