"""The structural half of ``check_spec``: a hand spec's permutations against the inferred groups.

``resolve`` checks a hand spec against the state dict (names, ranks, sizes, one permutation per
axis); ``compare`` checks each hand permutation against the model's inferred spec: it must be a
union of whole free groups, cut into units the way they are (head blocks, slices, block-expanded
channels), and touch no blocked axis (model outputs and inputs). Two axes belong together when
their units are the same sets of positions, so a hand member matches an inferred member exactly
or not at all; every finding names the concrete (tensor, axis) pairs of the inferred spec.
"""

from __future__ import annotations

import difflib
import math
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import Enum
from functools import lru_cache
from typing import Any

import torch

from permgraph.apply import member_positions
from permgraph.handspec import HandSpec
from permgraph.spec import Group, Member, PermSpec

__all__ = ["Finding", "FindingKind", "Resolved", "compare", "json_float", "resolve"]

Shapes = Mapping[str, tuple[int, ...]]


class FindingKind(str, Enum):
    """What is wrong (or missing) with a hand-written spec. Errors make it unsound; the last three
    kinds are notes: the spec is sound but leaves some of the model's symmetry unused."""

    UNKNOWN_NAME = "unknown name"
    WRONG_RANK = "wrong rank"
    SIZE_MISMATCH = "size mismatch"
    DUPLICATE_KEY = "duplicate key"
    DICTS_DISAGREE = "dicts disagree"
    CONFLICT = "two permutations on one axis"
    LEAVES_OUT_TIED = "leaves out a tied tensor"
    PERMUTES_OUTPUT = "permutes a model output"
    PERMUTES_FIXED = "permutes a fixed axis"
    MIXES_HEADS = "mixes attention heads"
    BREAKS_STRUCTURE = "breaks the axis structure"
    BREAKS_FUNCTION = "breaks the function"
    UNUSED_AXIS = "axis the model does not use"
    TIES_INDEPENDENT = "ties independent groups"
    MISSING_SYMMETRY = "missing symmetry"

    @property
    def is_error(self) -> bool:
        """Whether a finding of this kind makes the spec unsound (the others are notes)."""
        return self not in (FindingKind.UNUSED_AXIS, FindingKind.TIES_INDEPENDENT, FindingKind.MISSING_SYMMETRY)


@dataclass(frozen=True)
class Finding:
    """One problem: its kind, the hand permutation (None when it concerns no single one), the
    (tensor, axis) pairs involved (``"name axis k"``), a line to act on, and how far permuting
    ``perm`` alone moved the outputs relative to their size (None when not run)."""

    kind: FindingKind
    perm: str | None
    members: tuple[str, ...]
    message: str
    change: float | None = None

    @property
    def severity(self) -> str:
        """``"error"`` (unsound) or ``"note"`` (sound, symmetry left unused)."""
        return "error" if self.kind.is_error else "note"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data: the kind by name and by label."""
        return {"kind": self.kind.name.lower(), "label": self.kind.value, "severity": self.severity,
                "perm": self.perm, "members": list(self.members), "message": self.message,
                "change": json_float(self.change)}  # fmt: skip


def json_float(x: float | None) -> float | str | None:
    """A float for JSON: ``"inf"`` where JSON has no number (an integer output changed)."""
    return x if x is None or math.isfinite(x) else "inf"


def where(m: Member) -> str:
    """``"name axis k"``: how findings name a (tensor, axis) pair."""
    return f"{m.param} axis {m.axis}"


def _listed(ms: list[Member], limit: int = 3) -> str:
    names = list(dict.fromkeys(where(m) for m in ms))
    if len(names) > limit:
        return ", ".join(names[:limit]) + f" and {len(names) - limit} more"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


@dataclass(frozen=True)
class Resolved:
    """A hand spec fitted to the state dict: per permutation its members as grids (``members``:
    those that fit, all of one size, ``sizes``; ``odd``: those of another size), and what did not fit."""

    members: dict[str, tuple[Member, ...]]
    odd: dict[str, tuple[Member, ...]]
    sizes: dict[str, int]
    findings: tuple[Finding, ...]


def _perms_naming(hand: HandSpec, name: str) -> list[str]:
    return [p for p, axes in hand.perms.items() if any(a.param == name for a in axes)]


def _spec_level(hand: HandSpec, shapes: Shapes) -> list[Finding]:
    """Findings about the spec's entries rather than one axis: repeated keys, ranks, the two dicts."""
    out = []
    for d in hand.duplicates:
        named = _perms_naming(hand, d.key) or ([d.key] if d.key in hand.perms else [None])
        out.append(Finding(FindingKind.DUPLICATE_KEY, named[0], (d.key,), (
            f"{hand.source}: {d.describe()}, so the earlier entries are lost; merge them into one")))
    for name, rank in hand.ranks.items():
        if name in shapes and rank != len(shapes[name]):
            shape = shapes[name]
            out.append(Finding(FindingKind.WRONG_RANK, (_perms_naming(hand, name) or [None])[0], (name,), (
                f"axes_to_perm gives {name} {rank} entries, but it is {len(shape)}-D (shape {shape}); give one "
                "permutation name or None per axis")))  # fmt: skip
    for perm, name, axis, lacking in hand.disagreements:
        given = "axes_to_perm" if lacking == "perm_to_axes" else "perm_to_axes"
        out.append(Finding(FindingKind.DICTS_DISAGREE, perm, (f"{name} axis {axis}",), (
            f"{given} puts {name} axis {axis} under {perm} but {lacking} does not; matching reads one dict "
            "and permuting the other, so make them agree")))  # fmt: skip
    return out


def _grid(hand_axis: Any, shape: tuple[int, ...]) -> Member:
    if hand_axis.grid is not None:
        return hand_axis.grid
    n = shape[hand_axis.axis]
    return Member(hand_axis.param, hand_axis.axis, n, (n,), (1,), 0)


def _fits(grid: Member, n: int) -> bool:
    if grid.axis_size != n or not grid.sizes or not 0 <= grid.group_dim < len(grid.sizes):
        return False
    pos = member_positions(grid)
    return pos.numel() == 0 or (int(pos.min()) >= 0 and int(pos.max()) < n)


def resolve(hand: HandSpec, shapes: Shapes) -> Resolved:
    """Fit every hand axis to the state dict; findings for names, axes and sizes that do not."""
    findings = _spec_level(hand, shapes)
    rank_reported = {f.members[0] for f in findings if f.kind is FindingKind.WRONG_RANK}
    members, odd, sizes = {}, {}, {}
    owners: dict[tuple[str, int], list[tuple[str, bool]]] = {}
    for perm, axes in hand.perms.items():
        grids: list[Member] = []
        for a in axes:
            if a.param not in shapes:
                close = difflib.get_close_matches(a.param, list(shapes), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else "; check the model's state_dict() keys"
                findings.append(Finding(FindingKind.UNKNOWN_NAME, perm, (a.describe(),),
                                        f"{perm} names {a.param!r}, which is not in the model's state dict{hint}"))
            elif not 0 <= a.axis < len(shapes[a.param]):
                if a.param not in rank_reported:
                    findings.append(Finding(FindingKind.WRONG_RANK, perm, (a.describe(),), (
                        f"{perm} permutes {a.param} axis {a.axis}, but {a.param} has shape {shapes[a.param]}")))
            elif not _fits(grid := _grid(a, shapes[a.param]), shapes[a.param][a.axis]):
                findings.append(Finding(FindingKind.SIZE_MISMATCH, perm, (a.describe(),), (
                    f"{perm}'s structured member {a.describe()} does not fit the axis (size "
                    f"{shapes[a.param][a.axis]})")))  # fmt: skip
            else:
                grids.append(grid)
                owners.setdefault((a.param, a.axis), []).append((perm, a.grid is None))
        units = Counter(g.sizes[g.group_dim] for g in grids)
        size = hand.sizes.get(perm) or (units.most_common(1)[0][0] if units else 0)
        sizes[perm] = size
        members[perm] = tuple(g for g in grids if g.sizes[g.group_dim] == size)
        odd[perm] = tuple(g for g in grids if g.sizes[g.group_dim] != size)
    for (param, axis), owned in owners.items():
        perms = list(dict.fromkeys(p for p, _ in owned))
        if len(perms) > 1 and any(plain for _, plain in owned):
            findings.append(Finding(FindingKind.CONFLICT, perms[1], (f"{param} axis {axis}",), (
                f"{' and '.join(perms)} all permute {param} axis {axis}; an axis takes one permutation "
                "(two only for the factors of a structured axis, such as heads and the dims within)")))
    return Resolved(members, odd, sizes, tuple(findings))


@lru_cache(maxsize=8192)
def _units(m: Member) -> tuple:
    """The positions of each unit (and of each block, for per-block members), as sorted tuples:
    two members act alike on an axis exactly when these are equal."""
    pos = member_positions(m)
    rows = torch.movedim(pos, m.group_dim, 0).reshape(m.sizes[m.group_dim], -1).sort(dim=1).values
    key: tuple = (m.axis_size, tuple(map(tuple, rows.tolist())))
    if m.index_dim is not None:
        blocks = torch.movedim(pos, m.index_dim, 0).reshape(m.sizes[m.index_dim], -1).sort(dim=1).values
        key += (tuple(map(tuple, blocks.tolist())),)
    return key


def _same_units(a: Member, b: Member) -> bool:
    """Whether two members cut an axis into the same units; equal grids need no positions."""
    grid = (a.axis_size, a.sizes, a.strides, a.offset, a.group_dim, a.index_dim)
    return grid == (b.axis_size, b.sizes, b.strides, b.offset, b.group_dim, b.index_dim) or _units(a) == _units(b)


def _index(inferred: PermSpec) -> tuple[dict[tuple[str, int], list[tuple[Group, Member]]], dict[str, list[Member]]]:
    """Every inferred member by (tensor, axis), and each group's members, tied aliases included."""
    index: dict[tuple[str, int], list[tuple[Group, Member]]] = {}
    expanded: dict[str, list[Member]] = {}
    for g in inferred.groups:
        ms = list(g.members) + [replace(m, param=a) for m in g.members for a, t in inferred.aliases.items()
                                if t == m.param]  # fmt: skip
        expanded[g.name] = ms
        for m in ms:
            index.setdefault((m.param, m.axis), []).append((g, m))
    return index, expanded


def _is_heads(g: Group) -> bool:
    return any(w in g.structure for w in ("head", "query/key", "value dims"))


def _axis_structure(cands: list[tuple[Group, Member]]) -> str:
    return "; ".join(f"{g.name} ({g.size} units, {m.structure}{'' if g.is_free else ', blocked'})" for g, m in cands)


@dataclass(frozen=True)
class _Issue:
    """A per-member problem before it is merged with the same problem of the permutation's other
    members: one finding per (kind, permutation, cause), listing every member."""

    kind: FindingKind
    cause: str  # what the members share: the inferred group, or the axis structure
    member: Member
    size: int = 0  # the member's units (size mismatch)


def _member_issue(h: Member, hit: tuple[Group, Member] | None, cands: list[tuple[Group, Member]],
                  odd: bool, used: bool) -> _Issue | None:
    """What is wrong with hand member ``h`` (None: it matches a free group, or nothing moves)."""
    if hit is not None and not hit[0].is_free:
        kind = FindingKind.PERMUTES_OUTPUT if "model output" in (hit[0].blocked or "") else FindingKind.PERMUTES_FIXED
        return _Issue(kind, f"{hit[0].name}: {hit[0].blocked}", h)
    if odd:
        return _Issue(FindingKind.SIZE_MISMATCH, f"{hit[0].name} ({hit[0].size} units)" if hit else "", h,
                      h.sizes[h.group_dim])  # fmt: skip
    if hit is not None:
        return None
    if not cands:
        return None if used else _Issue(FindingKind.UNUSED_AXIS, "", h)
    heads = any(_is_heads(g) for g, _ in cands)
    return _Issue(FindingKind.MIXES_HEADS if heads else FindingKind.BREAKS_STRUCTURE, _axis_structure(cands), h,
                  h.sizes[h.group_dim])  # fmt: skip


def _merged(perm: str, size: int, issues: list[_Issue]) -> list[Finding]:
    groups: dict[tuple, list[_Issue]] = {}
    for i in issues:
        groups.setdefault((i.kind, i.cause, i.size), []).append(i)
    out = []
    for (kind, cause, n), items in groups.items():
        ms = [i.member for i in items]
        names, one = _listed(ms), len(items) == 1
        if kind is FindingKind.SIZE_MISMATCH:
            home = f"; {'it belongs' if one else 'they belong'} to {cause}" if cause else ""
            text = (f"{perm} permutes {size} units, but {names} {'has' if one else 'have'} {n}{home}; "
                    f"remove {'it' if one else 'them'} from {perm}")  # fmt: skip
        elif kind is FindingKind.PERMUTES_OUTPUT:
            text = (f"{perm} permutes {names}, units of the model's output ({cause.split(':')[0]}), whose order the "
                    f"caller reads; remove {'it' if one else 'them'} from {perm}")  # fmt: skip
        elif kind is FindingKind.PERMUTES_FIXED:
            text = f"{perm} permutes {names}, which the model fixes ({cause}); remove {'it' if one else 'them'} from {perm}"
        elif kind is FindingKind.UNUSED_AXIS:
            text = f"{perm} permutes {names}, which the model's forward does not use on these inputs"
        else:
            what = "mixes attention heads" if kind is FindingKind.MIXES_HEADS else "ignores how the model cuts it"
            text = (f"{perm} permutes {names} as {n} single units each, which {what}: the model moves "
                    f"{'it' if one else 'each'} only as {cause}; give each of those its own permutation, in the "
                    "structured form PermSpec.to_rebasin() writes")  # fmt: skip
        out.append(Finding(kind, perm, tuple(dict.fromkeys(where(m) for m in ms)), text))
    return out


def _owners(members: Mapping[str, tuple[Member, ...]]) -> dict[tuple[str, int], str]:
    return {(m.param, m.axis): perm for perm, ms in members.items() for m in ms}


def compare(inferred: PermSpec, resolved: Resolved, shapes: Shapes) -> list[Finding]:
    """Structural findings of every hand permutation against ``inferred`` (see the module docstring)."""
    index, expanded = _index(inferred)
    owners = _owners(resolved.members)
    free = {g.name: g for g in inferred.free_groups}
    used = set(inferred.param_shapes) | set(inferred.aliases)
    findings: list[Finding] = []
    touched_any: set[str] = set()
    for perm, ms in resolved.members.items():
        touched: dict[str, list[tuple[Member, Member]]] = {}
        issues: list[_Issue] = []
        for h in ms + resolved.odd.get(perm, ()):
            cands = index.get((h.param, h.axis), [])
            hit = next(((g, m) for g, m in cands if _same_units(m, h)), None)
            odd = h.sizes[h.group_dim] != resolved.sizes[perm]
            issue = _member_issue(h, hit, cands, odd, h.param in used)
            if issue is not None:
                issues.append(issue)
            elif hit is not None:
                touched.setdefault(hit[0].name, []).append((h, hit[1]))
        own = _merged(perm, resolved.sizes[perm], issues)
        touched_any |= set(touched)
        for name, pairs in touched.items():
            missing = [m for m in expanded[name] if m not in {m2 for _, m2 in pairs}]
            if missing:
                own.append(_left_out(perm, _nearest([h for h, _ in pairs], missing[0]), missing, owners, free[name]))
        findings += own
        if len(touched) > 1 and not any(f.kind.is_error for f in own):
            findings.append(Finding(FindingKind.TIES_INDEPENDENT, perm, tuple(touched), (
                f"{perm} ties {', '.join(touched)}, which the model lets permute independently: sound, but matching "
                "searches a smaller space; split it into one permutation each")))  # fmt: skip
    for g in inferred.free_groups:
        if g.name not in touched_any:
            findings.append(_missing(g, expanded[g.name]))
    return findings


def _nearest(present: list[Member], missing: Member) -> Member:
    """The present member named most like the missing one (``layer1.0.conv2`` for ``layer1.0.bn2``)."""
    return max(present, key=lambda m: len(os.path.commonprefix([m.param, missing.param])))


def _left_out(perm: str, present: Member, missing: list[Member], owners: Mapping[tuple[str, int], str],
              group: Group) -> Finding:
    elsewhere = Counter(owners[(m.param, m.axis)] for m in missing if owners.get((m.param, m.axis), perm) != perm)
    also = "; ".join(f"{other} permutes {k} of them instead" if k > 1 else f"{other} permutes it instead"
                     for other, k in elsewhere.most_common(2))  # fmt: skip
    them = "it" if len({where(m) for m in missing}) == 1 else "them"
    return Finding(FindingKind.LEAVES_OUT_TIED, perm, tuple(dict.fromkeys(where(m) for m in missing)), (
        f"{perm} permutes {where(present)} but not {_listed(missing)}, which the model ties to it "
        f"(group {group.name}{'; ' + also if also else ''}); add {them} to {perm}"))  # fmt: skip


def _missing(g: Group, members: list[Member]) -> Finding:
    structured = g.indexed_by is not None or any(m.structure != "plain" for m in members)
    how = (" Git Re-Basin's two dicts cannot express it: give it under 'structured' as PermSpec.to_rebasin() "
           "writes it" if structured else " add it as one permutation")  # fmt: skip
    return Finding(FindingKind.MISSING_SYMMETRY, None, tuple(dict.fromkeys(where(m) for m in members)), (
        f"no hand permutation covers {g.name} ({g.size} units, {g.structure}: {_listed(members)});{how}"))
