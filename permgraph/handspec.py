"""Read a hand-written permutation spec, in whichever form the field writes it, into one shape.

Accepted forms (``read_hand_spec``):

- a ``PermSpec`` (its free groups, aliases included);
- Git Re-Basin's two dicts with PyTorch state-dict names and layouts: ``axes_to_perm``
  {name: (perm or None per axis)} and ``perm_to_axes`` {perm: [(name, axis), ...]}, either or
  both, in a dict or on any object carrying them as attributes (a ``NamedTuple``, a dataclass);
  the names ``layer_and_axes_to_perm`` / ``perm_to_layers_and_axes`` (C2M3) mean the same;
- a JSON file (or text) of either, ``null`` for None. A key repeated inside one JSON object is
  recorded with its line: a JSON reader keeps only the last value and drops the others silently.

Re-Basin's dicts give one permutation per whole axis. Where a model's symmetry is structured (a
permutation of attention heads moves blocks of ``head_dim`` rows; a conv's channels reach a
Linear after ``flatten`` as blocks), ``PermSpec.to_rebasin`` leaves that group out of the two
dicts (a tool that reads only them then leaves it unpermuted, which is sound) and writes it
under a third key, ``structured``: {perm: {"size": n, "indexed_by": outer or None, "members":
[{"param", "axis", "sizes", "strides", "group_dim", "offset", "index_dim"}, ...]}}, the member
grids of ``permgraph.spec``. This reader takes that key too.

>>> spec = read_hand_spec({"axes_to_perm": {"0.weight": ("P0", None), "0.bias": ("P0",),
...                                         "2.weight": (None, "P0")}})
>>> [(a.param, a.axis) for a in spec.perms["P0"]]
[('0.weight', 0), ('0.bias', 0), ('2.weight', 1)]
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from permgraph.spec import Member, MemberKind, PermSpec

__all__ = ["DuplicateKey", "HandAxis", "HandSpec", "SpecFormatError", "read_hand_spec", "read_spec_json"]

_AXES_TO_PERM = ("axes_to_perm", "layer_and_axes_to_perm")
_PERM_TO_AXES = ("perm_to_axes", "perm_to_layers_and_axes")


class SpecFormatError(ValueError):
    """A spec that cannot be read: the message says what is wrong and what would be read."""


@dataclass(frozen=True)
class HandAxis:
    """One axis a hand permutation acts on: the whole axis (``grid`` None) or, for a structured
    group, the units of a ``Member`` grid."""

    param: str
    axis: int
    grid: Member | None = None

    def describe(self) -> str:
        """``"name axis k"``, with the structure when it is not the whole axis."""
        return f"{self.param} axis {self.axis}" + (f" ({self.grid.structure})" if self.grid else "")


@dataclass(frozen=True)
class DuplicateKey:
    """A key that one JSON object holds more than once (``lines``: every occurrence)."""

    key: str
    lines: tuple[int, ...]

    def describe(self) -> str:
        """What was repeated, and where."""
        return (f"key {self.key!r} appears {len(self.lines)} times (lines "
                f"{', '.join(map(str, self.lines))}); a JSON reader keeps only the last one")  # fmt: skip


@dataclass(frozen=True)
class HandSpec:
    """A hand-written spec as data: each permutation's axes, in the order written.

    ``ranks``: how many axes ``axes_to_perm`` gave each tensor (a tuple per tensor: its length
    must be the tensor's rank). ``sizes`` / ``indexed_by``: declared for structured permutations.
    ``disagreements``: (perm, name, axis, which dict lacks it) where both dicts were given and
    they differ. ``duplicates``: keys repeated in a JSON object."""

    perms: dict[str, tuple[HandAxis, ...]]
    ranks: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    indexed_by: dict[str, str] = field(default_factory=dict)
    disagreements: tuple[tuple[str, str, int, str], ...] = ()
    duplicates: tuple[DuplicateKey, ...] = ()
    source: str = ""


def read_hand_spec(spec: Any) -> HandSpec:
    """Any accepted form (see the module docstring) as a ``HandSpec``; ``SpecFormatError``
    for anything else, saying which forms there are."""
    if isinstance(spec, HandSpec):
        return spec
    if isinstance(spec, PermSpec):
        return _from_permspec(spec)
    if isinstance(spec, (str, os.PathLike)):
        text = str(spec)
        if isinstance(spec, str) and text.lstrip().startswith("{"):
            return _from_json_text(text, "JSON text")
        try:
            content = Path(spec).read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise SpecFormatError(f"{spec} is not a UTF-8 text file; a spec file is JSON ({e.reason} at byte "
                                  f"{e.start})") from e  # fmt: skip
        return _from_json_text(content, str(spec))
    if isinstance(spec, Mapping):
        return _from_mapping(spec, type(spec).__name__)
    found = {name: getattr(spec, name) for name in _AXES_TO_PERM + _PERM_TO_AXES + ("structured",)
             if getattr(spec, name, None) is not None}  # fmt: skip
    if found:
        return _from_mapping(found, type(spec).__name__)
    raise SpecFormatError(
        f"cannot read a permutation spec from a {type(spec).__name__}: pass a PermSpec, Git Re-Basin's "
        "axes_to_perm / perm_to_axes (a dict, or an object with those attributes), or a JSON file of them"
    )


def read_spec_json(text: str, source: str = "JSON text") -> tuple[Any, tuple[DuplicateKey, ...]]:
    """Parse JSON, recording every key an object repeats, with its lines."""
    decoder = json.JSONDecoder()
    duplicates: list[DuplicateKey] = []

    def parse_object(s_and_end, strict, scan_once, object_hook, object_pairs_hook, memo=None):
        start = s_and_end[1]
        seen: list[str] = []

        def hook(pairs):
            seen.extend(k for k, _ in pairs)
            return dict(pairs)

        obj, end = json.decoder.JSONObject(s_and_end, strict, scan_once, object_hook, hook, memo)
        for key in dict.fromkeys(k for k in seen if seen.count(k) > 1):
            duplicates.append(DuplicateKey(key, _key_lines(s_and_end[0], start, end, key)))
        return obj, end

    decoder.parse_object = parse_object  # type: ignore[assignment]
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # the C scanner ignores parse_object
    try:
        data = decoder.decode(text)
    except json.JSONDecodeError as e:
        raise SpecFormatError(f"{source} is not JSON: {e}") from e
    return data, tuple(duplicates)


def _key_lines(text: str, start: int, end: int, key: str) -> tuple[int, ...]:
    """Lines of ``key`` used as a key directly inside the object spanning ``text[start:end]``."""
    lines, depth, i = [], 1, start
    while i < end:
        c = text[i]
        if c == '"':
            value, j = json.decoder.scanstring(text, i + 1)
            k = j
            while k < end and text[k] in " \t\r\n":
                k += 1
            if depth == 1 and value == key and k < end and text[k] == ":":
                lines.append(text.count("\n", 0, i) + 1)
            i = j
            continue
        depth += 1 if c in "{[" else -1 if c in "}]" else 0
        i += 1
    return tuple(lines)


def _from_json_text(text: str, source: str) -> HandSpec:
    data, duplicates = read_spec_json(text, source)
    if not isinstance(data, dict):
        raise SpecFormatError(f"{source} holds a JSON {type(data).__name__}, not an object with axes_to_perm / "
                              "perm_to_axes (or a PermSpec)")  # fmt: skip
    spec = _from_mapping(data, source)
    return HandSpec(spec.perms, spec.ranks, spec.sizes, spec.indexed_by, spec.disagreements, duplicates, source)


def _from_permspec(spec: PermSpec) -> HandSpec:
    perms: dict[str, tuple[HandAxis, ...]] = {}
    for g in spec.free_groups:
        axes = [HandAxis(m.param, m.axis, None if _plain(m) else m) for m in g.members]
        for alias, target in spec.aliases.items():
            axes += [HandAxis(alias, a.axis, a.grid) for a in axes if a.param == target]
        perms[g.name] = tuple(axes)
    sizes = {g.name: g.size for g in spec.free_groups}
    indexed = {g.name: g.indexed_by for g in spec.free_groups if g.indexed_by}
    return HandSpec(perms, sizes=sizes, indexed_by=indexed, source="PermSpec")


def _plain(m: Member) -> bool:
    return m.kind is MemberKind.PLAIN


def _pick(data: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    given = [n for n in names if data.get(n) is not None]
    if len(given) > 1:
        raise SpecFormatError(f"the spec gives both {given[0]!r} and {given[1]!r}, which mean the same; keep one")
    return data[given[0]] if given else None


def _from_mapping(data: Mapping[str, Any], source: str) -> HandSpec:
    if "groups" in data and "format" in data:
        try:
            return _from_permspec(PermSpec.from_dict(dict(data)))
        except (KeyError, TypeError) as e:
            raise SpecFormatError(f"{source} looks like a PermSpec but is incomplete ({e!r})") from e
    a2p, p2a, structured = _pick(data, _AXES_TO_PERM), _pick(data, _PERM_TO_AXES), data.get("structured")
    if a2p is None and p2a is None and not structured:
        raise SpecFormatError(
            f"{source} has none of axes_to_perm, perm_to_axes (Git Re-Basin), layer_and_axes_to_perm, "
            f"perm_to_layers_and_axes (C2M3) or a PermSpec's format/groups; it has {sorted(map(str, data))[:6]}"
        )
    ranks, from_a2p = _read_axes_to_perm(a2p) if a2p is not None else ({}, {})
    from_p2a = _read_perm_to_axes(p2a) if p2a is not None else {}
    perms: dict[str, list[HandAxis]] = {}
    for table in (from_p2a, from_a2p):
        for perm, axes in table.items():
            have = perms.setdefault(perm, [])
            have += [a for a in axes if a not in have]
    disagreements = []
    if a2p is not None and p2a is not None:
        for perm, axes in perms.items():
            for a in axes:
                for table, lacking in ((from_a2p, "axes_to_perm"), (from_p2a, "perm_to_axes")):
                    if a not in table.get(perm, ()):
                        disagreements.append((perm, a.param, a.axis, lacking))
    sizes, indexed = {}, {}
    for perm, entry in _mapping(structured or {}, "structured").items():
        size, outer, axes = _read_structured(perm, entry)
        sizes[perm] = size
        if outer:
            indexed[perm] = outer
        perms[perm] = [a for a in perms.get(perm, []) if not any(b.param == a.param and b.axis == a.axis
                                                                 for b in axes)] + axes  # fmt: skip
    return HandSpec({k: tuple(v) for k, v in perms.items()}, ranks, sizes, indexed, tuple(disagreements),
                    source=source)  # fmt: skip


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecFormatError(f"{what} must map names to entries, got a {type(value).__name__}")
    return value


def _read_axes_to_perm(a2p: Any) -> tuple[dict[str, int], dict[str, list[HandAxis]]]:
    ranks, perms = {}, {}
    for name, entry in _mapping(a2p, "axes_to_perm").items():
        if isinstance(entry, (str, bytes)) or not isinstance(entry, Sequence):
            raise SpecFormatError(f"axes_to_perm[{name!r}] must be a tuple with one permutation name or None per "
                                  f"axis, got {entry!r}")  # fmt: skip
        ranks[str(name)] = len(entry)
        for axis, perm in enumerate(entry):
            if perm is None:
                continue
            if not isinstance(perm, str):
                raise SpecFormatError(f"axes_to_perm[{name!r}][{axis}] must be a permutation name or None, "
                                      f"got {perm!r}")  # fmt: skip
            perms.setdefault(perm, []).append(HandAxis(str(name), axis))
    return ranks, perms


def _read_perm_to_axes(p2a: Any) -> dict[str, list[HandAxis]]:
    perms: dict[str, list[HandAxis]] = {}
    for perm, entries in _mapping(p2a, "perm_to_axes").items():
        if isinstance(entries, (str, bytes)) or not isinstance(entries, Sequence):
            raise SpecFormatError(f"perm_to_axes[{perm!r}] must be a list of (name, axis) pairs, got {entries!r}")
        axes = perms.setdefault(str(perm), [])
        for e in entries:
            if not (isinstance(e, Sequence) and len(e) == 2 and isinstance(e[0], str) and _is_int(e[1])):
                raise SpecFormatError(f"perm_to_axes[{perm!r}] holds {e!r}; each entry is a (name, axis) pair")
            if HandAxis(e[0], int(e[1])) not in axes:
                axes.append(HandAxis(e[0], int(e[1])))
    return perms


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _read_structured(perm: str, entry: Any) -> tuple[int, str | None, list[HandAxis]]:
    entry = _mapping(entry, f"structured[{perm!r}]")
    try:
        size, outer = int(entry["size"]), entry.get("indexed_by")
        axes = []
        for m in entry["members"]:
            grid = Member(str(m["param"]), int(m["axis"]), int(m["axis_size"]), tuple(map(int, m["sizes"])),
                          tuple(map(int, m["strides"])), int(m["group_dim"]), int(m.get("offset", 0)),
                          None if m.get("index_dim") is None else int(m["index_dim"]))  # fmt: skip
            axes.append(HandAxis(grid.param, grid.axis, grid))
    except (KeyError, TypeError, ValueError) as e:
        raise SpecFormatError(
            f"structured[{perm!r}] must hold size, members (each param, axis, axis_size, sizes, strides, "
            f"group_dim, offset, index_dim) as PermSpec.to_rebasin writes them ({type(e).__name__}: {e})"
        ) from e
    return size, outer, axes
