"""torch.distributed for the transfer engine: who computes what, and how results meet.

Under an initialised process group (``torchrun --nproc-per-node N -m zoo.cli.transfer run ...``, or a user's
own ``dist.init_process_group``) every rank holds the same model, data and inputs. For gradient k
each rank takes its share of the k-th minibatch set (minibatch i goes to rank ``i % N``), the
weighted gradients are summed with ``all_reduce``, so the result is the single-process gradient up to
float summation order. BatchNorm statistics and validation metrics are combined the same way. Rank 0
solves each assignment and broadcasts the permutation; rank 0 alone writes files. Without a process
group every function here is the single-process identity, so the engine has one code path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = [
    "rank", "world_size", "is_main", "my_share", "all_reduce_sum", "broadcast_tensors", "broadcast_object",
    "init_from_env", "default_device",
]  # fmt: skip

T = TypeVar("T")


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if _active() else 0


def world_size() -> int:
    return dist.get_world_size() if _active() else 1


def is_main() -> bool:
    """Whether this process writes files, prints and solves assignments (rank 0)."""
    return rank() == 0


def my_share(items: Sequence[T]) -> list[T]:
    """The items this rank processes: ``items[rank::world_size]``."""
    return list(items[rank() :: world_size()])


def all_reduce_sum(tensors: Sequence[torch.Tensor]) -> None:
    """Sum each tensor over all ranks, in place (nothing without a process group)."""
    if not _active():
        return
    for t in tensors:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)


def broadcast_tensors(tensors: Mapping[str, torch.Tensor], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Rank 0's tensors on every rank; the others pass tensors of the same shapes and dtypes (their
    values are replaced). Names are iterated in sorted order so every rank agrees."""
    if not _active():
        return dict(tensors)
    out = {}
    for name in sorted(tensors):
        t = tensors[name].to(device).contiguous()
        dist.broadcast(t, src=0)
        out[name] = t.cpu()
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` (JSON-like: a resume record, a list of permutations) on every rank.

    It travels between the processes of one job, never through a file, so pickling it is safe."""
    if not _active():
        return obj
    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def default_device(requested: str = "auto") -> str:
    """``auto`` -> this rank's CUDA device when CUDA is available (``cuda:LOCAL_RANK`` under torchrun),
    else ``cpu``; anything else is returned as given (``cpu``, ``cuda``, ``cuda:1``)."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return "cpu"


def init_from_env(device: str) -> bool:
    """Initialise the process group from torchrun's environment (``WORLD_SIZE`` > 1); NCCL for CUDA
    devices, gloo otherwise. Returns whether a group is active. Idempotent."""
    if _active():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group(backend=backend)
    return True
