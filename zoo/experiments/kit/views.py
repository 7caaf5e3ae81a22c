"""Data views and model ids: the dataset restricted as a config asks, and the model id filled in
for it, so one config runs on any dataset and a run's folder name says which view it trained on."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Sequence
from typing import Any

import torch

from zoo.data import DataSplits, load
from zoo.models import ZOO, canonical_id, parse_model_id

__all__ = ["get_data", "model_for"]


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, options: tuple) -> DataSplits:
    return load(name, **dict(options))


def _take(pair: tuple[torch.Tensor, torch.Tensor], n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    return pair if n is None else (pair[0][:n], pair[1][:n])


def _keep_labels(pair, labels: Sequence[int] | None):
    if labels is None:
        return pair
    mask = torch.isin(pair[1], torch.tensor(list(labels)))
    return pair[0][mask], pair[1][mask]


def get_data(
    name: str,
    *,
    subset: int | None = None,
    val_subset: int | None = None,
    labels: Sequence[int] | None = None,
    **options: Any,
) -> DataSplits:
    """``zoo.data.load(name)`` (loaded once per process), restricted to ``labels`` (a task of a
    dataset, e.g. digits 0-4; labels keep their numbers), then to the first ``subset`` training and
    ``val_subset`` validation samples. The view's name records the restriction, so runs trained on
    different views never share a folder."""
    base = _load_cached(name, tuple(sorted(options.items())))
    if labels is None and subset is None and val_subset is None:
        return base
    tag = base.name
    if labels is not None:
        tag += "[" + ",".join(str(i) for i in labels) + "]"
    train_, val_, test_ = (_keep_labels(p, labels) for p in (base.train, base.val, base.test))
    train_, val_ = _take(train_, subset), _take(val_, val_subset)
    if subset is not None:
        tag += f"/n{len(train_[1])}"
    if val_subset is not None:
        tag += f"/v{len(val_[1])}"
    return DataSplits(
        tag, train_, val_, test_, base.num_classes, base.input_shape, base.mean, base.std, base.augment,
        base.source,
    )  # fmt: skip


def model_for(model: str, data: DataSplits) -> str:
    """The model id with the data's input size and class count filled in where the model takes them
    (``in_features`` of an MLP, ``in_channels`` of a convnet), so one config runs on any dataset."""
    source, name, kwargs = parse_model_id(model)
    over: dict[str, Any] = {}
    shape = tuple(data.input_shape)
    if name == "mlp2":
        over["in_features"] = int(math.prod(shape))
        over["num_classes"] = data.num_classes
    elif name in ("conv8", "resnet20", "resnet18", "vgg16") and len(shape) == 3:
        over["in_channels"] = shape[0]
        over["num_classes"] = data.num_classes
    elif name == "vit_tiny" and len(shape) == 3:
        over.update(in_channels=shape[0], image_size=shape[1], num_classes=data.num_classes)
    elif name == "gpt_tiny" and len(shape) == 1:
        over.update(vocab_size=data.num_classes, block_size=shape[0])
    defaults = _defaults(source, name)
    kwargs.update({k: v for k, v in over.items() if k not in kwargs})
    kept = {k: v for k, v in kwargs.items() if k not in defaults or defaults[k] != v or isinstance(v, bool)}
    return canonical_id(f"{source}:{name}", **kept)


def _defaults(source: str, name: str) -> dict[str, Any]:
    """A zoo factory's default arguments: ids keep only what differs from them, so one model has one
    id (and a run recorded by ``zoo train --model mlp2`` is recognised as the same run as width=4096).
    Other sources keep their ids as written: a ``package.module:factory`` id from a config must not
    be imported here (``zoo.models.build`` refuses it: config files never run code)."""
    factory = ZOO.get(name) if source == "zoo" else None
    if factory is None:
        return {}
    params = inspect.signature(factory).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
