"""Where a transfer's wall time goes: the phases of ``results.json`` and the counters that measure them."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from transfer.gradients import SyncedGradients
from transfer.store import RunStore

__all__ = ["PHASES", "LOOP_PHASES", "PhaseClock", "process_age", "loop_phases", "TimedGradients", "TimedStore"]

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


def loop_phases(saved: Any) -> dict[str, float]:
    """The step phases a resumed record carries (missing or unreadable ones start at 0: timings
    are reported, never relied on)."""
    saved = saved if isinstance(saved, dict) else {}
    return {k: float(v) if is_seconds(v := saved.get(k)) else 0.0 for k in LOOP_PHASES}


def is_seconds(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x and 0 <= x < float("inf")


class PhaseClock:
    """Seconds by phase: ``with clock("gradients"):`` times a block. A phase opened inside another is
    taken out of the outer one's time, so the phases of a step add up to its wall time (the method's
    step is "accumulate", less the gradients, solves and resume files timed inside it). Only blocks
    inside :meth:`steps` count: work before the first step belongs to the "inputs" phase."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(LOOP_PHASES, 0.0)
        self._inner: list[float] = []  # per open phase: the seconds of the phases opened inside it
        self._running = False

    def resume(self, saved: Any) -> None:
        """Start from the phases a resumed record carries (see :func:`loop_phases`)."""
        self.seconds = loop_phases(saved)

    @contextlib.contextmanager
    def steps(self) -> Iterator[None]:
        """The loop's steps: phases are counted inside."""
        self._running = True
        try:
            yield
        finally:
            self._running = False

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if name not in LOOP_PHASES:
            raise ValueError(f"unknown step phase {name!r}; one of {', '.join(LOOP_PHASES)}")
        if not self._running:
            yield
            return
        t0 = time.perf_counter()
        self._inner.append(0.0)
        try:
            yield
        finally:
            elapsed, inner = time.perf_counter() - t0, self._inner.pop()
            self.seconds[name] += max(0.0, elapsed - inner)
            if self._inner:
                self._inner[-1] += elapsed


class TimedGradients(SyncedGradients):
    """:class:`SyncedGradients` whose gradients are timed by ``clock`` (the "gradients" phase)."""

    def __init__(self, *args: Any, clock: PhaseClock, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clock = clock

    def gradient(self, state: Mapping[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
        with self.clock("gradients"):
            return super().gradient(state, k)


class TimedStore(RunStore):
    """A :class:`RunStore` whose resume files are timed by ``clock`` (the "state" phase): what the loop
    waits for, which is serialising a file (its write runs in the background) and the wait for pending
    writes at a commit or a load, not the background writing itself."""

    def __init__(self, path: str | os.PathLike, clock: PhaseClock | None = None) -> None:
        super().__init__(path)
        self.clock = clock or PhaseClock()

    def _save(self, kind: str, t: int, tensors: Mapping[str, torch.Tensor]) -> None:
        with self.clock("state"):
            super()._save(kind, t, tensors)

    def commit(self, record: Mapping[str, Any]) -> None:
        with self.clock("state"):
            super().commit(record)

    def flush(self) -> None:
        with self.clock("state"):
            super().flush()
