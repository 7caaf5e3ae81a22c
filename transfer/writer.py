"""What a run writes: the transferred trajectory ``OUT/<method>/`` (each checkpoint as soon as its step is
evaluated, into a temporary folder that replaces the old one at the end; the permutation of every step
beside them) and the method's entry of ``OUT/results.json``."""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import save as save_tensors

from permgraph.apply import State
from transfer import distributed as dist
from transfer.context import TransferContext
from transfer.files import atomic_write_bytes, temporary_folder
from transfer.outputs import PERMUTATIONS, TransferFolder, replace_folder
from transfer.phases import PHASES
from transfer.records import MethodResult, RunRecord
from transfer.trajectory import TrajectoryWriter, schedule_lambdas

__all__ = ["RunOutputs"]

Permutation = dict[str, torch.Tensor]


class RunOutputs:
    """The transferred trajectory folder and the method's entry in ``results.json``.

    :meth:`start` opens the temporary trajectory (the steps a resumed run did before are written from
    the store), :meth:`checkpoint` writes each evaluated step from memory, :meth:`write` finishes the
    trajectory and the entry, :meth:`abort` leaves nothing behind."""

    def __init__(self, ctx: TransferContext, setting: dict, folder: TransferFolder | None) -> None:
        self.ctx, self.setting, self.folder = ctx, setting, folder  # the folder as held (results.json read once)
        self.out = folder.path if folder is not None else None
        self.written = folder is not None and dist.is_main() and ctx.options.write_trajectory
        self.seconds = 0.0  # spent writing checkpoints (the "writing" phase)
        self._tmp: Path | None = None
        self._writer: TrajectoryWriter | None = None
        self._perms: dict[int, Permutation] = {}

    def start(self, record: RunRecord, perms: Mapping[int, Permutation]) -> None:
        """Open the temporary trajectory and write the steps ``perms`` holds (done before a resume)."""
        if not self.written:
            return
        t0 = time.perf_counter()
        method = self.setting["method"]
        self._tmp = temporary_folder(self.out, f".{method}.")  # the umask's mode, not mkdtemp's 0700
        self._writer = TrajectoryWriter(self._tmp, model=self.setting["model"], data=self.setting["data"],
                                        seed=self.setting["seed"], config=self.setting)  # fmt: skip
        self.seconds += time.perf_counter() - t0
        for t in sorted(perms):
            self.checkpoint(t, self._resumed_state(t, perms[t]), perms[t], record.val_loss[t], record.val_acc[t])

    def checkpoint(self, t: int, theta: State, perm: Permutation, loss: float, acc: float) -> None:
        """Write step ``t``: ``theta`` as evaluated (BatchNorm statistics re-estimated)."""
        if self._writer is None:
            return
        t0 = time.perf_counter()
        self._writer.save(theta, step=t, epoch=float(t), name=f"t{t}", metrics={"val_acc": acc, "val_loss": loss})
        self._perms[t] = perm
        self.seconds += time.perf_counter() - t0

    def abort(self) -> None:
        """Remove the temporary trajectory (a failed or interrupted run)."""
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = self._writer = None

    def result(self, record: RunRecord) -> MethodResult:
        """The method's entry of ``results.json`` from the finished run's record (no phases yet)."""
        options, acc = self.ctx.options, record.val_acc
        linear = options.linear
        return MethodResult(
            t=list(range(options.T + 1)),
            val_acc=acc,
            val_loss=record.val_loss,
            best_t=MethodResult.best_of(acc),
            seconds=record.seconds,
            eval_seconds=record.eval_seconds,
            lsa_calls=record.lsa_calls,
            lsa_seconds=record.lsa_seconds,
            lap_proofs=record.lap_proofs,
            lambdas=schedule_lambdas(options.T, options.schedule) if linear else None,
            source_steps=None if linear else self.ctx.source.steps(),
            target=self.setting["target"],
            world_size=dist.world_size(),
        )

    def write(self, record: RunRecord, before: Mapping[str, float] | None = None, started: float | None = None) -> dict:
        """Finish the trajectory (unless ``options.write_trajectory`` is False) and write the entry, whose
        ``phases`` are ``before`` (what preceded the steps), the steps' own and the writing, and whose
        ``wall_seconds`` runs from ``started`` (perf_counter) to now; returns the entry as written."""
        t0 = time.perf_counter()
        if self.written:
            self._finish_trajectory()
        result = self.result(record)
        phases = {**dict.fromkeys(PHASES, 0.0), **dict(before or {}), **record.phases}
        phases["writing"] = self.seconds + time.perf_counter() - t0
        result.phases = {k: round(phases[k], 3) for k in PHASES}
        if started is not None:
            wall = time.perf_counter() - started
            result.phases["other"] = round(max(0.0, wall - sum(phases[k] for k in PHASES)), 3)
            result.wall_seconds = round(wall, 3)
        result.trajectory = self.written
        if self.folder is not None and dist.is_main():
            self.folder.add(self.setting, self.setting["method"], result)
        return result.to_json()

    def _resumed_state(self, t: int, perm: Permutation) -> State:
        """theta_2^t of a step an earlier process evaluated: its BatchNorm statistics from the store."""
        ctx = self.ctx
        theta = ctx.theta2(perm, t)
        if ctx.gradients.bn:
            stats = ctx.store.load_bn(t)
            theta.update(stats if stats is not None else ctx.gradients.reestimate_bn(theta))
        return theta

    def _finish_trajectory(self) -> None:
        T = self.ctx.options.T
        if self._writer is None or sorted(self._perms) != list(range(T + 1)):
            raise RuntimeError(f"the transferred trajectory misses steps: {sorted(self._perms)} of 0..{T}")
        try:
            perms = {f"t{t}/{g}": p for t in range(T + 1) for g, p in self._perms[t].items()}
            atomic_write_bytes(self._tmp / PERMUTATIONS, save_tensors({k: v.contiguous().clone() for k, v in perms.items()}))
            self._writer.finish()
            replace_folder(self._tmp, self.out / self.setting["method"])
        except BaseException:
            self.abort()
            raise
        self._tmp = self._writer = None
