"""Options as frozen dataclasses, built from keyword arguments, config tables or command lines.

A misspelled key must fail where it is written, not deep inside a ``**kwargs`` chain:
:func:`options_from` refuses unknown keys by name, and each dataclass checks its values in
``__post_init__`` (no NaN learning rate or negative step count gets past it).

>>> opts = options_from(TransferOptions, {"T": 3, "grad_batches": 4})
>>> opts.T, opts.schedule
(3, 'uniform')
>>> options_from(TransferOptions, {"steps": 3})
Traceback (most recent call last):
...
transfer.options.OptionsError: unknown key 'steps' for TransferOptions; valid keys: T, schedule, linear, ...
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from transfer.schedules import SCHEDULES, Schedule

__all__ = [
    "OptionsError", "TransferOptions", "options_from", "check_positive_int", "check_finite", "check_output_names",
]  # fmt: skip

T = TypeVar("T")


class OptionsError(ValueError):
    """An option that does not exist or has a value it cannot take."""


def options_from(cls: type[T], mapping: Mapping[str, Any], what: str | None = None) -> T:
    """``cls(**mapping)``, refusing keys that ``cls`` does not have (naming the first one and the
    valid keys) and any value ``cls`` rejects. ``what`` names the source in the message (a config table)."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = [k for k in mapping if k not in names]
    where = f" in {what}" if what else ""
    if unknown:
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise OptionsError(f"unknown key {unknown[0]!r}{where} for {cls.__name__}; valid keys: {shown}")
    try:
        return cls(**mapping)
    except TypeError as e:  # a required field missing
        raise OptionsError(f"{cls.__name__}{where}: {e}") from e


def check_positive_int(name: str, value: Any, minimum: int = 1) -> None:
    """Refuse a non-int (bools included) or an int below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise OptionsError(f"{name} must be an int >= {minimum}, got {value!r}")


def check_finite(name: str, value: Any, minimum: float | None = None, strict: bool = False) -> None:
    """Refuse NaN, infinities and values below ``minimum`` (or equal to it when ``strict``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise OptionsError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and (value < minimum or (strict and value == minimum)):
        bound = ">" if strict else ">="
        raise OptionsError(f"{name} must be {bound} {minimum}, got {value!r}")


def check_output_names(value: Any) -> tuple[str, ...]:
    """``outputs`` as a tuple of names: a list or tuple of non-empty strings, at least one (a bare
    string would be read letter by letter, and no name would preserve nothing)."""
    if isinstance(value, str) or not isinstance(value, (tuple, list)) or not value:
        raise OptionsError(f"outputs must be a non-empty list of output names such as ('logits',), got {value!r}")
    if not all(isinstance(v, str) and v for v in value):
        raise OptionsError(f"outputs must be output names (non-empty strings), got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class TransferOptions:
    """How a trajectory is transferred. Every field but those in ``RUNTIME`` decides the numbers, so a
    resumed or merged run must match them (:meth:`setting`).

    ``grad_batches`` minibatches of ``batch_size`` make one gradient (the paper's MNIST code uses 1;
    20 gained 10 points at t=1 for seconds of compute on the official code). ``linear`` transfers the
    paper's linear trajectory between the source's first and last checkpoints with ``schedule``;
    otherwise T of the recorded checkpoints, evenly spaced. ``bn_batches`` training minibatches
    re-estimate BatchNorm statistics before each evaluation. ``seed`` seeds the gradient minibatches
    and the solver; ``restarts`` adds random starts to the matcher. ``amp`` takes gradients under bf16
    autocast (faster on GPUs; the matched costs change slightly). FGMT keeps every earlier gradient
    pair as it was computed; ``fgmt_decay`` < 1 weights the pair of step j by ``fgmt_decay ** (t - j)``
    at step t, and ``fgmt_refresh`` = R recomputes the target gradients of the last R pairs under the
    latest permutation (a middle way to GMT, which recomputes all). ``allow_incomplete`` transfers
    from a source whose training has not finished (refused by default: its numbers would go stale).
    ``outputs`` names the model outputs the permutations must preserve (``permgraph.infer(outputs=...)``;
    None: every output): a T5 whose encoder's last hidden state is an output keeps its encoder stream
    fixed unless only ``("logits",)`` count. It changes the spec, so it is part of the setting (and of
    the spec cache's key). ``write_trajectory=False`` skips writing the transferred trajectory ``OUT/<method>/`` (six full
    checkpoints at T = 5, most of a small run's writing time); ``results.json`` and the resume state
    are written either way.
    """

    T: int = 5
    schedule: Schedule = "uniform"
    linear: bool = True
    grad_batches: int = 20
    batch_size: int = 128
    bn_batches: int = 20
    seed: int = 0
    restarts: int = 0
    amp: bool = False
    fgmt_decay: float = 1.0
    fgmt_refresh: int = 0
    eval_batch_size: int = 1000
    progress: bool = True
    device: str = "cpu"
    num_workers: int = 0
    allow_incomplete: bool = False
    write_trajectory: bool = True
    outputs: tuple[str, ...] | None = None

    RUNTIME = ("eval_batch_size", "progress", "device", "num_workers", "allow_incomplete", "write_trajectory")
    # options added after results were first written: recorded only when set, so older results stay comparable
    RECORDED_WHEN_SET = {"fgmt_decay": 1.0, "fgmt_refresh": 0, "outputs": None}

    def __post_init__(self) -> None:
        check_positive_int("T", self.T)
        if self.schedule not in SCHEDULES:
            raise OptionsError(f"unknown schedule {self.schedule!r}; use {' or '.join(SCHEDULES)}")
        for name in ("grad_batches", "batch_size", "eval_batch_size"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("bn_batches", self.bn_batches, minimum=0)
        check_positive_int("restarts", self.restarts, minimum=0)
        check_positive_int("seed", self.seed, minimum=0)
        check_positive_int("num_workers", self.num_workers, minimum=0)
        check_positive_int("fgmt_refresh", self.fgmt_refresh, minimum=0)
        check_finite("fgmt_decay", self.fgmt_decay, minimum=0.0, strict=True)
        if not isinstance(self.write_trajectory, bool):
            raise OptionsError(f"write_trajectory must be True or False, got {self.write_trajectory!r}")
        if self.fgmt_decay > 1:
            raise OptionsError(f"fgmt_decay must be in (0, 1], got {self.fgmt_decay!r}")
        if self.outputs is not None:  # a config table's list, kept as a tuple (the options are hashable)
            object.__setattr__(self, "outputs", check_output_names(self.outputs))

    def setting(self) -> dict[str, Any]:
        """The fields that decide the numbers (all but those in ``RUNTIME``: how, not what, is computed),
        as JSON holds them (``outputs`` a list), so a setting read back from a file compares equal."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
            if k not in self.RUNTIME and not (k in self.RECORDED_WHEN_SET and v == self.RECORDED_WHEN_SET[k])
        }  # fmt: skip

    def replace(self, **changes: Any) -> TransferOptions:
        return dataclasses.replace(self, **changes)
