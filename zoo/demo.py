"""``make demo`` (placeholder until the experiments land): train the paper's 2-MLP on MNIST for one
epoch, record its trajectory under ``runs/demo/source``, reload it and print the figures.

    python -m zoo.demo [--out runs/demo/source] [--epochs 1]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from transfer.trajectory import Trajectory
from zoo.data import load
from zoo.models import build
from zoo.train import evaluate, train


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m zoo.demo", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/demo/source")
    p.add_argument("--epochs", type=int, default=1)
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    data = load("mnist")
    traj = train(
        "zoo:mlp2?width=4096", data, epochs=args.epochs, lr=0.01, momentum=0.9, batch_size=128, seed=101,
        out=args.out,
    )  # fmt: skip
    train_s = time.perf_counter() - t0

    reloaded = Trajectory(args.out)  # a fresh reader: checks hashes and shapes of what is on disk
    model = build(reloaded.model)
    model.load_state_dict(reloaded.final())
    val_loss, val_acc = evaluate(model, *data.val)
    test_loss, test_acc = evaluate(model, *data.test)
    same = all(torch.equal(a, b) for a, b in zip(traj.final().values(), reloaded.final().values()))

    print(f"trajectory {reloaded.path}: {reloaded.model} on {reloaded.data}, seed {reloaded.seed}")
    for c in reloaded.checkpoints:
        m = c["metrics"]
        print(
            f"  {c['name']:>8}  step {c['step']:>5}  val loss {m['val_loss']:.4f}  "
            f"val acc {100 * m['val_acc']:.2f}%"
        )
    print(
        f"reloaded final: val acc {100 * val_acc:.2f}% (loss {val_loss:.4f}), test acc {100 * test_acc:.2f}%"
    )
    print(f"reload bit-identical: {same}; wall time {train_s:.1f} s")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
