"""torch.distributed: two gloo processes on the CPU give the permutations and validation accuracies of
one process. Tolerance: permutations and accuracies exactly equal; validation losses within 1e-5
relative (the gradients are summed in another order: about 1e-7 relative, far below any LAP gap here).
The data are the user's own Datasets (a ``pkg.mod:factory`` given with ``--data``) and the model has
BatchNorm, so the all-reduced gradients, BatchNorm statistics and validation sums are all exercised."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from transfer.trajectory import TrajectoryWriter
from zoo.models import build

ROOT = Path(__file__).resolve().parents[2]
MODEL = "zoo:resnet20?width=0.25&num_classes=3"
DATA = '''
import torch
from torch.utils.data import TensorDataset


def images(n: int = 96):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n + 32, 3, 8, 8, generator=g), torch.randint(0, 3, (n + 32,), generator=g)
    return TensorDataset(x[:n], y[:n]), TensorDataset(x[n:], y[n:])
'''


def record(folder: Path, seed: int, train: torch.utils.data.TensorDataset) -> None:
    torch.manual_seed(seed)
    model = build(MODEL)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    writer = TrajectoryWriter(folder, model=MODEL, data="dist_data_mod:images", seed=seed)
    writer.save(model.state_dict(), step=0, epoch=0.0)
    x, y = train.tensors
    for step in range(1, 4):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        writer.save(model.state_dict(), step=step, epoch=float(step))
    writer.finish()


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dist")
    (root / "dist_data_mod.py").write_text(textwrap.dedent(DATA))
    sys.path.insert(0, str(root))
    try:
        from dist_data_mod import images

        train, _ = images()
    finally:
        sys.path.remove(str(root))
    record(root / "s1", 1, train)
    record(root / "s2", 2, train)
    return root


def transfer(root: Path, out: str, processes: int) -> subprocess.CompletedProcess:
    args = ["-m", "zoo.cli.transfer", "run", "--method", "fgmt,gmt", "--source", str(root / "s1"), "--target-init",
            str(root / "s2"), "--data", "dist_data_mod:images", "--model", MODEL, "--T", "2", "--grad-batches", "4",
            "--batch-size", "8", "--bn-batches", "3", "--device", "cpu", "--out", str(root / out),
            "--no-progress"]  # fmt: skip
    launcher = [sys.executable] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([*launcher, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_two_gloo_processes_match_one(setup):
    one, two = transfer(setup, "one", 1), transfer(setup, "two", 2)
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    assert "(2 processes)" in two.stdout and two.stdout.count("val accuracy") == 1, "rank 0 alone prints"
    r1 = json.loads((setup / "one" / "results.json").read_text())
    r2 = json.loads((setup / "two" / "results.json").read_text())
    for method in ("fgmt", "gmt"):
        a, b = r1["methods"][method], r2["methods"][method]
        assert (a["world_size"], b["world_size"]) == (1, 2)
        assert a["val_acc"] == b["val_acc"]
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
        for t in range(3):
            pa = load_file(str(setup / "one" / ".state" / method / f"perm_{t:04d}.safetensors"))
            pb = load_file(str(setup / "two" / ".state" / method / f"perm_{t:04d}.safetensors"))
            assert pa.keys() == pb.keys() and all(torch.equal(pa[g], pb[g]) for g in pa), (method, t)
    moved = load_file(str(setup / "one" / ".state" / "fgmt" / "perm_0002.safetensors"))
    assert any(not torch.equal(p, torch.arange(len(p))) for p in moved.values()), "a real permutation was found"
