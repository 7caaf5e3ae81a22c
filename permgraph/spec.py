"""PermSpec: the permutation symmetries of one model, as plain data.

A *group* is a set of hidden units that may be permuted together without changing the
model's function. Each *member* says where the group's units live inside one tensor of
the state dict: along one axis, possibly block-expanded (``flatten`` after a conv), sliced
(``cat`` / ``split``) or factored (attention heads, GroupNorm groups, grouped convs).

A member addresses the axis positions of the group's units as a strided grid::

    position(i_0, ..., i_k) = offset + sum_j i_j * strides[j],   0 <= i_j < sizes[j]

and the group's permutation ``p`` (length ``size``) acts on grid dimension ``group_dim``:
the new tensor at grid index ``(..., c, ...)`` holds the old value at ``(..., p[c], ...)``.
This one form covers plain axes (``sizes == (n,)``), block expansion (``(n, k)``), head
factors (``(h, d)`` with the head or the inner dim as the group's) and slices.

Like Git Re-Basin's ``PermutationSpec`` the spec is data you can print, compare and
serialise; algorithms (apply, verify, matching) only read it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import Any

__all__ = ["Member", "MemberKind", "Activation", "Group", "PermSpec", "SPEC_FORMAT_VERSION"]

SPEC_FORMAT_VERSION = 1


class MemberKind(str, Enum):
    """How a group's units sit on a member's axis (``Member.kind``; ``Member.structure`` is its label)."""

    PLAIN = "plain"  # the whole axis, one unit per index
    BLOCK_EXPANDED = "block-expanded"  # each unit a contiguous block of the axis
    SLICE = "slice"  # a strided slice of the axis
    FACTOR = "factor"  # one factor of the axis reshaped into a grid
    WITHIN_BLOCKS = "within blocks"  # a factor permuted independently within each unit of an outer group


@dataclass(frozen=True)
class Member:
    """Where one group's units live inside one state-dict tensor (see module docstring)."""

    param: str
    axis: int
    axis_size: int
    sizes: tuple[int, ...]
    strides: tuple[int, ...]
    group_dim: int
    offset: int = 0
    index_dim: int | None = None

    @property
    def kind(self) -> MemberKind:
        """How the units sit on the axis: plain, block-expanded, sliced, factored or within blocks."""
        n = self.sizes[self.group_dim]
        if self.index_dim is not None:
            return MemberKind.WITHIN_BLOCKS
        if len(self.sizes) == 1 and self.offset == 0 and n == self.axis_size:
            return MemberKind.PLAIN
        if (
            self.group_dim == 0
            and self.offset == 0
            and _is_contiguous(self.sizes, self.strides)
            and _prod(self.sizes) == self.axis_size
        ):
            return MemberKind.BLOCK_EXPANDED
        return MemberKind.SLICE if len(self.sizes) == 1 else MemberKind.FACTOR

    @property
    def structure(self) -> str:
        """A human label of :attr:`kind` with its numbers."""
        kind, grid = self.kind, "x".join(map(str, self.sizes))
        if kind is MemberKind.WITHIN_BLOCKS:
            return f"within each of {self.sizes[self.index_dim]} blocks, factor {self.group_dim} of {grid}"
        if kind is MemberKind.BLOCK_EXPANDED:
            return f"block-expanded x{_prod(self.sizes[1:])}"
        if kind is MemberKind.SLICE:
            return f"slice [{self.offset}:{self.offset + self.sizes[0] * self.strides[0]}]"
        return "plain" if kind is MemberKind.PLAIN else f"factor {self.group_dim} of {grid}"

    def describe(self) -> str:
        """``param[axis N] structure``, for tables and messages."""
        return f"{self.param}[axis {self.axis}] {self.structure}"


@dataclass(frozen=True)
class Activation:
    """Where a group's units live inside one value the model computes (a node of the exported
    graph): the same strided grid as a :class:`Member`, on axis ``axis`` of the value named
    ``node``. Permuting the weights by ``p`` permutes these units by ``p`` for every input, which
    is what activation matching and REPAIR read (``permgraph.activations``).

    ``shape`` is the value's shape at the example inputs; ``mixed`` names the other free groups
    that also move inside this value (another axis, or another factor of this one): correlations
    over such a value compare samples that the other permutations reorder, so collectors use only
    sites with ``mixed == ()`` unless told otherwise."""

    node: str
    axis: int
    axis_size: int
    sizes: tuple[int, ...]
    strides: tuple[int, ...]
    group_dim: int
    offset: int = 0
    index_dim: int | None = None
    shape: tuple[int, ...] = ()
    op: str = ""
    mixed: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        """No other free group moves inside the value: its other positions are samples."""
        return not self.mixed

    def as_member(self) -> Member:
        """The grid as a :class:`Member` (``param`` = the node's name), for ``group_rows``."""
        return Member(self.node, self.axis, self.axis_size, self.sizes, self.strides, self.group_dim,
                      self.offset, self.index_dim)  # fmt: skip

    def describe(self) -> str:
        """``node[axis N] structure``, for tables and messages."""
        return f"{self.node}[axis {self.axis}] {self.as_member().structure}" + (
            f" (mixed with {', '.join(self.mixed)})" if self.mixed else "")


@dataclass(frozen=True)
class Group:
    """Units that share one permutation. ``blocked`` holds the reason they may not move.

    ``indexed_by`` names an outer group (attention heads, GroupNorm groups) whose every
    unit owns its own permutation of this group's units: the group's permutation is then a
    ``(indexed_by.size, size)`` tensor, row ``i`` acting inside block ``i`` (after the outer
    group has moved the blocks)."""

    name: str
    size: int
    members: tuple[Member, ...]
    blocked: str | None = None
    structure: str = "plain"
    origin: str = ""
    indexed_by: str | None = None
    # the graph values the group permutes (derived data: not part of the symmetry, so not compared)
    activations: tuple[Activation, ...] = field(default=(), compare=False)

    @property
    def is_free(self) -> bool:
        """Whether the group's units may be permuted (not blocked, at least two, in a tensor)."""
        return self.blocked is None and self.size >= 2 and len(self.members) > 0

    @property
    def params(self) -> tuple[str, ...]:
        """The state-dict keys the group touches, in member order."""
        return tuple(dict.fromkeys(m.param for m in self.members))


@dataclass(frozen=True)
class PermSpec:
    """All permutation groups of one model.

    ``param_shapes`` records every state-dict tensor the spec was inferred from so that
    ``apply`` can reject a state dict of another architecture with a clear message;
    ``aliases`` maps a state-dict key to the key it shares storage with (tied weights).
    ``outputs`` names the model outputs the groups preserve (``infer(outputs=...)``, and
    what ``verify`` compares); ``None``: every output.
    """

    groups: tuple[Group, ...]
    param_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    model: str = ""
    outputs: tuple[str, ...] | None = None

    @property
    def free_groups(self) -> list[Group]:
        """The groups that may be permuted: what apply, verify and matching act on."""
        return [g for g in self.groups if g.is_free]

    @property
    def blocked_groups(self) -> list[Group]:
        """The groups that may not move, each with its reason."""
        return [g for g in self.groups if not g.is_free]

    def group(self, name: str) -> Group:
        """The group called ``name``; ``KeyError`` listing the names there are."""
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(f"no group named {name!r}; the spec has: {[g.name for g in self.groups]}")

    def members_by_param(self) -> dict[str, list[tuple[Group, Member]]]:
        """Free-group members of each state-dict key, aliases included."""
        out: dict[str, list[tuple[Group, Member]]] = {}
        for g in self.free_groups:
            for m in g.members:
                out.setdefault(m.param, []).append((g, m))
        for alias, target in self.aliases.items():
            if target in out:
                out[alias] = out[target]
        return out

    @property
    def permuted_params(self) -> list[str]:
        """Every state-dict key some free group permutes, aliases included, sorted."""
        return sorted(self.members_by_param())

    # ---- serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data, tagged with ``SPEC_FORMAT_VERSION``."""
        return {
            "format": SPEC_FORMAT_VERSION,
            "model": self.model,
            "groups": [asdict(g) for g in self.groups],
            "param_shapes": {k: list(v) for k, v in self.param_shapes.items()},
            "aliases": dict(self.aliases),
        } | ({} if self.outputs is None else {"outputs": list(self.outputs)})

    def to_json(self, indent: int | None = 1) -> str:
        """The spec as JSON text; ``from_json`` reads it back to an equal spec."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PermSpec:
        """The inverse of ``to_dict``; a spec of another format version is refused, since its
        fields may mean something else."""
        if data.get("format") != SPEC_FORMAT_VERSION:
            raise ValueError(
                f"unsupported PermSpec format {data.get('format')!r} (this permgraph reads "
                f"format {SPEC_FORMAT_VERSION}); re-run permgraph.infer on the model"
            )
        groups = []
        for g in data["groups"]:
            members = tuple(
                Member(
                    param=m["param"],
                    axis=m["axis"],
                    axis_size=m["axis_size"],
                    sizes=tuple(m["sizes"]),
                    strides=tuple(m["strides"]),
                    group_dim=m["group_dim"],
                    offset=m.get("offset", 0),
                    index_dim=m.get("index_dim"),
                )
                for m in g["members"]
            )
            groups.append(
                Group(
                    name=g["name"],
                    size=g["size"],
                    members=members,
                    blocked=g.get("blocked"),
                    structure=g.get("structure", "plain"),
                    origin=g.get("origin", ""),
                    indexed_by=g.get("indexed_by"),
                    activations=tuple(_activation_from_dict(a) for a in g.get("activations", ())),
                )
            )
        return cls(
            groups=tuple(groups),
            param_shapes={k: tuple(v) for k, v in data.get("param_shapes", {}).items()},
            aliases=dict(data.get("aliases", {})),
            model=data.get("model", ""),
            outputs=_outputs_from(data.get("outputs")),
        )

    @classmethod
    def from_json(cls, text: str) -> PermSpec:
        """The inverse of ``to_json``; ``ValueError`` for text that is not a spec."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"not a PermSpec JSON document: {e}") from e
        return cls.from_dict(data)

    def to_rebasin(self) -> dict[str, dict]:
        """Git Re-Basin form: ``perm_to_axes`` {group: [(param, axis)]} and ``axes_to_perm``
        {param: [group or None per axis]}, alias keys included (a state dict holds both names of a
        tied weight). Those dicts give one permutation per whole axis, so only groups whose every
        member is a plain axis fit there. A group with a structured member (attention heads,
        channels block-expanded by ``flatten``, dims indexed per head) goes whole under
        ``structured`` {group: {"size", "indexed_by", "members": [Member fields]}}: a tool that
        reads only the two dicts leaves it unpermuted (sound, not complete), and
        ``permgraph.check_spec`` / ``permgraph.handspec`` read it back exactly."""
        perm_to_axes: dict[str, list[tuple[str, int]]] = {}
        axes_to_perm: dict[str, list[str | None]] = {
            k: [None] * len(s) for k, s in self.param_shapes.items()
        }
        for alias, target in self.aliases.items():
            axes_to_perm[alias] = [None] * len(self.param_shapes.get(target, ()))
        structured: dict[str, dict[str, Any]] = {}
        for g in self.free_groups:
            tied = list(g.members) + [replace(m, param=a) for m in g.members
                                      for a, t in self.aliases.items() if t == m.param]
            if g.indexed_by is None and all(m.kind is MemberKind.PLAIN for m in tied):
                for m in tied:
                    perm_to_axes.setdefault(g.name, []).append((m.param, m.axis))
                    axes_to_perm.setdefault(m.param, [None] * (m.axis + 1))[m.axis] = g.name
            else:
                structured[g.name] = {"size": g.size, "indexed_by": g.indexed_by,
                                      "members": [asdict(m) for m in tied]}
        return {"perm_to_axes": perm_to_axes, "axes_to_perm": axes_to_perm, "structured": structured}

    def summary(self) -> str:
        """One line: free and blocked group counts and how many tensors move."""
        free = self.free_groups
        return (
            f"PermSpec({self.model or 'model'}: {len(free)} free groups, "
            f"{len(self.groups) - len(free)} blocked, "
            f"{len(self.permuted_params)}/{len(self.param_shapes) + len(self.aliases)} tensors permuted"
            + ("" if self.outputs is None else f", preserving {', '.join(self.outputs)}") + ")"
        )

    def __repr__(self) -> str:
        return self.summary()


def _outputs_from(value: Any) -> tuple[str, ...] | None:
    """The ``outputs`` entry of a spec file: absent, or a list of names."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("a PermSpec's 'outputs' must be a list of output names; re-run permgraph.infer")
    return tuple(value)


def _activation_from_dict(a: dict[str, Any]) -> Activation:
    return Activation(
        node=a["node"], axis=a["axis"], axis_size=a["axis_size"], sizes=tuple(a["sizes"]),
        strides=tuple(a["strides"]), group_dim=a["group_dim"], offset=a.get("offset", 0),
        index_dim=a.get("index_dim"), shape=tuple(a.get("shape", ())), op=a.get("op", ""),
        mixed=tuple(a.get("mixed", ())),
    )  # fmt: skip


def _prod(xs: tuple[int, ...] | list[int]) -> int:
    out = 1
    for x in xs:
        out *= x
    return out


def _is_contiguous(sizes: tuple[int, ...], strides: tuple[int, ...]) -> bool:
    expected = 1
    for s, st in zip(reversed(sizes), reversed(strides)):
        if s != 1 and st != expected:
            return False
        expected *= s
    return True
