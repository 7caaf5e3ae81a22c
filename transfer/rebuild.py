"""Rebuild a trajectory's manifest from its checkpoints (``zoo repair RUN``).

A manifest can be lost or damaged (a full disk, a bad copy, a hand edit) while every checkpoint
beside it is intact. Each checkpoint carries its own manifest entry, the run's header (model, data,
seed, config) and a hash of its tensors in its safetensors metadata (:class:`TrajectoryWriter`), so
the manifest can be written again from the checkpoints alone: nothing is deleted, nothing retrained.

Each checkpoint's tensors are checked against the hash it carries before it is listed; a checkpoint
that fails is left out and named (re-running the recording command regenerates it). The damaged
manifest is kept beside the new one as ``.manifest.json.damaged``. The rebuilt run is marked
incomplete: re-running the command that recorded it confirms it finished (training is deterministic,
so it writes nothing that is already recorded).

    >>> import tempfile, torch
    >>> from transfer.trajectory import Trajectory, TrajectoryWriter
    >>> run = tempfile.mkdtemp()
    >>> w = TrajectoryWriter(run, model="zoo:mlp2", data="synthetic", seed=0)
    >>> _ = w.save(torch.nn.Linear(3, 2).state_dict(), step=0, epoch=0.0)
    >>> w.finish()
    >>> _ = open(f"{run}/manifest.json", "w").write('{"format": "permgr')  # truncated
    >>> rebuild_manifest(run).steps
    [0]
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from transfer.files import atomic_write_json, folder_lock, sha256_file
from transfer.trajectory import FORMAT, MANIFEST, VERSION, TrajectoryError, checkpoint_filename, tensors_sha256

__all__ = ["RebuildReport", "rebuild_manifest", "manifest_is_readable"]

_CKPT = re.compile(r"ckpt_(\d{7})\.safetensors")
DAMAGED = ".manifest.json.damaged"


@dataclass
class RebuildReport:
    """What :func:`rebuild_manifest` did: the steps listed, the files left out and why."""

    path: Path
    steps: list[int] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # file -> why it was left out
    old_format: int = 0  # checkpoints without their own entry (written before checkpoints described themselves)

    def summary(self) -> str:
        span = f"steps {self.steps[0]}..{self.steps[-1]}" if self.steps else "no steps"
        text = f"rebuilt {self.path / MANIFEST} from {len(self.steps)} checkpoint(s) ({span}); marked incomplete"
        if self.skipped:
            text += "; left out: " + "; ".join(f"{k} ({v})" for k, v in sorted(self.skipped.items()))
        if self.old_format:
            text += (f"; {self.old_format} checkpoint(s) predate self-describing checkpoints: their epoch and "
                     "metrics are unknown")  # fmt: skip
        return text


def manifest_is_readable(path: str | os.PathLike) -> bool:
    """Whether ``path/manifest.json`` is a manifest a :class:`Trajectory` can open (nothing to repair)."""
    from transfer.trajectory import Trajectory

    try:
        Trajectory(path, check_files=False)
    except TrajectoryError:
        return False
    return True


def _read_about(file: Path) -> dict[str, Any]:
    """A checkpoint's own description (its safetensors metadata); ``{}`` for an older checkpoint."""
    with safe_open(str(file), framework="pt") as f:
        meta = f.metadata() or {}
    about = json.loads(meta.get("permgraph", "{}"))
    if not isinstance(about, dict):
        raise ValueError("its metadata is not an object")
    return about


def _entry(file: Path, step: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest entry of one checkpoint and the header it carries; raises ``ValueError`` when the
    checkpoint is unreadable or its tensors no longer match the hash it carries."""
    try:
        about = _read_about(file)
        tensors = load_file(str(file))
    except (SafetensorError, OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"unreadable: {e}") from e
    if about.get("step", step) != step:
        raise ValueError(f"it says it is step {about.get('step')}")
    if "tensors_sha256" in about and tensors_sha256(tensors) != about["tensors_sha256"]:
        raise ValueError("its tensors do not match the hash it carries")
    metrics = about.get("metrics", {})
    entry = {
        "name": str(about.get("name", "init" if step == 0 else f"step_{step}")),
        "step": step,
        "epoch": float(about.get("epoch", step)),
        "file": checkpoint_filename(step),
        "sha256": sha256_file(file),
        "shapes": {k: list(v.shape) for k, v in tensors.items()},
        "metrics": metrics if isinstance(metrics, dict) else {},
    }
    header = {k: about[k] for k in ("model", "data", "seed", "config") if k in about}
    return entry, header


def _scan(folder: Path, report: RebuildReport) -> list[tuple[dict, dict]]:
    found = []
    for file in sorted(folder.glob("ckpt_*.safetensors")):
        match = _CKPT.fullmatch(file.name)
        if not match or not file.is_file():
            continue
        try:
            found.append(_entry(file, int(match.group(1))))
        except ValueError as e:
            report.skipped[file.name] = str(e)
    return found


def rebuild_manifest(path: str | os.PathLike, *, model: str | None = None) -> RebuildReport:
    """Write ``path/manifest.json`` again from the checkpoints in ``path`` (see the module docstring).

    The run's header comes from its last checkpoint; checkpoints of another model or configuration (left
    over from an earlier run in the folder) are left out. ``model``: the model id, for checkpoints written
    before they described themselves. Raises :class:`TrajectoryError` when no checkpoint can be used."""
    folder = Path(path)
    if not folder.is_dir():
        raise TrajectoryError(f"{folder} is not a folder; pass the trajectory folder holding the ckpt_*.safetensors files")
    report = RebuildReport(folder)
    with folder_lock(folder, "zoo repair"):
        found = _scan(folder, report)
        if not found:
            raise TrajectoryError(
                f"{folder} holds no readable checkpoint (ckpt_*.safetensors) to rebuild a manifest from"
                + (f" ({'; '.join(f'{k}: {v}' for k, v in report.skipped.items())})" if report.skipped else "")
                + "; re-run the command that recorded it"
            )
        header = found[-1][1]
        if "model" not in header and model is None:
            raise TrajectoryError(
                f"the checkpoints in {folder} predate self-describing checkpoints and do not name their model; "
                "pass it: zoo repair RUN --model ID"
            )
        header = {"model": model or header["model"], "data": "", "seed": None, "config": {}, **header}
        entries = []
        for entry, own in found:
            if own and any(own.get(k) != header[k] for k in own):
                report.skipped[entry["file"]] = "a checkpoint of another run (model or configuration differs)"
                continue
            report.old_format += not own
            entries.append(entry)
        _replace_manifest(folder, header, entries)
    report.steps = [e["step"] for e in entries]
    return report


def _replace_manifest(folder: Path, header: dict, entries: list[dict]) -> None:
    mpath = folder / MANIFEST
    if mpath.exists():  # keep what was there: the user may want to look at it
        os.replace(mpath, folder / DAMAGED)
    manifest = {"format": FORMAT, "version": VERSION, **header, "checkpoints": entries, "complete": False}
    atomic_write_json(mpath, manifest)
