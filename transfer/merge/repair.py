"""REPAIR (Jordan et al., 2023): renormalise the merged model's units toward the endpoints' statistics.

Averaging two aligned models shrinks the variance of their hidden units ("variance collapse"). For
each layer that produces a group's units (a Linear or convolution with a bias, whose output is one
of ``Group.activations``), REPAIR measures every output channel's mean and standard deviation in
each endpoint, and sets the merged layer's to their interpolation,

    target = (1 − λ) · stat(A) + λ · stat(π B)        (or ``sum_i w_i stat_i`` for N models),

folding the affine correction into the layer's weight and bias (``W[c] *= σ_t/σ_m``,
``b[c] = (b[c] − μ_m) σ_t/σ_m + μ_t``). The merged model's statistics are measured over all the
batches, level by level: layers that do not feed each other are measured in one pass, once every
layer before them has been corrected, so each correction is exact for the data (REPAIR's reset layers
normalise each batch by its own statistics during one pass instead, which is not; with identical
endpoints this repair changes nothing).

A layer followed by BatchNorm is not corrected: for BatchNorm nets the repair is "BN reset", the
running statistics re-estimated on data (:func:`reset_batchnorm`); a layer without a bias cannot
take the shift and is left alone (``Repair.skipped`` says why, per layer).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from permgraph.activations import GraphRunner
from permgraph.apply import State
from permgraph.rules import op_name
from permgraph.spec import PermSpec
from transfer.evaluation import batch_to, model_device
from transfer.gradients import batchnorm_modules, has_batchnorm
from transfer.inputs import call_model
from transfer.merge.alignment import model_call
from transfer.merge.path import reiterable

__all__ = ["Repair", "RepairSite", "reset_batchnorm", "has_batchnorm"]

_PRODUCERS = {"aten.linear": -1, "aten.conv1d": 1, "aten.conv2d": 1, "aten.conv3d": 1, "aten.convolution": 1}
_EPS = 1e-5


@dataclass(frozen=True)
class RepairSite:
    """One layer REPAIR corrects: the graph value it produces, its channel axis, its weight and bias keys."""

    node: str
    axis: int
    weight: str
    bias: str
    level: int = 0  # 1 + the highest level of the sites it depends on: one measuring pass per level


@torch.no_grad()
def reset_batchnorm(model: nn.Module, state: Mapping[str, torch.Tensor], batches: Iterable[Any]) -> State:
    """``state`` with every BatchNorm's running mean and variance re-estimated on ``batches`` (a
    cumulative average, the model otherwise in eval mode: dropout stays off). ``model`` is not modified."""
    work = copy.deepcopy(model)
    work.load_state_dict(state)
    work.eval()
    device = model_device(work)
    for m in batchnorm_modules(work):
        m.reset_running_stats()
        m.momentum = None
        m.train()
    seen = False
    for batch in batches:
        call_model(work, batch_to(batch, device))
        seen = True
    if not seen:
        raise ValueError("reset_batchnorm got no batches")
    return {k: v.detach().clone() for k, v in work.state_dict().items()}


class _Stats:
    def __init__(self) -> None:
        self.n, self.s, self.q = 0, None, None

    def add(self, rows: torch.Tensor) -> None:
        rows = rows.double()
        s, q = rows.sum(1), (rows * rows).sum(1)
        self.s = s if self.s is None else self.s + s
        self.q = q if self.q is None else self.q + q
        self.n += rows.shape[1]

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.s / self.n
        return mean, (self.q / self.n - mean * mean).clamp_min(0).sqrt()


def _rows(v: torch.Tensor, axis: int) -> torch.Tensor:
    return torch.movedim(v.detach(), axis % v.dim(), 0).reshape(v.shape[axis], -1)


class Repair:
    """REPAIR for one set of aligned endpoints (module docstring).

    ``Repair(model, spec, endpoints, batches)`` measures each endpoint's per-channel statistics once;
    ``repair(merged_state, weights)`` returns the merged state renormalised toward
    ``sum_i weights[i] * stats(endpoints[i])`` (and BN-reset when the model has BatchNorm);
    ``repair.at(state, lam)`` is the two-endpoint form, a ``transform`` for
    :func:`transfer.merge.evaluate_path`. ``batches`` must be re-iterable (a list or a DataLoader)."""

    def __init__(self, model: nn.Module, spec: PermSpec, endpoints: Sequence[Mapping[str, torch.Tensor]],
                 batches: Iterable[Any]):  # fmt: skip
        self.model, self.spec, self.batches = model, spec, reiterable(batches)
        self.batchnorm = has_batchnorm(model)
        self.skipped: dict[str, str] = {}
        candidates = {a.node for g in spec.free_groups for a in g.activations}
        self.runner = GraphRunner(model, candidates)
        first = next(iter(self.batches), None)
        if first is None:
            raise ValueError("REPAIR needs batches of data; got none")
        self.runner.run(*model_call(model, first))  # export once: the lifted graph names the layers' tensors
        self.sites = self._find_sites(candidates)
        self._axes = {s.node: s.axis for s in self.sites}
        self.endpoint_stats = [self._measure(e) for e in endpoints] if self.sites else []

    def _find_sites(self, candidates: set[str]) -> list[RepairSite]:
        traced = self.runner.traced
        assert traced is not None
        param_of, out = traced.param_of, []
        levels = self._levels(traced.graph, candidates)
        for node in traced.graph.nodes:
            axis = _PRODUCERS.get(op_name(node.target)) if node.op == "call_function" else None
            if axis is None or node.name not in candidates:
                continue
            w = node.args[1] if len(node.args) > 1 else None
            b = node.args[2] if len(node.args) > 2 else None
            wkey = param_of.get(getattr(w, "name", ""))
            bkey = param_of.get(getattr(b, "name", ""))
            if wkey is None:
                self.skipped[node.name] = "its weight is not a state-dict tensor"
            elif bkey is None:
                self.skipped[node.name] = f"{wkey} has no bias to take the shift"
            elif node.users and all(op_name(u.target) in ("aten.batch_norm", "aten._native_batch_norm_legit_no_training")
                                    for u in node.users):  # fmt: skip
                self.skipped[node.name] = "followed by BatchNorm (BN reset re-estimates it)"
            elif wkey in self.spec.aliases or bkey in self.spec.aliases:
                self.skipped[node.name] = "a tied tensor"
            else:
                out.append(RepairSite(node.name, axis, wkey, bkey, levels[node.name]))
        return out

    @staticmethod
    def _levels(graph, candidates: set[str]) -> dict[str, int]:
        """Per producing node, its level: sites of one level do not feed each other, so one pass over
        the data measures them all, each exactly, after every lower level has been corrected."""
        below: dict = {}  # node -> the highest level among the producer sites it depends on (-1: none)
        level: dict[str, int] = {}
        for node in graph.nodes:
            deepest = max((below.get(a, -1) for a in node.all_input_nodes), default=-1)
            if node.op == "call_function" and op_name(node.target) in _PRODUCERS and node.name in candidates:
                level[node.name] = deepest + 1
                deepest = deepest + 1
            below[node] = deepest
        return level

    def _measure(self, state: Mapping[str, torch.Tensor], nodes: set[str] | None = None
                 ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
        """Per-channel (mean, std) at the sites (or those in ``nodes``) of the model with ``state``."""
        stats = {s.node: _Stats() for s in self.sites if nodes is None or s.node in nodes}
        axes = {k: self._axes[k] for k in stats}

        def measure(name: str, v: torch.Tensor) -> None:
            if name in axes:
                stats[name].add(_rows(v, axes[name]))

        self.runner.load(state)
        for batch in self.batches:
            self.runner.run(*model_call(self.model, batch), measure)
        return {k: st.mean_std() for k, st in stats.items()}

    def _targets(self, weights: Sequence[float]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        if len(weights) != len(self.endpoint_stats):
            raise ValueError(f"{len(weights)} weights for {len(self.endpoint_stats)} endpoints")
        out = {}
        for s in self.sites:
            mean = sum(w * st[s.node][0] for w, st in zip(weights, self.endpoint_stats))
            std = sum(w * st[s.node][1] for w, st in zip(weights, self.endpoint_stats))
            out[s.node] = (mean, std)
        return out

    def __call__(self, merged: Mapping[str, torch.Tensor], weights: Sequence[float]) -> State:
        """``merged`` repaired toward the ``weights``-interpolation of the endpoints' statistics."""
        state = dict(merged)
        if self.batchnorm:
            state = reset_batchnorm(self.model, state, self.batches)
        if not self.sites:
            return state
        targets = self._targets(weights)
        for level in sorted({s.level for s in self.sites}):
            sites = [s for s in self.sites if s.level == level]
            measured = self._measure(state, {s.node for s in sites})
            for s in sites:
                mean, std = measured[s.node]
                t_mean, t_std = targets[s.node]
                w, b = state[s.weight], state[s.bias]
                scale, mean, t_mean = ((t_std / (std + _EPS)).to(w.device), mean.to(w.device), t_mean.to(w.device))
                state[s.weight] = (w.double() * scale.view(-1, *([1] * (w.dim() - 1)))).to(w.dtype)
                state[s.bias] = ((b.double() - mean) * scale + t_mean).to(b.dtype)
        if self.batchnorm:  # a corrected layer may feed a BatchNorm further on
            state = reset_batchnorm(self.model, state, self.batches)
        return state

    def at(self, state: Mapping[str, torch.Tensor], lam: float) -> State:
        """``self(state, [1 − lam, lam])``: REPAIR at point ``lam`` of a two-model path."""
        return self(state, [1.0 - lam, lam])
