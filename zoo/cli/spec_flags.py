"""The flags that say how a command infers its spec, shared by `transfer run / diagnose / match / merge`:
``--input SHAPE[:DTYPE]`` (what the model is traced on) and ``--output NAME`` (which of its outputs
the permutations must preserve, as ``permgraph inspect/verify --output`` take it)."""

from __future__ import annotations

import argparse

__all__ = ["add_input_flag", "add_output_flag", "outputs_of"]


def add_input_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", action="append", default=None, metavar="SHAPE[:DTYPE]",
                   help="infer the spec on these inputs, once per positional input (e.g. --input 2,16:long) "
                   "instead of a batch of the data")  # fmt: skip


def add_output_flag(p: argparse.ArgumentParser, default: tuple[str, ...] | None = None) -> None:
    """``--output NAME`` (repeatable): the model outputs the permutations must preserve
    (``permgraph.infer(outputs=...)``); the others may change. Beside ``--out`` it is safe: argparse
    takes an exact flag before a prefix (only the abbreviation ``--ou`` is ambiguous)."""
    p.add_argument("--output", action="append", default=default, metavar="NAME",
                   help="an output the permutations must preserve, once per output (e.g. --output logits; an "
                   "index for a tuple); the others may change, so a T5 may permute its encoder stream "
                   "(default: every output)")  # fmt: skip


def outputs_of(args: argparse.Namespace) -> tuple[str, ...] | None:
    """``--output`` as ``TransferOptions.outputs``: the names given, or None (every output)."""
    return tuple(args.output) if args.output else None
