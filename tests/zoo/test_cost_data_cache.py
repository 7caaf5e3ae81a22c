"""The decoded-data cache (transfer cost issue): decoded once, read back bit for bit, data only, and
ignored (then rewritten) when it is damaged, stale or not what decoding gives."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import zoo.data as zdata
from zoo.data import load


def write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def idx_root(tmp_path, monkeypatch):
    monkeypatch.setenv("PERMGRAPH_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    root = tmp_path / "mnist"
    root.mkdir()
    write_idx(root / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (60, 28, 28)))
    write_idx(root / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 60))
    write_idx(root / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (20, 28, 28)))
    write_idx(root / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 20))
    return root


def splits(d) -> list[torch.Tensor]:
    return [t for pair in (d.train, d.val, d.test) for t in pair]


def cache_files(tmp_path):
    return sorted((tmp_path / "cache" / "data").glob("*.safetensors"))


def test_decoded_once_then_read_back_bit_for_bit(tmp_path, idx_root, monkeypatch):
    first = load("mnist", root=idx_root)
    (entry,) = cache_files(tmp_path)
    assert entry.name.startswith("mnist-paper-")
    monkeypatch.setattr(zdata.images, "idx_dataset", lambda *a, **k: pytest.fail("decoded again"))
    again = load("mnist", root=idx_root)
    for a, b in zip(splits(first), splits(again)):
        assert a.dtype == b.dtype and a.shape == b.shape and a.stride() == b.stride() and torch.equal(a, b)
        assert b.data_ptr() % 64 == 0, "aligned as decoding leaves it (BLAS kernels depend on it)"
    assert load("mnist", root=idx_root, subset=10).train[0].shape[0] == 10


def test_a_changed_source_file_is_decoded_again(tmp_path, idx_root):
    load("mnist", root=idx_root)
    write_idx(idx_root / "t10k-labels-idx1-ubyte.gz", np.zeros(20))
    assert torch.equal(load("mnist", root=idx_root).test[1], torch.zeros(20, dtype=torch.long))
    assert len(cache_files(tmp_path)) == 1, "the stale entry is replaced, not kept beside"


@pytest.mark.parametrize("damage", ["truncate", "junk", "out_of_range", "bad_labels", "missing_split"])
def test_a_bad_cache_is_ignored_and_rewritten(tmp_path, idx_root, damage):
    decoded = load("mnist", root=idx_root)
    (entry,) = cache_files(tmp_path)
    if damage == "truncate":
        entry.write_bytes(entry.read_bytes()[:200])
    elif damage == "junk":
        entry.write_bytes(b"\x80\x04not a safetensors file")
    else:
        from safetensors import safe_open

        with safe_open(str(entry), framework="pt") as f:
            meta, tensors = f.metadata(), {k: f.get_tensor(k).clone() for k in f.keys()}
        if damage == "out_of_range":
            tensors["train_x"][0, 0, 0, 0] = 1e6
        elif damage == "bad_labels":
            tensors["val_y"][0] = 11
        else:
            del tensors["test_x"]
        save_file(tensors, str(entry), metadata=meta)
    got = load("mnist", root=idx_root)
    assert all(torch.equal(a, b) for a, b in zip(splits(decoded), splits(got)))
    assert [p.name for p in cache_files(tmp_path)] == [entry.name]
    assert load("mnist", root=idx_root) is not None  # and the rewritten entry reads back


def test_caching_can_be_turned_off(tmp_path, idx_root, monkeypatch):
    monkeypatch.setenv("PERMGRAPH_CACHE", "off")
    load("mnist", root=idx_root)
    assert not (tmp_path / "cache").exists()


def test_an_unwritable_cache_is_skipped(tmp_path, idx_root, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("PERMGRAPH_CACHE", str(tmp_path / "file" / "below"))
    assert load("mnist", root=idx_root).train[0].shape == (54, 1, 28, 28)
