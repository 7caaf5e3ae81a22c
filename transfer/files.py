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
    "atomic_write_bytes", "atomic_write_json", "fsync_dir", "temporary_path", "temporary_folder", "FolderError",
    "LockError", "claim_folder", "refuse_inputs_inside", "folder_lock", "output_folder", "MARKER", "file_mode",
    "folder_mode", "current_umask", "sha256_file",
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


def current_umask() -> int:
    """The process's umask (read without changing it where the platform shows it: Linux's
    ``/proc/self/status``; else set and restored at once)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file: 0644 under the usual umask 022.
    Temporary files (``mkstemp``: always 0600) get it before they are renamed into place, so a run
    shared with colleagues is as readable as any file the user writes."""
    return 0o666 & ~current_umask()


def folder_mode() -> int:
    """The mode ``mkdir`` gives a new folder: 0755 under the usual umask (``mkdtemp`` gives 0700)."""
    return 0o777 & ~current_umask()


def temporary_path(path: Path) -> Path:
    """A new empty file beside ``path`` (same folder, so ``os.replace`` onto ``path`` is atomic), with
    the mode the umask gives a new file (:func:`file_mode`), not ``mkstemp``'s 0600."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
    finally:
        os.close(fd)
    return Path(tmp)


def temporary_folder(parent: Path, prefix: str) -> Path:
    """A new empty folder in ``parent`` (to be renamed into place), with :func:`folder_mode`."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(tmp, folder_mode())
    return tmp


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
    an earlier run, or holds only entries ``owned(name)`` recognises as what ``tool`` writes (a run
    from before markers existed; it is marked now). An entry is judged by its content too: a sub-folder
    named like one the tool writes (``fgmt/``, ``finetune_gmt/``) is the tool's only when it is a
    trajectory folder (:func:`_trajectory_like`), so a user's ``fgmt/readme.md`` is never mistaken for
    ours. Anything else is refused before any work, so a command never writes into, and never replaces
    inside, a folder it did not make.
    """
    path = Path(path)
    problem = _describe_path_problem(path)
    if problem:
        raise FolderError(problem)
    if path.exists():
        entries = list(path.iterdir())
        if not any(p.name == MARKER for p in entries):
            foreign = sorted(_foreign_entries(entries, owned))
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


def _foreign_entries(entries: list[Path], owned: Callable[[str], bool]) -> list[str]:
    """The entries of an unmarked folder that the tool did not write (shown as ``name`` or ``dir/name``)."""
    foreign = []
    for p in entries:
        if not owned(p.name):
            foreign.append(p.name)
        elif p.is_dir() and not p.name.startswith("."):
            foreign += [f"{p.name}/{n}" for n in _trajectory_like(p)]
    return foreign


# what a sub-folder the tools write may hold: a trajectory (zoo train, transfer run's OUT/<method>,
# transfer match's permuted run), with the training loop's resume state
_SUBFOLDER_FILES = ("manifest.json", "train_state.json")


def _trajectory_like(folder: Path) -> list[str]:
    """Why ``folder`` is not a sub-folder the tool wrote: the names of its entries no tool writes
    (none when it carries the marker, or is a trajectory: ``manifest.json`` and safetensors files)."""
    names = [p.name for p in folder.iterdir()]
    if MARKER in names:
        return []
    odd = sorted(n for n in names if not (n.startswith(".") or n in _SUBFOLDER_FILES or n.endswith(".safetensors")))
    if not odd and names and "manifest.json" not in names:
        odd = ["no manifest.json"]
    return odd


@contextmanager
def output_folder(path: str | os.PathLike, tool: str, owned: Callable[[str], bool], command: str = "") -> Iterator[Path]:
    """Claim ``path`` for ``tool`` (:func:`claim_folder`) and hold its lock (:func:`folder_lock`) for
    the duration. A refused or failed command leaves no trace: if it wrote nothing, the marker and
    lock file it added are removed again, and so is the folder if the call created it."""
    path = Path(path)
    created = [p for p in (path, *path.parents) if not p.exists()]  # the folders this call makes, deepest first
    before = {p.name for p in path.iterdir()} if path.is_dir() else set()
    claim_folder(path, tool, owned)
    try:
        with folder_lock(path, command):
            yield path
    except BaseException:
        _unclaim_if_untouched(path, before, created)
        raise


def _unclaim_if_untouched(path: Path, before: set[str], created: list[Path]) -> None:
    """Undo a claim that wrote nothing: remove the bookkeeping this call added (marker, lock file, empty
    folders), and the folder itself (with the parents made for it) if the call created it. Anything else written stays (a run
    interrupted after its first step resumes from it, so it keeps its marker too)."""
    bookkeeping = {MARKER, ".lock"}
    try:
        added = [p for p in path.iterdir() if p.name not in before and p.name not in bookkeeping]
        if any(not _empty_tree(p) for p in added):
            return
        for p in added:
            _remove_empty_tree(p)
        for name in bookkeeping - before:
            (path / name).unlink(missing_ok=True)
        for folder in created:  # the output folder, then the parents made for it, while empty
            folder.rmdir()
    except OSError:
        pass


def _empty_tree(p: Path) -> bool:
    return p.is_dir() and not p.is_symlink() and all(_empty_tree(c) for c in p.iterdir())


def _remove_empty_tree(p: Path) -> None:
    for c in p.iterdir():
        _remove_empty_tree(c)
    p.rmdir()


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
