"""What a transfer's inputs are, by content: a run's identity (the sha256 of its checkpoints, from
its manifest), a state's content hash, and trajectories opened with a transfer error for a bad folder."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping

import torch

from transfer.results import TransferError
from transfer.trajectory import Trajectory, TrajectoryError

__all__ = ["state_sha", "trajectory_sha", "open_trajectory"]


def state_sha(state: Mapping[str, torch.Tensor]) -> str:
    """A short content hash of a state dict (keys and tensor bytes, in key order)."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def trajectory_sha(traj: Trajectory) -> str:
    """A run's identity by content: a hash of its checkpoints' sha256 (from the manifest, which
    every read checks against the files), so a run that moved on is never mistaken for the old one."""
    h = hashlib.sha256()
    for c in traj.checkpoints:
        h.update(f"{c['step']}:{c['sha256']};".encode())
    return h.hexdigest()[:16]


def open_trajectory(traj: Trajectory | str | os.PathLike, what: str) -> Trajectory:
    """A :class:`Trajectory`, with a missing or corrupt folder reported as a :class:`TransferError`."""
    if isinstance(traj, Trajectory):
        return traj
    try:
        return Trajectory(traj)
    except TrajectoryError as e:
        raise TransferError(f"{what}: {e}") from e
