"""Align one model onto another: weight matching, or activation matching on data.

*Weight matching* is Git Re-Basin's: the permutation of ``other``'s weights closest to
``reference``'s, by LSA coordinate descent over the spec's groups (:class:`transfer.matching.Matcher`).

*Activation matching* (Git Re-Basin's second method, and REPAIR's) reads, for each free group, the
values it permutes (``Group.activations``, found by ``permgraph`` in the axis graph), on a few
batches of data: the correlation ``C[i, j]`` between unit ``i`` of ``reference`` and unit ``j`` of
``other`` over every sample, spatial position and token, and one assignment (the LAP the engine
dispatches, :func:`transfer.lap.solve_lap`) per group maximising ``sum_c C[c, p[c]]``. Groups are
independent given the data, so one pass is exact for this objective (as REPAIR does it).

A group whose every value also moves another group (attention's heads and per-head dims: the
fused attention op mixes them) has no clean correlation; per-block (``per_block=True``) groups
neither. Those groups are weight-matched, the activation-matched ones held fixed; ``Alignment.how``
says which group got which.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from permgraph.activations import GraphRunner, group_activations
from permgraph.apply import Permutation, apply, identity_permutation
from permgraph.spec import Activation, PermSpec
from transfer.evaluation import batch_to, model_device
from transfer.inputs import inputs_from_batch
from transfer.lap import solve_lap
from transfer.matching import Matcher

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


def _clean_sites(spec: PermSpec) -> dict[str, list[Activation]]:
    """The groups activation matching can read, with their sites (see the module docstring)."""
    indexed = {g.indexed_by for g in spec.free_groups if g.indexed_by} | {g.name for g in spec.free_groups if g.indexed_by}
    out = {}
    for g in spec.free_groups:
        sites = [a for a in g.activations if a.clean and a.index_dim is None]
        if sites and g.name not in indexed:
            out[g.name] = sites
    return out


class _Moments:
    """Running sums for the correlation of two ``(units, samples)`` streams."""

    def __init__(self, n: int):
        self.n, self.count = n, 0

    def add(self, xa: torch.Tensor, xb: torch.Tensor) -> None:
        xa, xb = xa.double(), xb.double()
        if self.count == 0:
            z = torch.zeros(self.n, dtype=torch.float64, device=xa.device)
            self.sa, self.sb, self.qa, self.qb = z.clone(), z.clone(), z.clone(), z.clone()
            self.cross = torch.zeros(self.n, self.n, dtype=torch.float64, device=xa.device)
        self.count += xa.shape[1]
        self.sa += xa.sum(1)
        self.sb += xb.sum(1)
        self.qa += (xa * xa).sum(1)
        self.qb += (xb * xb).sum(1)
        self.cross += xa @ xb.T

    def correlation(self) -> torch.Tensor:
        n = max(self.count, 1)
        ma, mb = self.sa / n, self.sb / n
        sa = (self.qa / n - ma * ma).clamp_min(0).sqrt()
        sb = (self.qb / n - mb * mb).clamp_min(0).sqrt()
        cov = self.cross / n - torch.outer(ma, mb)
        return (cov / (torch.outer(sa, sb) + 1e-12)).cpu()


def _tap(runner: GraphRunner, spec: PermSpec, sites: dict[str, list[Activation]], batch: Any
         ) -> dict[str, torch.Tensor]:  # fmt: skip
    values: dict[str, torch.Tensor] = {}
    runner.run(*model_call(runner.model, batch), lambda name, v: values.__setitem__(name, v))
    return {g: group_activations(spec.group(g), ss, values) for g, ss in sites.items()}


def activation_correlations(
    model: nn.Module, spec: PermSpec, reference: Mapping[str, torch.Tensor], other: Mapping[str, torch.Tensor],
    batches: Iterable[Any], *, groups: Iterable[str] | None = None,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """Per group (default: every group activation matching can read), the ``(n, n)`` correlation
    of unit ``i`` of ``reference`` with unit ``j`` of ``other`` over every sample of ``batches``,
    streamed batch by batch (one batch's activations in memory at a time)."""
    sites = _clean_sites(spec)
    if groups is not None:
        sites = {g: sites[g] for g in groups}
    if not sites:
        raise ValueError("no group of the spec has a clean activation site to correlate")
    runner = GraphRunner(model, {a.node for ss in sites.values() for a in ss})
    moments = {g: _Moments(spec.group(g).size) for g in sites}
    seen = False
    for batch in batches:
        rows_a = _tap(runner.load(reference), spec, sites, batch)
        rows_b = _tap(runner.load(other), spec, sites, batch)
        for g, m in moments.items():
            m.add(rows_a[g], rows_b[g])
        seen = True
    if not seen:
        raise ValueError("activation matching got no batches")
    return {g: m.correlation() for g, m in moments.items()}


def match_activations(
    model: nn.Module, spec: PermSpec, reference: Mapping[str, torch.Tensor], other: Mapping[str, torch.Tensor],
    batches: Iterable[Any], *, seed: int = 0, timings: dict[str, float] | None = None,
) -> tuple[Permutation, dict[str, str]]:  # fmt: skip
    """Activation matching (module docstring): the permutation of ``other`` onto ``reference`` and,
    per group, ``"activation"`` or ``"weight"`` (the groups with no clean activation, weight-matched
    with the others fixed). ``timings`` receives ``collect`` (running the models, correlations) and
    ``solve`` (the assignments) seconds."""
    t0 = time.perf_counter()
    if not any(g.activations for g in spec.free_groups):
        raise ValueError("the spec records no activations (a spec saved before groups named them): infer it again")
    # no group with a clean activation (a model of attention heads alone): all weight-matched below
    corr = activation_correlations(model, spec, reference, other, batches) if _clean_sites(spec) else {}
    t1 = time.perf_counter()
    perm: Permutation = {}
    for g, c in corr.items():
        perm[g] = torch.from_numpy(np.asarray(solve_lap(c.numpy()), dtype=np.int64))
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
    if timings is not None:
        timings["collect"], timings["solve"] = t1 - t0, time.perf_counter() - t1
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
