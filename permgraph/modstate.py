"""What a module holds outside its state dict: attributes, caches, training flags.

Some models keep tensors derived from their parameters in plain attributes (timm's LeViT,
EfficientFormer and TinyViT fill ``attention_bias_cache`` on their first eval forward), and
``model.eval()`` / ``model.train()`` reset flags and clear such caches. ``preserved`` undoes
all of that, so that tracing leaves the user's model as it was; ``detached_copy`` copies a
model even when such a cache holds a tensor that autograd would refuse to deep-copy.

>>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout())
>>> model[1].eval()
Dropout(p=0.5, inplace=False)
>>> with preserved(model):
...     model.eval().cache = {"w": model[0].weight * 2}
>>> model.training, model[1].training, hasattr(model, "cache")
(True, False, False)
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["detached_copy", "preserved", "tensor_attributes"]

_Container = dict | list | set


def _reachable(model: torch.nn.Module) -> Iterator[Any]:
    """Every container (each module's ``__dict__`` included) and tensor reachable from
    ``model`` through module attributes, dicts, lists, tuples and sets; each once.
    Other objects (configs, functions) are not entered: caches live in containers."""
    seen: set[int] = set()
    stack: list[Any] = [model]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            yield obj
            continue
        if isinstance(obj, torch.nn.Module):
            obj = obj.__dict__
        if isinstance(obj, dict):
            yield obj
            stack.extend(obj.values())
        elif isinstance(obj, (list, set)):
            yield obj
            stack.extend(obj)
        elif isinstance(obj, tuple):
            stack.extend(obj)


def _contents(c: _Container) -> Any:
    return dict(c) if isinstance(c, dict) else list(c) if isinstance(c, list) else set(c)


def _changed(c: _Container, saved: Any) -> bool:
    if isinstance(c, dict):
        return c.keys() != saved.keys() or any(c[k] is not v for k, v in saved.items())
    if isinstance(c, list):
        return len(c) != len(saved) or any(a is not b for a, b in zip(c, saved))
    return c != saved


def _restore(c: _Container, saved: Any) -> None:
    if not _changed(c, saved):
        return
    if isinstance(c, dict):
        for k in [k for k in c if k not in saved]:
            del c[k]
        c.update(saved)
    elif isinstance(c, list):
        c[:] = saved
    else:
        c.clear()
        c.update(saved)


@contextlib.contextmanager
def preserved(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put back, on exit, every attribute of every module and the contents of every dict,
    list and set they hold: training flags, hooks, and caches filled or cleared inside.
    Tensor values are not copied (tracing runs on fake tensors and writes none)."""
    saved = [(c, _contents(c)) for c in _reachable(model) if isinstance(c, (dict, list, set))]
    try:
        yield model
    finally:
        for c, contents in saved:
            _restore(c, contents)


def detached_copy(model: torch.nn.Module) -> torch.nn.Module:
    """``copy.deepcopy(model)``, where a cached tensor that autograd computed (a model run
    in eval mode with gradients on) is copied detached instead of making deepcopy raise."""
    memo: dict[int, Any] = {}
    for t in _reachable(model):
        if isinstance(t, torch.Tensor) and not t.is_leaf:
            memo[id(t)] = t.detach().clone()
    return copy.deepcopy(model, memo)


def _collect(value: Any, path: str, out: dict[str, torch.Tensor], depth: int = 0) -> None:
    if isinstance(value, torch.Tensor):
        out[path] = value
    elif depth < 4 and isinstance(value, dict):
        for k, v in value.items():
            _collect(v, f"{path}[{k!r}]", out, depth + 1)
    elif depth < 4 and isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _collect(v, f"{path}[{i}]", out, depth + 1)


def tensor_attributes(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Tensors ``model`` holds outside its state dict (plain attributes, caches), by path:
    neither ``apply`` nor ``load_state_dict`` touches them, so one derived from the
    parameters keeps describing the old ones.

    >>> model = torch.nn.Linear(2, 2)
    >>> model.cache = {"w": model.weight.detach() * 2}
    >>> list(tensor_attributes(model))
    ["cache['w']"]
    """
    state = {id(t) for t in model.parameters()} | {id(t) for t in model.buffers()}
    out: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        for attr, value in vars(module).items():
            if attr not in ("_parameters", "_buffers", "_modules"):
                _collect(value, f"{name}.{attr}" if name else attr, out)
    return {k: t for k, t in out.items() if id(t) not in state}
