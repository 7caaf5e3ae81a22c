"""``make demo``: transfer a learning trajectory to a new initialization, end to end, in minutes.

Trains the paper's 2-MLP on MNIST from two seeds (the source, 101, and the target, 102, which is
also the "Oracle" reference), transfers the source's linear trajectory onto the target's init with
GMT, FGMT, Naive and Oracle (T steps), and prints validation accuracy per method and step. Writes
``OUT/results.json`` and ``OUT/transfer.png``; the training runs and transfers stay under ``OUT`` and
are reused when the demo is run again.

    python -m zoo.demo [--width 1024] [--epochs 2] [--T 5] [--out runs/demo]

The paper's setting is width 4096 and 15 epochs (``python -m zoo.experiments fig5a``); the demo's
defaults keep the shape of its result at a fraction of the cost on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from transfer.methods import method_names, plot_style
from zoo.cli.common import add_common_flags, run_command
from zoo.experiments.kit.context import Context
from zoo.experiments.kit.pool import ensure_run, transfer_methods
from zoo.experiments.kit.report import pct, pyplot, save_figure, write_json
from zoo.experiments.kit.views import get_data, model_for

__all__ = ["main", "run_demo"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m zoo.demo", description=__doc__.split("\n")[0])
    p.add_argument("--width", type=int, default=1024, help="hidden units of the 2-MLP (paper: 4096)")
    p.add_argument("--epochs", type=int, default=2, help="training epochs of source and target (paper: 15)")
    p.add_argument("--T", type=int, default=5, help="transfer steps (paper: 5)")
    p.add_argument("--schedule", choices=("uniform", "cosine"), default="uniform")
    p.add_argument("--grad-batches", type=int, default=20, help="minibatches of 128 per gradient")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--data", default="mnist", help="dataset name (any zoo.data image or vector dataset)")
    p.add_argument("--subset", type=int, default=None, help="train on the first N samples only")
    p.add_argument("--val-subset", type=int, default=None, help="validate on the first N samples only")
    p.add_argument("--out", default="runs/demo", help="where runs, transfers and results go")
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: 1 on a busy machine, else torch's)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_common_flags(p)
    return p


def run_demo(args: argparse.Namespace) -> dict:
    """The demo's work; returns what it writes to ``results.json``."""
    out = Path(args.out)
    ctx = Context("demo", vars(args), runs=out, docs=out, progress=not args.no_progress)
    data = get_data(args.data, subset=args.subset, val_subset=args.val_subset)
    ctx.say(f"data: {data.describe()}")
    model = model_for(f"zoo:mlp2?width={args.width}", data)
    train_kw = dict(epochs=args.epochs, lr=args.lr, momentum=0.9, batch_size=128)
    tag = f"mlp2_w{args.width}_e{args.epochs}" + (f"_n{args.subset}" if args.subset else "")
    if args.data != "mnist":
        tag = f"{args.data}_{tag}"
    # named folders under OUT (not the experiments' hashed pool): the guide points at them
    source, target = (ensure_run(ctx, model, data, train_kw, seed=s, what=f"{role} (seed {s})", out=out / f"{tag}_s{s}")
                      for role, s in (("source", 101), ("target", 102)))  # fmt: skip
    settings = dict(T=args.T, schedule=args.schedule, linear=True, grad_batches=args.grad_batches, seed=0)
    methods = method_names()
    res = transfer_methods(ctx, methods, source, target, data, settings, out / f"transfer_{tag}")
    results = {
        "setting": {
            "model": model, "data": data.name, "source": str(source.path), "target": str(target.path),
            "source_seed": 101, "target_seed": 102, **train_kw, **settings,
            "source_val_acc": source.metrics("val_acc")[-1], "target_val_acc": target.metrics("val_acc")[-1],
        },
        "methods": {
            m: {k: res[m][k] for k in ("t", "val_acc", "val_loss", "best_t", "seconds") if k in res[m]}
            for m in methods
        },
    }  # fmt: skip
    write_json(out / "results.json", results)
    _plot(results, out / "transfer.png")
    return results


def _plot(results: dict, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for m, r in results["methods"].items():
        style = plot_style(m)
        ax.plot(r["t"], [100 * a for a in r["val_acc"]], style.pop("fmt"), **style)
    s = results["setting"]
    ax.axhline(100 * s["source_val_acc"], color="gray", lw=0.8, ls="--", label="source, trained")
    ax.set_xlabel("transfer step t")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"{s['model']} on {s['data']}: trajectory transfer, T={s['T']}", fontsize=9)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def _print_table(results: dict, out: Path, seconds: float) -> None:
    s = results["setting"]
    T = s["T"]
    print()
    print(f"Validation accuracy (%) of the transferred parameters, {s['model']} on {s['data']}, T={T}")
    print(f"{'method':8s}" + "".join(f"{'t=' + str(t):>7s}" for t in range(T + 1)) + f"{'time':>8s}")
    for m, r in results["methods"].items():
        print(f"{m:8s}" + "".join(f"{pct(a):>7s}" for a in r["val_acc"]) + f"{r.get('seconds', 0):7.0f}s")
    print(f"trained source: {pct(s['source_val_acc'])} %, trained target: {pct(s['target_val_acc'])} %")
    fg, nv = results["methods"]["fgmt"]["val_acc"][1], results["methods"]["naive"]["val_acc"][1]
    print(f"t=1: FGMT {pct(fg)} % vs Naive {pct(nv)} % ({100 * (fg - nv):+.1f} points)")
    print(f"wrote {out / 'results.json'} and {out / 'transfer.png'}  ({seconds:.0f} s)")


def _auto_threads() -> int | None:
    """1 when the machine is already busy: there, two threads per process fight the other jobs for
    the cores and each step was 2-3x slower than with one (measured on the project's 2-core CPU)."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return None
    return 1 if load >= (os.cpu_count() or 1) else None


def _demo(args: argparse.Namespace) -> int:
    threads = args.threads or _auto_threads()
    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    results = run_demo(args)
    _print_table(results, Path(args.out), time.perf_counter() - t0)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_command("demo", _demo, args, resume_hint="; run it again to continue from the finished pieces")


if __name__ == "__main__":
    sys.exit(main())
