"""Learning trajectories on disk, and linear trajectories in memory.

A recorded trajectory is a folder::

    RUN/manifest.json                  model id, data, seed, config, one entry per checkpoint
    RUN/ckpt_<step:07d>.safetensors    one full state_dict (parameters and buffers)

The manifest is the only index: a checkpoint file that it does not name does not exist for a reader,
and every write goes through a temporary file and ``os.replace``, so a run killed at any moment leaves
either the old or the new manifest, never half of one. Readers are lazy: only the manifest is held in
memory, and each checkpoint is read (and its sha256 checked) when asked for.

Record from any training loop, then read it back lazily:

    >>> import tempfile, torch
    >>> model = torch.nn.Linear(3, 2)
    >>> run = tempfile.mkdtemp()
    >>> w = TrajectoryWriter(run, model="my_pkg.models:small", data="my-data", seed=0)
    >>> _ = w.save(model.state_dict(), step=0, epoch=0.0, name="init")
    >>> w.finish()
    >>> traj = Trajectory(run)
    >>> traj.steps, traj.init()["weight"].shape
    ([0], torch.Size([2, 3]))

The paper's linear trajectory (only θ⁰ and θᵀ stored) is :class:`LinearTrajectory`, with the
schedules of :func:`schedule_lambdas`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from transfer.files import atomic_write_bytes, atomic_write_json, sha256_file
from transfer.schedules import SCHEDULES, LinearTrajectory, Schedule, schedule_lambdas
from transfer.trajectory_format import (
    FORMAT,
    MANIFEST,
    REBUILD,
    REGENERATE,
    VERSION,
    TrajectoryError,
    check_entries,
    checkpoint_filename,
    read_manifest,
    tensors_sha256,
)
from transfer.trajectory_writer import TrajectoryWriter

__all__ = [
    "FORMAT",
    "VERSION",
    "SCHEDULES",
    "Schedule",
    "TrajectoryError",
    "TrajectoryWriter",
    "Trajectory",
    "LinearTrajectory",
    "schedule_lambdas",
    "atomic_write_bytes",
    "atomic_write_json",
    "checkpoint_filename",
    "tensors_sha256",
    "REBUILD",
]


class Trajectory:
    """Lazy reader of a trajectory folder: holds the manifest, reads checkpoints on demand.

    ``verify=True`` (default) checks each file's sha256 against the manifest before loading.
    """

    def __init__(self, path: str | os.PathLike, *, verify: bool = True, check_files: bool = True) -> None:
        self.path = Path(path)
        self.verify = verify
        self.manifest = read_manifest(self.path)
        check_entries(self.path, self.manifest)
        if check_files:
            for c in self.checkpoints:
                if not (self.path / c["file"]).exists():
                    raise TrajectoryError(
                        f"{self.path / MANIFEST} names checkpoint {c['file']} (step {c['step']}), but the file is "
                        f"missing; {REGENERATE}"
                    )

    def damaged(self) -> list[dict]:
        """The manifest entries whose checkpoint file is missing or no longer matches its sha256
        (reads every file: a full check, for a rerun that must not report a damaged run complete)."""
        bad = []
        for c in self.checkpoints:
            path = self.path / c["file"]
            if not path.exists() or (c.get("sha256") and sha256_file(path) != c["sha256"]):
                bad.append(c)
        return bad

    # -- manifest views
    @property
    def model(self) -> str:
        return self.manifest["model"]

    @property
    def data(self) -> str:
        return self.manifest.get("data", "")

    @property
    def seed(self) -> int | None:
        return self.manifest.get("seed")

    @property
    def config(self) -> dict:
        return self.manifest.get("config", {})

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete", False))

    @property
    def checkpoints(self) -> list[dict]:
        return self.manifest["checkpoints"]

    @property
    def steps(self) -> list[int]:
        return [c["step"] for c in self.checkpoints]

    @property
    def epochs(self) -> list[float]:
        return [c["epoch"] for c in self.checkpoints]

    def metrics(self, key: str) -> list:
        """One metric across checkpoints (None where a checkpoint lacks it), e.g. ``metrics("val_acc")``."""
        return [c.get("metrics", {}).get(key) for c in self.checkpoints]

    def __len__(self) -> int:
        return len(self.checkpoints)

    # -- loading
    def load(self, i: int) -> dict[str, torch.Tensor]:
        """The state dict of checkpoint ``i`` (an index into :attr:`checkpoints`; negative allowed)."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"checkpoint index {i} out of range for a trajectory of {n} checkpoints")
        entry = self.checkpoints[i]
        fpath = self.path / entry["file"]
        if not fpath.exists():
            raise TrajectoryError(f"checkpoint file {fpath} (step {entry['step']}) is missing; {REGENERATE}")
        if self.verify and entry.get("sha256"):
            digest = sha256_file(fpath)
            if digest != entry["sha256"]:
                raise TrajectoryError(
                    f"corrupt checkpoint {fpath}: sha256 {digest[:12]}... does not match the manifest's "
                    f"{entry['sha256'][:12]}... (truncated or overwritten); {REGENERATE}"
                )
        try:
            state = load_file(str(fpath))
        except (SafetensorError, OSError, ValueError) as e:
            raise TrajectoryError(f"corrupt checkpoint {fpath} ({e}); {REGENERATE}") from e
        shapes = entry.get("shapes")
        if shapes is not None:
            if set(shapes) != set(state):
                missing = sorted(set(shapes) - set(state))[:5]
                extra = sorted(set(state) - set(shapes))[:5]
                raise TrajectoryError(
                    f"checkpoint {fpath} does not hold the tensors its manifest lists (missing {missing}, "
                    f"unexpected {extra}); {REGENERATE}"
                )
            for k, shape in shapes.items():
                if list(state[k].shape) != list(shape):
                    raise TrajectoryError(
                        f"checkpoint {fpath}: tensor {k!r} has shape {list(state[k].shape)}, the manifest "
                        f"says {list(shape)}; {REGENERATE}"
                    )
        return state

    def load_step(self, step: int) -> dict[str, torch.Tensor]:
        """The state dict recorded at training step ``step``."""
        steps = self.steps
        try:
            return self.load(steps.index(int(step)))
        except ValueError:
            raise KeyError(f"no checkpoint at step {step}; recorded steps: {steps}") from None

    def init(self) -> dict[str, torch.Tensor]:
        """θ⁰, the first checkpoint."""
        if not len(self):
            raise TrajectoryError(f"trajectory {self.path} has no checkpoints yet; run training first")
        return self.load(0)

    def final(self) -> dict[str, torch.Tensor]:
        """θᵀ, the last checkpoint."""
        if not len(self):
            raise TrajectoryError(f"trajectory {self.path} has no checkpoints yet; run training first")
        return self.load(len(self) - 1)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.load(i)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for i in range(len(self)):
            yield self.load(i)

    def __repr__(self) -> str:
        return f"Trajectory({str(self.path)!r}, model={self.model!r}, {len(self)} checkpoints, complete={self.complete})"
