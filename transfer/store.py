"""The resume files of one method's transfer, in one place: ``OUT/.state/<method>/``.

A transfer commits after every step: the step's permutation (and whatever the method keeps, such as
FGMT's gradient pair, and the re-estimated BatchNorm statistics) go to safetensors files first, then
``state.json`` (a :class:`~transfer.records.RunRecord`) is replaced atomically. ``state.json`` is the
only index: a rerun continues after the last step it records, and files of a step it does not record
are simply written again.

The tensor files are written by one background thread (:class:`_Writes`): their fsync is most of the
cost, and the step's evaluation can run meanwhile. The order on disk is kept: :meth:`RunStore.commit`
waits for every pending file before it replaces ``state.json``, a load waits before it reads, and a
failed write is raised in the caller's thread at the next save, commit, load or :meth:`RunStore.close`.

:class:`MemoryStore` is the same interface for a transfer without an output folder: it keeps the
permutations and BatchNorm statistics in memory and persists nothing.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from permgraph.apply import Permutation, State
from transfer.files import atomic_write_bytes, atomic_write_json
from transfer.lap import LapWarm
from transfer.records import OLD_RESULTS, RunRecord, TransferError, check_format, read_json

__all__ = ["RunStore", "MemoryStore", "StoreError"]

log = logging.getLogger("transfer.store")


class StoreError(TransferError):
    """Resume state that belongs to another setting, or that cannot be read."""


class MemoryStore:
    """Permutations and BatchNorm statistics of a transfer that writes nothing."""

    def __init__(self) -> None:
        self._perms: dict[int, Permutation] = {}
        self._bn: dict[int, State] = {}

    def load_record(self, setting: Mapping[str, Any]) -> RunRecord | None:
        return None

    def commit(self, record: RunRecord) -> None:
        pass

    def save_perm(self, t: int, perm: Permutation) -> None:
        self._perms[t] = perm

    def load_perm(self, t: int) -> Permutation | None:
        return self._perms.get(t)

    def save_pair(self, t: int, target: Mapping[str, torch.Tensor], source: Mapping[str, torch.Tensor]) -> None:
        pass  # the matcher holds what it needs; nothing to resume from

    def load_pair(self, t: int) -> tuple[State, State]:
        return {}, {}  # nothing was kept (a rank other than 0 keeps no pairs either)

    def save_bn(self, t: int, stats: Mapping[str, torch.Tensor]) -> None:
        self._bn[t] = dict(stats)

    def load_bn(self, t: int) -> State | None:
        return self._bn.get(t)

    def save_warm(self, t: int, warm: Mapping[str, LapWarm]) -> None:
        pass  # the run's matchers hold their warm starts; nothing to resume from

    def load_warm(self, t: int) -> dict[str, LapWarm]:
        return {}

    def discard(self) -> None:
        self._perms.clear()
        self._bn.clear()

    def flush(self) -> None:
        """Nothing is written in the background here."""

    def close(self) -> None:
        pass

    def abort(self, cause: BaseException) -> None:
        """Nothing is pending here."""

    def prime(self, perms: Mapping[int, Permutation]) -> None:
        """Take the permutations of finished steps (received from rank 0 on resume)."""
        self._perms.update(perms)


class RunStore(MemoryStore):
    """The files under ``folder`` (``OUT/.state/<method>/``) that let a transfer resume."""

    def __init__(self, folder: str | Path) -> None:
        super().__init__()
        self.folder = Path(folder)
        self._writes = _Writes()

    # ---- the index --------------------------------------------------------------------
    def load_record(self, setting: Mapping[str, Any]) -> RunRecord | None:
        """The committed record, checked, or None for a fresh start. Refuses a record of another version
        or of another setting."""
        path = self.folder / "state.json"
        if not path.exists():
            return None
        data = read_json(path, "a readable transfer state", f"delete {self.folder} to start over", StoreError)
        redo = f"delete {self.folder} to redo this method from the start"
        if isinstance(data, dict):
            check_format(data, f"{path}, the resume state of {setting.get('method')},", f"{OLD_RESULTS}, or {redo}")
        if not isinstance(data, dict) or data.get("setting") != dict(setting):
            got = data.get("setting") if isinstance(data, dict) else None
            raise StoreError(
                f"{self.folder} holds an unfinished {setting.get('method')} run with another setting ({got}); "
                "rerun with the same arguments, or use another --out / delete it"
            )
        T = setting.get("T")
        return RunRecord.from_json(data, T if isinstance(T, int) else -1, f"the transfer state {path}", redo)

    def commit(self, record: RunRecord) -> None:
        """Replace ``state.json`` once every file it may name is durable (never a step whose files are not)."""
        self.flush()
        atomic_write_json(self.folder / "state.json", record.to_json())

    def flush(self) -> None:
        """Wait for the pending file writes; raises the first that failed."""
        self._writes.wait()

    def close(self) -> None:
        """Wait for the pending file writes and stop the writer thread (the end of the store's run);
        raises the first write that failed. The store may still be used: a later save starts a new thread."""
        self._writes.close()

    def abort(self, cause: BaseException) -> None:
        """:meth:`close` while ``cause`` is being raised: a failed write is logged and noted on ``cause``
        rather than raised over it (the failure being handled stays the one the caller sees)."""
        try:
            self._writes.close()
        except Exception as e:  # noqa: BLE001 - reported on the exception in flight, never dropped
            log.error("%s", "; ".join([str(e), *getattr(e, "__notes__", [])]))
            cause.add_note(f"also: {e!r} ({'; '.join(getattr(e, '__notes__', []))})")

    # ---- tensors ----------------------------------------------------------------------
    def _file(self, kind: str, t: int) -> Path:
        return self.folder / f"{kind}_{t:04d}.safetensors"

    def _save(self, kind: str, t: int, tensors: Mapping[str, torch.Tensor]) -> None:
        """Serialise here (the bytes are fixed before the caller can change a tensor), write in the background."""
        self._writes.submit(self._file(kind, t), save({k: v.contiguous() for k, v in tensors.items()}))

    def _load(self, kind: str, t: int) -> State | None:
        self.flush()  # read after write: a file of this process is read once it is complete
        path = self._file(kind, t)
        if not path.exists():
            return None
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise StoreError(f"{path} is damaged ({e}); delete {self.folder} to redo this method from the start") from e

    def save_perm(self, t: int, perm: Permutation) -> None:
        self._save("perm", t, perm)

    def load_perm(self, t: int) -> Permutation | None:
        perm = self._load("perm", t)
        if perm is None:
            return None
        if any(v.dtype.is_floating_point or v.dim() not in (1, 2) for v in perm.values()):
            raise StoreError(f"{self._file('perm', t)} does not hold permutations; delete {self.folder} to start over")
        return {k: v.long() for k, v in perm.items()}

    def save_pair(self, t: int, target: Mapping[str, torch.Tensor], source: Mapping[str, torch.Tensor]) -> None:
        pair = {f"target/{k}": v for k, v in target.items()}
        pair.update({f"source/{k}": v for k, v in source.items()})
        self._save("pair", t, pair)

    def load_pair(self, t: int) -> tuple[State, State]:
        pair = self._load("pair", t)
        if pair is None:
            raise StoreError(f"{self._file('pair', t)} is missing; delete {self.folder} to start over")
        return _strip(pair, "target/"), _strip(pair, "source/")

    def save_bn(self, t: int, stats: Mapping[str, torch.Tensor]) -> None:
        self._save("bn", t, stats)

    def load_bn(self, t: int) -> State | None:
        return self._load("bn", t)

    def save_warm(self, t: int, warm: Mapping[str, LapWarm]) -> None:
        """The warm starts after step t (the groups the auction solved: assignment and prices)."""
        tensors = {}
        for name, w in warm.items():
            if w.cols is not None and w.prices is not None:
                tensors[f"{name}/cols"] = torch.from_numpy(np.asarray(w.cols, dtype=np.int64))
                tensors[f"{name}/prices"] = torch.from_numpy(np.asarray(w.prices, dtype=np.float64))
        if tensors:
            self._save("warm", t, tensors)

    def load_warm(self, t: int) -> dict[str, LapWarm]:
        """The warm starts saved after step t; none when missing or unreadable (they are only a
        start: a solve from another start still reaches an optimum)."""
        try:
            flat = self._load("warm", t) or {}
        except StoreError:
            return {}
        warm: dict[str, LapWarm] = {}
        for key, v in flat.items():
            name, _, part = key.rpartition("/")
            if part in ("cols", "prices") and v.dim() == 1:
                w = warm.setdefault(name, LapWarm())
                setattr(w, part, v.numpy().astype(np.int64 if part == "cols" else np.float64))
        return {name: w for name, w in warm.items() if w.cols is not None and w.prices is not None}

    def discard(self) -> None:
        """Remove the folder (a deterministic failure: a rerun would fail the same way), once no write is
        pending (else one could recreate it). A failed write is kept for the next flush or close: the failure
        being handled is the one to raise first."""
        self._writes.settle()
        shutil.rmtree(self.folder, ignore_errors=True)


class _Writes:
    """Files written in order by one background thread, and the first failure among them.

    A failure is kept until the caller's thread asks (:meth:`submit`, :meth:`wait`, :meth:`close`), then
    raised there once, as the exception the write raised (an ``OSError`` stays one) with a note naming the
    file. The thread is not a daemon: even without :meth:`close`, the interpreter waits for it at exit.
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[tuple[Path, Future]] = []
        self._failed: tuple[Path, BaseException] | None = None

    def submit(self, path: Path, data: bytes) -> None:
        """Queue ``data`` for ``path``; first raises a write that has already failed."""
        self._collect(done_only=True)
        self._raise()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="resume-files")
        self._pending.append((path, self._pool.submit(atomic_write_bytes, path, data)))

    def settle(self) -> None:
        """Wait for every pending write, keeping (not raising) a failure."""
        self._collect(done_only=False)

    def wait(self) -> None:
        """Wait for every pending write; raises the first that failed."""
        self.settle()
        self._raise()

    def close(self) -> None:
        """:meth:`wait`, then stop the thread (even when a write failed)."""
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def _collect(self, done_only: bool) -> None:
        """Drop the finished writes (all of them, waiting, unless ``done_only``), keeping the first failure."""
        keep = []
        for path, future in self._pending:
            if done_only and not future.done():
                keep.append((path, future))
                continue
            error = future.exception()
            if error is not None and self._failed is None:
                self._failed = (path, error)
        self._pending = keep

    def _raise(self) -> None:
        if self._failed is None:
            return
        (path, error), self._failed = self._failed, None
        error.add_note(f"raised while writing the resume file {path} in the background; its step was not committed")
        raise error


def _strip(pair: Mapping[str, torch.Tensor], prefix: str) -> State:
    return {k[len(prefix) :]: v for k, v in pair.items() if k.startswith(prefix)}
