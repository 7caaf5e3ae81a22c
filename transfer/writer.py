"""What a finished run writes: the transferred trajectory ``OUT/<method>/`` (with the permutation of
every step) and the method's entry of ``OUT/results.json``."""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import save as save_tensors

from transfer import distributed as dist
from transfer.context import TransferContext
from transfer.files import atomic_write_bytes, temporary_folder
from transfer.lap import LapProofs
from transfer.outputs import PERMUTATIONS, replace_folder, shared_setting
from transfer.phases import PHASES
from transfer.results import merge_result
from transfer.trajectory import TrajectoryWriter, schedule_lambdas

__all__ = ["RunOutputs"]

State = dict[str, torch.Tensor]


class RunOutputs:
    """The transferred trajectory folder and the method's entry in ``results.json``."""

    def __init__(self, ctx: TransferContext, setting: dict, record: dict, out: Path | None) -> None:
        self.ctx, self.setting, self.record, self.out = ctx, setting, record, out

    def result(self) -> dict:
        rec, options = self.record, self.ctx.options
        acc = rec["val_acc"]
        result = {
            "t": list(range(options.T + 1)),
            "val_acc": acc,
            "val_loss": rec["val_loss"],
            "best_t": max(range(len(acc)), key=lambda i: (acc[i], -i)),
            "seconds": rec["seconds"],
            "eval_seconds": rec["eval_seconds"],
            "lsa_calls": rec["lsa_calls"],
            "lsa_seconds": rec["lsa_seconds"],
            "lap_proofs": LapProofs.from_json(rec.get("lap_proofs")).to_json(),
        }
        if options.linear:
            result["lambdas"] = schedule_lambdas(options.T, options.schedule)
        else:
            result["source_steps"] = self.ctx.source.steps()
        if self.setting["target"] is not None:
            result["target"] = self.setting["target"]
        result["world_size"] = dist.world_size()
        return result

    def write(self, before: Mapping[str, float] | None = None, started: float | None = None) -> dict:
        """Write the trajectory (unless ``options.write_trajectory`` is False) and the entry, whose
        ``phases`` are ``before`` (what preceded the steps), the steps' own and the writing, and whose
        ``wall_seconds`` runs from ``started`` (perf_counter) to now."""
        t0 = time.perf_counter()
        written = self.out is not None and dist.is_main() and self.ctx.options.write_trajectory
        if written:
            self._write_trajectory()
        result = self.result()
        phases = {**dict.fromkeys(PHASES, 0.0), **dict(before or {}), **self.record["phases"]}
        phases["writing"] = time.perf_counter() - t0
        result["phases"] = {k: round(phases[k], 3) for k in PHASES}
        if started is not None:
            wall = time.perf_counter() - started
            result["phases"]["other"] = round(max(0.0, wall - sum(phases[k] for k in PHASES)), 3)
            result["wall_seconds"] = round(wall, 3)
        result["trajectory"] = written
        if self.out is None or not dist.is_main():
            return result
        merge_result(self.out, shared_setting(self.setting), self.setting["method"], result)
        return result

    def saved_state(self, t: int) -> State:
        """theta_2^t as saved: transferred parameters, target buffers, re-estimated BN statistics."""
        ctx = self.ctx
        theta = ctx.theta2(ctx.store.load_perm(t), t)
        if ctx.gradients.bn:
            stats = ctx.store.load_bn(t)
            theta.update(stats if stats is not None else ctx.gradients.reestimate_bn(theta))
        return theta

    def _write_trajectory(self) -> None:
        method, T = self.setting["method"], self.ctx.options.T
        folder = self.out / method
        tmp = temporary_folder(self.out, f".{method}.")  # the umask's mode, not mkdtemp's 0700
        try:
            writer = TrajectoryWriter(tmp, model=self.setting["model"], data=self.setting["data"],
                                      seed=self.setting["seed"], config=self.setting)  # fmt: skip
            for t in range(T + 1):
                metrics = {"val_acc": self.record["val_acc"][t], "val_loss": self.record["val_loss"][t]}
                writer.save(self.saved_state(t), step=t, epoch=float(t), name=f"t{t}", metrics=metrics)
            perms = {f"t{t}/{g}": p for t in range(T + 1) for g, p in self.ctx.store.load_perm(t).items()}
            atomic_write_bytes(tmp / PERMUTATIONS, save_tensors({k: v.contiguous() for k, v in perms.items()}))
            writer.finish()
            replace_folder(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
