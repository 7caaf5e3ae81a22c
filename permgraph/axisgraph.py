"""The axis graph: which units of which tensor axes must share one permutation.

Every axis of every value in the traced graph gets a *layout*: a tree whose leaves are
*atoms* (sets of units that move as one permutation) and whose inner nodes say how the
axis is built from them:

- ``Prod(a, b)``: row-major product, unit ``(i, j)`` sits at ``i * |b| + j``. ``flatten``
  after a conv gives ``Prod(channels, h, w)``; a head split gives ``Prod(heads, dim)``.
- ``Sum(a, b)``: concatenation, the units of ``a`` first. ``cat`` and ``split`` give these.

Ties between axes are unions of atoms (``networkx.utils.UnionFind``). When two layouts
must agree but are cut differently, an atom is *refined* into a finer Prod or Sum; a
refinement only restricts which permutations are allowed, so it is always sound. Where
two layouts cannot be reconciled, every atom involved is blocked. Every tie is also
recorded as an edge of a ``networkx.Graph`` over atoms, for inspection and drawing.

A free group of the final spec is one unrefined, unblocked root atom.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
from networkx.utils import UnionFind

__all__ = ["Atom", "AxisGraph", "Layout", "LayoutMismatch", "Prod", "Region", "Sum"]

Atom = int


@dataclass(frozen=True)
class Prod:
    """An axis that is the row-major product of its factors (the last varies fastest)."""

    factors: tuple[Layout, ...]


@dataclass(frozen=True)
class Sum:
    """An axis that is the concatenation of its parts, in order."""

    parts: tuple[Layout, ...]


Layout = Atom | Prod | Sum


@dataclass(frozen=True)
class Region:
    """A strided block of an axis: ``offset + sum_k i_k * stride_k`` over ``dims``,
    each dim ``(atom, size, stride)``. Every leaf of a layout lives in such regions."""

    offset: int
    dims: tuple[tuple[Atom, int, int], ...]


class LayoutMismatch(Exception):
    """Two layouts of one axis cannot be reconciled; the caller blocks them."""


class AxisGraph:
    """Atoms, their union-find, refinements, roles and block reasons.

    A head split ties a 64-unit projection axis to (4 heads, 16 dims): the atom is refined
    into the product, and blocking one factor leaves the other free.

    >>> g = AxisGraph()
    >>> proj, heads, dims = g.atom(64, "q.weight axis 0"), g.atom(4, "heads"), g.atom(16, "dims")
    >>> g.unify(proj, Prod((heads, dims)), "view")
    >>> g.resolve(proj) == Prod((heads, dims))
    True
    >>> g.block(dims, "rotary embedding fixes each dim")
    >>> g.blocked_reasons(heads), g.blocked_reasons(dims)
    ([], ['rotary embedding fixes each dim'])
    """

    MAX_REASONS = 3

    def __init__(self) -> None:
        self._uf = UnionFind()
        self._size: dict[Atom, int] = {}
        self._refined: dict[Atom, Layout] = {}
        self._blocked: dict[Atom, list[str]] = {}
        self._roles: dict[Atom, set[str]] = {}
        self.origin: dict[Atom, str] = {}
        self.graph = nx.Graph()
        # An axis of positions whose slices carry layouts of their own (a fused q/k/v
        # projection reshaped to (3, heads, dim)): for such an atom ``t``, ``slices[t][i]``
        # maps each stand-in atom of the tensor to its layout in slice ``i`` (``add_slices``).
        self.slices: dict[Atom, tuple[dict[Atom, Layout], ...]] = {}
        self._stands_for: dict[Atom, list[Layout]] = {}

    # ---- atoms ---------------------------------------------------------------------
    def atom(self, size: int, origin: str, blocked: str | None = None, role: str | None = None) -> Atom:
        """A new set of ``size`` units. ``origin`` says where it comes from (shown to users);
        an atom of size 1 is blocked, there is nothing to permute."""
        a = len(self._size)
        self._size[a] = int(size)
        self._uf[a]  # register
        self.origin[a] = origin
        self.graph.add_node(a, size=int(size), origin=origin)
        if blocked is not None or size <= 1:
            self._blocked[a] = [blocked or "size 1"]
        if role:
            self._roles[a] = {role}
        return a

    def root(self, a: Atom) -> Atom:
        """The representative of the atoms tied to ``a``."""
        return self._uf[a]

    def size(self, layout: Layout) -> int:
        """The number of units along a layout."""
        if isinstance(layout, int):
            return self._size[layout]
        if isinstance(layout, Prod):
            out = 1
            for f in layout.factors:
                out *= self.size(f)
            return out
        return sum(self.size(p) for p in layout.parts)

    def blocked_reasons(self, a: Atom) -> list[str]:
        """Why ``a``'s units may not move (at most ``MAX_REASONS``); empty when they may."""
        return self._blocked.get(self.root(a), [])

    def roles(self, a: Atom) -> set[str]:
        """Names rules gave ``a`` (``heads``, ``conv groups``), used to label groups."""
        return self._roles.get(self.root(a), set())

    def add_role(self, layout: Layout, role: str) -> None:
        """Label every leaf of ``layout``; labels change no constraint."""
        for leaf in self.leaves(layout):
            self._roles.setdefault(leaf, set()).add(role)

    # ---- resolution ----------------------------------------------------------------
    def resolve(self, layout: Layout) -> Layout:
        """Replace atoms by their roots' refinements, flatten nested Prod/Sum, drop
        size-1 factors and empty parts. Leaves of the result are unrefined roots."""
        if isinstance(layout, int):
            r = self.root(layout)
            ref = self._refined.get(r)
            return r if ref is None else self.resolve(ref)
        if isinstance(layout, Prod):
            factors: list[Layout] = []
            for f in layout.factors:
                rf = self.resolve(f)
                if isinstance(rf, Prod):
                    factors.extend(rf.factors)
                elif self.size(rf) != 1:
                    factors.append(rf)
            if not factors:
                return self.resolve(layout.factors[0]) if layout.factors else self.atom(1, "empty")
            return factors[0] if len(factors) == 1 else Prod(tuple(factors))
        parts: list[Layout] = []
        for p in layout.parts:
            rp = self.resolve(p)
            if isinstance(rp, Sum):
                parts.extend(rp.parts)
            elif self.size(rp) != 0:
                parts.append(rp)
        if not parts:
            return self.atom(0, "empty", blocked="empty axis")
        return parts[0] if len(parts) == 1 else Sum(tuple(parts))

    def leaves(self, layout: Layout) -> list[Atom]:
        """The unrefined root atoms a layout is built from, in axis order."""
        r = self.resolve(layout)
        if isinstance(r, int):
            return [r]
        children = r.factors if isinstance(r, Prod) else r.parts
        out: list[Atom] = []
        for c in children:
            out.extend(self.leaves(c))
        return out

    def regions(self, layout: Layout) -> list[Region]:
        """Where each leaf of ``layout`` sits along the axis (see ``Region``)."""
        r = self.resolve(layout)
        if isinstance(r, int):
            return [Region(0, ((r, self._size[r], 1),))]
        if isinstance(r, Sum):
            out: list[Region] = []
            offset = 0
            for p in r.parts:
                out.extend(Region(offset + reg.offset, reg.dims) for reg in self.regions(p))
                offset += self.size(p)
            return out
        combos = [Region(0, ())]
        stride = self.size(r)
        for f in r.factors:
            stride //= self.size(f)
            new = []
            for base in combos:
                for reg in self.regions(f):
                    dims = tuple((a, n, s * stride) for a, n, s in reg.dims)
                    new.append(Region(base.offset + reg.offset * stride, base.dims + dims))
            combos = new
        return combos

    # ---- slices with layouts of their own ---------------------------------------------
    def add_slices(self, position: Atom, slices: tuple[dict[Atom, Layout], ...]) -> None:
        """Record that slice ``i`` along the axis ``position`` has, in place of each stand-in
        atom ``s``, the layout ``slices[i][s]``; ``select`` / ``unbind`` read it. A stand-in
        is only ever moved around; should any op tie, cut or block it, it is first tied to
        every layout it stands for (``_collapse``), which is what one layout for all slices
        would have said: sound, only coarser."""
        self.slices[position] = slices
        for s in slices[0] if slices else ():
            self._stands_for[s] = [piece[s] for piece in slices]

    def _collapse(self, layout: Layout) -> None:
        if not self._stands_for:
            return
        for leaf in self.leaves(layout):
            real = self._stands_for.pop(leaf, None)
            for r in real or ():
                self.unify(leaf, r, "slices of one tensor used together")

    # ---- constraints ---------------------------------------------------------------
    def block(self, layout: Layout, reason: str) -> None:
        """Forbid permuting every leaf of ``layout``, remembering ``reason``."""
        self._collapse(layout)
        for leaf in self.leaves(layout):
            reasons = self._blocked.setdefault(leaf, [])
            if len(reasons) < self.MAX_REASONS and reason not in reasons:
                reasons.append(reason)

    def unify(self, a: Layout, b: Layout, why: str) -> None:
        """Tie two layouts of the same length: unit ``i`` of one moves with unit ``i`` of
        the other. Irreconcilable layouts are blocked with ``why``."""
        self._collapse(a)
        self._collapse(b)
        ra, rb = self.resolve(a), self.resolve(b)
        if self.size(ra) != self.size(rb):
            self.block(ra, f"{why}: axis lengths differ")
            self.block(rb, f"{why}: axis lengths differ")
            return
        try:
            self._unify(ra, rb, why)
        except LayoutMismatch as e:
            reason = f"{why}: incompatible layouts ({e})"
            self.block(a, reason)
            self.block(b, reason)

    def split_prod(self, layout: Layout, sizes: list[int], origin: str) -> list[Layout]:
        """Cut a layout row-major into consecutive factors of the given sizes."""
        self._collapse(layout)
        r = self.resolve(layout)
        factors = list(r.factors) if isinstance(r, Prod) else [r]
        out: list[Layout] = []
        for want in sizes:
            taken: list[Layout] = []
            have = 1
            while have < want:
                if not factors:
                    raise LayoutMismatch(f"cannot cut {self.size(r)} into {sizes}")
                f = factors.pop(0)
                fs = self.size(f)
                if have * fs <= want:
                    taken.append(f)
                    have *= fs
                    continue
                need = want // have
                if want % have or fs % need:
                    raise LayoutMismatch(f"cannot cut a factor of {fs} to fit {sizes}")
                outer, inner = self._cut_prod(f, need, fs // need, origin)
                taken.append(outer)
                factors.insert(0, inner)
                have = want
            out.append(taken[0] if len(taken) == 1 else Prod(tuple(taken)))
        return out

    def split_sum(self, layout: Layout, sizes: list[int], origin: str) -> list[Layout]:
        """Cut a layout into consecutive pieces of the given lengths (``cat``/``split``)."""
        self._collapse(layout)
        r = self.resolve(layout)
        parts = list(r.parts) if isinstance(r, Sum) else [r]
        out: list[Layout] = []
        for want in sizes:
            taken: list[Layout] = []
            have = 0
            while have < want:
                if not parts:
                    raise LayoutMismatch(f"cannot split {self.size(r)} into {sizes}")
                p = parts.pop(0)
                ps = self.size(p)
                if have + ps <= want:
                    taken.append(p)
                    have += ps
                    continue
                head, tail = self._cut_sum(p, want - have, ps - (want - have), origin)
                taken.append(head)
                parts.insert(0, tail)
                have = want
            if want == 0:
                out.append(self.atom(0, origin))
            else:
                out.append(taken[0] if len(taken) == 1 else Sum(tuple(taken)))
        return out

    # ---- internals -----------------------------------------------------------------
    def _union(self, a: Atom, b: Atom, why: str) -> None:
        ra, rb = self.root(a), self.root(b)
        self.graph.add_edge(a, b, why=why)
        if ra == rb:
            return
        self._uf.union(ra, rb)
        r = self.root(ra)
        other = rb if r == ra else ra
        reasons = self._blocked.pop(other, None)
        if reasons:
            merged = self._blocked.setdefault(r, [])
            for x in reasons:
                if len(merged) < self.MAX_REASONS and x not in merged:
                    merged.append(x)
        roles = self._roles.pop(other, None)
        if roles:
            self._roles.setdefault(r, set()).update(roles)

    def _refine(self, a: Atom, layout: Layout) -> None:
        r = self.root(a)
        assert r not in self._refined, "refining a refined atom"
        self._refined[r] = layout
        reasons = self._blocked.get(r)
        roles = self._roles.get(r)
        for leaf in self.leaves(layout):
            self.graph.add_edge(r, leaf, why="refined")
            for reason in reasons or ():
                self.block(leaf, reason)
            if roles:
                self._roles.setdefault(leaf, set()).update(roles)

    def _cut_prod(self, layout: Layout, outer: int, inner: int, origin: str) -> tuple[Layout, Layout]:
        if isinstance(layout, int):
            o = self.atom(outer, f"{origin} (outer {outer} of {outer * inner})")
            i = self.atom(inner, f"{origin} (inner {inner} of {outer * inner})")
            self._refine(layout, Prod((o, i)))
            return o, i
        raise LayoutMismatch("cannot factor a concatenation")

    def _cut_sum(self, layout: Layout, head: int, tail: int, origin: str) -> tuple[Layout, Layout]:
        if isinstance(layout, int):
            h = self.atom(head, f"{origin} (first {head} of {head + tail})")
            t = self.atom(tail, f"{origin} (last {tail} of {head + tail})")
            self._refine(layout, Sum((h, t)))
            return h, t
        if isinstance(layout, Prod):
            first, rest = layout.factors[0], Prod(layout.factors[1:])
            rest_size = self.size(rest)
            if head % rest_size:
                raise LayoutMismatch("split falls inside a product's inner factor")
            a, b = self.split_sum(first, [head // rest_size, tail // rest_size], origin)
            return Prod((a, *layout.factors[1:])), Prod((b, *layout.factors[1:]))
        raise LayoutMismatch("cannot split")

    def _unify(self, a: Layout, b: Layout, why: str) -> None:
        a, b = self.resolve(a), self.resolve(b)
        if isinstance(a, int) and isinstance(b, int):
            self._union(a, b, why)
            return
        if isinstance(a, int):
            self._refine(a, b)
            return
        if isinstance(b, int):
            self._refine(b, a)
            return
        if isinstance(a, Sum) or isinstance(b, Sum):
            if not isinstance(a, Sum):
                a, b = b, a
            sizes = [self.size(p) for p in a.parts]
            pieces = self.split_sum(b, sizes, why)
            for pa, pb in zip(a.parts, pieces):
                self._unify(pa, pb, why)
            return
        sizes = [self.size(f) for f in a.factors]
        pieces = self.split_prod(b, sizes, why)
        for fa, fb in zip(a.factors, pieces):
            self._unify(fa, fb, why)
