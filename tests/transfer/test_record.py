"""Recording from any training loop: a Hugging Face ``Trainer`` with :class:`TrajectoryCallback`
writes a trajectory that ``transfer`` reads, and recording resumes with the ``Trainer``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from transfer.record import TrajectoryCallback
from transfer.trajectory import Trajectory


class Points(torch.utils.data.Dataset):
    """Hugging Face style items: a dict with the inputs and ``labels``."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(64, 8, generator=g), torch.randint(0, 3, (64,), generator=g)

    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "labels": self.y[i]}


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 3)

    def forward(self, x, labels=None):
        logits = self.b(torch.relu(self.a(x)))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


class StopAfterFirstEpoch:
    """An interruption: the Trainer saves its epoch-1 checkpoint, then stops."""

    def __new__(cls):
        from transformers import TrainerCallback

        class Stop(TrainerCallback):
            def on_epoch_end(self, args, state, control, **kwargs):
                control.should_training_stop = True

        return Stop()


class Killed(Exception):
    """A process killed after the Trainer wrote its checkpoint and before anything else ran."""


def killed_after_saving(at_step: int):
    from transformers import TrainerCallback

    class Kill(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == at_step:
                raise Killed()

    return Kill()


def trainer(out, run, interrupt: bool = False, *, evaluate: bool = False, epochs: int = 2, before: tuple = ()):
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(output_dir=str(out), num_train_epochs=epochs, per_device_train_batch_size=16,
                             report_to=[], use_cpu=True, save_strategy="epoch", logging_steps=1,
                             eval_strategy="epoch" if evaluate else "no", disable_tqdm=True, seed=0)  # fmt: skip
    torch.manual_seed(0)
    callback = TrajectoryCallback(run, model="tests.transfer.test_record:Net", data="points", seed=0)
    callbacks = [*before, callback, StopAfterFirstEpoch()] if interrupt else [*before, callback]
    return Trainer(model=Net(), args=args, train_dataset=Points(), eval_dataset=Points() if evaluate else None,
                   callbacks=callbacks)  # fmt: skip


def logged_at(trainer_, step: int) -> dict:
    """What the Trainer itself logged at ``step`` (its ``state.log_history``), the run summary left out."""
    merged: dict = {}
    for entry in trainer_.state.log_history:
        if entry["step"] == step and "train_runtime" not in entry:
            merged.update({k: v for k, v in entry.items() if k not in ("step", "epoch")})
    return merged


def test_a_trainer_run_is_recorded_with_init_epochs_and_metrics(tmp_path):
    trainer(tmp_path / "hf", tmp_path / "run").train()
    traj = Trajectory(tmp_path / "run")
    assert traj.complete and traj.steps == [0, 4, 8] and traj.epochs == [0.0, 1.0, 2.0]
    assert "loss" in traj.checkpoints[-1]["metrics"]
    assert not torch.equal(traj.init()["a.weight"], traj.final()["a.weight"])


def test_recording_resumes_with_the_trainer(tmp_path):
    whole = tmp_path / "whole"
    trainer(tmp_path / "hf_whole", whole).train()
    part = tmp_path / "part"
    trainer(tmp_path / "hf_part", part, interrupt=True).train()  # stops after epoch 1, with a Trainer checkpoint
    assert not Trajectory(part).complete and Trajectory(part).steps == [0, 4]
    trainer(tmp_path / "hf_part", part).train(resume_from_checkpoint=True)
    a, b = Trajectory(whole), Trajectory(part)
    assert b.complete and a.steps == b.steps
    assert all(torch.allclose(a.final()[k], b.final()[k], atol=1e-6) for k in a.final())


def test_each_checkpoint_holds_the_metrics_the_trainer_logged_at_its_step_the_last_included(tmp_path):
    t = trainer(tmp_path / "hf", tmp_path / "run", evaluate=True, epochs=3)
    t.train()
    traj = Trajectory(tmp_path / "run")
    assert traj.steps == [0, 4, 8, 12]
    assert traj.checkpoints[0]["metrics"] == {}
    for c in traj.checkpoints[1:]:
        assert c["metrics"] == logged_at(t, c["step"]), c["name"]
        assert "eval_loss" in c["metrics"] and "loss" in c["metrics"]
    evals = [e["eval_loss"] for e in t.state.log_history if "eval_loss" in e]
    assert traj.metrics("eval_loss")[1:] == evals  # every evaluation recorded, each at its own epoch


def test_a_run_killed_between_the_trainers_save_and_the_record_resumes_with_every_step_recorded(tmp_path):
    hf, run = tmp_path / "hf", tmp_path / "run"
    with pytest.raises(Killed):
        trainer(hf, run, evaluate=True, epochs=3, before=(killed_after_saving(8),)).train()
    assert Trajectory(run, verify=False).steps == [0, 4]  # epoch 2 was saved by the Trainer, not recorded yet
    t = trainer(hf, run, evaluate=True, epochs=3)
    t.train(resume_from_checkpoint=True)
    traj = Trajectory(run)
    assert traj.complete and traj.steps == [0, 4, 8, 12]
    for c in traj.checkpoints[1:]:
        assert c["metrics"] == logged_at(t, c["step"]), c["name"]
    assert len(traj.metrics("eval_loss")) == 4 and None not in traj.metrics("eval_loss")[1:]
