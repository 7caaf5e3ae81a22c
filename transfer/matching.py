"""Permutation matching: LSA coordinate descent over the free groups of a PermSpec.

``Matcher(spec).add(target, source).solve()`` returns the permutation ``perm`` that
maximises ``sum_pairs w * <target, apply(spec, perm, source)>`` (equivalently minimises
``sum_pairs w * ||target - apply(spec, perm, source)||^2``, since permuting preserves norms).
Pairs may be weights (Git Re-Basin weight matching) or gradients (GMT / FGMT).

Index convention. ``permgraph.apply`` gathers: unit ``c`` of the result is unit ``p[c]`` of
the source. For one group with the other groups fixed the objective is
``sum_c A[c, p[c]]`` with ``A[i, j] = <row i of target, row j of (others-permuted) source>``,
so the LAP's column assignment of row ``c`` *is* ``p[c]``.

Why it is fast (the official code spends 72-83 % of its time in LSA, half of it redundant):

* A tensor touched by a single group on a single axis ("local": biases, BN affine, the
  first and last layers) contributes a constant ``rows(T) @ rows(S).T`` to that group's
  cost matrix whatever the other permutations are. It is summed into one ``n x n`` matrix
  at ``add()`` time, so pairs are never kept for it (mlp2 keeps no pair at all).
* Tensors touched by several groups ("coupled") keep their pairs in ``Matcher.pairs``: RAM
  (:class:`~transfer.pairs.MemoryPairs`, the default) or one safetensors file per pair
  (:class:`~transfer.pairs.DiskPairs`, streamed back one pair at a time, so the matcher's memory
  does not grow with the number of pairs: FGMT). A group's cost is the sum of one *term* per
  (coupled tensor, member); a term is cached with the permutations it was formed under and the
  pairs it has summed, so it is formed again only when one of those permutations changed, and a
  new pair is folded into it instead of re-summing the old ones. Terms sum pairs left to right,
  so cached, extended and fresh terms are the same bits, in RAM or from files; with one pair
  every cost is the bits the stacked implementation before them gave. On vgg11_bn that cut a
  weight-matching solve from 441 s to 87 s (same 26 sweeps, same result: most terms of the
  4096-unit classifier groups no longer recomputed; block-expanded members reshaped, not gathered
  element by element; ``docs/results/solvers.md``).
* A group is re-solved only when something its cost depends on changed since its last
  solve (new pairs, or the permutation of a group sharing a coupled tensor with it). With
  one group that is a single LSA per ``solve()``.
* Large LAPs (n >= 1024) go to an epsilon-scaling auction (``transfer.lap``) that solves mlp2's
  low-rank 4096 x 4096 gradient matrices to the same optimum 3x faster than scipy. With
  ``Matcher.warm`` set (the transfer engine sets it), each LAP of a group starts from the group's
  previous one: its assignment and the auction's prices (consecutive FGMT / GMT costs share most of
  their optimum; ``docs/results/transfer_cost.md``).

``init=SORTED`` starts every group from an LSA on rows sorted within themselves: a
row's multiset of values does not depend on the other groups' permutations, so this start
already finds a planted permutation exactly, where coordinate descent from the identity
gets stuck on residual nets (Git Re-Basin issue #8: 10/100 recoveries). ``solve()`` tries the
identity and this start by default and keeps the better (``DEFAULT_INIT``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch

from permgraph.apply import Permutation, apply, group_rows
from permgraph.spec import Group, Member, PermSpec
from transfer.descent import DEFAULT_INIT, SORTED, CoordinateDescent, InitArg, SolveStats, SortedStart
from transfer.lap import LapWarm
from transfer.pairs import MemoryPairs, PairSource
from transfer.terms import PairTerm, pair_term, permute_tensor, same_signature

__all__ = ["Matcher", "SolveStats", "DEFAULT_INIT", "SORTED", "SortedStart", "weight_matching", "permuted_distance"]

log = logging.getLogger(__name__)


class Matcher(CoordinateDescent):
    """Accumulates (target, source) pairs and solves for ``perm`` with ``apply(perm, source) ~ target``.

    A planted permutation of a small MLP's weights is found again:

    >>> import torch, permgraph
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2))
    >>> spec = permgraph.infer(model, (torch.randn(2, 4),))
    >>> source = model.state_dict()
    >>> planted = permgraph.random_permutation(spec, torch.Generator().manual_seed(0))
    >>> target = permgraph.apply(spec, planted, source)
    >>> perm = Matcher(spec).add(target, source).solve()
    >>> all(torch.equal(perm[g], planted[g]) for g in planted)
    True
    """

    def __init__(self, spec: PermSpec, pairs: PairSource | None = None):
        self.spec = spec
        self.groups: dict[str, Group] = {g.name: g for g in spec.free_groups}
        # groups whose permutation is per block of an outer group: (blocks, size) tensors
        self._blocks: dict[str, int] = {
            g.name: self.groups[g.indexed_by].size for g in spec.free_groups if g.indexed_by in self.groups
        }
        self._dependents: dict[str, set[str]] = {}
        for g in spec.free_groups:
            if g.name in self._blocks:
                self._dependents.setdefault(g.indexed_by, set()).add(g.name)
        self._members: dict[str, list[tuple[Group, Member]]] = {}
        for g in spec.free_groups:
            for m in g.members:
                self._members.setdefault(m.param, []).append((g, m))
        self._local: dict[str, str] = {}  # key -> the one group acting on it
        self._coupled: list[str] = []  # a list, not a set: summation order must not vary by process
        for key, entries in self._members.items():
            if len({(g.name, m.axis) for g, m in entries}) == 1 and entries[0][0].name not in self._blocks:
                self._local[key] = entries[0][0].name
            else:
                self._coupled.append(key)
        # per group, the (coupled key, member) contributions to its cost, in summation order
        self._terms: dict[str, list[tuple[str, Member]]] = {name: [] for name in self.groups}
        for key in self._coupled:
            for g, m in self._members[key]:
                self._terms[g.name].append((key, m))
        # groups whose permutation changes the cost matrix of each group
        self._neighbours: dict[str, tuple[str, ...]] = {name: () for name in self.groups}
        for key in self._coupled:
            for g, m in self._members[key]:
                other = {
                    h.name for h, hm in self._members[key] if not (h.name == g.name and hm.axis == m.axis)
                }
                self._neighbours[g.name] = tuple(sorted(set(self._neighbours[g.name]) | other))
        self._fixed: dict[str, torch.Tensor] = {}
        self.pairs: PairSource = pairs if pairs is not None else MemoryPairs()
        self._present: set[str] = set()  # coupled keys some pair holds
        self._cache: dict[tuple[str, str, Member], PairTerm] = {}
        self.version = 0
        self.num_pairs = 0
        self.stats = SolveStats()
        # per group, what its last LAP left for the next (transfer.lap.LapWarm): None = every LAP from
        # scratch. A dict makes each LAP of a group start from the one before it (the auction from its
        # prices): the transfer engine shares one per run across the matchers of its steps.
        self.warm: dict[str, LapWarm] | None = None
        self.certify = False  # True: every LAP answer exact with a dual certificate (transfer.lap_certified)

    # ---- accumulation ----------------------------------------------------------------
    def add(
        self,
        target: Mapping[str, torch.Tensor],
        source: Mapping[str, torch.Tensor],
        weight: float = 1.0,
    ) -> Matcher:
        """Add one pair of tensor dicts (weights or gradients) with weight ``weight``.

        Only floating tensors that the spec's free groups touch are used; both dicts must
        hold each of them with the shape the spec was inferred on. Local tensors are summed
        into their group's cost now; coupled ones go to ``self.pairs`` (RAM or files).
        """
        keys = self._pair_keys(target, source)
        w = float(weight)
        local_rows: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        kept_t: dict[str, torch.Tensor] = {}
        kept_s: dict[str, torch.Tensor] = {}
        for key in keys:
            t = target[key].detach()
            s = source[key].detach().to(t.dtype)
            if key in self._local:
                rows = local_rows.setdefault(self._local[key], ([], []))
                for _, m in self._members[key]:
                    rows[0].append(group_rows(t, m))
                    rows[1].append(group_rows(s, m))
            else:
                kept_t[key] = t * w if w != 1.0 else t
                kept_s[key] = s
        if kept_t:
            self.pairs.append(kept_t, kept_s)
            self._present.update(kept_t)
        # one matmul per group over all its local tensors: no n x n temporary per tensor
        for g, (t_rows, s_rows) in local_rows.items():
            t_cat = torch.cat(t_rows, dim=1) if len(t_rows) > 1 else t_rows[0]
            s_cat = torch.cat(s_rows, dim=1) if len(s_rows) > 1 else s_rows[0]
            if w != 1.0:
                t_cat = t_cat * w
            if g in self._fixed:
                self._fixed[g].addmm_(t_cat, s_cat.T)
            else:
                self._fixed[g] = t_cat @ s_cat.T
        self.version += 1
        self.num_pairs += 1
        return self

    def _pair_keys(self, target: Mapping[str, torch.Tensor], source: Mapping[str, torch.Tensor]) -> list[str]:
        keys = []
        for key in self._members:
            canonical = self.spec.aliases.get(key)
            if canonical is not None and canonical in target:
                continue  # tied weight: count its storage once
            if key not in target and key not in source:
                continue
            if key not in target or key not in source:
                side = "target" if key not in target else "source"
                raise KeyError(f"{key!r} is in one dict of the pair but missing from the {side}")
            t, s = target[key], source[key]
            if not (torch.is_floating_point(t) and torch.is_floating_point(s)):
                continue
            expected = self.spec.param_shapes.get(canonical or key)
            for side, x in (("target", t), ("source", s)):
                if expected is not None and tuple(x.shape) != tuple(expected):
                    raise ValueError(
                        f"{key!r} of the {side} has shape {tuple(x.shape)} but the spec was inferred "
                        f"with {tuple(expected)}: the pair does not come from the spec's architecture"
                    )
            if t.shape != s.shape:
                raise ValueError(f"{key!r}: target shape {tuple(t.shape)} != source shape {tuple(s.shape)}")
            keys.append(key)
        if not keys:
            raise ValueError(
                "the pair shares no tensor with the spec's free groups: wrong model, or empty dicts"
            )
        return keys

    # ---- cost matrices -----------------------------------------------------------------
    def _moves(self, name: str, key: str, m: Member, perm: Permutation) -> tuple[list, list]:
        """The permutations a (key, member) term of group ``name`` depends on: per-block ones of
        ``name``'s dependents, taken off the target (they belong to block *slots*, which the outer
        permutation being solved fills), and every other one, put on the source."""
        dependents = self._dependents.get(name, set())
        on_target = [
            (hm, torch.argsort(perm[h.name], dim=-1))
            for h, hm in self._members[key]
            if h.name in dependents and h.name in perm
        ]
        on_source = [
            (hm, perm[h.name])
            for h, hm in self._members[key]
            if not (h.name == name and hm.axis == m.axis) and h.name in perm and h.name not in dependents
        ]
        return on_target, on_source

    def _terms_of(self, name: str, perm: Permutation | None) -> list[torch.Tensor]:
        """The coupled terms of group ``name``'s cost, in summation order: for each (key, member),
        ``sum_pairs rows(target) @ rows(permuted source).T`` (``perm=None``: the sorted-rows term).

        A term is cached with the permutations it was formed under and the number of pairs it
        has summed: it is formed again only when one of those permutations changed, and pairs
        added since are folded in one by one. Pairs are summed left to right in every case, so a
        cached, extended or fresh term is the same tensor, bit for bit, in RAM or streamed."""
        n_pairs = len(self.pairs)
        todo: dict[tuple[str, Member], tuple[PairTerm, list, list]] = {}
        terms: list[PairTerm] = []
        for key, m in self._terms[name]:
            if key not in self._present:
                continue
            moves = self._moves(name, key, m, perm) if perm is not None else ([], [])
            signature = tuple(p for _, p in moves[0] + moves[1])
            cache_key = ("sorted" if perm is None else "cost", key, m)
            term = self._cache.get(cache_key)
            if term is None or term.count > n_pairs or not same_signature(term.signature, signature):
                term = self._cache[cache_key] = PairTerm(tuple(p.clone() for p in signature))
            terms.append(term)
            if term.count < n_pairs:
                todo[(key, m)] = (term, *moves)
        if todo:
            start = min(term.count for term, _, _ in todo.values())
            for i, (t_pair, s_pair) in enumerate(self.pairs.read({k for k, _ in todo}, start), start):
                for (key, m), (term, on_target, on_source) in todo.items():
                    if i >= term.count and key in t_pair:
                        prod = pair_term(t_pair[key], s_pair[key], m, on_target, on_source, perm is None)
                        term.matrix = prod if term.matrix is None else term.matrix.add_(prod)
            for term, _, _ in todo.values():
                term.count = n_pairs
        return [term.matrix for term in terms if term.matrix is not None]

    def _cost(self, name: str, perm: Permutation) -> torch.Tensor:
        """A[i, j] = sum_pairs w <target rows i, source rows j with every other permutation applied>.

        For a per-block group the result is ``(blocks, n, n)``, one matrix per block of the
        (already applied) outer permutation."""
        return self._sum(name, self._terms_of(name, perm))

    def _sorted_cost(self, name: str) -> torch.Tensor:
        """Cost from rows sorted within each pair: invariant to every other permutation."""
        return self._sum(name, self._terms_of(name, None))

    def _sum(self, name: str, terms: list[torch.Tensor]) -> torch.Tensor:
        """The group's local cost plus ``terms``. Where there is only one of them it is returned
        itself, not a copy (a 4096-unit FGMT cost: 64 MiB a solve): callers read it, never write."""
        parts = [m for m in (self._fixed.get(name), *terms) if m is not None]
        if not parts:
            n = self.groups[name].size
            shape = (n, n) if name not in self._blocks else (self._blocks[name], n, n)
            return torch.zeros(*shape, dtype=torch.float64)
        a = parts[0]
        for term in parts[1:]:
            a = a + term
        return a

    def objective(self, perm: Permutation) -> float:
        """``sum_pairs w <target, apply(perm, source)>`` up to a perm-independent constant."""
        total = 0.0
        for name, a in self._fixed.items():
            p = perm.get(name)
            idx = torch.arange(a.shape[0])
            total += float(a[idx, p if p is not None else idx].double().sum())
        keys = [key for key in self._coupled if key in self._present]
        entries = {key: [(m, perm[g.name]) for g, m in self._members[key] if g.name in perm] for key in keys}
        sums = dict.fromkeys(keys, 0.0)
        for t_pair, s_pair in self.pairs.read(keys):  # one pair in memory at a time
            for key in t_pair:
                moved = permute_tensor(s_pair[key], entries[key])
                sums[key] += float((t_pair[key].double() * moved.double()).sum())
        for key in keys:  # the order of the sum before pairs were streamed: same float for one pair
            total += sums[key]
        return total

    @property
    def held_bytes(self) -> int:
        """Bytes of tensors the matcher holds in RAM between solves: the local costs, the cached
        coupled terms (both independent of the number of pairs) and ``self.pairs``' resident bytes
        (all pairs for :class:`MemoryPairs`, none for :class:`DiskPairs`)."""
        tensors = list(self._fixed.values()) + [t.matrix for t in self._cache.values() if t.matrix is not None]
        return sum(x.numel() * x.element_size() for x in tensors) + self.pairs.resident_bytes

    # ---- solving -----------------------------------------------------------------------
    @property
    def separable(self) -> bool:
        """True when no cost matrix depends on another group's permutation (one LSA each is exact)."""
        return not any(self._neighbours.values())


def weight_matching(
    spec: PermSpec,
    target_state: Mapping[str, torch.Tensor],
    source_state: Mapping[str, torch.Tensor],
    *,
    init: InitArg | list[InitArg] = DEFAULT_INIT,
    **solve_kw,
) -> Permutation:
    """Git Re-Basin weight matching: the ``perm`` with ``apply(spec, perm, source_state)``
    closest to ``target_state``. Tries Git Re-Basin's identity start and the sorted-rows start
    (exact on planted permutations, see the module docstring) and keeps the better."""
    return Matcher(spec).add(target_state, source_state).solve(init=init, **solve_kw)


def permuted_distance(
    spec: PermSpec,
    perm: Permutation,
    target_state: Mapping[str, torch.Tensor],
    source_state: Mapping[str, torch.Tensor],
) -> float:
    """L2 distance over the floating tensors the two dicts share, after permuting the source."""
    moved = apply(spec, perm, source_state)
    total = 0.0
    for key, t in target_state.items():
        s = moved.get(key)
        if s is None or not torch.is_floating_point(t) or key in spec.aliases:
            continue
        total += float((t.double() - s.double()).pow(2).sum())
    return total**0.5
