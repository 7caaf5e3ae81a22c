"""``transfer``: transfer learning trajectories, fine-tune from them, and match trained runs.

    transfer run --method fgmt --source runs/s101 --target-init runs/s102 --data mnist --out runs/t
    transfer run --method oracle --source runs/s101 --target-init runs/s102 --target runs/s102 --out runs/t
    transfer finetune --from runs/t --epochs 1 --lr 0.01
    transfer match runs/s101 runs/s102 --out runs/match
    transfer run ... --model mypkg.models:net --data mypkg.data:splits   (your own model and datasets;
        --model / --data / --input work the same way on run, diagnose, match and finetune)
    transfer diagnose runs/s101 runs/s102 --png diagnose.png
    transfer merge runs/s101 runs/s102 --align activation --repair --out runs/merge   (zoo/cli/merge.py)

Methods come from the registry (:mod:`transfer.methods`). User errors (missing runs, other
architectures, bad arguments) print one line and exit with 2.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from transfer.distributed import default_device
from transfer.methods import get_method, method_names
from transfer.options import TransferOptions
from transfer.schedules import SCHEDULES
from zoo.cli.common import add_common_flags, leave, run_command, share_common_flags, show_progress
from zoo.cli.merge import add_merge_parser, run_merge
from zoo.cli.spec_flags import add_input_flag, add_output_flag, outputs_of
from zoo.cli.zoo import add_recipe_flags, recipe_from

__all__ = ["main", "build_parser"]


def _target_init(text: str) -> int | str:
    """An int is a seed; anything else is a run folder."""
    try:
        return int(text)
    except ValueError:
        return text


def _seeded_init(args: argparse.Namespace, recorded: str):
    """``--target-init``: a seed gives a fresh init of the model (a state dict); a run folder stays as given."""
    if isinstance(args.target_init, int):
        torch.manual_seed(args.target_init)
        return _model_for(args, recorded).state_dict()
    return args.target_init


def _methods(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in method_names()]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown method(s) {bad}; choose from {', '.join(method_names())}")
    return names


def _method_help() -> str:
    several = " (several: comma-separated or --method again; each runs once, in order)"
    return "; ".join(f"{n}: {get_method(n).summary}" for n in method_names()) + several


def _add_model_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", default=None,
        help="model id to build (default: the one the run's manifest records; a package.module:factory id "
        "is imported only when given here)",
    )  # fmt: skip


def _model_for(args: argparse.Namespace, recorded: str):
    """The model: ``--model`` (typed by the user, trusted) or the id a file records (built-ins only)."""
    from zoo.models import build

    if args.model:
        return build(args.model, trust_code=True)
    return build(recorded)


def model_name(args: argparse.Namespace, recorded: str) -> str:
    """How messages name the model a command builds: the ``--model`` the user typed, or the id the source records."""
    return f"--model {args.model!r}" if args.model else f"the source's recorded model {recorded!r}"


def _add_data_flags(p: argparse.ArgumentParser, what: str = "the source run's") -> None:
    p.add_argument("--data", default=None,
                   help="dataset name, or your own pkg.mod:factory returning (train_dataset, val_dataset) whose items "
                   f"are (x, y) pairs or dicts (default: {what} dataset name)")  # fmt: skip
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers for your own datasets")


def _inputs_for(args: argparse.Namespace):
    """``--input`` as example inputs, or None (a batch of the data is used)."""
    from transfer.inputs import inputs_from_shapes

    return inputs_from_shapes(args.input) if args.input else None


# every default of a `transfer run` flag is the option's own (tests/zoo/test_cli_defaults.py checks them)
DEFAULTS = TransferOptions()


def _add_gradient_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grad-batches", type=int, default=DEFAULTS.grad_batches,
                   help=f"minibatches per gradient (default {DEFAULTS.grad_batches})")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)


def _add_run(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="transfer a source trajectory onto a target init")
    r.add_argument("--method", type=_methods, action="extend", required=True, help=_method_help())
    r.add_argument("--source", required=True, help="source trajectory folder (zoo train --out)")
    _add_model_flag(r)
    r.add_argument("--target-init", required=True, type=_target_init, help="run folder (its init) or int seed")
    _add_data_flags(r)
    add_input_flag(r)
    add_output_flag(r, DEFAULTS.outputs)
    r.add_argument("--target", default=None, help="the real target run (oracle only)")
    r.add_argument("--T", type=int, default=DEFAULTS.T, help=f"transfer steps (default {DEFAULTS.T})")
    r.add_argument("--schedule", choices=SCHEDULES, default=DEFAULTS.schedule)
    mode = r.add_mutually_exclusive_group()
    mode.add_argument("--linear", dest="linear", action="store_true", default=DEFAULTS.linear,
                      help="linear trajectory from init and final (default)")  # fmt: skip
    mode.add_argument("--actual", dest="linear", action="store_false", help="the recorded checkpoints")
    _add_gradient_flags(r)
    r.add_argument("--bn-batches", type=int, default=DEFAULTS.bn_batches, help="batches to re-estimate BatchNorm stats")
    r.add_argument("--seed", type=int, default=DEFAULTS.seed, help="seeds the gradient minibatches and the solver")
    r.add_argument("--restarts", type=int, default=DEFAULTS.restarts, help="extra random starts of the matcher")
    r.add_argument("--fgmt-decay", type=float, default=DEFAULTS.fgmt_decay,
                   help="FGMT: weight of the pair of step j at step t: d**(t-j)")  # fmt: skip
    r.add_argument("--fgmt-refresh", type=int, default=DEFAULTS.fgmt_refresh,
                   help="FGMT: recompute the last R pairs under the latest pi")  # fmt: skip
    r.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    r.add_argument("--amp", action="store_true", help="gradients under bf16 autocast")
    r.add_argument("--allow-incomplete", action="store_true", help="transfer from a source whose training has not finished")
    r.add_argument("--out", default=None, help="output folder (default runs/transfer/SOURCE_to_INIT)")
    r.add_argument("--no-trajectory", action="store_true",
                   help="write only results.json (and the resume state), not the transferred trajectory OUT/METHOD/ "
                   "that `transfer finetune` starts from")  # fmt: skip
    r.add_argument("--no-progress", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="transfer", description=__doc__.split("\n")[0])
    add_common_flags(p)
    sub = p.add_subparsers(dest="command", required=True)
    _add_run(sub)
    f = sub.add_parser("finetune", help="train on from the best transferred point")
    f.add_argument("--from", dest="src", required=True, help="a `transfer run` output folder")
    f.add_argument("--method", default=None, help="which method's trajectory (default: the best one)")
    _add_model_flag(f)
    _add_data_flags(f, "the transferred run's")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--subset", type=int, default=None, help="train on the first N training samples only")
    f.add_argument("--out", default=None, help="trajectory folder (default FROM/finetune_METHOD)")
    add_recipe_flags(f, epochs_required=False, lr_default=0.01)
    d = sub.add_parser("diagnose", help="before a transfer: will it help? gradient cosines and init/change ratios")
    d.add_argument("source", help="source trajectory folder")
    d.add_argument("target_init", type=_target_init, help="run folder (its init) or int seed")
    _add_model_flag(d)
    _add_data_flags(d)
    add_input_flag(d)
    add_output_flag(d, DEFAULTS.outputs)
    _add_gradient_flags(d)
    d.add_argument("--seed", type=int, default=DEFAULTS.seed)
    d.add_argument("--device", default="auto")
    d.add_argument("--png", default=None, help="also draw the per-layer ratios and the cosines here")
    d.add_argument("--json", dest="json_out", default=None, help="also write the measurements as JSON here")
    m = sub.add_parser("match", help="weight-match run B's final weights onto run A's (Git Re-Basin)")
    m.add_argument("a")
    m.add_argument("b")
    _add_model_flag(m)
    _add_data_flags(m, "run A's")
    add_input_flag(m)
    add_output_flag(m, DEFAULTS.outputs)
    m.add_argument("--restarts", type=int, default=0)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--out", default=None, help="output folder (default runs/match/A_to_B): the permutation, run B "
                   "permuted onto A (b_permuted/) and results.json")  # fmt: skip
    m.add_argument("--no-progress", action="store_true")
    add_merge_parser(sub)
    share_common_flags(sub)
    return p


def _options(args: argparse.Namespace):
    from transfer.options import TransferOptions

    return TransferOptions(
        T=args.T, schedule=args.schedule, linear=args.linear, grad_batches=args.grad_batches,
        batch_size=args.batch_size, bn_batches=args.bn_batches, seed=args.seed, restarts=args.restarts,
        progress=show_progress(args), device=default_device(args.device), allow_incomplete=args.allow_incomplete,
        amp=args.amp, num_workers=args.num_workers, fgmt_decay=args.fgmt_decay, fgmt_refresh=args.fgmt_refresh,
        write_trajectory=not args.no_trajectory, outputs=outputs_of(args),
    )  # fmt: skip


def _data_for(args: argparse.Namespace, recorded: str, where: str = ""):
    """``--data`` (typed: a dataset name or the user's pkg.mod:factory, trusted) or the name ``where``
    (the source run) records (a built-in name only): :func:`zoo.data.training.open_data`, on every command."""
    from transfer.results import TransferError
    from zoo.data.training import open_data

    name = args.data or recorded
    if not name:
        raise TransferError(f"{where or getattr(args, 'source', 'the run')} records no dataset name; pass --data")
    return open_data(name, trust_code=bool(args.data), num_workers=args.num_workers)


def _run(args: argparse.Namespace) -> int:
    from transfer import distributed as dist
    from transfer.engine import TransferEngine, open_trajectory, process_age, transfer_output
    from transfer.plots import PLOT, plot_results

    options = _options(args)
    dist.init_from_env(options.device)
    src = open_trajectory(args.source, "source trajectory")
    model = _model_for(args, src.model)
    target_init = _seeded_init(args, src.model)  # a run folder stays a path: the engine reads and hashes it
    out = args.out
    if out is None:
        init = f"seed{args.target_init}" if isinstance(args.target_init, int) else Path(args.target_init).name
        out = str(Path("runs") / "transfer" / f"{Path(args.source).name}_to_{init}")
    startup, t0 = process_age(), time.perf_counter()  # start-up: interpreter, imports, model: results.json "phases"
    engine = TransferEngine(model, _data_for(args, src.data), options, model_name=model_name(args, src.model),
                            example_inputs=_inputs_for(args))  # fmt: skip
    engine.note_phase("data", time.perf_counter() - t0)
    if startup is not None:
        engine.note_phase("startup", startup)
    with transfer_output(out) as folder:  # the one claim of the command; results.json read once, here
        methods = list(dict.fromkeys(args.method))  # --method a,b --method b: a then b, once each
        rows = [(m, engine.run(m, src, target_init, target=args.target, out=folder)) for m in methods]
        if dist.is_main() and folder.results is not None:  # every method, those of earlier commands too
            plot_results(folder.results.to_json(), folder.path / PLOT)
    if dist.is_main():
        _print_rows(rows, args.T, out)
    return 0


def _print_rows(rows: list, T: int, out: str) -> None:
    world = rows[0][1].get("world_size", 1) if rows else 1
    on = f" ({world} processes)" if world > 1 else ""
    print(f"val accuracy (%) of the transferred parameters, t = 0..{T}{on}   -> {out}/results.json, {out}/transfer.png")
    for method, res in rows:
        accs = " ".join(f"{100 * a:5.1f}" for a in res["val_acc"])
        print(f"  {method:7s} {accs}   best t={res['best_t']}   {res['seconds']:.1f} s")


def _finetune(args: argparse.Namespace) -> int:
    from zoo.finetune import finetune, finetune_data
    from zoo.train import TrainControl

    data = _data_for(args, "") if args.data else None  # None: the name results.json records (built-ins only)
    if args.subset is not None:  # the first N training samples, as zoo train --subset
        data = finetune_data(args.src, data, subset=args.subset)
    control = TrainControl(device=default_device(args.device), progress=show_progress(args), trust_code=bool(args.model))
    traj = finetune(args.src, recipe_from(args), method=args.method, seed=args.seed, data=data, dest=args.out,
                    control=control, model=args.model)  # fmt: skip
    accs = " ".join(f"{100 * a:5.1f}" for a in traj.metrics("val_acc"))
    print(f"fine-tuned from {traj.checkpoints[0]['name']}: val accuracy (%) per epoch {accs}   -> {traj.path}")
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    from transfer.diagnose import diagnose, plot_diagnosis
    from transfer.engine import open_trajectory
    from transfer.files import atomic_write_json
    from transfer.options import TransferOptions

    src = open_trajectory(args.source, "source trajectory")
    args.source = str(src.path)
    init = _seeded_init(args, src.model)
    if not isinstance(init, dict):
        init = open_trajectory(init, "target init").init()
    options = TransferOptions(grad_batches=args.grad_batches, batch_size=args.batch_size, seed=args.seed,
                              device=default_device(args.device), num_workers=args.num_workers,
                              outputs=outputs_of(args))  # fmt: skip
    result = diagnose(_model_for(args, src.model), _data_for(args, src.data), src, init, options,
                      model_name=model_name(args, src.model), example_inputs=_inputs_for(args))  # fmt: skip
    print(result.summary())
    if args.png:
        plot_diagnosis(result, args.png, title=f"{args.source} -> {args.target_init}")
        print(f"wrote {args.png}")
    if args.json_out:
        atomic_write_json(args.json_out, result.to_json())
        print(f"wrote {args.json_out}")
    return 0


def _match(args: argparse.Namespace) -> int:
    from transfer.align import align, write_match
    from transfer.engine import open_trajectory
    from transfer.inputs import ModelInputs, inputs_from_batch
    from transfer.spec_lookup import infer_preserving

    run_a = open_trajectory(args.a, "run A")
    model_id = args.model or run_a.model
    model = _model_for(args, model_id)
    inputs = _inputs_for(args)
    if inputs is None and args.data:  # a batch of the user's data, called as training calls it
        inputs = inputs_from_batch(model, _data_for(args, "", where="run A").example_batch())
    if inputs is None:
        from zoo.models import example_inputs

        try:
            inputs = ModelInputs(tuple(example_inputs(model_id, trust_code=bool(args.model))), {}, "the model's own")
        except Exception as e:  # noqa: BLE001 - no default inputs: say how to give them
            from zoo.errors import ZooError

            raise ZooError(f"no example inputs known for {model_id!r} ({e}); pass --data (a batch of it is used) or "
                           "--input SHAPE[:DTYPE] once per input (e.g. --input 2,16:long)") from e  # fmt: skip
    named = f"--model {args.model!r}" if args.model else f"run A's recorded model {run_a.model!r}"
    t0 = time.perf_counter()
    spec = infer_preserving(model, inputs, outputs_of(args))  # align infers every output's spec; --output: fewer
    spec_seconds = time.perf_counter() - t0
    res = align(run_a, args.b, model=model, spec=spec, seed=args.seed, restarts=args.restarts, model_name=named)
    res["spec_seconds"] = spec_seconds  # results.json's timings: the inference happened here, not in align
    out = args.out or str(Path("runs") / "match" / f"{Path(args.a).name}_to_{Path(args.b).name}")
    summary = write_match(out, res, model=model_id, progress=show_progress(args))
    print(f"weight matching {args.b} onto {args.a}: {len(res['perm'])} groups, {res['lsa_calls']} LSA calls, "
          f"{res['seconds']:.2f} s   -> {out}/results.json")  # fmt: skip
    print(f"  objective <A, pi B>      {summary['objective_before']:.6g} -> {summary['objective_after']:.6g}")
    print(f"  ||A - pi B||             {res['distance_before']:.6g} -> {res['distance_after']:.6g}")
    width = max((len(g) for g in res["groups"]), default=0)
    print("  per group: units moved, agreement (cosine of A and B over the group's tensors) before -> after")
    for g, row in res["groups"].items():
        print(f"    {g:{width}s}  {row['moved']:>5}/{row['size']:<5}  {row['agreement_before']:6.3f} -> "
              f"{row['agreement_after']:6.3f}")  # fmt: skip
    print(f"  run B permuted onto A    {out}/b_permuted")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = {"run": _run, "finetune": _finetune, "match": _match, "diagnose": _diagnose, "merge": run_merge}[args.command]
    resumable = args.command in ("run", "finetune", "merge")
    hint = "; run the same command again to resume after the last finished step" if resumable else ""
    return run_command("transfer", command, args, resume_hint=hint)


def console() -> None:
    """The installed command: :func:`main`, then a fast exit (:func:`zoo.cli.common.leave`)."""
    leave(main())


if __name__ == "__main__":
    console()
