"""Scale figures of the transfer engine -> docs/results/scale.md.

    python bench/scale.py [--device cpu|cuda] [--quick]

1. Throughput: samples/s of a transfer gradient (``SyncedGradients.gradient``, the same minibatches
   the transfer uses) against a plain training step (forward, backward, optimizer step) of the same
   model, batch size and device. A transfer gradient does no optimizer step and sums minibatch
   gradients, so a ratio near or above 1 means the engine adds no overhead of its own.
2. Processes: the same transfer with 1 process and with 2 (``torch.distributed.run``, gloo on the
   CPU, one thread per process): wall time and whether accuracies agree.

The solver table and peak memory against T are in ``docs/results/solvers.md`` (``bench/solvers.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from transfer.data import TensorData  # noqa: E402
from transfer.gradients import SyncedGradients  # noqa: E402
from transfer.options import TransferOptions  # noqa: E402
from zoo.models import build  # noqa: E402

MODELS = {
    "mlp2 784-4096-10": ("zoo:mlp2", (1, 28, 28), 10),
    "resnet20 (CIFAR, width 1)": ("zoo:resnet20", (3, 32, 32), 10),
}


def _data(shape: tuple[int, ...], classes: int, n: int) -> TensorData:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)
    return TensorData("random", (x, y), (x[:256], y[:256]))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def training_rate(model_id: str, data: TensorData, batches: int, batch_size: int, device: str) -> float:
    """Samples/s of plain SGD steps on ``batches`` minibatches (one warm-up step first)."""
    torch.manual_seed(0)
    model = build(model_id).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = data.train
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
    idx = [order[i * batch_size : (i + 1) * batch_size] for i in range(batches + 1)]
    for i, b in enumerate(idx):
        if i == 1:
            _sync(device)
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[b].to(device)), y[b].to(device)).backward()
        opt.step()
    _sync(device)
    return batches * batch_size / (time.perf_counter() - t0)


def gradient_rate(model_id: str, data: TensorData, batches: int, batch_size: int, device: str) -> float:
    """Samples/s of one transfer gradient over ``batches`` minibatches (one warm-up gradient first)."""
    torch.manual_seed(0)
    model = build(model_id)
    options = TransferOptions(grad_batches=batches, batch_size=batch_size, device=device)
    sg = SyncedGradients(model, data, options)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    sg.gradient(state, k=0)
    _sync(device)
    t0 = time.perf_counter()
    sg.gradient(state, k=1)
    _sync(device)
    return batches * batch_size / (time.perf_counter() - t0)


def throughput(device: str, batches: int) -> list[dict]:
    rows = []
    for name, (model_id, shape, classes) in MODELS.items():
        data = _data(shape, classes, n=batches * 128 + 256)
        train = training_rate(model_id, data, batches, 128, device)
        grad = gradient_rate(model_id, data, batches, 128, device)
        rows.append({"model": name, "train_samples_s": train, "gradient_samples_s": grad, "ratio": grad / train})
        print(f"{name}: training {train:.0f} samples/s, transfer gradient {grad:.0f} samples/s, ratio {grad / train:.2f}")
    return rows


DATA_MODULE = '''
import torch
from torch.utils.data import TensorDataset


def images(n: int = 1024):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n + 256, 3, 16, 16, generator=g), torch.randint(0, 4, (n + 256,), generator=g)
    return TensorDataset(x[:n], y[:n]), TensorDataset(x[n:], y[n:])
'''


def _record(folder: Path, seed: int) -> None:
    from transfer.trajectory import TrajectoryWriter

    sys.path.insert(0, str(folder.parent))
    from scale_data import images  # noqa: PLC0415 - written by processes()

    x, y = images()[0].tensors
    torch.manual_seed(seed)
    model = build("zoo:resnet20?width=0.5&num_classes=4")
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    writer = TrajectoryWriter(folder, model="zoo:resnet20?width=0.5&num_classes=4", data="scale_data:images")
    writer.save(model.state_dict(), step=0, epoch=0.0)
    for step in range(1, 6):
        b = torch.arange(128) + 128 * (step % 8)
        opt.zero_grad()
        F.cross_entropy(model(x[b]), y[b]).backward()
        opt.step()
        writer.save(model.state_dict(), step=step, epoch=float(step))
    writer.finish()


def processes() -> dict:
    """The same FGMT transfer (resnet20 width 0.5 with BatchNorm, T=3, 8 minibatches of 64 per
    gradient) with 1 and with 2 processes."""
    root = Path(tempfile.mkdtemp(prefix="scale_"))
    (root / "scale_data.py").write_text(DATA_MODULE)
    _record(root / "s1", 1)
    _record(root / "s2", 2)
    out = {}
    for n in (1, 2):
        launcher = [sys.executable] if n == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                    f"--nproc-per-node={n}"]  # fmt: skip
        args = ["-m", "zoo.cli.transfer", "run", "--method", "fgmt", "--source", str(root / "s1"), "--target-init",
                str(root / "s2"), "--data", "scale_data:images", "--model", "zoo:resnet20?width=0.5&num_classes=4",
                "--T", "3", "--grad-batches", "8", "--batch-size", "64", "--bn-batches", "4", "--device", "cpu",
                "--out", str(root / f"out{n}"), "--no-progress"]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(ROOT)]), "OMP_NUM_THREADS": "1"}
        t0 = time.perf_counter()
        proc = subprocess.run([*launcher, *args], cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        res = json.loads((root / f"out{n}" / "results.json").read_text())["methods"]["fgmt"]
        out[n] = {"wall_s": wall, "method_s": res["seconds"], "val_acc": res["val_acc"], "val_loss": res["val_loss"]}
        print(f"{n} process(es): {wall:.1f} s wall ({res['seconds']:.1f} s in the method), val acc {res['val_acc']}")
    out["same_val_acc"] = out[1]["val_acc"] == out[2]["val_acc"]
    out["max_rel_loss_diff"] = max(abs(a - b) / abs(a) for a, b in zip(out[1]["val_loss"], out[2]["val_loss"]))
    return out


def report(device: str, rows: list[dict], procs: dict | None, command: str) -> str:
    load = os.getloadavg()[0]
    lines = [
        "# Scale: transfer gradients against training steps; processes", "",
        f"Command: `{command}`. Device: {device}; {os.cpu_count()} CPU cores, load average {load:.1f} when written; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads.", "",
        "## Throughput (batch 128)", "",
        "| model | training step, samples/s | transfer gradient, samples/s | ratio (target >= 0.8) |",
        "|---|---|---|---|",
    ]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['model']} | {r['train_samples_s']:.0f} | {r['gradient_samples_s']:.0f} | {r['ratio']:.2f} |")
    if procs:
        lines += [
            "", "## 1 vs 2 processes (CPU, gloo)", "",
            "FGMT, resnet20 width 0.5 (BatchNorm), T = 3, 8 minibatches of 64 per gradient, the user's own Datasets.", "",
            "| processes | wall s (start-up included) | s in the method | val acc t = 0..3 |", "|---|---|---|---|",
        ]  # fmt: skip
        for n in (1, 2):
            p = procs[n]
            accs = ", ".join(f"{a:.4f}" for a in p["val_acc"])
            lines.append(f"| {n} | {p['wall_s']:.1f} | {p['method_s']:.1f} | {accs} |")
        diff = procs["max_rel_loss_diff"]
        lines += ["", f"Same validation accuracies: {procs['same_val_acc']}; largest relative difference of the "
                  f"validation losses: {diff:.1e} (float summation order)."]  # fmt: skip
    lines += ["", "The solver comparison and peak memory against T: [solvers.md](solvers.md).", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batches", type=int, default=20, help="minibatches per measurement (default 20)")
    p.add_argument("--no-processes", action="store_true", help="skip the 1 vs 2 processes measurement")
    p.add_argument("--out", default=str(ROOT / "docs" / "results" / "scale.md"))
    args = p.parse_args()
    rows = throughput(args.device, args.batches)
    procs = None if args.no_processes else processes()
    command = "python bench/scale.py " + " ".join(sys.argv[1:])
    Path(args.out).write_text(report(args.device, rows, procs, command.strip()))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
