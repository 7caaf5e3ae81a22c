"""Reading the classic dataset files safely: MNIST-format idx files and the numpy-only pickles of
MNIST and CIFAR (a restricted unpickler: no pickle can run code)."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.data.splits import Pair, normalize, paper_split
from zoo.errors import ZooError

__all__ = ["read_idx", "find_idx", "idx_dataset", "ArrayUnpickler", "load_array_pickle"]


def read_idx(path: Path) -> torch.Tensor:
    """Read an idx file (optionally gzipped): the MNIST / Fashion-MNIST binary format."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ZooError(f"{path} is not an unsigned-byte idx file; expected the standard MNIST-format files")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ZooError(f"{path} is truncated ({data.size} of {int(np.prod(dims))} bytes); replace the file")
    return torch.from_numpy(data.copy()).view(*dims)


_IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


def find_idx(dirs: list[Path]) -> dict[str, Path] | None:
    for d in dirs:
        for sub in (d, d / "raw", d / "MNIST" / "raw", d / "FashionMNIST" / "raw"):
            found = {}
            for key, stem in _IDX_FILES.items():
                for cand in (sub / stem, sub / f"{stem}.gz"):
                    if cand.exists():
                        found[key] = cand
                        break
            if len(found) == 4:
                return found
    return None


def idx_dataset(name: str, files: dict[str, Path], mean, std, split: str) -> tuple[Pair, Pair, Pair]:
    xs = {k: read_idx(files[k]) for k in files}
    train_x = normalize(xs["train_x"].float().div_(255).unsqueeze(1), mean, std)
    test_x = normalize(xs["test_x"].float().div_(255).unsqueeze(1), mean, std)
    train, val = paper_split(train_x, xs["train_y"].long())
    return train, val, (test_x, xs["test_y"].long())


class ArrayUnpickler(pickle.Unpickler):
    """Reads the classic dataset pickles (MNIST's ``mnist.pkl.gz``, CIFAR's python batches) and
    nothing else: they hold only dicts, lists, tuples, bytes, numbers and numpy arrays, so the only
    globals admitted are numpy's array-reconstruction functions. Any other global in the stream (a
    pickle's way of running code) is refused with a :class:`ZooError`."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise ZooError(
                f"refusing to read a dataset pickle that asks for {module}.{name}: the real file holds only "
                "numpy arrays; replace it with the original download"
            )
        return super().find_class(module, name)


def load_array_pickle(f: Any, encoding: str = "bytes") -> Any:
    """``pickle.load`` restricted to what dataset pickles hold (see :class:`ArrayUnpickler`)."""
    try:
        return ArrayUnpickler(f, encoding=encoding).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise ZooError(f"a dataset pickle is damaged ({e}); replace it with the original download") from e


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return load_array_pickle(f, encoding="bytes")
