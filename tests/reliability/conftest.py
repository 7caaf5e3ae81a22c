"""Shared pieces of the reliability suite: tiny finished runs, a folder of user code, the CLIs.

Every test here is a promise of docs/reliability.md: received files are data, nothing is lost,
checks are honest, errors are one line with an exit code that says what happened.
"""

from __future__ import annotations

import hashlib
import shutil
import textwrap
from pathlib import Path

import pytest

from zoo.train import TrainControl, TrainRecipe, train

MODEL = "zoo:mlp2?width=8&in_features=32&num_classes=4"
RECIPE = TrainRecipe(epochs=2, lr=0.1, batch_size=128)

USER_MODELS = '''
import torch
from torch import nn


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.c, self.b = nn.Linear(4, 8), nn.Linear(3, 8), nn.Linear(8, 2)

    def forward(self, x, y):
        return self.b(torch.relu(self.a(x) + self.c(y)))


def two_inputs():
    return TwoInputs()
'''


def record_run(out: Path, seed: int, **control) -> Path:
    """A tiny complete training run (2 epochs of the synthetic data)."""
    train(MODEL, "synthetic", RECIPE, seed=seed, out=out, control=TrainControl(progress=False, **control))
    return out


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> Path:
    """Two finished runs (seeds 1 and 2) to copy from; tests never modify these."""
    root = tmp_path_factory.mktemp("reliability_runs")
    record_run(root / "s1", 1)
    record_run(root / "s2", 2)
    return root


@pytest.fixture
def work(tmp_path, runs) -> Path:
    """A private copy of the two runs, free to damage."""
    for name in ("s1", "s2"):
        shutil.copytree(runs / name, tmp_path / name)
    return tmp_path


@pytest.fixture
def user_code(tmp_path, monkeypatch) -> Path:
    """A folder with the user's own model module, importable as ``user_models_rel``."""
    folder = tmp_path / "usercode"
    folder.mkdir()
    (folder / "user_models_rel.py").write_text(textwrap.dedent(USER_MODELS))
    monkeypatch.syspath_prepend(str(folder))
    return folder


def tree_hash(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder``: proof that a command left an input alone."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def transfer_args(work: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--method", "fgmt", "--source", str(work / "s1"), "--target-init", str(work / "s2"),
            "--T", "2", "--grad-batches", "2", "--batch-size", "32", "--out", str(out), "--no-progress",
            *extra]  # fmt: skip
