"""Inputs checked at the door: the same two checks, with the same messages, on every command that
reads checkpoints (``transfer run``, ``diagnose``, ``match``, ``finetune``) and in the Python engine.

Each message names the argument that is wrong: ``--model`` (the architecture the command builds), the
source, the target, run A or B, so the user knows which one to change.

>>> import torch
>>> check_finite({"w": torch.ones(2)}, "the source init")
>>> try:
...     check_finite({"w": torch.tensor([1.0, float("nan")])}, "the source init")
... except InputError as e:
...     print(str(e)[:36])
the source init holds NaN/inf in 'w'
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from transfer.results import TransferError

__all__ = ["InputError", "check_finite", "check_same_architecture", "NOT_FINITE"]

NOT_FINITE = "holds NaN/inf in"  # the phrase every refusal of a non-finite checkpoint carries


class InputError(TransferError):
    """A checkpoint or state a command was given cannot be used: not finite, or another architecture."""


def check_finite(state: Mapping[str, torch.Tensor], what: str) -> None:
    """Refuse a state with NaN or inf in a floating-point tensor (a run that diverged): every result
    computed from it would be NaN, and a verdict drawn from it (``diagnose``) would be meaningless."""
    for k, v in state.items():
        if isinstance(v, torch.Tensor) and torch.is_floating_point(v) and not bool(torch.isfinite(v).all()):
            raise InputError(
                f"{what} {NOT_FINITE} {k!r} (its training diverged?); nothing can be computed from it: pass a "
                "run whose checkpoints are finite (e.g. retrain it with a smaller --lr)"
            )


def check_same_architecture(
    expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor], what: str, model: str = "the model"
) -> None:
    """Refuse ``got`` (the state called ``what``) unless it has the tensors and shapes of ``expected``,
    the state of ``model``: the architecture the command builds (``"--model X"`` when the user gave one,
    else the id the source records). Both sides are named, so a wrong ``--model`` is not reported as a
    wrong source, nor the model as "the source"."""
    fix = ("change --model to the model it was trained with" if model.startswith("--model")
           else "pass a run of that model (or --model for the architecture it has)")  # fmt: skip
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing or extra:
        raise InputError(
            f"{what} does not fit the architecture of {model}: it lacks {missing[:5]} and has unexpected {extra[:5]}; {fix}"
        )
    for k, v in expected.items():
        if tuple(v.shape) != tuple(got[k].shape):
            raise InputError(
                f"{what} does not fit the architecture of {model}: {k!r} has shape {tuple(got[k].shape)} there but "
                f"{tuple(v.shape)} in the model (another width or class count?); {fix}"
            )
