"""``permgraph inspect MODEL`` and ``permgraph verify MODEL``.

MODEL is a model id: ``torchvision:resnet18``, ``timm:vit_tiny_patch16_224``,
``hf:gpt2?n_layer=2&n_embd=64``, ``zoo:conv8?width=0.25`` or ``package.module:factory``.
This command line is the top layer: it resolves ids with ``zoo.models``; the ``permgraph`` library
itself never imports zoo. Exit codes: 0 success, 1 verify failed, 2 bad input (unknown model,
untraceable), 3 internal error.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

import permgraph
from permgraph.draw import save_png, spec_table, to_dot
from zoo.cli.common import add_common_flags, run_command
from zoo.errors import ZooError

__all__ = ["main"]


def _load(model_id: str, input_shape: str | None, seed: int) -> tuple[torch.nn.Module, tuple, dict]:
    from zoo import models as zoo_models

    torch.manual_seed(seed)
    try:
        model = zoo_models.build(model_id, trust_code=True)  # typed by the user
    except (TypeError, ValueError) as e:  # a constructor refusing the id's arguments
        raise ZooError(f"cannot build {model_id!r}: {e}") from e
    if input_shape:
        try:
            shape = tuple(int(s) for s in input_shape.replace("x", ",").split(",") if s)
        except ValueError as e:
            raise ZooError(f"--input-shape must look like 1,3,224,224, got {input_shape!r}") from e
        return model, (torch.randn(*shape),), {}
    try:
        inputs = zoo_models.example_inputs(model_id, trust_code=True)
    except Exception as e:
        raise ZooError(f"no default inputs for {model_id!r} ({e}); pass --input-shape") from e
    kwargs: dict[str, Any] = {}
    if isinstance(inputs, dict):
        return model, (), inputs
    return model, tuple(inputs), kwargs


def _inspect(args: argparse.Namespace) -> int:
    model, ex_args, ex_kwargs = _load(args.model, args.input_shape, args.seed)
    t0 = time.perf_counter()
    spec, analysis = permgraph.infer(model, ex_args, ex_kwargs, name=args.model, return_analysis=True,
                                     per_block=args.per_block)
    seconds = time.perf_counter() - t0
    if args.format == "table":
        print(spec_table(spec, show_blocked=args.blocked))
        print(f"trace {analysis.seconds['trace']:.2f} s, infer {analysis.seconds['infer']:.3f} s "
              f"(total {seconds:.2f} s)")
        if analysis.unknown_ops:
            print("ops without a rule (their axes are blocked): "
                  + ", ".join(f"{k} ×{v}" for k, v in analysis.unknown_ops.items()))
    elif args.format == "json":
        text = spec.to_json()
        if args.out:
            _write(args.out, text)
        else:
            print(text)
    elif args.format == "dot":
        text = to_dot(analysis, spec)
        if args.out:
            _write(args.out, text)
        else:
            print(text)
    else:
        out = args.out or f"{args.model.replace(':', '_').replace('?', '_').replace('/', '_')}.png"
        print(f"wrote {save_png(analysis, spec, out)}")
    return 0


def _write(path: str, text: str) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text + "\n")
    tmp.replace(p)
    print(f"wrote {p}")


def _verify(args: argparse.Namespace) -> int:
    model, ex_args, ex_kwargs = _load(args.model, args.input_shape, args.seed)
    spec = permgraph.infer(model, ex_args, ex_kwargs, name=args.model, per_block=args.per_block)
    report = permgraph.verify(model, spec, ex_args, ex_kwargs, seed=args.seed, trials=args.trials, control=True)
    print(spec.summary())
    print(report)
    if report.control_diff is not None:
        print(f"negative control (one tie broken): max |Δoutput| = {report.control_diff:.3g}")
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="permgraph", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("model", help="model id, e.g. torchvision:resnet18 or zoo:conv8?width=0.25")
    common.add_argument("--input-shape", help="example input shape, e.g. 1,3,224,224 (default: the model's own)")
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--per-block", action="store_true",
                        help="let dims within each attention head / GroupNorm group permute independently")
    p = sub.add_parser("inspect", parents=[common], help="list the permutation groups")
    p.add_argument("--format", choices=["table", "json", "dot", "png"], default="table")
    p.add_argument("--out", help="file to write (json / dot / png)")
    p.add_argument("--blocked", action="store_true", help="also list blocked groups and why")
    p.set_defaults(fn=_inspect)
    p = sub.add_parser("verify", parents=[common], help="prove the groups by random permutation")
    p.add_argument("--trials", type=int, default=1)
    p.set_defaults(fn=_verify)
    args = parser.parse_args(argv)
    return run_command("permgraph", args.fn, args)


if __name__ == "__main__":
    sys.exit(main())
