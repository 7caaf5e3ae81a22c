"""Caches of derived data, so that a second command does not redo the first one's start-up work.

Two things are worth keeping between commands (``docs/results/transfer_cost.md`` measures both):
the decoded dataset arrays (``zoo.data``) and the inferred :class:`~permgraph.spec.PermSpec`, whose
first ``permgraph.infer`` in a process pays ``torch.export``'s one-time warm-up (seconds on mlp2,
where a second inference takes a quarter of a second).

Where: :func:`cache_dir`, the folder ``$PERMGRAPH_CACHE`` names, else ``$XDG_CACHE_HOME/permgraph``,
else ``~/.cache/permgraph``; ``PERMGRAPH_CACHE=off`` turns every cache off.

What a cache may hold, and how it is read: data only (JSON here, safetensors for arrays), never a
pickle, so no cache file can choose code. Every entry carries the key it was made for and is
checked against what it claims to describe when it is read; an entry that is missing, damaged, of
another key or inconsistent is ignored and recomputed, never an error. Writes go through a
temporary file and a rename, and a cache that cannot be written is skipped.

A spec is cached under a key that names everything it is a function of (:func:`spec_key`):
permgraph's own source files (a rule change invalidates every entry), the torch version (the tracer),
the spec format, and the model: each module's class with the sha256 of the file that defines it,
the module's plain attributes (flags such as ``bias=False`` or a residual switch that leave no
parameter behind), every parameter's and buffer's name, shape and dtype, and the example inputs'
shapes and dtypes. A model whose classes' source cannot be found (built at run time) is not
cached.

>>> import torch
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
>>> a = spec_key(model, (torch.randn(2, 4),))
>>> a == spec_key(model, (torch.randn(2, 4),)), a == spec_key(model, (torch.randn(3, 4),))
(True, False)
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from transfer.files import atomic_write_bytes, sha256_file

__all__ = ["cache_dir", "spec_key", "load_spec", "save_spec", "file_identity", "source_digest"]

log = logging.getLogger(__name__)

SPEC_CACHE_FORMAT = "permgraph-spec-cache"
SPEC_CACHE_VERSION = 1
_PLAIN = (bool, int, float, str, type(None))


def cache_dir(*parts: str) -> Path | None:
    """The user's cache folder for permgraph (joined with ``parts``), or None when caching is off."""
    env = os.environ.get("PERMGRAPH_CACHE")
    if env is not None and env.strip().lower() in ("", "0", "off", "no", "false", "none"):
        return None
    if env:
        base = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "permgraph"
    return base.joinpath(*parts)


def file_identity(path: str | os.PathLike) -> dict[str, Any]:
    """A source file as a cache key sees it: resolved path, size, mtime (ns) and sha256 of its bytes."""
    p = Path(path).resolve()
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(p)}


@functools.cache
def source_digest(package: str) -> str:
    """sha256 over the ``.py`` files of an imported package (relative names and bytes, sorted)."""
    root = Path(sys.modules[package].__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


@functools.lru_cache(maxsize=256)
def _class_file_sha(cls: type) -> str | None:
    if cls.__module__.split(".")[0] == "torch":
        return "torch"  # torch's own classes: the torch version in the key covers them
    try:
        path = inspect.getsourcefile(cls)
    except (TypeError, OSError):
        return None
    if path is None or not Path(path).is_file():
        return None
    return sha256_file(path)


def _plain(value: Any) -> Any:
    """A module attribute as key material: plain values as they are, a callable by its name, any
    other object by its type (tensors and submodules are covered by the state and module lists)."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, (tuple, list)) and all(isinstance(v, _PLAIN) for v in value):
        return list(value)
    if callable(value) and hasattr(value, "__qualname__"):
        return f"callable {getattr(value, '__module__', '')}.{value.__qualname__}"
    return f"object {type(value).__module__}.{type(value).__qualname__}"


def _inputs_layout(inputs: Any) -> Any:
    if isinstance(inputs, torch.Tensor):
        return ["tensor", list(inputs.shape), str(inputs.dtype)]
    if isinstance(inputs, Mapping):
        return {str(k): _inputs_layout(v) for k, v in sorted(inputs.items(), key=lambda kv: str(kv[0]))}
    if isinstance(inputs, (tuple, list)):
        return [_inputs_layout(v) for v in inputs]
    return _plain(inputs)


def spec_key(model: torch.nn.Module, example_inputs: Any) -> str | None:
    """The key a spec of ``model`` traced on ``example_inputs`` is cached under (module docstring),
    or None when the model cannot be cached (a class whose source file is unknown)."""
    modules = []
    for name, m in model.named_modules(remove_duplicate=False):
        sha = _class_file_sha(type(m))
        if sha is None:
            return None
        attrs = {k: _plain(v) for k, v in sorted(vars(m).items()) if not k.startswith("_") and k != "training"}
        modules.append([name, f"{type(m).__module__}.{type(m).__qualname__}", sha, attrs])
    tensors = [[k, list(v.shape), str(v.dtype)] for k, v in model.state_dict(keep_vars=True).items()]
    params = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    material = {
        "permgraph": source_digest("permgraph"),
        "torch": torch.__version__,
        "modules": modules,
        "state": tensors,
        "params": params,
        "inputs": _inputs_layout(example_inputs),
    }
    try:
        text = json.dumps(material, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(text.encode()).hexdigest()


def spec_cache_file(key: str) -> Path | None:
    """Where the user cache keeps the spec of ``key`` (None: caching is off)."""
    folder = cache_dir("specs")
    return folder / f"{key[:32]}.json" if folder is not None else None


def load_spec(path: Path | None, key: str | None, model: torch.nn.Module):
    """The spec cached at ``path`` for ``key``, checked against ``model``'s state; None when there
    is none, or it is damaged, of another key, or does not describe this model's tensors."""
    if path is None or key is None:
        return None
    from permgraph.spec import PermSpec

    try:
        data = json.loads(path.read_text())
        if not (isinstance(data, dict) and data.get("format") == SPEC_CACHE_FORMAT
                and data.get("version") == SPEC_CACHE_VERSION and data.get("key") == key):  # fmt: skip
            return None
        spec = PermSpec.from_dict(data["spec"])
        problem = _spec_problem(spec, model)
    except FileNotFoundError:
        return None
    except Exception as e:  # noqa: BLE001 - a cache is data: whatever is wrong with it, recompute
        log.info("ignoring the cached spec %s (%s: %s)", path, type(e).__name__, e)
        return None
    if problem:
        log.info("ignoring the cached spec %s: %s", path, problem)
        return None
    return spec


def _spec_problem(spec: Any, model: torch.nn.Module) -> str | None:
    """Why ``spec`` cannot describe ``model``'s tensors (None: it can)."""
    from permgraph.apply import member_positions

    state = model.state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    if set(spec.param_shapes) | set(spec.aliases) != set(shapes):
        return "its tensor names are not the model's"
    if any(tuple(spec.param_shapes[k]) != shapes[k] for k in spec.param_shapes):
        return "its tensor shapes are not the model's"
    if any(v not in spec.param_shapes for v in spec.aliases.values()):
        return "an alias names no tensor"
    names = {g.name for g in spec.groups}
    for g in spec.groups:
        if g.indexed_by is not None and g.indexed_by not in names:
            return f"group {g.name} is indexed by a group that does not exist"
        for m in g.members:
            shape = spec.param_shapes.get(m.param)
            if shape is None or not 0 <= m.axis < len(shape) or shape[m.axis] != m.axis_size:
                return f"group {g.name} names an axis {m.param}[{m.axis}] the model does not have"
            if m.sizes[m.group_dim] != g.size:
                return f"group {g.name} has a member of another size"
            pos = member_positions(m)
            if pos.numel() and (int(pos.min()) < 0 or int(pos.max()) >= m.axis_size):
                return f"group {g.name} addresses positions outside {m.param}[{m.axis}]"
    return None


def save_spec(path: Path | None, key: str | None, spec: Any) -> None:
    """Keep ``spec`` at ``path`` under ``key`` (atomically); a cache that cannot be written is skipped."""
    if path is None or key is None:
        return
    text = json.dumps({"format": SPEC_CACHE_FORMAT, "version": SPEC_CACHE_VERSION, "key": key,
                       "spec": spec.to_dict()}, indent=1)  # fmt: skip
    try:
        atomic_write_bytes(path, text.encode())
    except OSError as e:
        log.info("could not write the spec cache %s (%s)", path, e)
