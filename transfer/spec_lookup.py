"""Where a run's spec comes from: the output folder's copy (``OUT/.state/spec.json``), then the user
cache (:mod:`transfer.cache`), else ``permgraph.infer``; a found spec is used only under the key of
this model, these inputs, these preserved outputs and this permgraph, after checking it against the
model's tensors and its function, and an inferred one is kept in both places."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

import permgraph
from permgraph.spec import PermSpec
from transfer.cache import load_spec, save_spec, spec_cache_file, spec_key
from transfer.inputs import ModelInputs, infer_spec
from transfer.results import TransferError

__all__ = ["find_spec", "lookup_key", "infer_preserving", "still_exact"]

log = logging.getLogger("transfer.engine")


def lookup_key(model: torch.nn.Module, inputs: ModelInputs, outputs: tuple[str, ...] | None = None) -> str | None:
    """The cache key of ``model``'s spec on ``inputs`` preserving ``outputs`` (None: every output, the
    key it always had); None when the model cannot be cached (:func:`transfer.cache.spec_key`)."""
    return spec_key(model, inputs.key() if outputs is None else {"inputs": inputs.key(), "outputs": list(outputs)})


def infer_preserving(model: torch.nn.Module, inputs: ModelInputs, outputs: Sequence[str] | None = None) -> PermSpec:
    """:func:`~transfer.inputs.infer_spec` preserving only ``outputs`` (None: every output). A name the
    model does not return is the user's to fix: a :class:`TransferError` naming the outputs it has."""
    try:
        return infer_spec(model, inputs, outputs=outputs)
    except ValueError as e:  # permgraph's message names the model's outputs
        if outputs is not None and "has no output" in str(e):
            raise TransferError(f"--output (outputs=): {e}; preserve one of those") from e
        raise


def find_spec(
    model: torch.nn.Module, inputs: ModelInputs, key: str | None, local: Path | None,
    outputs: tuple[str, ...] | None = None,
) -> PermSpec:  # fmt: skip
    """The spec of ``model`` preserving ``outputs`` under ``key`` (:func:`lookup_key`): from ``local``
    (an output folder's copy, or None), then the user cache, else inferred on ``inputs``; kept where it
    was not. A found spec must preserve the same outputs (the key says so; the spec is checked too)."""
    user = spec_cache_file(key) if key is not None else None
    places = [p for p in (local, user) if p is not None]
    found = next(((p, s) for p in places if (s := load_spec(p, key, model)) is not None and s.outputs == outputs), None)
    if found and not still_exact(model, found[1], inputs):
        found = None  # the key missed a change (a helper the forward calls lives in another file)
    spec = found[1] if found else infer_preserving(model, inputs, outputs)
    # an output folder's copy may come from elsewhere: it serves that folder, never the user cache
    for place in places[: places.index(found[0]) if found else len(places)]:
        save_spec(place, key, spec)
    return spec


def still_exact(model: torch.nn.Module, spec: PermSpec, inputs: ModelInputs) -> bool:
    """Whether a cached spec still leaves ``model``'s function unchanged (``permgraph.verify``): the
    cache key names the model's classes' files, not every file its forward calls, so a hit is checked
    before it is trusted, as an inferred spec is checked by its rules. A few forward passes: first
    at float64 round-off (1e-11, the strictest default of ``verify``, and without its precision watch,
    whose first use in a process costs 3 s of imports), then, for a model that computes in a coarser
    dtype somewhere, with ``verify``'s own tolerance for it."""
    if permgraph.verify(model, spec, inputs.args, inputs.kwargs, rtol=1e-11).ok:
        return True
    report = permgraph.verify(model, spec, inputs.args, inputs.kwargs)
    if not report.ok:
        log.info("ignoring a cached spec that no longer verifies: %s", report)
    return bool(report.ok)
