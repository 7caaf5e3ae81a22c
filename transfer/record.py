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
step, then a checkpoint at the end of every epoch (or every ``every_steps`` steps), and marks the
trajectory complete when training ends. Each checkpoint carries the metrics the ``Trainer`` logged
at its step (training loss, learning rate, and the evaluation run at that step: ``eval_loss``, ...),
the last one included: the ``Trainer`` evaluates *after* the epoch-end event, so a checkpoint is
written once that step's logging and evaluation are done (at the next step, the save, or the end).
When the ``Trainer`` resumes from one of its checkpoints, recording resumes with it: checkpoints
the writer saved after that step are dropped and recorded again, and a checkpoint the ``Trainer``
saved before the callback could record it (an interruption in between) is recorded at the resume.

The ``model`` string is the id a reader will build (``transfer run`` reads it from the manifest; a
``package.module:factory`` id is only imported when the user gives it again with ``--model``).
"""

from __future__ import annotations

import os
from typing import Any

from transformers import TrainerCallback

from transfer.trajectory import TrajectoryWriter

__all__ = ["TrajectoryCallback", "step_metrics"]


SUMMARY_KEY = "train_runtime"  # the Trainer's end-of-training summary: about the whole run, not one step


class TrajectoryCallback(TrainerCallback):
    """Hugging Face ``Trainer`` callback writing a permgraph trajectory to ``out`` (main process only)."""

    def __init__(
        self, out: str | os.PathLike, model: str, data: str = "", seed: int | None = None, every_steps: int | None = None
    ) -> None:
        self.out, self.model_id, self.data, self.seed, self.every_steps = out, model, data, seed, every_steps
        self.writer: TrajectoryWriter | None = None
        self._due: tuple[int, float, str | None] | None = None  # a checkpoint waiting for its step's logs

    def _save(self, model: Any, state: Any, name: str | None = None, epoch: float | None = None) -> None:
        assert self.writer is not None
        epoch = float(state.epoch or 0.0) if epoch is None else epoch
        self.writer.save(model.state_dict(), step=state.global_step, epoch=epoch, name=name,
                         metrics=step_metrics(state.log_history, state.global_step))  # fmt: skip

    def _flush(self, model: Any, state: Any) -> None:
        """Write the checkpoint marked at the end of a step or epoch, now that the step's logs are in."""
        if self._due is None or self.writer is None:
            return
        step, epoch, name = self._due
        self._due = None
        assert step == state.global_step, "a marked checkpoint is written before the next optimizer step"
        self._save(model, state, name=name, epoch=epoch)

    def _name(self, state: Any) -> str | None:
        """The checkpoint name due at the state's step (None: nothing due)."""
        if self.every_steps:
            return f"step_{state.global_step}" if state.global_step % self.every_steps == 0 else None
        epoch = float(state.epoch or 0.0)
        return f"epoch_{round(epoch)}" if abs(epoch - round(epoch)) < 1e-6 else None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero:
            return
        self.writer = TrajectoryWriter(self.out, model=self.model_id, data=self.data, seed=self.seed)
        self.writer.truncate_after(state.global_step)  # a resumed Trainer records again from its step
        if state.global_step == 0:
            self._save(model, state, name="init")
        elif state.global_step not in self.writer.steps and (name := self._name(state)) is not None:
            self._save(model, state, name=name)  # the Trainer saved this step, we were interrupted before

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self._flush(model, state)

    def on_epoch_begin(self, args, state, control, model=None, **kwargs):
        self._flush(model, state)

    def on_save(self, args, state, control, model=None, **kwargs):
        self._flush(model, state)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.writer is not None and self.every_steps and state.global_step % self.every_steps == 0:
            self._due = (state.global_step, float(state.epoch or 0.0), None)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if self.writer is not None and not self.every_steps:
            self._due = (state.global_step, float(state.epoch or 0.0), f"epoch_{round(state.epoch or 0)}")

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.writer is None:
            return
        self._flush(model, state)
        if self.writer.steps[-1] != state.global_step:
            self._save(model, state)
        if state.max_steps and state.global_step >= state.max_steps:  # stopped early: not complete
            self.writer.finish()


def step_metrics(log_history: list[dict], step: int) -> dict[str, float]:
    """The numbers the ``Trainer`` logged at ``step`` (every entry of that step merged; the
    end-of-training summary left out), without the ``step`` and ``epoch`` keys."""
    merged: dict[str, float] = {}
    for entry in log_history:
        if entry.get("step") == step and SUMMARY_KEY not in entry:
            merged.update({k: v for k, v in entry.items() if _is_number(v) and k not in ("step", "epoch")})
    return merged


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
