"""Align one model onto another: weight matching, or activation matching on data.

*Weight matching* is Git Re-Basin's: the permutation of ``other``'s weights closest to
``reference``'s, by LSA coordinate descent over the spec's groups (:class:`transfer.matching.Matcher`).

*Activation matching* (Git Re-Basin's second method, and REPAIR's) reads, for each free group, the
values it permutes (``Group.activations``, found by ``permgraph`` in the axis graph), on a few
batches of data: the correlation ``C[i, j]`` between unit ``i`` of ``reference`` and unit ``j`` of
``other`` over every sample, spatial position and token, and one assignment (the LAP the engine
dispatches, :func:`transfer.lap.solve_lap`) per group maximising ``sum_c C[c, p[c]]``. Groups are
independent given the data, so one pass is exact for this objective (as REPAIR does it).

A value that also moves another group (attention's ``(B, T, heads, dim)``) is read in later rounds,
once that group is solved, or through a similarity that group cannot change
(:mod:`transfer.merge.rounds`): heads and their per-head dims are activation-matched too. What no round
reaches (per-block groups of ``infer(per_block=True)``) is weight-matched with the others held fixed;
``Alignment.how`` says which group got which.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from permgraph.activations import GraphRunner
from permgraph.apply import Permutation, apply, identity_permutation
from permgraph.spec import PermSpec
from transfer.evaluation import batch_to, model_device
from transfer.inputs import inputs_from_batch
from transfer.lap import solve_lap
from transfer.matching import Matcher
from transfer.merge.path import reiterable
from transfer.merge.rounds import Round, next_round, round_similarities

__all__ = ["Alignment", "ALIGN_METHODS", "align_models", "match_weights", "match_activations",
           "activation_correlations", "model_call"]  # fmt: skip

ALIGN_METHODS = ("weight", "activation", "none")


@dataclass
class Alignment:
    """``other`` permuted onto ``reference``: ``state`` is ``apply(spec, perm, other)``.

    ``how``: per free group, ``"weight"`` or ``"activation"`` (what matched it); ``seconds``: the
    whole alignment; ``solve_seconds``: the assignment solves alone (LAPs, coordinate descent)."""

    perm: Permutation
    state: dict[str, torch.Tensor]
    method: str
    how: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    solve_seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """JSON-able: method, seconds, groups per matching kind, units moved."""
        kinds: dict[str, int] = {}
        for k in self.how.values():
            kinds[k] = kinds.get(k, 0) + 1
        moved = {g: int((p != torch.arange(p.shape[-1])).sum()) for g, p in self.perm.items()}
        return {"method": self.method, "seconds": self.seconds, "solve_seconds": self.solve_seconds,
                "groups_by": kinds, "moved_units": moved}  # fmt: skip


def model_call(model: nn.Module, batch: Any) -> tuple[tuple, dict]:
    """The ``(args, kwargs)`` the model is called with on a batch (:mod:`transfer.inputs`' rule)."""
    inputs = inputs_from_batch(model, batch_to(batch, model_device(model)))
    return inputs.args, inputs.kwargs


def match_weights(
    spec: PermSpec, reference: Mapping[str, torch.Tensor], other: Mapping[str, torch.Tensor], *,
    seed: int = 0, restarts: int = 0,
) -> Permutation:  # fmt: skip
    """Git Re-Basin weight matching: the ``perm`` with ``apply(spec, perm, other)`` closest to
    ``reference`` (identity and sorted-rows starts, :data:`transfer.matching.DEFAULT_INIT`)."""
    return Matcher(spec).add(reference, other).solve(seed=seed, restarts=restarts)


def activation_correlations(
    model: nn.Module, spec: PermSpec, reference: Mapping[str, torch.Tensor], other: Mapping[str, torch.Tensor],
    batches: Iterable[Any], *, groups: Iterable[str] | None = None,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """Per group with a clean activation (default: all of them), the ``(n, n)`` correlation of unit
    ``i`` of ``reference`` with unit ``j`` of ``other`` over every sample of ``batches``, streamed
    batch by batch (one batch's activations in memory at a time)."""
    rnd = next_round(spec, {})
    if rnd is None or rnd.kind != "correlation":
        raise ValueError("no group of the spec has a clean activation site to correlate")
    if groups is not None:
        rnd = Round(rnd.kind, {g: rnd.sites[g] for g in groups}, {})
    runner = GraphRunner(model, {a.node for ss in rnd.sites.values() for a in ss})
    call = functools.partial(model_call, model)
    return round_similarities(runner, spec, (reference, other), batches, rnd, {}, call)


def _activation_rounds(
    model: nn.Module, spec: PermSpec, states: tuple[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]],
    batches: Iterable[Any], timings: dict[str, float],
) -> Permutation:  # fmt: skip
    """Every group the rounds of :mod:`transfer.merge.rounds` reach, one LAP each."""
    runner = GraphRunner(model, {a.node for g in spec.free_groups for a in g.activations})
    call = functools.partial(model_call, model)
    perm: Permutation = {}
    while (rnd := next_round(spec, perm)) is not None:
        t0 = time.perf_counter()
        sims = round_similarities(runner, spec, states, batches, rnd, perm, call)
        t1 = time.perf_counter()
        for g, c in sims.items():
            perm[g] = torch.from_numpy(np.asarray(solve_lap(c.numpy()), dtype=np.int64))
        timings["collect"] = timings.get("collect", 0.0) + t1 - t0
        timings["solve"] = timings.get("solve", 0.0) + time.perf_counter() - t1
        timings["rounds"] = timings.get("rounds", 0) + 1
    return perm


def match_activations(
    model: nn.Module, spec: PermSpec, reference: Mapping[str, torch.Tensor], other: Mapping[str, torch.Tensor],
    batches: Iterable[Any], *, seed: int = 0, timings: dict[str, float] | None = None,
) -> tuple[Permutation, dict[str, str]]:  # fmt: skip
    """Activation matching (module docstring): the permutation of ``other`` onto ``reference`` and,
    per group, ``"activation"`` or ``"weight"`` (the groups no round reaches, weight-matched with the
    others fixed). ``timings`` receives ``collect`` (running the models, similarities), ``solve`` (the
    assignments) seconds and ``rounds`` (passes over the data)."""
    if not any(g.activations for g in spec.free_groups):
        raise ValueError("the spec records no activations (a spec saved before groups named them): infer it again")
    times: dict[str, float] = {}
    batches = reiterable(batches)
    perm = _activation_rounds(model, spec, (reference, other), batches, times)
    t1 = time.perf_counter()
    how = dict.fromkeys(perm, "activation")
    rest = [g.name for g in spec.free_groups if g.name not in perm]
    if rest:
        moved = apply(spec, perm, other)
        fixed = "matched by activations"
        sub = replace(spec, groups=tuple(g if g.name in rest or not g.is_free else replace(g, blocked=fixed)
                                         for g in spec.groups))  # fmt: skip
        try:
            perm.update(match_weights(sub, reference, moved, seed=seed))
        except ValueError:  # the rest touch no floating tensor both dicts hold: leave them
            perm.update({g: p for g, p in identity_permutation(sub).items() if g in rest})
        how.update(dict.fromkeys(rest, "weight"))
    times["solve"] = times.get("solve", 0.0) + time.perf_counter() - t1  # the weight-matched rest
    if timings is not None:
        timings.update(times)
    return perm, how


def align_models(
    model: nn.Module, spec: PermSpec, reference: Mapping[str, torch.Tensor], other: Mapping[str, torch.Tensor],
    *, method: str = "weight", batches: Iterable[Any] | None = None, seed: int = 0, restarts: int = 0,
) -> Alignment:  # fmt: skip
    """``other`` permuted onto ``reference`` by ``method``: ``"weight"`` (Git Re-Basin weight matching),
    ``"activation"`` (needs ``batches``: a few batches of data, as a DataLoader yields them) or
    ``"none"`` (the identity: the naive baseline). ``model`` gives the architecture (its own weights
    are not used)."""
    if method not in ALIGN_METHODS:
        raise ValueError(f"unknown alignment {method!r}; choose from {', '.join(ALIGN_METHODS)}")
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    if method == "none":
        perm, how = identity_permutation(spec), {}
    elif method == "weight":
        perm = match_weights(spec, reference, other, seed=seed, restarts=restarts)
        how = dict.fromkeys(perm, "weight")
    else:
        if batches is None:
            raise ValueError("activation matching needs batches= (a few batches of data)")
        perm, how = match_activations(model, spec, reference, other, batches, seed=seed, timings=timings)
    solve = timings.get("solve", time.perf_counter() - t0)
    state = apply(spec, perm, other)
    return Alignment(perm, dict(state), method, how, time.perf_counter() - t0, solve)
