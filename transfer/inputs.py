"""How a model is called on a batch, and the example inputs its spec is inferred from: one rule.

A *batch* is what a ``DataLoader`` yields, and every layer calls the model on it the same way
(training, gradients, evaluation, BatchNorm statistics, and the trace a spec is inferred from):

* a dict (Hugging Face style) is passed by keyword, ``model(**inputs)``, where ``inputs`` are the
  keys the model's ``forward`` names (all of them when it names none and takes ``**kwargs``). Labels (``labels``,
  ``label``, ``label_ids``) reach ``forward`` only when it takes them (a Hugging Face model then
  computes its own loss); a trace never sees them: they are targets, not inputs;
* an ``(inputs, targets)`` pair is called as ``model(inputs)``;
* a tensor is called as ``model(tensor)``.

``--input SHAPE[:DTYPE]`` on a command line gives positional inputs instead (:func:`inputs_from_shapes`).
:func:`infer_spec` runs the model once on the example inputs before tracing, so a failure of *our*
call (a key ``forward`` does not take, a batch of the wrong form) is reported as that call, naming
it, and not as a failure of the model inside ``torch.export``.

>>> import torch
>>> class Net(torch.nn.Module):
...     def forward(self, input_ids, attention_mask=None):
...         return input_ids.float()
>>> batch = {"input_ids": torch.zeros(2, 5), "attention_mask": torch.ones(2, 5), "labels": torch.zeros(2)}
>>> inputs = inputs_from_batch(Net(), batch)
>>> inputs.args, sorted(inputs.kwargs)
((), ['attention_mask', 'input_ids'])
>>> inputs.describe(Net())
'Net(input_ids=float32[2, 5], attention_mask=float32[2, 5])'
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import permgraph
from permgraph.spec import PermSpec
from permgraph.trace import TraceError
from transfer.data import DataError

__all__ = [
    "ModelInputs", "LABEL_KEYS", "model_kwargs", "call_model", "inputs_from_batch", "inputs_from_shapes",
    "parse_input", "example_tensor", "infer_spec", "DTYPES",
]  # fmt: skip

LABEL_KEYS = frozenset({"labels", "label", "label_ids"})

DTYPES = {"float": torch.float32, "float32": torch.float32, "float64": torch.float64, "double": torch.float64,
          "long": torch.long, "int64": torch.long, "int": torch.long, "bool": torch.bool}  # fmt: skip


@dataclass(frozen=True)
class ModelInputs:
    """Example inputs of a model: it is called as ``model(*args, **kwargs)``. ``origin`` says where
    they came from (a dict batch, an ``(inputs, targets)`` batch, ``--input``), for messages."""

    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    origin: str = "example inputs"

    def describe(self, model: nn.Module) -> str:
        """The call, with shapes: ``BertModel(input_ids=int64[2, 12], attention_mask=int64[2, 12])``."""
        parts = [_shown(a) for a in self.args] + [f"{k}={_shown(v)}" for k, v in self.kwargs.items()]
        return f"{type(model).__name__}({', '.join(parts)})"

    def key(self) -> tuple:
        """What the spec cache keys on (shapes and dtypes are read from it): positional inputs alone
        when there are no keywords, so the key of a tensor model does not depend on this class."""
        return self.args if not self.kwargs else (self.args, self.kwargs)


def _shown(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"{str(value.dtype).replace('torch.', '')}{list(value.shape)}"
    return type(value).__name__


def _forward_parameters(model: nn.Module) -> tuple[list[str], bool] | None:
    """The names ``forward`` takes by keyword, and whether it also takes ``**kwargs`` (None: unknown)."""
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return None
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def model_kwargs(model: nn.Module, batch: Mapping[str, Any], *, labels: bool = True) -> dict[str, Any]:
    """The keyword arguments ``model`` is called with for a dict ``batch``: the keys its ``forward``
    takes, labels only when ``labels`` (calls, so a Hugging Face model computes its loss; never in
    a trace). Raises :class:`DataError` naming the call when none of the batch's keys fits."""
    found = _forward_parameters(model)
    kept = dict(batch) if found is None else {k: v for k, v in batch.items() if k in found[0]}
    if found is not None and found[1] and not [k for k in kept if k not in LABEL_KEYS]:
        kept = dict(batch)  # forward(**kwargs) names nothing: it takes the whole batch
    if not labels:
        kept = {k: v for k, v in kept.items() if k not in LABEL_KEYS}
    inputs = [k for k in kept if k not in LABEL_KEYS]
    if not inputs:
        takes = ", ".join(found[0]) if found else "?"
        raise DataError(
            f"a dict batch is passed as model(**batch) with the keys its forward takes, but "
            f"{type(model).__name__}.forward({takes}) takes none of the batch's inputs "
            f"({', '.join(map(str, batch)) or 'no keys'}); name forward's parameters after the batch's keys "
            "(e.g. input_ids, attention_mask), or have the dataset yield (inputs, targets) pairs"
        )
    return kept


def call_model(model: nn.Module, batch: Any) -> object:
    """``model(**inputs)`` for a dict batch (see :func:`model_kwargs`), ``model(inputs)`` for an
    ``(inputs, targets)`` pair, ``model(batch)`` for a tensor."""
    if isinstance(batch, Mapping):
        return model(**model_kwargs(model, batch))
    if isinstance(batch, (tuple, list)):
        return model(batch[0])
    return model(batch)


def inputs_from_batch(model: nn.Module, batch: Any) -> ModelInputs:
    """The example inputs of a real batch, called the way :func:`call_model` calls it, labels left out."""
    if isinstance(batch, Mapping):
        return ModelInputs((), model_kwargs(model, batch, labels=False), "a dict batch, labels left out")
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise DataError("an empty batch: the dataset must yield (inputs, targets) pairs or dicts")
        return ModelInputs((batch[0],), {}, "the inputs of an (inputs, targets) batch")
    if isinstance(batch, torch.Tensor):
        return ModelInputs((batch,), {}, "a tensor batch")
    raise DataError(
        f"cannot call a model on a batch of type {type(batch).__name__}: the dataset must yield "
        "(inputs, targets) pairs or dicts of tensors"
    )


def parse_input(text: str) -> tuple[tuple[int, ...], torch.dtype]:
    """``"2,3,32,32"`` or ``"2,16:long"`` (``--input SHAPE[:DTYPE]``) -> (shape, dtype).

    >>> parse_input("2,16:long")
    ((2, 16), torch.int64)
    """
    shape_text, _, dtype_text = text.partition(":")
    try:
        shape = tuple(int(s) for s in shape_text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        shape = ()
    if not shape or any(s < 1 for s in shape):
        raise DataError(f"--input {text!r}: give positive sizes like 1,3,224,224 (and :long for token ids)")
    dtype = DTYPES.get(dtype_text.strip().lower() or "float")
    if dtype is None:
        raise DataError(f"--input {text!r}: unknown dtype {dtype_text!r}; use one of {', '.join(DTYPES)}")
    return shape, dtype


def example_tensor(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A deterministic tensor of ``shape`` and ``dtype``; integer ids are 0 or 1 (valid for any vocabulary)."""
    g = torch.Generator().manual_seed(0)
    if dtype == torch.bool:
        return torch.rand(shape, generator=g) < 0.5
    if not dtype.is_floating_point:
        return torch.randint(0, 2, shape, generator=g, dtype=dtype)
    return torch.randn(shape, generator=g, dtype=dtype)


def inputs_from_shapes(texts: Sequence[str]) -> ModelInputs:
    """Positional inputs from ``--input SHAPE[:DTYPE]`` texts, one per input."""
    return ModelInputs(tuple(example_tensor(*parse_input(t)) for t in texts), {}, "--input")


def infer_spec(model: nn.Module, inputs: ModelInputs, **options: Any) -> PermSpec:
    """``permgraph.infer`` on ``inputs``, after one eager call that shows they fit: a call that fails
    is reported as our call of the model (:class:`DataError`), a trace that fails names the call."""
    check_call(model, inputs)
    try:
        return permgraph.infer(model, inputs.args, inputs.kwargs, **options)
    except TraceError as e:
        error = TraceError(f"tracing {inputs.describe(model)} (from {inputs.origin}): {e}")
        error.export_log = e.export_log
        raise error from e


def check_call(model: nn.Module, inputs: ModelInputs) -> None:
    """Call ``model`` once on ``inputs`` (eval mode, no gradients; its mode is restored); a failure
    raises :class:`DataError` naming the call and where its inputs came from."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*inputs.args, **inputs.kwargs)
    except Exception as e:  # noqa: BLE001 - the user's forward on our inputs: name both
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(
            f"calling {inputs.describe(model)} (from {inputs.origin}) failed: {type(e).__name__}: {first}; "
            "check that the data (--data) and the model (--model) belong together, or give the inputs with "
            "--input SHAPE[:DTYPE]"
        ) from e
    finally:
        model.train(was_training)
