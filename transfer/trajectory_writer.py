"""Recording a trajectory from any training loop: :class:`TrajectoryWriter` (see
:mod:`transfer.trajectory` for the folder's layout and the reader)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from transfer.files import atomic_write_json, file_mode, fsync_dir, sha256_file, temporary_path
from transfer.trajectory_format import (
    FORMAT,
    MANIFEST,
    VERSION,
    TrajectoryError,
    checkpoint_filename,
    read_manifest,
    tensors_sha256,
)

__all__ = ["TrajectoryWriter"]


def _to_json_value(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, Mapping):
        return {str(k): _to_json_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_to_json_value(x) for x in v]
    if hasattr(v, "item") and callable(v.item):  # numpy scalars
        return v.item()
    return v


def _cpu_copies(state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU clones: safetensors refuses tensors that share storage (tied weights)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in state_dict.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(
                f"state_dict entry {k!r} is a {type(v).__name__}, not a tensor; a trajectory stores "
                "tensors only (drop or convert the entry before saving)"
            )
        out[k] = v.detach().to("cpu", copy=True).contiguous()
    return out


class TrajectoryWriter:
    """Records checkpoints of one training run into a trajectory folder.

    Opening a folder that already holds a manifest for the same ``model`` continues it (resume);
    a manifest for another model raises :class:`TrajectoryError` (a ``ValueError``). Saving a step
    that is already recorded replaces that checkpoint.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        model: str,
        data: str = "",
        seed: int | None = None,
        config: dict | None = None,
    ) -> None:
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if manifest_path.exists():
            existing = read_manifest(self.path)
            if existing.get("model") != model:
                raise TrajectoryError(
                    f"{self.path} already holds a trajectory of model {existing.get('model')!r}, not "
                    f"{model!r}; write to another folder (this one is left as it is)"
                )
            self.manifest = existing
            if data:
                self.manifest["data"] = data
            if seed is not None:
                self.manifest["seed"] = seed
            if config is not None:
                self.manifest["config"] = _to_json_value(config)
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self.manifest = {
                "format": FORMAT,
                "version": VERSION,
                "model": model,
                "data": data,
                "seed": seed,
                "config": _to_json_value(config or {}),
                "checkpoints": [],
                "complete": False,
            }
            self._write_manifest()

    @property
    def steps(self) -> list[int]:
        return [c["step"] for c in self.manifest["checkpoints"]]

    def save(
        self,
        state_dict: Mapping[str, torch.Tensor],
        *,
        step: int,
        epoch: float,
        name: str | None = None,
        metrics: dict | None = None,
    ) -> dict:
        """Write one checkpoint (atomically) and the updated manifest; returns the manifest entry."""
        step = int(step)
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        tensors = _cpu_copies(state_dict)
        fname = checkpoint_filename(step)
        final = self.path / fname
        tmp = temporary_path(final)
        try:
            save_file(tensors, str(tmp), metadata={"permgraph": self._about(tensors, step, epoch, name, metrics)})
            os.chmod(tmp, file_mode())  # safetensors creates its file 0600: the umask's mode, as for every file
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            digest = sha256_file(tmp)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(self.path)
        entry = {
            "name": name if name is not None else ("init" if step == 0 else f"step_{step}"),
            "step": step,
            "epoch": float(epoch),
            "file": fname,
            "sha256": digest,
            "shapes": {k: list(v.shape) for k, v in tensors.items()},
            "metrics": _to_json_value(metrics or {}),
        }
        ckpts = [c for c in self.manifest["checkpoints"] if c["step"] != step]
        ckpts.append(entry)
        ckpts.sort(key=lambda c: c["step"])
        self.manifest["checkpoints"] = ckpts
        self.manifest["complete"] = False
        self._write_manifest()
        return entry

    def _about(self, tensors: dict[str, torch.Tensor], step: int, epoch: float, name: str | None, metrics: Any) -> str:
        """What a checkpoint says about itself (its safetensors metadata): its manifest entry, the run's
        header, and a hash of its tensors, so that a lost or damaged manifest can be rebuilt from the
        checkpoints alone (:func:`transfer.rebuild.rebuild_manifest`). One metadata key: safetensors
        keeps metadata in a hash map, so several keys come out in a random order per process and
        identical runs would write different bytes."""
        header = {k: self.manifest[k] for k in ("model", "data", "seed", "config")}
        entry = {"name": name if name is not None else ("init" if step == 0 else f"step_{step}"), "step": step,
                 "epoch": float(epoch), "metrics": _to_json_value(metrics or {})}  # fmt: skip
        about = {**header, **entry, "format": FORMAT, "tensors_sha256": tensors_sha256(tensors)}
        return json.dumps(about, sort_keys=True, allow_nan=True)

    def truncate_after(self, step: int) -> None:
        """Forget the checkpoints recorded after ``step`` (a training loop resumed from an earlier point
        records them again). Their files stay until overwritten; the manifest is the only index."""
        kept = [c for c in self.manifest["checkpoints"] if c["step"] <= step]
        if len(kept) != len(self.manifest["checkpoints"]):
            self.manifest["checkpoints"] = kept
            self.manifest["complete"] = False
            self._write_manifest()

    def finish(self) -> None:
        """Mark the trajectory complete (readers may rely on it holding the whole run)."""
        self.manifest["complete"] = True
        self._write_manifest()

    def _write_manifest(self) -> None:
        atomic_write_json(self.path / MANIFEST, self.manifest)

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()

    def __repr__(self) -> str:
        return f"TrajectoryWriter({str(self.path)!r}, model={self.manifest['model']!r}, steps={self.steps})"
