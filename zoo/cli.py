"""``zoo`` command line: train a model and record its trajectory, list models, describe datasets.

    zoo train --model mlp2 --data mnist --epochs 15 --lr 0.01 --seed 101 --out runs/src
    zoo models
    zoo data mnist

Errors print one clear line and exit with status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys

from transfer.trajectory import TrajectoryError
from zoo.errors import ZooError

__all__ = ["main"]


def _checkpoint_every(text: str) -> str | int:
    if text == "epoch":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("use 'epoch' or a number of iterations") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zoo", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model and record its trajectory")
    t.add_argument(
        "--model", required=True, help="model id, e.g. mlp2, zoo:conv8?width=0.25, torchvision:resnet18"
    )
    t.add_argument("--data", required=True, help="dataset name (see `zoo data --list`)")
    t.add_argument("--data-root", default=None, help="folder with the dataset files (CIFAR, idx files)")
    t.add_argument("--epochs", type=int, required=True)
    t.add_argument("--lr", type=float, required=True)
    t.add_argument("--seed", type=int, required=True)
    t.add_argument("--out", required=True, help="trajectory folder (re-run the same command to resume)")
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--momentum", type=float, default=0.9)
    t.add_argument("--wd", "--weight-decay", dest="weight_decay", type=float, default=0.0)
    t.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd")
    t.add_argument("--schedule", choices=["constant", "cosine"], default="constant")
    t.add_argument(
        "--checkpoint-every", type=_checkpoint_every, default="epoch", help="'epoch' or N iterations"
    )
    t.add_argument("--subset", type=int, default=None, help="train on the first N training samples only")
    t.add_argument("--width", type=float, default=None, help="width multiplier / hidden size of a zoo model")
    t.add_argument("--num-classes", type=int, default=None, help="override the model's number of classes")
    t.add_argument("--device", default="cpu")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    sub.add_parser("models", help="list the zoo's models")
    # `zoo experiment NAME ...` is `python -m zoo.experiments NAME ...` (zoo/experiments/cli.py)
    sub.add_parser("experiment", help="run a paper reproduction (zoo experiment list)", add_help=False)

    d = sub.add_parser("data", help="load a dataset and print its sizes")
    d.add_argument("name", nargs="?", help="dataset name")
    d.add_argument("--root", default=None, help="folder with the dataset files")
    d.add_argument("--list", action="store_true", help="list dataset names")
    return p


def _train(args: argparse.Namespace) -> int:
    from zoo.models import canonical_id, parse_model_id
    from zoo.train import train

    overrides: dict = {}
    if args.width is not None:
        source, name, _ = parse_model_id(args.model)
        width = int(args.width) if args.width.is_integer() and name == "mlp2" else args.width
        overrides["width"] = width
    if args.num_classes is not None:
        overrides["num_classes"] = args.num_classes
    model_id = canonical_id(args.model, **overrides)
    traj = train(
        model_id,
        args.data,
        epochs=args.epochs,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        optimizer=args.optimizer,
        schedule=args.schedule,
        batch_size=args.batch_size,
        seed=args.seed,
        out=args.out,
        checkpoint_every=args.checkpoint_every,
        subset=args.subset,
        device=args.device,
        data_root=args.data_root,
        progress=not args.no_progress,
    )
    print(f"trajectory {traj.path}: model {traj.model}, {len(traj)} checkpoints, complete={traj.complete}")
    print(f"{'name':>10} {'step':>8} {'epoch':>6} {'val_loss':>9} {'val_acc':>8}")
    for c in traj.checkpoints:
        m = c.get("metrics", {})
        print(
            f"{c['name']:>10} {c['step']:>8} {c['epoch']:>6.2f} {m.get('val_loss', float('nan')):>9.4f} "
            f"{100 * m.get('val_acc', float('nan')):>7.2f}%"
        )
    return 0


def _models() -> int:
    from zoo.models import ZOO

    for name, factory in ZOO.items():
        sig = str(inspect.signature(factory)).split(" -> ")[0]
        print(f"zoo:{name}{sig}")
    print("also: torchvision:NAME, timm:NAME, hf:gpt2|bert|llama|vit|...?key=value, package.module:factory")
    return 0


def _data(args: argparse.Namespace) -> int:
    from zoo.data import list_datasets, load

    if args.list or not args.name:
        print("\n".join(list_datasets()))
        return 0
    print(load(args.name, args.root).describe())
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["experiment"]:
        from zoo.experiments.cli import main as experiment_main

        return experiment_main(argv[1:])
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "models":
            return _models()
        return _data(args)
    except (ZooError, TrajectoryError, FileNotFoundError, ImportError) as e:
        print(f"zoo: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("zoo: interrupted; re-run the same command to resume from the last checkpoint", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
