"""``zoo`` command line: train a model and record its trajectory, list models, describe datasets.

    zoo train --model mlp2 --data mnist --epochs 15 --lr 0.01 --seed 101 --out runs/src
    zoo train --model mypkg.models:net --data mypkg.data:splits --epochs 3 --lr 0.01 --seed 1 --out runs/mine
    zoo models
    zoo data mnist
    zoo experiment NAME        (= python -m zoo.experiments NAME)
    zoo repair runs/src        (rebuild a lost or damaged manifest.json from the checkpoints)

Errors print one clear line and exit with status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import inspect
import sys

from transfer.distributed import default_device
from zoo.cli.common import add_common_flags, leave, run_command, share_common_flags, show_progress

__all__ = ["main", "build_parser"]


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


def add_recipe_flags(p: argparse.ArgumentParser, *, epochs_required: bool = True, lr_default: float | None = None) -> None:
    """The training-recipe flags shared by ``zoo train`` and ``transfer finetune``."""
    p.add_argument("--epochs", type=int, required=epochs_required, default=None if epochs_required else 1)
    p.add_argument("--lr", type=float, required=lr_default is None, default=lr_default)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--wd", "--weight-decay", dest="weight_decay", type=float, default=0.0)
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd")
    p.add_argument("--schedule", choices=["constant", "cosine"], default="constant")  # zoo.train.LRSchedule
    p.add_argument("--no-augment", dest="augment", action="store_false", help="skip the dataset's augmentation")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def recipe_from(args: argparse.Namespace, checkpoint_every: str | int = "epoch"):
    from zoo.train import TrainRecipe

    return TrainRecipe(
        epochs=args.epochs, lr=args.lr, optimizer=args.optimizer, momentum=args.momentum,
        weight_decay=args.weight_decay, schedule=args.schedule, batch_size=args.batch_size,
        checkpoint_every=checkpoint_every, augment=args.augment,
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zoo", description=__doc__.split("\n")[0])
    add_common_flags(p)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model and record its trajectory")
    t.add_argument("--model", required=True, help="model id, e.g. mlp2, zoo:conv8?width=0.25, torchvision:resnet18")
    t.add_argument("--data", required=True,
                   help="dataset name (see `zoo data --list`), or your own pkg.mod:factory returning (train_dataset, "
                   "val_dataset) whose items are (x, y) pairs or dicts")  # fmt: skip
    t.add_argument("--num-workers", type=int, default=0, help="DataLoader workers for your own datasets")
    t.add_argument("--data-root", default=None, help="folder with the dataset files (CIFAR, idx files)")
    t.add_argument("--seed", type=int, required=True)
    t.add_argument("--out", required=True, help="trajectory folder (re-run the same command to resume)")
    add_recipe_flags(t)
    t.add_argument("--checkpoint-every", type=_checkpoint_every, default="epoch", help="'epoch' or N iterations")
    t.add_argument("--subset", type=int, default=None, help="train on the first N training samples only")
    t.add_argument("--width", type=float, default=None, help="width multiplier / hidden size of a zoo model")
    t.add_argument("--num-classes", type=int, default=None, help="override the model's number of classes")

    sub.add_parser("models", help="list the zoo's models")
    # `zoo experiment NAME ...` is `python -m zoo.experiments NAME ...` (zoo/cli/experiments.py)
    sub.add_parser("experiment", help="run a paper reproduction (zoo experiment list)", add_help=False)

    d = sub.add_parser("data", help="load a dataset and print its sizes")
    d.add_argument("name", nargs="?", help="dataset name")
    d.add_argument("--root", default=None, help="folder with the dataset files")
    d.add_argument("--list", action="store_true", help="list dataset names")

    r = sub.add_parser("repair", help="rebuild a trajectory's lost or damaged manifest.json from its checkpoints")
    r.add_argument("run", help="the trajectory folder (its ckpt_*.safetensors files are kept as they are)")
    r.add_argument("--model", default=None, help="model id, only for checkpoints too old to name their model")
    share_common_flags(sub)
    return p


def _model_id(args: argparse.Namespace) -> str:
    from zoo.models import canonical_id, parse_model_id

    overrides: dict = {}
    if args.width is not None:
        _, name, _ = parse_model_id(args.model)
        overrides["width"] = int(args.width) if args.width.is_integer() and name == "mlp2" else args.width
    if args.num_classes is not None:
        overrides["num_classes"] = args.num_classes
    return canonical_id(args.model, **overrides)


def _train(args: argparse.Namespace) -> int:
    from zoo.data.training import open_data
    from zoo.train import TrainControl, train

    recipe = recipe_from(args, args.checkpoint_every)
    data = open_data(args.data, root=args.data_root, subset=args.subset, num_workers=args.num_workers)  # typed: trusted
    device = default_device(args.device)
    control = TrainControl(device=device, progress=show_progress(args), trust_code=True)  # --model is typed
    traj = train(_model_id(args), data, recipe, seed=args.seed, out=args.out, control=control)
    print(f"trajectory {traj.path}: model {traj.model}, {len(traj)} checkpoints, complete={traj.complete}")
    print(f"{'name':>10} {'step':>8} {'epoch':>6} {'val_loss':>9} {'val_acc':>8}")
    for c in traj.checkpoints:
        m = c.get("metrics", {})
        print(
            f"{c['name']:>10} {c['step']:>8} {c['epoch']:>6.2f} {m.get('val_loss', float('nan')):>9.4f} "
            f"{100 * m.get('val_acc', float('nan')):>7.2f}%"
        )
    return 0


def _models(args: argparse.Namespace) -> int:
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


def _repair(args: argparse.Namespace) -> int:
    from transfer.rebuild import manifest_is_readable, rebuild_manifest

    if manifest_is_readable(args.run):
        print(f"{args.run}/manifest.json is readable; nothing to repair (a damaged checkpoint is regenerated by "
              "re-running the command that recorded the run)")  # fmt: skip
        return 0
    print(rebuild_manifest(args.run, model=args.model).summary())
    print("re-run the command that recorded it to confirm it finished (nothing recorded is trained again)")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["experiment"]:
        from zoo.cli.experiments import main as experiment_main

        return experiment_main(argv[1:])
    args = build_parser().parse_args(argv)
    command = {"train": _train, "models": _models, "data": _data, "repair": _repair}[args.command]
    hint = "; re-run the same command to resume from the last checkpoint" if args.command == "train" else ""
    return run_command("zoo", command, args, resume_hint=hint)


def console() -> None:
    """The installed command: :func:`main`, then a fast exit (:func:`zoo.cli.common.leave`)."""
    leave(main())


if __name__ == "__main__":
    console()
