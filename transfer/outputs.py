"""A transfer's output folder: who may hold it (one claim, rank 0 under torch.distributed), what in it
belongs to ``transfer run``, the checks before any work, and the files beside a transferred trajectory."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from transfer import distributed as dist
from transfer.files import MARKER, FolderError, output_folder, refuse_inputs_inside
from transfer.records import MethodResult, ResultsFile
from transfer.results import RESULTS, TransferError, load_results, write_results

__all__ = [
    "PERMUTATIONS",
    "SPEC_FILE",
    "TransferFolder",
    "transfer_output",
    "agree",
    "owned_by_transfer",
    "check_output_folder",
    "shared_setting",
    "load_permutations",
    "replace_folder",
    "remove_state_if_alone",
]

PERMUTATIONS = "permutations.safetensors"  # beside a transferred trajectory's checkpoints: pi_t of every step


SPEC_FILE = "spec.json"  # OUT/.state/spec.json: the inferred spec, so a rerun or another method does not trace again


@dataclass
class TransferFolder:
    """An output folder as a command holds it: claimed and locked once (:func:`transfer_output`), with its
    ``results.json`` as read at the claim (None: there is none yet). Each method run checks its own
    sub-folder and setting against it and adds its entry to it, so the file is read once per command."""

    path: Path
    results: ResultsFile | None = None

    def check(self, method: str, inputs: Mapping[str, Path | None], setting: Mapping[str, Any], *,
              replaced: bool = True) -> None:  # fmt: skip
        """Before ``method``'s work: its sub-folder may be replaced (:func:`check_output_folder`) and the
        results already here are of the same setting."""
        check_output_folder(self.path, method, inputs, replaced=replaced)
        if self.results is not None and self.results.setting != shared_setting(setting):
            raise TransferError(
                f"{self.path / RESULTS} holds results of another setting ({self.results.setting}); "
                "use another --out or delete it"
            )

    def add(self, setting: Mapping[str, Any], method: str, result: MethodResult) -> ResultsFile:
        """Add (or replace) ``method``'s entry and write ``results.json``."""
        shared = shared_setting(setting)
        results = self.results or ResultsFile(shared)
        if results.setting != shared:
            raise TransferError(f"{self.path / RESULTS} holds results of another setting; use another --out")
        self.results = results.with_method(method, result)
        write_results(self.path, self.results)
        return self.results


@contextlib.contextmanager
def transfer_output(out: str | os.PathLike, command: str = "transfer run") -> Iterator[TransferFolder]:
    """Hold ``out`` as a transfer output folder for the duration (claimed, locked: see
    :func:`transfer.files.output_folder`) and read its ``results.json``: the one claim of a command,
    whether the command line holds the folder for all its methods or :meth:`TransferEngine.run` for one.
    Under torch.distributed only rank 0 holds it and reads the file, and a refusal reaches every rank."""
    folder = TransferFolder(Path(out))
    with contextlib.ExitStack() as held:

        def claim() -> None:
            held.enter_context(output_folder(folder.path, "transfer", owned_by_transfer, command))
            folder.results = load_results(folder.path)

        agree(claim if dist.is_main() else None)
        yield folder


def agree(check: Callable[[], None] | None) -> None:
    """Run ``check`` on rank 0 and make every rank fail with its message when it fails, so a refusal
    never leaves the other ranks waiting in a collective (single process: just ``check()``)."""
    if dist.world_size() == 1:
        if check is not None:
            check()
        return
    message = None
    if dist.is_main() and check is not None:
        try:
            check()
        except ValueError as e:
            message = str(e)
    message = dist.broadcast_object(message)
    if message is not None:
        raise TransferError(message)


def shared_setting(setting: Mapping[str, Any]) -> dict:
    """The fields every method in one ``results.json`` must share."""
    return {k: v for k, v in setting.items() if k not in ("method", "target", "target_sha")}


def owned_by_transfer(name: str) -> bool:
    """Whether an entry of an output folder is one ``transfer run`` (or ``transfer finetune``) writes."""
    from transfer.methods import method_names

    return (
        name in ("results.json", "transfer.png", ".state", ".lock", MARKER)
        or name in method_names()
        or name.startswith(("finetune_", "."))
    )


def check_output_folder(out: Path, method: str, inputs: Mapping[str, Path | None], *, replaced: bool = True) -> None:
    """Before any work: ``out/<method>`` (replaced at the end, unless ``replaced`` is False: the
    trajectory is not written) holds only a transferred trajectory, and neither it nor ``out`` is
    one of the inputs."""
    folder = out / method
    refuse_inputs_inside(folder, dict(inputs))
    refuse_inputs_inside(out, dict(inputs))
    if replaced and folder.exists():
        foreign = sorted(p.name for p in folder.iterdir() if not trajectory_file(p.name))
        if foreign or not (folder / "manifest.json").exists():
            shown = ", ".join(foreign[:5]) or "no manifest.json"
            raise FolderError(
                f"{folder} would be replaced, but it is not a transferred trajectory this tool wrote ({shown}); "
                "move it away or choose another output folder"
            )


def trajectory_file(name: str) -> bool:
    return (
        name in ("manifest.json", PERMUTATIONS)
        or (name.startswith("ckpt_") and name.endswith(".safetensors"))
        or name.startswith(".")
    )


def load_permutations(folder: str | os.PathLike) -> list[dict[str, torch.Tensor]]:
    """The permutation of every step t = 0..T of a transferred trajectory (``OUT/<method>/``), as
    saved beside its checkpoints: ``[{group name: permutation}, ...]``."""
    path = Path(folder) / PERMUTATIONS
    if not path.exists():
        raise TransferError(f"{path} is missing: {folder} is not a transferred trajectory of this version")
    flat = load_file(str(path))
    steps: dict[int, dict[str, torch.Tensor]] = {}
    for key, perm in flat.items():
        t, group = key.split("/", 1)
        steps.setdefault(int(t[1:]), {})[group] = perm.long()
    return [steps[t] for t in sorted(steps)]


def replace_folder(new: Path, folder: Path) -> None:
    if folder.exists():
        old = folder.parent / f".{folder.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
        os.replace(new, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, folder)


def remove_state_if_alone(path: Path) -> None:
    """Remove ``OUT/.state`` when it holds nothing but the cached spec (a fresh run that failed
    leaves no trace; the spec is only a cache)."""
    try:
        if {p.name for p in path.iterdir()} <= {SPEC_FILE}:
            (path / SPEC_FILE).unlink(missing_ok=True)
            path.rmdir()
    except OSError:
        pass
