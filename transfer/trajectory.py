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

import hashlib
import json
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from transfer.files import atomic_write_bytes, atomic_write_json, file_mode, fsync_dir, sha256_file, temporary_path

__all__ = [
    "FORMAT",
    "VERSION",
    "SCHEDULES",
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

FORMAT = "permgraph-trajectory"
VERSION = 1
MANIFEST = "manifest.json"
SCHEDULES = ("uniform", "cosine")


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


# --------------------------------------------------------------------------- writer


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
            existing = _read_manifest(self.path)
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


# --------------------------------------------------------------------------- reader


def _check_entries(path: Path, manifest: dict) -> None:
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


def _read_manifest(path: Path) -> dict:
    if not path.exists():
        raise TrajectoryError(
            f"trajectory folder {path} does not exist; record one first (e.g. `zoo train ... --out {path}`)"
        )
    if not path.is_dir():
        raise TrajectoryError(
            f"{path} is a file, not a trajectory folder; pass the folder holding {MANIFEST}"
        )
    mpath = path / MANIFEST
    if not mpath.exists():
        if any(path.glob("ckpt_*.safetensors")):
            raise TrajectoryError(f"{mpath} is missing; {REBUILD.format(path=path)}")
        raise TrajectoryError(
            f"{mpath} is missing, so {path} is not a trajectory folder; pass the folder that "
            "`zoo train --out` wrote"
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
            f"{mpath} has format version {manifest['version']}, newer than this library's {VERSION}; "
            "upgrade permgraph"
        )
    if not isinstance(manifest.get("checkpoints"), list) or "model" not in manifest:
        raise TrajectoryError(f"corrupt manifest {mpath}: no 'model' or 'checkpoints'; {REBUILD.format(path=path)}")
    return manifest


class Trajectory:
    """Lazy reader of a trajectory folder: holds the manifest, reads checkpoints on demand.

    ``verify=True`` (default) checks each file's sha256 against the manifest before loading.
    """

    def __init__(self, path: str | os.PathLike, *, verify: bool = True, check_files: bool = True) -> None:
        self.path = Path(path)
        self.verify = verify
        self.manifest = _read_manifest(self.path)
        _check_entries(self.path, self.manifest)
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
        return (
            f"Trajectory({str(self.path)!r}, model={self.model!r}, {len(self)} checkpoints, "
            f"complete={self.complete})"
        )


# --------------------------------------------------------------------------- linear trajectories


def schedule_lambdas(T: int, schedule: str = "uniform") -> list[float]:
    """Interpolation weights λ_0..λ_T (λ_0 = 0, λ_T = 1) of a linear trajectory with T steps.

    ``uniform``: λ_t = t/T (the paper's v2 text). ``cosine`` (the paper's released configs):
    λ_k = Σ_{j<k} w_j / Σ_{j<T} w_j with w_j = 1 + cos(πj/T), so steps shrink like a cosine LR.

    >>> schedule_lambdas(2, "cosine")
    [0.0, 0.6666666666666666, 1.0]
    """
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be an int >= 1, got {T!r}")
    if schedule == "uniform":
        lam = [t / T for t in range(T + 1)]
    elif schedule == "cosine":
        w = [1.0 + math.cos(math.pi * j / T) for j in range(T)]
        total = sum(w)
        lam, acc = [0.0], 0.0
        for j in range(T):
            acc += w[j]
            lam.append(acc / total)
    else:
        raise ValueError(f"unknown schedule {schedule!r}; valid schedules: {', '.join(SCHEDULES)}")
    lam[0], lam[-1] = 0.0, 1.0
    return lam


class LinearTrajectory:
    """θ_t = θ⁰ + λ_t (θᵀ − θ⁰): the trajectory the paper uses when only θ⁰ and θᵀ are stored.

    Floating-point tensors are interpolated; other tensors (e.g. BatchNorm's ``num_batches_tracked``)
    are taken from θᵀ. ``at(0)`` and ``at(T)`` return exact copies of θ⁰ and θᵀ.
    """

    def __init__(
        self,
        theta0: Mapping[str, torch.Tensor],
        thetaT: Mapping[str, torch.Tensor],
        T: int,
        schedule: str = "uniform",
    ) -> None:
        if set(theta0) != set(thetaT):
            diff = sorted(set(theta0) ^ set(thetaT))[:5]
            raise ValueError(
                f"theta0 and thetaT hold different tensors (e.g. {diff}); pass two checkpoints "
                "of the same model"
            )
        for k in theta0:
            if theta0[k].shape != thetaT[k].shape:
                raise ValueError(
                    f"tensor {k!r}: theta0 has shape {tuple(theta0[k].shape)}, thetaT "
                    f"{tuple(thetaT[k].shape)}; pass two checkpoints of the same model"
                )
        self.theta0 = dict(theta0)
        self.thetaT = dict(thetaT)
        self.T = T
        self.schedule = schedule
        self.lambdas = schedule_lambdas(T, schedule)

    def __len__(self) -> int:
        return self.T + 1

    def at(self, t: int) -> dict[str, torch.Tensor]:
        """θ_t for t in 0..T."""
        if not 0 <= t <= self.T:
            raise IndexError(f"t={t} out of range 0..{self.T}")
        lam = self.lambdas[t]
        out: dict[str, torch.Tensor] = {}
        for k, a in self.theta0.items():
            b = self.thetaT[k]
            if not (a.is_floating_point() or a.is_complex()):
                out[k] = b.clone()
            elif t == 0:
                out[k] = a.clone()
            elif t == self.T:
                out[k] = b.clone()
            else:
                out[k] = a + lam * (b.to(a.dtype) - a)
        return out

    def __getitem__(self, t: int) -> dict[str, torch.Tensor]:
        return self.at(t)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for t in range(self.T + 1):
            yield self.at(t)

    def __repr__(self) -> str:
        return f"LinearTrajectory(T={self.T}, schedule={self.schedule!r}, {len(self.theta0)} tensors)"
