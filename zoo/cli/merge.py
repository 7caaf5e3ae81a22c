"""``transfer merge A B [C ...]``: align trained models, merge them, and measure the linear path.

    transfer merge runs/s1 runs/s2 --align activation --repair --out runs/merge_s1_s2
    transfer merge a.safetensors b.safetensors --model pkg.mod:factory --data pkg.mod:data --out m

A and B are run folders (``zoo train --out``) or safetensors checkpoints (then ``--model`` and
``--data`` say what they are). The spec is inferred from the model on a batch of the data (or on
``--input SHAPE[:DTYPE]``), never written by hand. Writes ``OUT/results.json`` (the curves along
A → B: naive, matched, matched+repair; the N-model merge; timings), ``OUT/merge.png`` and
``OUT/merged.safetensors`` (λ = 0.5 of A and B aligned, or the average of all N aligned, REPAIRed
with ``--repair``). Every point of every curve is saved as it is measured: run the same command
again to resume.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from transfer.results import TransferError
from zoo.cli.common import show_progress
from zoo.cli.spec_flags import add_input_flag, add_output_flag, outputs_of

__all__ = ["add_merge_parser", "run_merge"]

TOOL = "transfer merge"
OWNED = {"results.json", "merge.png", "merged.safetensors", "merge_progress.json"}


def add_merge_parser(sub: argparse._SubParsersAction) -> None:
    """The ``merge`` sub-command's flags."""
    m = sub.add_parser("merge", help="align and merge trained models; loss/accuracy along the path (barriers)")
    m.add_argument("models", nargs="+", metavar="RUN", help="run folders or .safetensors checkpoints (2 or more)")
    m.add_argument(
        "--align",
        choices=("weight", "activation", "none"),
        default="weight",
        help="weight matching (Git Re-Basin), activation matching (on --batches of the data), or none",
    )
    m.add_argument("--repair", action="store_true", help="also REPAIR the merged models (BN reset for BatchNorm nets)")
    m.add_argument("--mergemany", action="store_true", help="N models: Git Re-Basin's MergeMany instead of aligning to A")
    m.add_argument("--model", default=None, help="model id (default: the one the runs record; pkg.mod:factory ok)")
    m.add_argument("--data", default=None, help="dataset name or your pkg.mod:factory (default: the runs' dataset)")
    add_input_flag(m)
    add_output_flag(m)
    m.add_argument("--lambdas", type=int, default=25, help="points along the path (default 25, as Git Re-Basin)")
    m.add_argument("--batches", type=int, default=10, help="training batches for activation matching and REPAIR")
    m.add_argument("--eval-batches", type=int, default=0, help="validation batches per point (default 0: all)")
    m.add_argument("--batch-size", type=int, default=128)
    m.add_argument("--num-workers", type=int, default=0, help="DataLoader workers for your own datasets")
    m.add_argument("--seed", type=int, default=0, help="seeds the batches drawn and the solver")
    m.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, ...")
    m.add_argument("--out", required=True, help="output folder (new, empty, or an earlier merge's to resume)")
    m.add_argument("--no-progress", action="store_true")  # fmt: skip


@dataclass
class _Source:
    label: str
    state: dict[str, torch.Tensor]
    model: str = ""
    data: str = ""


def _open(path: str) -> _Source:
    """A run folder's final checkpoint, or a safetensors file (read without running any code)."""
    from transfer.engine import open_trajectory

    p = Path(path)
    if p.is_dir():
        traj = open_trajectory(p, f"run {path}")
        return _Source(path, traj.final(), traj.model, traj.data)
    if p.is_file() and p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return _Source(path, load_file(str(p)))
        except (SafetensorError, OSError, ValueError) as e:
            raise TransferError(f"{path} is not a readable safetensors checkpoint ({e}); pass a run folder or "
                                "a .safetensors file") from e  # fmt: skip
    raise TransferError(f"{path} is neither a run folder nor a .safetensors checkpoint; check the path")


def _model_id(args: argparse.Namespace, sources: list[_Source]) -> str:
    if args.model:
        return args.model
    ids = {s.model for s in sources if s.model}
    if not ids:
        raise TransferError("the checkpoints record no model id; pass --model (a model id or your pkg.mod:factory)")
    if len(ids) > 1 or any(not s.model for s in sources):
        shown = ", ".join(f"{s.label}: {s.model or 'none recorded'}" for s in sources)
        raise TransferError(f"the models are of different architectures ({shown}); merge runs of one model, "
                            "or pass --model if they share its architecture")  # fmt: skip
    return ids.pop()


def _data(args: argparse.Namespace, sources: list[_Source]):
    from transfer.data import as_transfer_data
    from zoo.data import resolve

    name = args.data or next((s.data for s in sources if s.data), "")
    if not name:
        raise TransferError("the checkpoints record no dataset; pass --data (a dataset name or your pkg.mod:factory)")
    return as_transfer_data(resolve(name, trust_code=bool(args.data)), num_workers=args.num_workers)


def _batches(args: argparse.Namespace, data) -> tuple[list, list]:
    import itertools

    from transfer.data import synced_batches

    n = data.train_size
    picks = synced_batches(args.seed, 0, n, max(1, min(args.batches, -(-n // args.batch_size))), args.batch_size)
    train = list(data.train_batches(picks))
    val = data.val_batches(args.batch_size)
    val = list(itertools.islice(val, args.eval_batches) if args.eval_batches > 0 else val)
    if not train or not val:
        raise TransferError("the data has an empty training or validation split; merge needs both")
    return train, val


def _setup(args: argparse.Namespace) -> dict[str, Any]:
    """Everything the merge reads, checked: sources, model, spec, batches, device."""
    from transfer.checks import check_finite, check_same_architecture
    from transfer.distributed import default_device
    from transfer.inputs import check_call, inputs_from_batch, inputs_from_shapes
    from transfer.spec_lookup import infer_preserving
    from zoo.models import build

    if len(args.models) < 2:
        raise TransferError(f"merge needs at least 2 models, got {len(args.models)}")
    if args.lambdas < 2 or args.batches < 1 or args.batch_size < 1:
        raise TransferError("--lambdas must be >= 2, --batches and --batch-size >= 1")
    sources = [_open(p) for p in args.models]
    model_id = _model_id(args, sources)
    model = build(model_id, trust_code=bool(args.model))
    shown = f"--model {args.model}" if args.model else f"the recorded model {model_id!r}"
    for s in sources:
        check_same_architecture(model.state_dict(), s.state, s.label, shown)
        check_finite(s.state, s.label)
    train, val = _batches(args, _data(args, sources))
    check_call(model, inputs_from_batch(model, train[0]))  # data the model cannot take: one line, exit 2
    example = inputs_from_shapes(args.input) if args.input else inputs_from_batch(model, train[0])
    spec = infer_preserving(model, example, outputs_of(args))
    if args.align != "none" and not spec.free_groups:
        raise TransferError(f"{model_id} has no free permutation group (all blocked: `permgraph inspect` says why); "
                            "nothing to align: use --align none")  # fmt: skip
    device = default_device(args.device)
    return {"sources": sources, "model": model.to(device), "model_id": model_id, "spec": spec,
            "train": train, "val": val, "device": str(device)}  # fmt: skip


class _Progress:
    """``OUT/merge_progress.json``: the alignments and every measured point, keyed by what they depend on."""

    def __init__(self, path: Path, key: str):
        self.path, self.key = path, key
        self.data: dict[str, Any] = {"key": key, "perms": {}, "points": {}}
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except (OSError, ValueError):
                old = None
            if isinstance(old, dict) and old.get("key") == key and isinstance(old.get("points"), dict):
                self.data = old

    def save(self) -> None:
        from transfer.files import atomic_write_json

        atomic_write_json(self.path, self.data)

    def perm(self, label: str) -> dict[str, torch.Tensor] | None:
        p = self.data["perms"].get(label)
        return {g: torch.tensor(v, dtype=torch.long) for g, v in p.items()} if isinstance(p, dict) else None

    def set_perm(self, label: str, perm: dict[str, torch.Tensor]) -> None:
        self.data["perms"][label] = {g: p.tolist() for g, p in perm.items()}
        self.save()

    def points(self, curve: str) -> _Points:
        return _Points(self, curve)


class _Points(dict):
    """{lam: (loss, acc)} that writes itself to the progress file on every new point."""

    def __init__(self, progress: _Progress, curve: str):
        stored = progress.data["points"].setdefault(curve, {})
        super().__init__({float(k): tuple(v) for k, v in stored.items()})
        self.progress, self.curve = progress, curve

    def __setitem__(self, lam: float, value: tuple[float, float]) -> None:
        super().__setitem__(lam, value)
        self.progress.data["points"][self.curve][repr(float(lam))] = list(value)
        self.progress.save()


def _key(args: argparse.Namespace, setup: dict[str, Any]) -> str:
    from transfer.trajectory import tensors_sha256

    parts = [
        setup["model_id"],
        args.data or "",
        args.align,
        args.mergemany,
        args.lambdas,
        args.batches,
        args.eval_batches,
        args.batch_size,
        args.seed,
        args.input,
    ] + ([args.output] if args.output else [])  # the preserved outputs change the spec (an older key stays valid)
    parts += [tensors_sha256(s.state) for s in setup["sources"]]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]  # fmt: skip


def _aligned(args: argparse.Namespace, setup: dict[str, Any], progress: _Progress, timings: dict) -> list[dict]:
    """Every source aligned onto A (or by MergeMany), the permutations kept in the progress file."""
    from tqdm.auto import tqdm

    import permgraph
    from transfer.merge import MergeOptions, align_models, merge

    spec, model, sources = setup["spec"], setup["model"], setup["sources"]
    states = [s.state for s in sources]
    t0 = time.perf_counter()
    if args.mergemany and len(states) > 2 and args.align != "none":
        res = _user_errors(merge, model, states, spec=spec, batches=setup["train"],
                           options=MergeOptions(method=args.align, mergemany=True, seed=args.seed))  # fmt: skip
        timings["align"] = time.perf_counter() - t0
        return res.aligned
    out = [states[0]]
    for s in tqdm(sources[1:], desc=f"align ({args.align})", unit="model", disable=not show_progress(args), leave=False):
        perm = progress.perm(s.label)
        if perm is None:
            al = _user_errors(align_models, model, spec, states[0], s.state, method=args.align,
                              batches=setup["train"], seed=args.seed)  # fmt: skip
            perm = al.perm
            timings.setdefault("alignments", []).append({"model": s.label, **al.summary()})
            progress.set_perm(s.label, perm)
        out.append(dict(permgraph.apply(spec, perm, s.state)))
    timings["align"] = time.perf_counter() - t0
    return out


def _user_errors(fn, *args, **kwargs):
    """``fn(...)``, a ValueError about the data or the spec reported as bad input (exit 2)."""
    try:
        return fn(*args, **kwargs)
    except ValueError as e:
        raise TransferError(f"cannot {TOOL.split()[1]} on this data and spec: {e}") from e


def _curves(args: argparse.Namespace, setup: dict[str, Any], aligned: list[dict], progress: _Progress,
            timings: dict) -> dict[str, Any]:  # fmt: skip
    """The paths A → B: naive, matched (unless --align none), and REPAIRed with --repair."""
    from transfer.merge import Repair, evaluate_path

    model, spec, val = setup["model"], setup["spec"], setup["val"]
    a, b = setup["sources"][0].state, setup["sources"][1].state
    # MergeMany may move A too: the matched curves run between A and B as aligned (one frame)
    ends = (aligned[0], aligned[1]) if args.align != "none" else (a, b)
    plans: list[tuple[str, tuple, Any]] = [("naive", (a, b), None)]
    if args.align != "none":
        plans.append(("matched", ends, None))
    t0 = time.perf_counter()
    if args.repair:
        repair = _user_errors(Repair, model, spec, list(ends), setup["train"])
        plans.append(("matched+repair" if args.align != "none" else "naive+repair", ends, repair.at))
        timings["repair_setup"] = time.perf_counter() - t0
    curves = {}
    t1 = time.perf_counter()
    for name, (start, end), transform in plans:
        curve = evaluate_path(model, start, end, val, lambdas=args.lambdas, transform=transform,
                              points=progress.points(name), progress=show_progress(args))  # fmt: skip
        curves[name] = curve
    timings["curves"] = time.perf_counter() - t1
    return curves


def _merged(args: argparse.Namespace, setup: dict[str, Any], aligned: list[dict]) -> tuple[dict, dict[str, Any]]:
    """The merged model (the average of the aligned models, REPAIRed with --repair) and its scores."""
    import copy

    from transfer.evaluation import evaluate_batches
    from transfer.merge import Repair, interpolate

    model, val = setup["model"], setup["val"]
    state = interpolate(aligned)
    if args.repair:
        state = _user_errors(Repair, model, setup["spec"], aligned, setup["train"])(state, [1 / len(aligned)] * len(aligned))
    work = copy.deepcopy(model)
    work.load_state_dict(state)
    total, correct, count = evaluate_batches(work, val)
    scores = {"models": len(aligned), "loss": total / count, "acc": correct / count}
    for s, st in zip(setup["sources"], aligned):
        work.load_state_dict(st)
        t, c, n = evaluate_batches(work, val)
        scores.setdefault("endpoints", []).append({"model": s.label, "loss": t / n, "acc": c / n})
    return state, scores


def _plot(curves: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for name, c in curves.items():
        ax_loss.plot(c.lambdas, c.loss, marker=".", label=f"{name} (barrier {c.loss_barrier:.3f})")
        ax_acc.plot(c.lambdas, [100 * x for x in c.acc], marker=".", label=f"{name} (mid {100 * c.midpoint_acc:.1f} %)")
    ax_loss.set(xlabel="λ (0 = A, 1 = B)", ylabel="loss", title="loss along the path")
    ax_acc.set(xlabel="λ (0 = A, 1 = B)", ylabel="accuracy (%)", title="accuracy along the path")
    for ax in (ax_loss, ax_acc):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_merge(args: argparse.Namespace) -> int:
    """The ``merge`` sub-command (module docstring)."""
    from safetensors.torch import save

    from transfer.files import atomic_write_bytes, atomic_write_json, output_folder

    t0 = time.perf_counter()
    # a refused or failed merge leaves no marker, lock or folder behind (transfer.files.output_folder)
    with output_folder(args.out, TOOL, lambda name: name in OWNED, f"{TOOL} {' '.join(args.models)}") as out:
        setup = _setup(args)
        timings: dict[str, Any] = {"setup": time.perf_counter() - t0}
        progress = _Progress(out / "merge_progress.json", _key(args, setup))
        aligned = _aligned(args, setup, progress, timings)
        curves = _curves(args, setup, aligned, progress, timings)
        state, scores = _merged(args, setup, aligned)
        atomic_write_bytes(
            out / "merged.safetensors", save({k: v.detach().cpu().contiguous().clone() for k, v in state.items()})
        )
        timings["total"] = time.perf_counter() - t0
        results = {"models": args.models, "model": setup["model_id"], "align": args.align, "repair": args.repair,
                   "spec": setup["spec"].summary(), "barrier": "max over lambda of L - (L(0) + L(1)) / 2 (Git Re-Basin)",
                   "curves": {k: c.to_dict() for k, c in curves.items()}, "merged": scores, "timings": timings}  # fmt: skip
        atomic_write_json(out / "results.json", results)
        names = " ↔ ".join(Path(m).name for m in args.models[:2])
        _plot(curves, out / "merge.png", f"{names}   ({setup['model_id']}, --align {args.align})")
        print(f"merged {len(args.models)} models ({setup['spec'].summary()})   -> {out}/results.json")
        for name, c in curves.items():
            print(f"  {name:15s} loss barrier {c.loss_barrier:8.4f}   acc barrier {100 * c.acc_barrier:6.2f} pts   "
                  f"midpoint acc {100 * c.midpoint_acc:6.2f} %")  # fmt: skip
        print(f"  merged model    acc {100 * scores['acc']:6.2f} %   -> {out}/merged.safetensors")
        return 0
