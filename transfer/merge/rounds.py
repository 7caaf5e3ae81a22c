"""Activation matching in rounds: groups whose values also move other groups, once those are solved.

Round 0 correlates every group that has a *clean* activation (no other free group moves inside the
value). A value that also carries other groups' units (attention's ``(B, T, heads, dim)``) compares
samples those groups reorder, so it is read only once they are solved: B's value is first permuted by
their permutations (``permgraph.apply`` on a spec whose members are the graph values), and then it is
a clean value like any other. When no group is ready that way (heads and their dims wait on each
other), a group whose value holds exactly one unsolved other group ``h`` on another whole axis is
matched by a similarity that ``h``'s permutation cannot change: for units ``i`` of A and ``j`` of B,
the squared Frobenius norm of the ``h x h`` correlation matrix between their ``h``-vectors over the
samples (permuting ``h`` on either side permutes that matrix's rows or columns, not its norm). Heads
come out of that round, their dims out of the next. What no round reaches is weight-matched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from permgraph.activations import GraphRunner, group_activations
from permgraph.apply import Permutation, apply
from permgraph.spec import Activation, Group, PermSpec

__all__ = ["Round", "value_spec", "next_round", "round_similarities"]


@dataclass(frozen=True)
class Round:
    """Groups to match in one pass over the data: ``kind`` "correlation" (their sites' other groups are
    solved) or "invariant" (each site holds one unsolved other group, on axis ``other_axis[node]``)."""

    kind: str
    sites: dict[str, list[Activation]]
    other_axis: dict[tuple[str, str], int]


def value_spec(spec: PermSpec) -> PermSpec:
    """A spec over graph values: each free group's activations as its members (``param`` = the node)."""
    groups = tuple(Group(g.name, g.size, tuple(a.as_member() for a in g.activations))
                   for g in spec.free_groups if g.activations and not g.indexed_by)  # fmt: skip
    return PermSpec(groups=groups)


def _plain(a: Activation) -> bool:
    return a.index_dim is None and a.sizes == (a.axis_size,) and a.offset == 0


def next_round(spec: PermSpec, solved: Mapping[str, Any]) -> Round | None:
    """The next groups activation matching can read, given the ``solved`` ones (module docstring)."""
    at: dict[str, dict[str, Activation]] = {}
    for g in spec.free_groups:
        for a in g.activations:
            at.setdefault(a.node, {})[g.name] = a
    todo = [g for g in spec.free_groups if g.name not in solved and not g.indexed_by and g.activations]
    todo = [g for g in todo if not any(h.indexed_by == g.name for h in spec.free_groups)]
    ready = {}
    for g in todo:
        sites = [a for a in g.activations if a.index_dim is None and all(m in solved and m in at[a.node] for m in a.mixed)]
        if sites:
            ready[g.name] = sites
    if ready:
        return Round("correlation", ready, {})
    other_axis: dict[tuple[str, str], int] = {}
    for g in todo:
        sites = []
        for a in g.activations:
            open_ = [m for m in a.mixed if m not in solved]
            known = all(m in at[a.node] for m in a.mixed)
            if len(open_) == 1 and known and _plain(a) and _plain(at[a.node][open_[0]]):
                other = at[a.node][open_[0]]
                if other.axis != a.axis:
                    sites.append(a)
                    other_axis[(g.name, a.node)] = other.axis
        if sites:
            ready[g.name] = sites
    return Round("invariant", ready, other_axis) if ready else None


class _Moments:
    """Running sums for the correlation of two ``(units, samples)`` streams."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, xa: torch.Tensor, xb: torch.Tensor) -> None:
        xa, xb = xa.double(), xb.double()
        if self.count == 0:
            self.sa, self.sb = torch.zeros_like(xa[:, 0]), torch.zeros_like(xb[:, 0])
            self.qa, self.qb = torch.zeros_like(self.sa), torch.zeros_like(self.sb)
            self.cross = torch.zeros(xa.shape[0], xb.shape[0], dtype=torch.float64, device=xa.device)
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
        return (self.cross / n - torch.outer(ma, mb)) / (torch.outer(sa, sb) + 1e-12)


class _Invariant:
    """Running sums for ``sim[i, j] = || corr(A_i, B_j) ||_F^2`` of ``(units, h, samples)`` streams."""

    def __init__(self) -> None:
        self.m = _Moments()

    def add(self, xa: torch.Tensor, xb: torch.Tensor) -> None:
        n, h = xa.shape[:2]
        self.m.add(xa.reshape(n * h, -1), xb.reshape(n * h, -1))
        self.shape = (n, h)

    def similarity(self) -> torch.Tensor:
        n, h = self.shape
        c = self.m.correlation().reshape(n, h, n, h)
        return (c * c).sum((1, 3))


def _rows3(value: torch.Tensor, a: Activation, other_axis: int) -> torch.Tensor:
    """``(units, h, samples)``: the site's units first, the other group's axis second."""
    x = torch.movedim(value.detach(), (a.axis, other_axis), (0, 1))
    return x.reshape(x.shape[0], x.shape[1], -1)


def round_similarities(
    runner: GraphRunner, spec: PermSpec, states: tuple[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]],
    batches: Iterable[Any], rnd: Round, solved: Permutation, call,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """One pass over ``batches``: per group of the round, its ``(n, n)`` similarity of A's unit ``i``
    and B's unit ``j`` (B's values first permuted by the ``solved`` groups). ``call(batch)`` gives the
    model's ``(args, kwargs)``."""
    vspec = value_spec(spec)
    known = {g: p for g, p in solved.items() if any(g2.name == g for g2 in vspec.groups)}
    corr = rnd.kind == "correlation"  # else one _Invariant per site: their other groups may differ in size
    stats: dict[str, Any] = {g: _Moments() if corr else [_Invariant() for _ in ss] for g, ss in rnd.sites.items()}
    seen = False
    for batch in batches:
        args, kwargs = call(batch)
        vals = []
        for state in states:
            values: dict[str, torch.Tensor] = {}
            runner.load(state).run(args, kwargs, values.__setitem__)
            vals.append(values)
        if known:
            vals[1] = dict(apply(vspec, known, vals[1]))
        for g, sites in rnd.sites.items():
            if corr:
                stats[g].add(*(group_activations(spec.group(g), sites, v) for v in vals))
                continue
            for a, inv in zip(sites, stats[g]):
                inv.add(*(_rows3(v[a.node], a, rnd.other_axis[(g, a.node)]) for v in vals))
        seen = True
    if not seen:
        raise ValueError("activation matching got no batches")
    if corr:
        return {g: s.correlation().cpu() for g, s in stats.items()}
    return {g: sum(inv.similarity() for inv in invs).cpu() for g, invs in stats.items()}
