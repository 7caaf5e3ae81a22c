"""``permgraph inspect MODEL``, ``permgraph verify MODEL`` and ``permgraph check MODEL --spec FILE``.

MODEL is a model id: ``torchvision:resnet18``, ``timm:vit_tiny_patch16_224``,
``hf:gpt2?n_layer=2&n_embd=64``, ``zoo:conv8?width=0.25`` or ``package.module:factory`` (your own
model: a function returning an ``nn.Module``; the module must be importable, e.g. on PYTHONPATH).

Example inputs: the model's own (zoo models, ``example_inputs()`` on your module), or
``--input SHAPE[:DTYPE]`` once per positional input (``--input 2,3,32,32 --input 2,10:long``).

This command line is the top layer: it resolves ids with ``zoo.models``; the ``permgraph`` library
itself never imports zoo. Exit codes: 0 success (check: the spec is sound; missing symmetries are notes),
1 verify failed or the checked spec is unsound, 2 bad input (unknown model, untraceable, a spec file
that is unreadable, of no known format, or repeats a key), 3 internal error.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import torch

import permgraph
from permgraph.draw import save_png, spec_table, to_dot
from permgraph.handspec import HandSpec, SpecFormatError, read_hand_spec
from permgraph.spec import PermSpec
from transfer import inputs
from transfer.files import atomic_write_bytes, temporary_path
from zoo.cli.common import add_common_flags, leave, run_command, share_common_flags, show_progress
from zoo.errors import ZooError

__all__ = ["main", "parse_input"]


def parse_input(text: str) -> tuple[tuple[int, ...], torch.dtype]:
    """``"2,3,32,32"`` or ``"2,16:long"`` -> (shape, dtype); every size a positive int
    (:func:`transfer.inputs.parse_input`: ``--input`` means the same on every command).

    >>> parse_input("2,16:long")
    ((2, 16), torch.int64)
    """
    return inputs.parse_input(text)


def _load(model_id: str, texts: list[str] | None, seed: int) -> tuple[torch.nn.Module, tuple, dict]:
    from zoo import models as zoo_models

    torch.manual_seed(seed)
    try:
        model = zoo_models.build(model_id, trust_code=True)  # typed by the user
    except (TypeError, ValueError) as e:  # a constructor refusing the id's arguments
        raise ZooError(f"cannot build {model_id!r}: {e}") from e
    if texts:
        return model, inputs.inputs_from_shapes(texts).args, {}
    try:
        example = zoo_models.example_inputs(model, trust_code=True) if hasattr(model, "example_inputs") \
            else zoo_models.example_inputs(model_id, trust_code=True)  # fmt: skip
    except (ZooError, TypeError, ValueError) as e:
        raise ZooError(
            f"no default inputs for {model_id!r} ({e}); pass --input SHAPE once per input (e.g. --input 1,3,224,224), "
            "or give your model an example_inputs() method"
        ) from e
    kwargs: dict[str, Any] = {}
    if isinstance(example, dict):
        return model, (), example
    return model, tuple(example), kwargs


def _infer(args: argparse.Namespace, model: torch.nn.Module, ex_args: tuple, ex_kwargs: dict, **kw: Any):
    outputs = getattr(args, "output", None)
    try:
        return permgraph.infer(model, ex_args, ex_kwargs, name=args.model, per_block=args.per_block,
                               outputs=outputs, **kw)
    except ValueError as e:
        if outputs and "has no output" in str(e):
            raise ZooError(f"--output: {e}") from e
        raise
    except permgraph.TraceError as e:
        hint = _arity_hint(model, len(ex_args) + len(ex_kwargs))
        if hint:
            raise ZooError(f"{e} -- {hint}") from e
        raise


def _arity_hint(model: torch.nn.Module, given: int) -> str | None:
    """What is wrong with the number of inputs given, when the forward's signature says so (None: nothing)."""
    import inspect

    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p.name for p in positional if p.default is inspect.Parameter.empty]
    how = ("pass --input SHAPE once per input (e.g. --input 2,4 --input 2,3), or in Python "
           "permgraph.infer(model, args, kwargs)")  # fmt: skip
    if given < len(required):
        return f"the model's forward needs {len(required)} inputs ({', '.join(required)}) and got {given}: {how}"
    if given > len(positional):
        return f"the model's forward takes at most {len(positional)} inputs and got {given}: {how}"
    return None


def _inspect(args: argparse.Namespace) -> int:
    model, ex_args, ex_kwargs = _load(args.model, args.input, args.seed)
    if args.out:
        check_output_file(Path(args.out), args.format, args.force)
    t0 = time.perf_counter()
    spec, analysis = _infer(args, model, ex_args, ex_kwargs, return_analysis=True)
    seconds = time.perf_counter() - t0
    if args.format == "table":
        lines = [spec_table(spec, show_blocked=args.blocked, **({} if not args.out else FILE_TABLE)),
                 f"trace {analysis.seconds['trace']:.2f} s, infer {analysis.seconds['infer']:.3f} s (total {seconds:.2f} s)"]
        if analysis.unknown_ops:
            lines.append("ops without a rule (their axes are blocked): "
                         + ", ".join(f"{k} ×{v}" for k, v in analysis.unknown_ops.items()))  # fmt: skip
            lines.append("to add a rule from your own module: permgraph.register_rule "
                         "(user guide: 'When a group is blocked: adding a rule')")
        if args.out:  # the first line says whose file it is, so a later --out may replace it
            atomic_write_bytes(args.out, "\n".join([f"{TABLE_HEADER} {args.model}", *lines, ""]).encode())
            print(f"wrote {args.out}")
        else:
            print("\n".join(lines))
    elif args.format in ("json", "dot"):
        text = spec.to_json() if args.format == "json" else to_dot(analysis, spec)
        if args.out:
            atomic_write_bytes(args.out, (text + "\n").encode())
            print(f"wrote {args.out}")
        else:
            print(text)
    else:
        out = Path(args.out or f"{args.model.replace(':', '_').replace('?', '_').replace('/', '_')}.png")
        if not args.out:
            check_output_file(out, "png", args.force)
        print(f"wrote {_save_png_atomically(analysis, spec, out)}")
    return 0


def check_output_file(path: Path, fmt: str, force: bool) -> None:
    """Refuse, before any work, a path that cannot be a file, or a file this command did not write."""
    if path.is_dir():
        raise ZooError(f"--out {path} is a folder; give a file path (e.g. {path / ('spec.' + fmt)})")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ZooError(f"--out {path} lies below {parent}, which is a file; give another path")
            break
    if path.exists() and not force and not _written_by_us(path, fmt):
        raise ZooError(f"--out {path} exists and was not written by permgraph; pass --force to replace it")


TABLE_HEADER = "# permgraph inspect --format table:"
FILE_TABLE = {"max_members": None, "max_width": None}  # a file shows every member, uncut


def _written_by_us(path: Path, fmt: str) -> bool:
    try:
        head = path.read_bytes()[:4096]
    except OSError:
        return False
    if fmt == "json":
        try:
            PermSpec.from_json(path.read_text())
            return True
        except Exception:  # noqa: BLE001 - anything unreadable is not ours
            return False
    if fmt == "dot":
        return head.startswith(b"digraph permgraph {")
    if fmt == "table":
        return head.startswith(TABLE_HEADER.encode())
    return head.startswith(b"\x89PNG") and b"permgraph" in head


def _save_png_atomically(analysis: Any, spec: PermSpec, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(out)  # the umask's mode (0644), not mkstemp's 0600
    try:
        save_png(analysis, spec, tmp)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


def _verify(args: argparse.Namespace) -> int:
    if args.trials < 1:
        raise ZooError(f"--trials must be >= 1 (got {args.trials}): zero trials would check nothing")
    model, ex_args, ex_kwargs = _load(args.model, args.input, args.seed)
    spec = _infer(args, model, ex_args, ex_kwargs)
    report = permgraph.verify(model, spec, ex_args, ex_kwargs, seed=args.seed, trials=args.trials, control=True)
    print(spec.summary())
    print(report)
    if report.control_diff is not None:
        print(f"negative control (one tie broken): max |Δoutput| = {report.control_diff:.3g}")
    return 0 if report.ok else 1


def _read_spec(path: str) -> HandSpec:
    """The hand-written spec in ``path``; a file that cannot be read unambiguously is bad input."""
    try:
        hand = read_hand_spec(Path(path))
    except SpecFormatError as e:
        raise ZooError(f"--spec {path}: {e}") from e
    if hand.duplicates:
        d = hand.duplicates[0]
        raise ZooError(f"--spec {path} line {d.lines[-1]}: {d.describe()}, so the earlier entries would be lost "
                       "silently; merge the repeated entries into one")  # fmt: skip
    return hand


def _check(args: argparse.Namespace) -> int:
    if args.trials < 1:
        raise ZooError(f"--trials must be >= 1 (got {args.trials}): zero trials would check nothing")
    hand = _read_spec(args.spec)
    model, ex_args, ex_kwargs = _load(args.model, args.input, args.seed)
    args.per_block = args.per_block or bool(hand.indexed_by)  # per-head permutations: compare per block
    inferred = _infer(args, model, ex_args, ex_kwargs)
    report = permgraph.check_spec(model, hand, ex_args, ex_kwargs, trials=args.trials, inferred=inferred,
                                  progress=show_progress(args))
    print(report.to_json() if args.format == "json" else report)
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="permgraph", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    add_common_flags(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("model", help="model id, e.g. torchvision:resnet18, zoo:conv8?width=0.25, mypkg.models:net")
    common.add_argument("--input", "--input-shape", dest="input", action="append", metavar="SHAPE[:DTYPE]",
                        help="an example input, once per positional input: 1,3,224,224 or 2,16:long "
                        "(default: the model's own example_inputs)")  # fmt: skip
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--per-block", action="store_true",
                        help="let dims within each attention head / GroupNorm group permute independently")  # fmt: skip
    common.add_argument("--output", action="append", metavar="NAME",
                        help="an output the permutations must preserve, once per output (e.g. logits; an index for "
                        "a tuple); the others may change (default: every output)")  # fmt: skip
    p = sub.add_parser("inspect", parents=[common], help="list the permutation groups")
    p.add_argument("--format", choices=["table", "json", "dot", "png"], default="table")
    p.add_argument("--out", help="file to write, in any --format (png: default MODEL.png)")
    p.add_argument("--force", action="store_true", help="replace an --out file that permgraph did not write")
    p.add_argument("--blocked", action="store_true", help="also list blocked groups and why")
    p.set_defaults(fn=_inspect)
    p = sub.add_parser("verify", parents=[common], help="prove the groups by random permutation")
    p.add_argument("--trials", type=int, default=1)
    p.set_defaults(fn=_verify)
    p = sub.add_parser("check", parents=[common], help="check a hand-written spec against the model")
    p.add_argument("--spec", required=True, metavar="FILE",
                   help="JSON: Git Re-Basin's axes_to_perm and/or perm_to_axes (null for None), C2M3's names, "
                   "or a PermSpec (permgraph inspect --format json)")  # fmt: skip
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--trials", type=int, default=3, help="random draws of all permutations together")
    p.set_defaults(fn=_check)
    share_common_flags(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("permgraph", args.fn, args)


def console() -> None:
    """The installed command: :func:`main`, then a fast exit (:func:`zoo.cli.common.leave`)."""
    leave(main())


if __name__ == "__main__":
    console()
