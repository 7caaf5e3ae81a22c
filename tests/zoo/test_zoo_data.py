"""Datasets load offline with documented sizes and deterministic splits; missing data says where to put it."""

import pickle

import numpy as np
import pytest
import torch

from zoo import ZooError
from zoo.data import CropFlip, batches, load


@pytest.fixture(scope="module")
def mnist():
    return load("mnist")


def test_mnist_has_the_documented_paper_split_and_normalization(mnist):
    assert mnist.sizes() == {"train": 54000, "val": 6000, "test": 10000}
    assert mnist.num_classes == 10 and mnist.input_shape == (1, 28, 28)
    assert mnist.train[0].shape == (54000, 1, 28, 28) and mnist.train[1].dtype == torch.long
    assert set(mnist.val[1].tolist()) == set(range(10))
    assert abs(mnist.train[0].mean().item()) < 0.02 and abs(mnist.train[0].std().item() - 1) < 0.02


def test_mnist_split_is_deterministic_and_given_split_is_the_pickles(mnist):
    again = load("mnist", subset=100)
    assert torch.equal(again.train[0], mnist.train[0][:100]) and torch.equal(again.val[1], mnist.val[1])
    given = load("mnist", split="given")
    assert given.sizes() == {"train": 50000, "val": 10000, "test": 10000}
    assert torch.equal(given.test[0], mnist.test[0])


def _write_cifar10(root, n=4):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"batch_label": name.encode(),
            b"labels": rng.integers(0, 10, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [b"x.png"] * n,
        }
        with open(d / name, "wb") as f:
            pickle.dump(batch, f)
    return d


def test_cifar10_reads_torchvisions_python_folder_layout(tmp_path):
    d = _write_cifar10(tmp_path)
    data = load("cifar10", root=tmp_path)
    assert data.sizes() == {"train": 18, "val": 2, "test": 4} and data.input_shape == (3, 32, 32)
    with open(d / "test_batch", "rb") as f:
        raw = pickle.load(f)
    pixel = raw[b"data"][0, 0] / 255  # channel 0 (red), row 0, column 0
    assert data.test[0][0, 0, 0, 0].item() == pytest.approx((pixel - 0.485) / 0.229, abs=1e-5)
    assert data.test[1].tolist() == raw[b"labels"]
    assert load("cifar10", root=d).sizes() == data.sizes()  # the folder itself works too
    xb, _ = next(batches(*data.train, 8, shuffle=True, generator=torch.Generator(), augment=data.augment))
    assert xb.shape == (8, 3, 32, 32)


def test_missing_cifar_says_which_files_go_where(tmp_path):
    with pytest.raises(ZooError, match=r"missing data_batch_1, .*test_batch in .*cifar-10-batches-py"):
        load("cifar10", root=tmp_path)
    with pytest.raises(ZooError, match=r"cifar-100-python.*train, test"):
        load("cifar100", root=tmp_path)


def test_missing_fashion_mnist_says_how_to_install(tmp_path):
    with pytest.raises(ZooError, match="apt-get install dataset-fashion-mnist|t10k-images-idx3-ubyte"):
        load("fashion-mnist", root=tmp_path)


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ZooError, match="unknown dataset 'imagenet'; known: mnist, fashion-mnist"):
        load("imagenet")


def test_synthetic_is_seeded():
    a, b = load("synthetic", seed=3), load("synthetic", seed=3)
    assert torch.equal(a.train[0], b.train[0]) and not torch.equal(a.train[0], load("synthetic").train[0])
    assert a.sizes() == {"train": 512, "val": 128, "test": 128} and a.input_shape == (32,)


def test_text_is_next_char_windows_of_ascii():
    data = load("text", block_size=32, max_chars=20000)
    x, y = data.train
    assert x.shape[1] == 32 and data.num_classes == 128 and int(x.max()) < 128
    assert torch.equal(x[0, 1:], y[0, :-1]) and torch.equal(x[1, 0], y[0, -1])
    assert torch.equal(load("text", block_size=32, max_chars=20000).val[0], data.val[0])


def test_batches_are_reproducible_from_the_generator():
    x, y = torch.arange(10.0), torch.arange(10)
    run = [
        yb.tolist() for _, yb in batches(x, y, 4, shuffle=True, generator=torch.Generator().manual_seed(1))
    ]
    again = [
        yb.tolist() for _, yb in batches(x, y, 4, shuffle=True, generator=torch.Generator().manual_seed(1))
    ]
    assert run == again and [len(b) for b in run] == [4, 4, 2] and sorted(sum(run, [])) == list(range(10))
    assert [yb.tolist() for _, yb in batches(x, y, 6)] == [list(range(6)), list(range(6, 10))]


def test_crop_flip_pads_with_black_and_keeps_pixels():
    x = torch.rand(16, 3, 8, 8)
    out = CropFlip(pad=2, fill=(-1.0, -2.0, -3.0))(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    for i in range(16):
        vals = set(out[i, 1].flatten().tolist()) - {-2.0}
        assert vals <= set(x[i, 1].flatten().tolist())


def test_a_loader_refuses_options_it_does_not_take():
    with pytest.raises(ZooError, match=r"dataset 'digits' has no option 'block_size'; it takes none"):
        load("digits", block_size=8)
    with pytest.raises(ZooError, match=r"no option 'feature'; it takes features, num_classes"):
        load("synthetic", feature=3)


def test_a_dataset_factory_that_raises_is_bad_input_naming_it(tmp_path, monkeypatch):
    from zoo.data import resolve

    (tmp_path / "brokendata.py").write_text("def splits(n=4):\n    raise OSError('disk gone')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ZooError, match=r"brokendata\.splits\(\{'n': 8\}\) failed: OSError: disk gone"):
        resolve("brokendata:splits?n=8", trust_code=True)
