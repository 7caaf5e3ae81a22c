"""Text classification tasks made here, as datasets of Hugging Face-style dict items.

Each item is ``{"input_ids", "attention_mask", "labels"}``: a window of ``block_size`` ASCII
characters (ids = code points, vocabulary 128) and its class, so a ``transformers`` model built from a
config trains on it with the ``Trainer`` as on any tokenized dataset. Nothing is downloaded: the text
is the running Python's standard library (:mod:`zoo.data.synthetic`).

- :func:`code_or_prose`: is the window Python source (the standard library) or English prose (its
  documentation pages)? Two classes.
- :func:`which_module`: which of a few standard-library modules does a window of source come from?
  One class per module.

Windows do not overlap; each text's first 85 % of windows are the training pool and the rest the
validation pool, so no validation window shares characters with a training window. Samples are
drawn class-balanced with ``seed``. Use them on every command as ``--data zoo.data.textcls:which_module``.

>>> train, val = which_module(n_train=8, n_val=4)
>>> sorted(train[0]), train[0]["input_ids"].shape, len(val)
(['attention_mask', 'input_ids', 'labels'], torch.Size([64]), 4)
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from zoo.data.synthetic import docs_corpus, stdlib_corpus, stdlib_sources
from zoo.errors import ZooError

__all__ = ["TextWindows", "code_or_prose", "which_module", "MODULES"]

MODULES = "argparse.py,typing.py,inspect.py,enum.py"
TRAIN_FRACTION = 0.85


class TextWindows(Dataset):
    """Windows of character ids with one label each, as dict items."""

    def __init__(self, ids: torch.Tensor, labels: torch.Tensor) -> None:
        self.ids, self.labels = ids, labels
        self.mask = torch.ones(ids.shape[1], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": self.mask, "labels": self.labels[i]}


def _pools(text: str, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The text's non-overlapping windows, split into a training and a validation pool."""
    ids = torch.tensor(list(text.encode("ascii")), dtype=torch.long)
    n = len(ids) // block_size
    cut = int(n * TRAIN_FRACTION)
    if cut < 1 or n - cut < 1:
        raise ZooError(f"a text of {len(ids)} characters is too short for windows of {block_size}")
    windows = ids[: n * block_size].view(n, block_size)
    return windows[:cut], windows[cut:]


def _balanced(pools: list[torch.Tensor], n: int, g: torch.Generator) -> TextWindows:
    """``n`` windows in all, as equal a share of each class as ``n`` allows, shuffled."""
    per = [n // len(pools) + (1 if c < n % len(pools) else 0) for c in range(len(pools))]
    xs, ys = [], []
    for c, (pool, k) in enumerate(zip(pools, per)):
        if k > len(pool):
            raise ZooError(f"class {c} has {len(pool)} windows; ask for at most {len(pool) * len(pools)} samples")
        xs.append(pool[torch.randperm(len(pool), generator=g)[:k]])
        ys.append(torch.full((k,), c, dtype=torch.long))
    x, y = torch.cat(xs), torch.cat(ys)
    order = torch.randperm(len(y), generator=g)
    return TextWindows(x[order], y[order])


def _task(texts: list[str], block_size: int, n_train: int, n_val: int, seed: int) -> tuple[TextWindows, TextWindows]:
    pools = [_pools(t, block_size) for t in texts]
    g = torch.Generator().manual_seed(seed)
    return _balanced([p[0] for p in pools], n_train, g), _balanced([p[1] for p in pools], n_val, g)


def code_or_prose(
    block_size: int = 64, n_train: int = 4000, n_val: int = 1000, seed: int = 0
) -> tuple[TextWindows, TextWindows]:
    """Python source (label 0) or English prose (label 1)."""
    return _task([stdlib_corpus()[0], docs_corpus()[0]], block_size, n_train, n_val, seed)


def which_module(
    modules: str = MODULES, block_size: int = 64, n_train: int = 2000, n_val: int = 600, seed: int = 0
) -> tuple[TextWindows, TextWindows]:
    """Which of ``modules`` (comma-separated standard-library files) a window of source comes from."""
    sources = stdlib_sources()
    names = [m.strip() for m in modules.split(",") if m.strip()]
    missing = [m for m in names if m not in sources]
    if len(names) < 2 or missing:
        raise ZooError(f"which_module: modules must name at least two of {', '.join(sources)}; missing {missing}")
    return _task([sources[m] for m in names], block_size, n_train, n_val, seed)
