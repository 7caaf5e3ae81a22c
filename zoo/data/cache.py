"""The decoded-data cache: a dataset's three decoded, normalised splits kept as one safetensors file
in the user cache (:func:`transfer.cache.cache_dir`), keyed by its source files (size, mtime, sha256),
by the loaders' source (:func:`transfer.cache.source_digest` of this package: a change to a loader
invalidates its entries) and by the torch and numpy versions. Data only, checked when read, ignored
and rewritten when anything is off."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from transfer.cache import cache_dir, file_identity, source_digest
from transfer.files import temporary_path
from zoo.data.splits import Pair

__all__ = ["cached"]

DATA_CACHE_FORMAT = "permgraph-data-cache"
DATA_CACHE_VERSION = 1

log = logging.getLogger(__name__)

_SPLIT_NAMES = ("train", "val", "test")


def _cache_entry(name: str, split: str, sources: list[Path]) -> tuple[Path, str] | None:
    """The cache file and key for ``name``'s splits decoded from ``sources`` (None: caching is off, or
    a source cannot be read, which decoding will then report)."""
    folder = cache_dir("data")
    if folder is None:
        return None
    try:
        ids = [file_identity(p) for p in sources]
    except OSError:
        return None
    material = {
        "format": DATA_CACHE_FORMAT, "version": DATA_CACHE_VERSION, "loader": name, "split": split,
        "sources": ids, "code": source_digest("zoo.data"),
        "torch": torch.__version__, "numpy": np.__version__,
    }  # fmt: skip
    key = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
    where = hashlib.sha256(json.dumps([i["path"] for i in ids]).encode()).hexdigest()[:8]
    return folder / f"{name}-{split}-{where}-{key[:24]}.safetensors", key


def _readcached(path: Path, key: str, mean: tuple[float, ...], std: tuple[float, ...], classes: int):
    """The three splits stored at ``path``, or None when the file is missing, of another key, or not
    what decoding gives: float32 images within the normalized pixel range, int64 labels in range."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != DATA_CACHE_FORMAT or meta.get("key") != key:
                return None
            # copies on the allocator's alignment, as decoding gives them: a tensor read from a file may sit
            # off 64 bytes, and BLAS then takes other kernels with other rounding (transfer.matching._rows)
            t = {k: f.get_tensor(k).clone() for k in f.keys()}
    except FileNotFoundError:
        return None
    except Exception as e:  # noqa: BLE001 - a cache is data: whatever is wrong with it, decode again
        log.info("ignoring the data cache %s (%s: %s)", path, type(e).__name__, e)
        return None
    lo = min((0.0 - m) / s for m, s in zip(mean, std)) - 1e-4
    hi = max((1.0 - m) / s for m, s in zip(mean, std)) + 1e-4
    out = []
    for split in _SPLIT_NAMES:
        x, y = t.get(f"{split}_x"), t.get(f"{split}_y")
        ok = (
            x is not None and y is not None and x.dtype == torch.float32 and y.dtype == torch.int64
            and x.dim() == 4 and y.dim() == 1 and len(x) == len(y) and len(y) > 0
            and 0 <= int(y.min()) and int(y.max()) < classes
        )  # fmt: skip
        if ok:
            x_lo, x_hi = torch.aminmax(x)
            ok = bool(lo <= float(x_lo) and float(x_hi) <= hi)  # NaN fails too
        if not ok:
            log.info("ignoring the data cache %s: its %s split is not decoded data", path, split)
            return None
        out.append((x, y))
    return tuple(out)


def _writecached(path: Path, key: str, splits: tuple[Pair, Pair, Pair]) -> None:
    """Keep ``splits`` at ``path`` (temporary file, then rename), replacing older entries of the same
    dataset and sources; a cache that cannot be written is skipped."""
    from safetensors.torch import save_file

    tensors = {}
    for split, (x, y) in zip(_SPLIT_NAMES, splits):
        tensors[f"{split}_x"], tensors[f"{split}_y"] = x.contiguous(), y.contiguous()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_path(path)
        try:
            save_file(tensors, str(tmp), metadata={"format": DATA_CACHE_FORMAT, "key": key})
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        prefix = path.name.rsplit("-", 1)[0] + "-"
        for old in path.parent.glob(f"{prefix}*.safetensors"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError as e:
        log.info("could not write the data cache %s (%s)", path, e)


def cached(name: str, split: str, sources: list[Path], decode: Callable[[], tuple[Pair, Pair, Pair]],
            norm: tuple[tuple[float, ...], tuple[float, ...], int]) -> tuple[Pair, Pair, Pair]:  # fmt: skip
    """``decode()``'s three splits, read from the user cache when an entry for these sources is
    there and sound, decoded (and kept) otherwise. ``norm``: the mean, std and class count to check
    a cached entry against."""
    entry = _cache_entry(name, split, sources)
    if entry is not None:
        got = _readcached(*entry, *norm)
        if got is not None:
            return got
    splits = decode()
    if entry is not None:
        _writecached(*entry, splits)
    return splits
