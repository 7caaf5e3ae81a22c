"""The trajectory format: its name and version, the manifest and how it is read and checked, the
checkpoint file names and the content hash each checkpoint carries. :mod:`transfer.trajectory` reads
folders of this format, :mod:`transfer.trajectory_writer` writes them, :mod:`transfer.rebuild`
rebuilds a lost manifest from the checkpoints."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import torch

__all__ = [
    "FORMAT",
    "VERSION",
    "MANIFEST",
    "REBUILD",
    "REGENERATE",
    "TrajectoryError",
    "checkpoint_filename",
    "tensors_sha256",
    "check_entries",
    "read_manifest",
]

FORMAT = "permgraph-trajectory"
VERSION = 1
MANIFEST = "manifest.json"


class TrajectoryError(ValueError):
    """A trajectory folder is missing, corrupt, or does not match what was asked for."""


# the advice a damaged or missing manifest gives: the checkpoints are intact and describe themselves
REBUILD = (
    "the checkpoints in the folder are kept and carry their own metadata: rebuild the manifest from them with "
    "`zoo repair {path}` (it keeps every file; in Python: transfer.rebuild.rebuild_manifest)"
)

# the advice every damaged-checkpoint message gives; following it works (tests/reliability)
REGENERATE = (
    "re-run the command that recorded this trajectory with the same arguments (zoo train, or transfer run): "
    "it checks every checkpoint and regenerates the damaged ones"
)


def checkpoint_filename(step: int) -> str:
    """The file name of the checkpoint at ``step``: ``ckpt_0000042.safetensors``."""
    return f"ckpt_{int(step):07d}.safetensors"


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """A hash of a state's content (names, dtypes, shapes, bytes; in name order), independent of the
    file format: a checkpoint carries it, so its tensors can be checked without a manifest."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().to("cpu").contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)};".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_entries(path: Path, manifest: dict) -> None:
    """Every checkpoint entry names a plain file of this folder by the writer's own name pattern: a
    manifest received from someone else must not point a reader elsewhere."""
    for c in manifest["checkpoints"]:
        ok = (
            isinstance(c, dict)
            and isinstance(c.get("step"), int)
            and not isinstance(c.get("step"), bool)
            and c.get("file") == checkpoint_filename(c["step"])
            and isinstance(c.get("sha256", ""), str)
        )
        if not ok:
            raise TrajectoryError(
                f"corrupt manifest {path / MANIFEST}: a checkpoint entry is not what TrajectoryWriter writes "
                f"({str(c)[:80]}); {REBUILD.format(path=path)}"
            )


def read_manifest(path: Path) -> dict:
    if not path.exists():
        raise TrajectoryError(
            f"trajectory folder {path} does not exist; record one first (e.g. `zoo train ... --out {path}`)"
        )
    if not path.is_dir():
        raise TrajectoryError(f"{path} is a file, not a trajectory folder; pass the folder holding {MANIFEST}")
    mpath = path / MANIFEST
    if not mpath.exists():
        if any(path.glob("ckpt_*.safetensors")):
            raise TrajectoryError(f"{mpath} is missing; {REBUILD.format(path=path)}")
        raise TrajectoryError(
            f"{mpath} is missing, so {path} is not a trajectory folder; pass the folder that `zoo train --out` wrote"
        )
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TrajectoryError(f"corrupt manifest {mpath} ({e}); {REBUILD.format(path=path)}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        fmt = manifest.get("format") if isinstance(manifest, dict) else None
        ours = any(path.glob("ckpt_*.safetensors"))
        fix = REBUILD.format(path=path) if ours else "pass a folder written by TrajectoryWriter"
        raise TrajectoryError(f"{mpath} is not a {FORMAT} manifest (format={fmt!r}); {fix}")
    if manifest.get("version", 0) > VERSION:
        raise TrajectoryError(
            f"{mpath} has format version {manifest['version']}, newer than this library's {VERSION}; upgrade permgraph"
        )
    if not isinstance(manifest.get("checkpoints"), list) or "model" not in manifest:
        raise TrajectoryError(f"corrupt manifest {mpath}: no 'model' or 'checkpoints'; {REBUILD.format(path=path)}")
    return manifest
