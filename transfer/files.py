"""Files that are never seen half-written, folders that are never someone else's, one writer at a time.

Every write goes to a temporary file in the same folder, is flushed to disk, then renamed over its
target with ``os.replace`` (atomic). An output folder is claimed (:func:`claim_folder`) before any
work: a command writes only into a folder that is new, empty, or already its own. A folder is held by
one writer at a time (:func:`folder_lock`, an ``flock`` the operating system releases if the holder
dies).

>>> import tempfile, json, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> atomic_write_json(folder / "a.json", {"x": 1})
>>> json.loads((folder / "a.json").read_text())
{'x': 1}
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write_bytes", "atomic_write_json", "fsync_dir", "temporary_path", "FolderError", "LockError",
    "claim_folder", "refuse_inputs_inside", "folder_lock", "output_folder", "MARKER",
]  # fmt: skip


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename inside it) to disk, where the platform allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The sha256 of a file's bytes, read a chunk at a time (checkpoints, cache keys)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def temporary_path(path: Path) -> Path:
    """A new empty file beside ``path`` (same folder, so ``os.replace`` onto ``path`` is atomic)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (see :func:`atomic_write_bytes`)."""
    text = json.dumps(obj, indent=2, allow_nan=True) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


# ---------------------------------------------------------------------------------- ownership and locks

MARKER = ".permgraph-owner"


class FolderError(ValueError):
    """An output folder the tool may not write: someone else's files, an input, a file, a holder."""


def _describe_path_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a folder: it is a file, or one of its parents is."""
    if path.exists() and not path.is_dir():
        return f"{path} is a file, not a folder; pass a folder path"
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{path} lies below {parent}, which is a file; pass a folder path"
            break
    return None


def claim_folder(path: str | os.PathLike, tool: str, owned: Callable[[str], bool]) -> Path:
    """Make ``path`` an output folder of ``tool``, refusing one that holds someone else's files.

    A folder is ``tool``'s when it is new or empty (it is created and marked), carries the marker of
    an earlier call, or holds only entries ``owned(name)`` recognises as what ``tool`` writes (a run
    from before markers existed; it is marked now). Anything else is refused before any work, so a
    command never writes into, and never replaces inside, a folder it did not make.
    """
    path = Path(path)
    problem = _describe_path_problem(path)
    if problem:
        raise FolderError(problem)
    if path.exists():
        entries = [p.name for p in path.iterdir()]
        if MARKER not in entries:
            foreign = sorted(n for n in entries if not owned(n))
            if foreign:
                shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
                raise FolderError(
                    f"{path} holds files that {tool} did not write ({shown}); it never writes into such a "
                    "folder: choose a new or empty folder"
                )
    path.mkdir(parents=True, exist_ok=True)
    if not (path / MARKER).exists():
        atomic_write_json(path / MARKER, {"tool": tool})
    return path


@contextmanager
def output_folder(path: str | os.PathLike, tool: str, owned: Callable[[str], bool], command: str = "") -> Iterator[Path]:
    """Claim ``path`` for ``tool`` (:func:`claim_folder`) and hold its lock (:func:`folder_lock`) for
    the duration. If the call created the folder and fails leaving nothing in it, the folder is
    removed again: a failed command leaves no trace."""
    path = Path(path)
    created = not path.exists()
    claim_folder(path, tool, owned)
    try:
        with folder_lock(path, command):
            yield path
    except BaseException:
        if created:
            _unclaim_if_empty(path)
        raise


def _unclaim_if_empty(path: Path) -> None:
    bookkeeping = {MARKER, ".lock"}
    try:
        rest = [p for p in path.iterdir() if p.name not in bookkeeping]
        if any(p.is_file() or any(p.iterdir()) for p in rest):
            return
        for p in rest:
            p.rmdir()
        for name in bookkeeping:
            (path / name).unlink(missing_ok=True)
        path.rmdir()
    except OSError:
        pass


def refuse_inputs_inside(folder: Path, inputs: dict[str, Path | None]) -> None:
    """Refuse to write ``folder`` when it is, or holds, one of the command's inputs."""
    target = folder.resolve()
    for what, path in inputs.items():
        if path is None:
            continue
        p = Path(path).resolve()
        if p == target or target in p.parents:
            raise FolderError(
                f"{folder} would replace the {what} ({path}), an input of this command; choose another output folder"
            )


class LockError(ValueError):
    """Another process holds the folder."""


_HELD: dict[Path, tuple[int, Any]] = {}  # folder -> (depth, open lock file): re-entrant within a process


@contextmanager
def folder_lock(folder: str | os.PathLike, command: str = "") -> Iterator[None]:
    """Hold ``folder/.lock`` exclusively for the duration: a second writer fails at once with a
    :class:`LockError` naming the holder. The operating system drops the lock when the holder dies,
    so a killed run never leaves a stale lock behind. Re-entrant within one process."""
    folder = Path(folder).resolve()
    if folder in _HELD:
        depth, handle = _HELD[folder]
        _HELD[folder] = (depth + 1, handle)
        try:
            yield
        finally:
            _release(folder)
        return
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / ".lock", "a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise LockError(f"{folder} is in use by {holder}; wait for it to finish, or use another output folder") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}" + (f" ({command})" if command else ""))
    handle.flush()
    _HELD[folder] = (1, handle)
    try:
        yield
    finally:
        _release(folder)


def _release(folder: Path) -> None:
    depth, handle = _HELD[folder]
    if depth > 1:
        _HELD[folder] = (depth - 1, handle)
        return
    del _HELD[folder]
    handle.seek(0)
    handle.truncate()
    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    handle.close()
