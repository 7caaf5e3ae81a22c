"""One phase clock: a phase opened inside another is taken out of the outer one, and nothing counts
outside the steps (a fake perf_counter: no real timing is asserted)."""

from __future__ import annotations

import pytest

from transfer import phases
from transfer.phases import PhaseClock


def test_nested_phases_are_exclusive_and_only_steps_count(monkeypatch):
    now = iter(range(0, 100, 1))
    monkeypatch.setattr(phases.time, "perf_counter", lambda: float(next(now)))
    clock = PhaseClock()
    with clock("gradients"):  # before the steps: not a step phase
        pass
    with clock.steps():
        with clock("accumulate"):  # t = 0 .. 5
            with clock("gradients"):  # 1 .. 2
                pass
            with clock("solves"):  # 3 .. 4
                pass
    assert clock.seconds["gradients"] == 1 and clock.seconds["solves"] == 1
    assert clock.seconds["accumulate"] == 5 - 2
    with pytest.raises(ValueError, match="unknown step phase"):
        with clock("writing"):
            pass


def test_a_resumed_record_carries_its_phases():
    clock = PhaseClock()
    clock.resume({"gradients": 2.5, "state": "junk"})
    assert clock.seconds["gradients"] == 2.5 and clock.seconds["state"] == 0.0
