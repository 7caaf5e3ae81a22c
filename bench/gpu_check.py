"""The device path on a lent GPU, in a few minutes: train, record and transfer a small ResNet on CUDA,
compare with the same run on the CPU, and print throughput.

    python bench/gpu_check.py [--out docs/results/gpu_check.md]

What is compared, and the tolerance: CUDA kernels sum in another order than the CPU's (and cuDNN
picks algorithms), so trained weights differ in the last bits and the difference grows over steps.
The check passes when the final validation accuracies of the CUDA and CPU runs are within 2 points,
every transferred accuracy of FGMT is within 2 points, and FGMT's permutations agree on at least 90 %
of the units. Without CUDA it says so and exits 0 (CI has no GPU; nothing here is required).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scale import _data, gradient_rate, training_rate  # noqa: E402
from transfer.engine import TransferEngine  # noqa: E402
from transfer.options import TransferOptions  # noqa: E402
from transfer.store import RunStore  # noqa: E402
from zoo.data import DataSplits  # noqa: E402
from zoo.train import TrainControl, TrainRecipe, train  # noqa: E402

MODEL = "zoo:resnet20?width=0.5&num_classes=4"


def images(n: int = 4096) -> DataSplits:
    """Learnable synthetic images: the class is which quadrant is brightest (no download needed)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n + 512, 3, 32, 32, generator=g)
    y = torch.randint(0, 4, (n + 512,), generator=g)
    for c in range(4):
        r, q = divmod(c, 2)
        x[y == c, :, 16 * r : 16 * r + 16, 16 * q : 16 * q + 16] += 1.0
    pairs = (x[:n], y[:n]), (x[n:], y[n:])
    return DataSplits("quadrants", pairs[0], pairs[1], pairs[1], 4, (3, 32, 32))


def run_on(device: str, work: Path) -> dict:
    data, recipe = images(), TrainRecipe(epochs=2, lr=0.05, schedule="cosine")
    t0 = time.perf_counter()
    runs = [train(MODEL, data, recipe, seed=s, out=work / f"{device}_s{s}", control=TrainControl(device=device,
                  progress=False)) for s in (1, 2)]  # fmt: skip
    train_s = time.perf_counter() - t0
    from zoo.models import build

    options = TransferOptions(T=4, grad_batches=8, batch_size=128, device=device, progress=False)
    t0 = time.perf_counter()
    res = TransferEngine(build(MODEL), data, options).run("fgmt", runs[0], runs[1], out=work / f"{device}_t")
    store = RunStore(work / f"{device}_t" / ".state" / "fgmt")
    perms = [store.load_perm(t) for t in range(5)]
    return {"final_acc": [r.metrics("val_acc")[-1] for r in runs], "train_s": train_s,
            "transfer_s": time.perf_counter() - t0, "fgmt": res["val_acc"], "perms": perms}  # fmt: skip


def agreement(a: list[dict], b: list[dict]) -> float:
    same = total = 0
    for pa, pb in zip(a, b):
        for g in pa:
            same += int((pa[g] == pb[g]).sum())
            total += pa[g].numel()
    return same / max(total, 1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "results" / "gpu_check.md"))
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; nothing measured (the project needs none)")
        return 0
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    gpu, cpu = run_on("cuda", work), run_on("cpu", work)
    acc_gap = max(abs(a - b) for a, b in zip(gpu["final_acc"], cpu["final_acc"]))
    fgmt_gap = max(abs(a - b) for a, b in zip(gpu["fgmt"], cpu["fgmt"]))
    agree = agreement(gpu["perms"], cpu["perms"])
    ok = acc_gap <= 0.02 and fgmt_gap <= 0.02 and agree >= 0.9
    data = _data((3, 32, 32), 10, n=20 * 128 + 256)
    rates = {dev: (training_rate("zoo:resnet20", data, 20, 128, dev), gradient_rate("zoo:resnet20", data, 20, 128, dev))
             for dev in ("cuda", "cpu")}  # fmt: skip
    lines = [
        "# GPU check: the device path against the CPU", "",
        f"Command: `python bench/gpu_check.py`. Device: {torch.cuda.get_device_name(0)}; torch {torch.__version__}.", "",
        "| | CUDA | CPU |", "|---|---|---|",
        f"| final val acc of the two runs | {gpu['final_acc']} | {cpu['final_acc']} |",
        f"| FGMT val acc t=0..4 | {[round(a, 4) for a in gpu['fgmt']]} | {[round(a, 4) for a in cpu['fgmt']]} |",
        f"| seconds: training both runs / transfer | {gpu['train_s']:.1f} / {gpu['transfer_s']:.1f} | "
        f"{cpu['train_s']:.1f} / {cpu['transfer_s']:.1f} |",
        f"| resnet20 samples/s: training step / transfer gradient | {rates['cuda'][0]:.0f} / {rates['cuda'][1]:.0f} | "
        f"{rates['cpu'][0]:.0f} / {rates['cpu'][1]:.0f} |", "",
        f"Largest gap: final accuracy {100 * acc_gap:.2f} points, FGMT {100 * fgmt_gap:.2f} points; FGMT permutations "
        f"agree on {100 * agree:.1f} % of units. Tolerance: 2 points, 2 points, 90 %. Result: {'PASS' if ok else 'FAIL'}.",
    ]  # fmt: skip
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
