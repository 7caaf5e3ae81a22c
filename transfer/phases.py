"""Where a transfer's wall time goes: the phases of ``results.json`` and the counters that measure them."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from transfer.context import TransferContext
from transfer.gradients import SyncedGradients
from transfer.store import RunStore

__all__ = ["PHASES", "LOOP_PHASES", "process_age", "counters", "add_phases", "loop_phases", "TimedGradients", "TimedStore"]

# Where a transfer's wall time goes (results.json "phases", seconds). Before the steps: the command's start-up
# (interpreter, imports, building the model) and data loading (reported by the caller, transfer run), reading
# and checking the inputs, the spec. In the steps: gradients, accumulating pairs into cost matrices (and the
# method's own work), assignment solves, evaluation (transferred state, BatchNorm statistics, validation
# pass), resume files. After: the transferred trajectory. "other" is what falls between them.
PHASES = ("startup", "data", "inputs", "spec", "gradients", "accumulate", "solves", "evaluation", "state", "writing")


LOOP_PHASES = ("gradients", "accumulate", "solves", "evaluation", "state")


def process_age() -> float | None:
    """Seconds since this process started (Linux ``/proc``), or None where that cannot be read: the
    start-up phase of a command, interpreter and imports included."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime, in clock ticks since boot
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def counters(ctx: TransferContext) -> tuple[float, float, float]:
    """Seconds so far in gradients, in solves and in writing resume files."""
    return getattr(ctx.gradients, "seconds", 0.0), ctx.solve_seconds, getattr(ctx.store, "seconds", 0.0)


def add_phases(phases: dict, seconds: tuple[float, float], counters: tuple) -> None:
    """One step's time by phase: the method's step (gradients, solves, its resume files, and the
    rest: accumulating costs) and the evaluation (less the BatchNorm statistics it saves)."""
    step, evaluation = seconds
    (g0, s0, w0), (g1, s1, w1), (_, _, w2) = counters
    phases["gradients"] += g1 - g0
    phases["solves"] += s1 - s0
    phases["state"] += (w1 - w0) + (w2 - w1)
    phases["accumulate"] += max(0.0, step - (g1 - g0) - (s1 - s0) - (w1 - w0))
    phases["evaluation"] += max(0.0, evaluation - (w2 - w1))


def loop_phases(saved: Any) -> dict[str, float]:
    """The step phases a resumed record carries (missing or unreadable ones start at 0: timings
    are reported, never relied on)."""
    saved = saved if isinstance(saved, dict) else {}
    return {k: float(v) if is_seconds(v := saved.get(k)) else 0.0 for k in LOOP_PHASES}


def is_seconds(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x and 0 <= x < float("inf")


class TimedGradients(SyncedGradients):
    """:class:`SyncedGradients` that add up the seconds spent taking gradients (the "gradients" phase)."""

    seconds = 0.0

    def gradient(self, state: Mapping[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
        t0 = time.perf_counter()
        try:
            return super().gradient(state, k)
        finally:
            self.seconds += time.perf_counter() - t0


class TimedStore(RunStore):
    """A :class:`RunStore` that adds up the seconds spent writing resume files (the "state" phase)."""

    seconds = 0.0

    def _save(self, kind: str, t: int, tensors: Mapping[str, torch.Tensor]) -> None:
        t0 = time.perf_counter()
        try:
            super()._save(kind, t, tensors)
        finally:
            self.seconds += time.perf_counter() - t0

    def commit(self, record: Mapping[str, Any]) -> None:
        t0 = time.perf_counter()
        try:
            super().commit(record)
        finally:
            self.seconds += time.perf_counter() - t0
