"""Record a trajectory from any training loop: your own loop, or Hugging Face's ``Trainer``.

A trajectory is what :class:`~transfer.trajectory.TrajectoryWriter` writes: the init and the
checkpoints you choose, each a state dict with its step, epoch and metrics. From a plain PyTorch
loop::

    writer = TrajectoryWriter("runs/mine", model="mypkg.models:net", data="mypkg.data:splits", seed=0)
    writer.save(model.state_dict(), step=0, epoch=0.0, name="init")
    for epoch in range(epochs):
        ...                                   # your training
        writer.save(model.state_dict(), step=steps_so_far, epoch=epoch + 1, metrics={"val_acc": acc})
    writer.finish()

From ``transformers.Trainer``, add :class:`TrajectoryCallback`; it records the init at the first
step, then a checkpoint at the end of every epoch (or every ``every_steps`` steps), with the last
logged metrics, and marks the trajectory complete when training ends. When the ``Trainer`` resumes
from one of its checkpoints, recording resumes with it: checkpoints the writer saved after that step
are dropped and recorded again.

The ``model`` string is the id a reader will build (``transfer run`` reads it from the manifest; a
``package.module:factory`` id is only imported when the user gives it again with ``--model``).
"""

from __future__ import annotations

import os
from typing import Any

from transformers import TrainerCallback

from transfer.trajectory import TrajectoryWriter

__all__ = ["TrajectoryCallback"]


class TrajectoryCallback(TrainerCallback):
    """Hugging Face ``Trainer`` callback writing a permgraph trajectory to ``out`` (main process only)."""

    def __init__(
        self, out: str | os.PathLike, model: str, data: str = "", seed: int | None = None, every_steps: int | None = None
    ) -> None:
        self.out, self.model_id, self.data, self.seed, self.every_steps = out, model, data, seed, every_steps
        self.writer: TrajectoryWriter | None = None

    def _save(self, model: Any, state: Any, name: str | None = None) -> None:
        assert self.writer is not None
        metrics = {k: v for k, v in (state.log_history[-1] if state.log_history else {}).items()
                   if isinstance(v, (int, float)) and k not in ("step", "epoch")}  # fmt: skip
        self.writer.save(model.state_dict(), step=state.global_step, epoch=float(state.epoch or 0.0), name=name,
                         metrics=metrics)  # fmt: skip

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero:
            return
        self.writer = TrajectoryWriter(self.out, model=self.model_id, data=self.data, seed=self.seed)
        self.writer.truncate_after(state.global_step)  # a resumed Trainer records again from its step
        if state.global_step == 0:
            self._save(model, state, name="init")

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.writer is not None and self.every_steps and state.global_step % self.every_steps == 0:
            self._save(model, state)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if self.writer is not None and not self.every_steps:
            self._save(model, state, name=f"epoch_{round(state.epoch or 0)}")

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.writer is None:
            return
        if self.writer.steps[-1] != state.global_step:
            self._save(model, state)
        if state.max_steps and state.global_step >= state.max_steps:  # stopped early: not complete
            self.writer.finish()
