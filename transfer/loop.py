"""The steps 0..T of one method: resume from the store's record, choose pi_t, evaluate, commit each step."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from permgraph.apply import State
from transfer import distributed as dist
from transfer.context import TransferContext
from transfer.lap import LapProofs, LapWarm
from transfer.matching import Matcher
from transfer.methods import TransferMethod
from transfer.outputs import agree, remove_state_if_alone
from transfer.pairs import PairSource
from transfer.phases import PhaseClock
from transfer.records import RunRecord
from transfer.store import MemoryStore
from transfer.trajectory import TrajectoryError
from transfer.writer import RunOutputs

__all__ = ["Loop", "RunContext", "load_record"]

log = logging.getLogger("transfer.engine")

Permutation = dict[str, torch.Tensor]
Callback = Callable[[int, dict], None]


class Loop:
    """Steps 0..T of one method: resume, choose pi_t, evaluate, commit."""

    def __init__(self, method: TransferMethod, setting: dict, out: Path | None, outputs: RunOutputs) -> None:
        self.method, self.ctx, self.setting, self.out = method, method.ctx, setting, out
        self.outputs = outputs  # each evaluated step's checkpoint goes there at once
        self.ready_at = time.perf_counter()  # when the first step starts (inputs and resume state read)

    def run(self, record: RunRecord | None, callback: Callback | None) -> RunRecord:
        """The steps after ``record``'s (None: a fresh start, from step 0); returns the record of the
        finished run."""
        store = self.ctx.store
        fresh = record is None
        if record is None:
            record = RunRecord(dict(self.setting))
        else:
            log.info("resuming %s after step %d", self.setting["method"], record.done)
        self.ctx.clock.resume(record.phases)
        record.phases = dict(self.ctx.clock.seconds)
        try:
            self._steps(record, callback)
        except (ValueError, FloatingPointError, TrajectoryError):
            # deterministic failures: a rerun would fail the same way, so leave nothing behind
            if fresh:
                store.discard()
                if self.out is not None:
                    remove_state_if_alone(self.out / ".state")
            raise
        return record

    def _steps(self, record: RunRecord, callback: Callback | None) -> None:
        ctx, T, done = self.ctx, self.ctx.options.T, record.done
        perms = {t: ctx.store.load_perm(t) for t in range(done + 1)} if dist.is_main() else {}
        perms = dist.broadcast_object(perms)
        if not dist.is_main():
            ctx.store.prime(perms)
        if done >= 0:
            ctx.lap_warm.update(ctx.store.load_warm(done))
        self.method.resume(done)
        show = ctx.options.progress and dist.is_main()
        bar = tqdm(total=T + 1, initial=done + 1, desc=self.setting["method"], disable=not show, leave=False)
        self.ready_at = time.perf_counter()
        self.outputs.start(record, perms)
        clock = ctx.clock
        with clock.steps():
            for t in range(done + 1, T + 1):
                t0, solve0 = time.perf_counter(), ctx.solve_seconds
                with clock("accumulate"):  # the method's step, less what is timed inside it
                    perm = self.method.start() if t == 0 else self.method.step(t, perms[t - 1])
                    ctx.store.save_perm(t, perm)
                    ctx.store.save_warm(t, ctx.lap_warm)
                perms[t] = perm
                t1 = time.perf_counter()
                record.seconds += t1 - t0
                with clock("evaluation"):
                    loss, acc, theta = self._evaluate(t, ctx.theta2(perm, t))
                record.eval_seconds += time.perf_counter() - t1
                self.outputs.checkpoint(t, theta, perm, loss, acc)
                totals = ctx.totals
                record.commit(t, T, loss, acc, totals.lsa_calls, totals.lsa_seconds, totals.proofs)
                totals.lsa_calls, totals.lsa_seconds, totals.proofs = 0, 0.0, LapProofs()
                record.phases = dict(clock.seconds)  # the commit's own time: in the next commit
                ctx.store.commit(record)
                bar.update(1)
                bar.set_postfix(val_acc=f"{acc:.4f}", solve=f"{ctx.solve_seconds - solve0:.1f}s")
                log.info("%s t=%d/%d: val acc %.4f, val loss %.4f (step %.1f s, solves %.1f s)", self.setting["method"],
                         t, T, acc, loss, time.perf_counter() - t0, ctx.solve_seconds - solve0)  # fmt: skip
                if callback is not None:
                    callback(t, record.to_json())
        record.phases = dict(clock.seconds)
        bar.close()

    def _evaluate(self, t: int, theta: State) -> tuple[float, float, State]:
        """Val (loss, acc) of step t after BatchNorm re-estimation, and the state evaluated; the
        re-estimated statistics go to the store, for the trajectory of a resumed run."""
        sg = self.ctx.gradients
        if sg.bn:
            theta = sg.reestimate_bn(theta)
            self.ctx.store.save_bn(t, {k: theta[k] for k in bn_keys(self.ctx)})
        loss, acc = sg.evaluate(theta, reestimate=False)
        return loss, acc, theta


def load_record(store: MemoryStore, setting: Mapping[str, Any]) -> RunRecord | None:
    """The resume record of ``store`` for ``setting`` (None: a fresh start), read on rank 0 and sent to
    every rank; a refusal reaches every rank (:func:`transfer.outputs.agree`)."""
    read: list[RunRecord | None] = [None]

    def load() -> None:
        read[0] = store.load_record(setting)

    agree(load if dist.is_main() else None)
    return dist.broadcast_object(read[0] if dist.is_main() else None)


def bn_keys(ctx: TransferContext) -> list[str]:
    sg = ctx.gradients
    prefixes = {name for name, m in sg.model.named_modules() if m in sg.bn}
    return [k for k in ctx.theta2_0 if k.rsplit(".", 1)[0] in prefixes and k not in ctx.param_keys]


@dataclass
class RunContext(TransferContext):
    """The context of one run: its matchers share ``lap_warm``, so each step's solve of a group starts
    from the previous step's (the auction from its prices: :class:`transfer.lap.LapWarm`). It is
    saved with every step and read back on resume, so a resumed run takes the uninterrupted run's
    path."""

    lap_warm: dict[str, LapWarm] = field(default_factory=dict)
    clock: PhaseClock = field(default_factory=PhaseClock)  # the run's phases: results.json "phases"

    def solve(self, matcher: Matcher, init: list, seed: int) -> Permutation:
        with self.clock("solves"):
            return super().solve(matcher, init, seed)

    def new_matcher(self, pairs: PairSource | None = None) -> Matcher:
        matcher = super().new_matcher(pairs=pairs)
        if isinstance(matcher, Matcher):
            matcher.warm = self.lap_warm
        return matcher
