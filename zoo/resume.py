"""A training run's resume state as data: safetensors for tensors, JSON for the rest. Never a pickle.

A received run folder is untrusted: loading ``torch.load(weights_only=False)`` from it would run
whatever its pickle says. The state needed to continue a run bit for bit is small and plain: the
step, the run's configuration, the optimizer's state (tensors per parameter and hyper-parameters per
group), the augmentation generator and the global RNG. They are written as

    OUT/train_state.safetensors   optimizer tensors, RNG states (uint8)
    OUT/train_state.json          step, config, param groups (for reading), non-tensor optimizer entries

after each checkpoint (JSON last: it is the commit), and removed when the run completes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from transfer.files import atomic_write_bytes, atomic_write_json
from zoo.errors import ZooError

__all__ = ["TRAIN_STATE_FILES", "save_train_state", "load_train_state", "clear_train_state"]

TENSORS, INDEX = "train_state.safetensors", "train_state.json"
TRAIN_STATE_FILES = (INDEX, TENSORS)
FORMAT = "permgraph-train-state"


def save_train_state(
    out: Path, step: int, config: Mapping[str, Any], opt: torch.optim.Optimizer, aug_gen: torch.Generator
) -> None:
    """Write the resume state of a run that has just saved its checkpoint at ``step``."""
    opt_state = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {"rng/torch": torch.get_rng_state(), "rng/augment": aug_gen.get_state()}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in opt_state["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{index}/{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    atomic_write_bytes(out / TENSORS, save(tensors))
    index_doc = {
        "format": FORMAT,
        "step": int(step),
        "config": dict(config),
        "param_groups": opt_state["param_groups"],
        "optimizer_scalars": scalars,
    }
    atomic_write_json(out / INDEX, index_doc)


def load_train_state(
    out: Path, config: Mapping[str, Any], opt: torch.optim.Optimizer, aug_gen: torch.Generator, steps: list[int]
) -> int | None:
    """Restore the optimizer, the augmentation generator and the global RNG; returns the step to
    continue from, or None when there is no usable state (missing, another config, a step the
    trajectory does not hold). A damaged file is an error naming it."""
    index_path, tensor_path = out / INDEX, out / TENSORS
    if not index_path.exists() or not tensor_path.exists():
        return None
    try:
        doc = json.loads(index_path.read_text())
        tensors = load_file(str(tensor_path))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, SafetensorError) as e:
        raise ZooError(f"the resume state of {out} is damaged ({e}); delete {index_path} to restart the run") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("config") != dict(config):
        return None
    step = doc.get("step")
    if not isinstance(step, int) or step not in steps:
        return None
    try:
        state = _optimizer_state(doc, tensors)
        _check_fits(state, opt)
        # hyper-parameters come from the recipe (the config matched), never from the file
        opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
        aug_gen.set_state(tensors["rng/augment"])
        torch.set_rng_state(tensors["rng/torch"])
    except (KeyError, ValueError, RuntimeError, TypeError, AttributeError) as e:
        raise ZooError(f"the resume state of {out} does not fit this run ({e}); delete {index_path} to restart") from e
    return step


def _check_fits(state: Mapping[int, Mapping[str, Any]], opt: torch.optim.Optimizer) -> None:
    """Every saved entry belongs to a parameter of this optimizer and has its shape (``step``: a
    scalar); anything else is refused before it can break a later step."""
    params = [p for group in opt.param_groups for p in group["params"]]
    for index, entries in state.items():
        if not 0 <= index < len(params):
            raise ValueError(f"an entry for parameter {index}, of {len(params)}")
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                shape = () if name == "step" else tuple(params[index].shape)
                if tuple(value.shape) != shape or not value.dtype.is_floating_point:
                    raise ValueError(f"{name} of parameter {index} has shape {tuple(value.shape)}, not {shape}")
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} of parameter {index} is not a number")


def _optimizer_state(doc: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> dict[int, dict[str, Any]]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            _, index, name = key.split("/", 2)
            state.setdefault(int(index), {})[name] = value
    scalars = doc.get("optimizer_scalars", {})
    if not isinstance(scalars, dict):
        raise ValueError("optimizer_scalars is not a table")
    for index, entries in scalars.items():
        if not isinstance(entries, dict):
            raise ValueError(f"optimizer_scalars[{index!r}] is not a table")
        state.setdefault(int(index), {}).update(entries)
    return state


def clear_train_state(out: Path) -> None:
    """Remove the resume files of a finished run."""
    for name in TRAIN_STATE_FILES:
        (out / name).unlink(missing_ok=True)
