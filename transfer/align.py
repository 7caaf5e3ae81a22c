"""Git Re-Basin weight matching of two trained runs: permute run B's final weights onto run A's.

``align(a, b, model=..., example_inputs=...)`` infers the spec from the model (or takes ``spec=``),
matches B onto A with the LSA coordinate descent of :mod:`transfer.matching` (started from the
identity and from the within-row sorted start), and reports the objective and the L2 distance
before and after, and per group how far B's weights agree with A's (cosine over the tensors the
group touches) before and after. :func:`write_match` writes what ``transfer match`` produces::

    OUT/permutation.safetensors   the permutation, one tensor per group
    OUT/b_permuted/               run B with every checkpoint permuted onto A (a trajectory: every
                                  command reads it, e.g. as a transfer source or a merge input)
    OUT/results.json              objective, distances and per-group agreement before/after, timings
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as save_tensors
from torch import nn
from tqdm.auto import tqdm

from permgraph.apply import apply, identity_permutation
from permgraph.spec import PermSpec
from transfer.checks import check_finite, check_same_architecture
from transfer.files import (
    MARKER,
    atomic_write_bytes,
    atomic_write_json,
    output_folder,
    refuse_inputs_inside,
    temporary_folder,
)
from transfer.identity import open_trajectory, state_sha
from transfer.inputs import ModelInputs, infer_spec
from transfer.matching import SORTED, Matcher, permuted_distance
from transfer.outputs import replace_folder
from transfer.results import TransferError
from transfer.trajectory import Trajectory, TrajectoryWriter

__all__ = ["align", "write_match", "group_agreement", "owned_by_match", "PERMUTATION", "PERMUTED", "MATCH_FORMAT"]

PERMUTATION = "permutation.safetensors"
PERMUTED = "b_permuted"
RESULTS = "results.json"
MATCH_FORMAT = "permgraph-match"
MATCH_VERSION = 1


def align(
    a: Trajectory | str | os.PathLike,
    b: Trajectory | str | os.PathLike,
    *,
    model: nn.Module,
    example_inputs: ModelInputs | tuple | None = None,
    spec: PermSpec | None = None,
    seed: int = 0,
    restarts: int = 0,
    model_name: str = "the model",
) -> dict[str, Any]:
    """The permutation of B's final weights closest to A's, its objective before and after, the L2
    distance before and after, and per group the units moved and the agreement before and after.
    ``example_inputs``: what the spec is inferred from (a :class:`~transfer.inputs.ModelInputs`,
    or a tuple of positional inputs). ``model_name``: how messages name ``model`` (e.g. ``"--model ID"``)."""
    ta, tb = open_trajectory(a, "run A"), open_trajectory(b, "run B")
    sa, sb = ta.final(), tb.final()  # one architecture: both must fit ``model`` (ids may be spelt differently)
    check_same_architecture(model.state_dict(), sa, f"run A ({ta.path})", model_name)
    check_same_architecture(model.state_dict(), sb, f"run B ({tb.path})", model_name)
    check_finite(sa, f"run A's final checkpoint ({ta.path})")
    check_finite(sb, f"run B's final checkpoint ({tb.path})")
    t0 = time.perf_counter()
    if spec is None:
        if example_inputs is None:
            raise TransferError("align needs spec= or example_inputs= to infer the model's permutation groups")
        if not isinstance(example_inputs, ModelInputs):
            example_inputs = ModelInputs(tuple(example_inputs), {}, "example inputs")
        spec = infer_spec(model, example_inputs)
    t1 = time.perf_counter()
    m = Matcher(spec).add(sa, sb)
    ident = identity_permutation(spec)
    before = m.objective(ident)
    perm = m.solve(init=[None, SORTED], seed=seed, restarts=restarts)
    t2 = time.perf_counter()
    return {
        "perm": perm,
        "objective_before": before,
        "objective": m.stats.objective,
        "distance_before": permuted_distance(spec, ident, sa, sb),
        "distance_after": permuted_distance(spec, perm, sa, sb),
        "moved_units": {g: int((p != ident[g]).sum()) for g, p in perm.items()},
        "groups": group_agreement(spec, perm, sa, sb),
        "lsa_calls": m.stats.lsa_calls,
        "seconds": t2 - t1,
        "spec_seconds": t1 - t0,
        "spec": spec,
        "a": ta,
        "b": tb,
    }


def group_agreement(
    spec: PermSpec, perm: Mapping[str, torch.Tensor], a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]
) -> dict[str, dict[str, Any]]:
    """Per free group: its size, the units the permutation moves, and the cosine between A's and B's
    weights over the tensors the group touches, before and after permuting B (1 = identical)."""
    moved_b = apply(spec, perm, b)
    ident = identity_permutation(spec)
    out = {}
    for g in spec.free_groups:
        keys = sorted({m.param for m in g.members if m.param in a and torch.is_floating_point(a[m.param])})
        out[g.name] = {
            "size": g.size,
            "moved": int((perm[g.name] != ident[g.name]).sum()) if g.name in perm else 0,
            "tensors": len(keys),
            "agreement_before": _cosine(a, b, keys),
            "agreement_after": _cosine(a, moved_b, keys),
        }
    return out


def _cosine(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], keys: list[str]) -> float:
    if not keys:
        return float("nan")
    x = torch.cat([a[k].double().flatten() for k in keys])
    y = torch.cat([b[k].double().flatten() for k in keys])
    norm = float(x.norm() * y.norm())
    return float(x @ y) / norm if norm > 0 else float("nan")


def owned_by_match(name: str) -> bool:
    """Whether a folder entry is one ``transfer match`` writes."""
    return name in (PERMUTATION, PERMUTED, RESULTS, MARKER, ".lock") or name.startswith(".")


def write_match(out: str | os.PathLike, result: Mapping[str, Any], *, model: str, progress: bool = True) -> dict:
    """Write what ``transfer match`` produces into ``out`` (a new, empty or earlier match folder; see the
    module docstring) and return the ``results.json`` written. ``model``: the id the permuted run records."""
    out = Path(out)
    ta, tb = result["a"], result["b"]
    inputs = {"run A": ta.path, "run B": tb.path}
    refuse_inputs_inside(out, inputs)
    for what, path in inputs.items():  # nor inside a run: a run folder holds only what its training wrote
        if Path(path).resolve() in out.resolve().parents:
            raise TransferError(f"--out {out} lies inside {what} ({path}); choose a folder outside the runs")
    t0 = time.perf_counter()
    with output_folder(out, "transfer match", owned_by_match, f"transfer match {ta.path} {tb.path}"):
        perm = {g: p.contiguous() for g, p in result["perm"].items()}
        atomic_write_bytes(out / PERMUTATION, save_tensors(perm))
        _write_permuted_run(out / PERMUTED, result["spec"], perm, tb, model=model, progress=progress)
        summary = match_summary(result, writing=time.perf_counter() - t0)
        atomic_write_json(out / RESULTS, summary)
    return summary


def match_summary(result: Mapping[str, Any], writing: float = 0.0) -> dict:
    """The ``results.json`` of a match: what was matched, the objective and distances before and after,
    per-group agreement, and where the time went (seconds)."""
    ta, tb = result["a"], result["b"]
    return {
        "format": MATCH_FORMAT,
        "version": MATCH_VERSION,
        "a": {"path": str(ta.path), "step": ta.steps[-1], "sha": state_sha(ta.final())},
        "b": {"path": str(tb.path), "step": tb.steps[-1], "sha": state_sha(tb.final())},
        "objective_before": result["objective_before"],
        "objective_after": result["objective"],
        "distance_before": result["distance_before"],
        "distance_after": result["distance_after"],
        "groups": result["groups"],
        "lsa_calls": result["lsa_calls"],
        "permutation": PERMUTATION,
        "permuted_b": PERMUTED,
        "timings": {
            "spec": round(result["spec_seconds"], 3),
            "match": round(result["seconds"], 3),
            "writing": round(writing, 3),
        },
    }


def _write_permuted_run(
    folder: Path, spec: PermSpec, perm: Mapping[str, torch.Tensor], run: Trajectory, *, model: str, progress: bool
) -> None:
    """Run B with every checkpoint permuted, written beside and then moved into place (a rerun
    replaces the earlier one whole; a failure leaves the earlier one as it was)."""
    tmp = temporary_folder(folder.parent, f".{folder.name}.")  # the umask's mode, not mkdtemp's 0700
    try:
        writer = TrajectoryWriter(tmp, model=model, data=run.data, seed=run.seed, config=run.config)
        for i, c in enumerate(tqdm(run.checkpoints, desc="permuting run B", disable=not progress, leave=False)):
            writer.save(apply(spec, perm, run.load(i)), step=c["step"], epoch=c["epoch"], name=c["name"],
                        metrics=c.get("metrics", {}))  # fmt: skip
        if run.complete:
            writer.finish()
        replace_folder(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
