"""What the reliability tests share: tiny finished runs, the user's own code, the CLIs' arguments.

A module of its own (not conftest.py), so that ``from reliability_kit import ...`` never finds
another package's conftest.

Every test here is a promise of docs/reliability.md: received files are data, nothing is lost,
checks are honest, errors are one line with an exit code that says what happened.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

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



def tree_hash(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder``: proof that a command left an input alone."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def transfer_args(work: Path, out: Path, *extra: str) -> list[str]:
    """``transfer run`` on the kit's runs; FGMT unless ``extra`` names ``--method`` (which adds up)."""
    method = [] if "--method" in extra else ["--method", "fgmt"]
    return ["run", *method, "--source", str(work / "s1"), "--target-init", str(work / "s2"),
            "--T", "2", "--grad-batches", "2", "--batch-size", "32", "--out", str(out), "--no-progress",
            *extra]  # fmt: skip
