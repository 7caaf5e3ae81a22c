"""Apply permutations to state dicts (or gradient dicts) under a PermSpec.

A permutation is a ``dict[str, torch.LongTensor]``: group name -> ``p`` of length
``group.size``, in gather form: unit ``c`` of the result is unit ``p[c]`` of the input
(Git Re-Basin's convention, ``w.index_select(axis, p)`` for a plain axis). Groups left
out of the dict stay as they are.

>>> import permgraph
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
>>> spec = permgraph.infer(model, (torch.randn(1, 4),))
>>> perm = {"0.out": torch.tensor([2, 0, 1])}
>>> permuted = apply(spec, perm, model.state_dict())  # same function, other weights
>>> torch.equal(permuted["0.weight"], model.state_dict()["0.weight"][[2, 0, 1]])
True
>>> torch.equal(permuted["2.weight"], model.state_dict()["2.weight"][:, [2, 0, 1]])
True
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch

from permgraph.spec import Group, Member, PermSpec

__all__ = [
    "Permutation",
    "State",
    "apply",
    "compose",
    "group_rows",
    "identity_permutation",
    "invert",
    "member_positions",
    "random_permutation",
]

Permutation = dict[str, torch.Tensor]
State = dict[str, torch.Tensor]  # a state dict: parameters, buffers or gradients by name


def _blocks(spec: PermSpec, group: Group) -> int | None:
    return spec.group(group.indexed_by).size if group.indexed_by else None


def identity_permutation(spec: PermSpec) -> Permutation:
    """The permutation that moves nothing (per block for indexed groups): the starting
    point of matching algorithms."""
    out = {}
    for g in spec.free_groups:
        blocks = _blocks(spec, g)
        out[g.name] = torch.arange(g.size) if blocks is None else torch.arange(g.size).repeat(blocks, 1)
    return out


def random_permutation(spec: PermSpec, generator: torch.Generator | None = None) -> Permutation:
    """An independent uniform random permutation for every free group (and, for a group
    indexed by an outer one, for every block)."""
    out = {}
    for g in spec.free_groups:
        blocks = _blocks(spec, g)
        if blocks is None:
            out[g.name] = torch.randperm(g.size, generator=generator)
        else:
            out[g.name] = torch.stack([torch.randperm(g.size, generator=generator) for _ in range(blocks)])
    return out


def _index_of(spec: PermSpec | None, name: str) -> str | None:
    if spec is None:
        return None
    for g in spec.groups:
        if g.name == name:
            return g.indexed_by
    return None


def invert(perm: Permutation, spec: PermSpec | None = None) -> Permutation:
    """The inverse permutation. Groups indexed by an outer group (2-D permutations) need
    the spec: block ``j`` of the inverse undoes what was applied to the block moved to ``j``."""
    out = {k: torch.argsort(p, dim=-1) for k, p in perm.items()}
    for k, p in perm.items():
        if p.dim() == 2:
            outer = _index_of(spec, k)
            if outer is None:
                raise ValueError(f"invert needs the spec to invert the per-block permutation of group {k!r}")
            sigma = perm.get(outer, torch.arange(p.shape[0]))
            out[k] = torch.argsort(p, dim=-1)[torch.argsort(sigma)]
    return out


def compose(outer: Permutation, inner: Permutation, spec: PermSpec | None = None) -> Permutation:
    """The permutation that applies ``inner`` first, then ``outer``."""
    out = dict(inner)
    for k, p in outer.items():
        if k not in inner:
            out[k] = p
        elif p.dim() == 1:
            out[k] = inner[k][p]
        else:
            index = _index_of(spec, k)
            if index is None:
                raise ValueError(f"compose needs the spec to combine the per-block permutations of group {k!r}")
            sigma = outer.get(index, torch.arange(p.shape[0]))
            out[k] = torch.gather(inner[k][sigma], 1, p)
    return out


def member_positions(member: Member) -> torch.Tensor:
    """Axis positions of the member's grid, shape ``member.sizes``."""
    pos = torch.full(member.sizes, member.offset, dtype=torch.long)
    for dim, (size, stride) in enumerate(zip(member.sizes, member.strides)):
        shape = [1] * len(member.sizes)
        shape[dim] = size
        pos = pos + (torch.arange(size) * stride).view(shape)
    return pos


def _axis_gather_index(axis_size: int, members: list[tuple[Member, torch.Tensor]]) -> torch.Tensor:
    """One gather index for an axis from all the (member, perm) pairs that act on it."""
    index = torch.arange(axis_size)
    for member, p in members:
        pos = member_positions(member)
        if member.index_dim is None:
            moved = pos.index_select(member.group_dim, p)
        else:  # row i of p acts inside block i of the index dim
            shape = [1] * pos.dim()
            shape[member.index_dim], shape[member.group_dim] = p.shape
            moved = torch.gather(pos, member.group_dim, p.reshape(shape).expand(pos.shape))
        # members of different groups act on different coordinates, so they compose
        new_index = index.clone()
        new_index[pos.reshape(-1)] = index[moved.reshape(-1)]
        index = new_index
    return index


def _check_perm(spec: PermSpec, group: Group, p: torch.Tensor) -> torch.Tensor:
    given = torch.as_tensor(p)
    if given.is_floating_point() or given.is_complex() or given.dtype == torch.bool:
        raise ValueError(
            f"permutation for group {group.name!r} is a {given.dtype} tensor; pass integer indices "
            f"(torch.long) holding each of 0..{group.size - 1} once"
        )
    p = given.long()
    blocks = _blocks(spec, group)
    expected = (group.size,) if blocks is None else (blocks, group.size)
    if p.dim() == 1 and blocks is not None:  # one permutation for every block
        p = p.expand(blocks, group.size)
    if tuple(p.shape) != expected:
        raise ValueError(f"permutation for group {group.name!r} has shape {tuple(p.shape)}, expected {expected}")
    _check_is_permutation(group, p)
    return p


def _check_is_permutation(group: Group, p: torch.Tensor) -> None:
    """Each row of ``p`` holds every unit 0..size-1 exactly once: one min/max and one scatter per call
    (linear, about 0.3 ms for 4096 units on one CPU thread), so it stays cheap in the loops that apply
    a permutation at every step. Anything else (``torch.zeros(n)``, a repeated or out-of-range index)
    would silently copy some units over others."""
    n = group.size
    if n == 0 or p.numel() == 0:
        return
    lo, hi = torch.aminmax(p)
    if int(lo) >= 0 and int(hi) < n:  # in range: n hits on n slots per row leave none empty iff no repeats
        if bool(torch.zeros(p.shape, dtype=torch.bool, device=p.device).scatter_(-1, p, True).all()):
            return
    rows = p.reshape(-1, n)
    for i, row in enumerate(rows):
        counts = torch.bincount(row.clamp(0, n - 1).cpu(), minlength=n)
        outside = row[(row < 0) | (row >= n)]
        if outside.numel() or not bool((counts == 1).all()):
            where = f" (block {i})" if p.dim() == 2 else ""
            if outside.numel():
                what = f"index {int(outside[0])} is outside 0..{n - 1}"
            else:
                what = f"unit {int(counts.argmax())} appears {int(counts.max())} times"
            raise ValueError(
                f"permutation for group {group.name!r}{where} is not a permutation of its {n} units ({what}); "
                f"pass each of 0..{n - 1} exactly once (e.g. torch.randperm({n}))"
            )


def apply(spec: PermSpec, perm: Permutation, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Permute every tensor of ``state`` that the spec's free groups touch.

    Works on parameters, buffers and gradient dicts alike; keys the spec does not know are
    copied through unchanged, so a partial dict (say, only gradients of trainable
    parameters) is fine. A tensor whose shape differs from the one the spec was inferred
    on raises ``ValueError``: permuting it would silently scramble another architecture.
    """
    by_param = spec.members_by_param()
    groups = {g.name: g for g in spec.free_groups}
    unknown = set(perm) - set(groups)
    if unknown:
        raise KeyError(
            f"permutation names groups {sorted(unknown)} that are not free groups of this spec"
        )
    checked = {k: _check_perm(spec, groups[k], p) for k, p in perm.items()}
    out: dict[str, torch.Tensor] = OrderedDict()
    metadata = getattr(state, "_metadata", None)
    if metadata is not None:  # load_state_dict reads module versions from it (MNASNet does)
        out._metadata = metadata  # type: ignore[attr-defined]
    for key, tensor in state.items():
        entries = by_param.get(key)
        if not entries or tensor is None:
            out[key] = tensor
            continue
        expected = spec.param_shapes.get(spec.aliases.get(key, key))
        if expected is not None and tuple(tensor.shape) != tuple(expected):
            raise ValueError(
                f"{key!r} has shape {tuple(tensor.shape)} but the spec was inferred with "
                f"{tuple(expected)}: this state dict belongs to another architecture or width"
            )
        per_axis: dict[int, list[tuple[Member, torch.Tensor]]] = {}
        for group, member in entries:
            if group.name in checked:
                per_axis.setdefault(member.axis, []).append((member, checked[group.name]))
        result = tensor
        for axis, pairs in per_axis.items():
            index = _axis_gather_index(tensor.shape[axis], pairs).to(tensor.device)
            result = result.index_select(axis, index)
        out[key] = result
    return out


def group_rows(tensor: torch.Tensor, member: Member) -> torch.Tensor:
    """The member's slice of ``tensor`` as a matrix ``(group.size, -1)``: row ``c`` holds
    everything that moves with unit ``c``. Matching builds its cost matrices from these.
    For a member of a group indexed by an outer one the result is ``(blocks, size, -1)``:
    one matrix per block."""
    pos = member_positions(member).to(tensor.device)
    n = member.sizes[member.group_dim]
    if member.index_dim is None:
        moved = torch.movedim(pos, member.group_dim, 0).reshape(-1)
        lead: tuple[int, ...] = (n,)
    else:
        moved = torch.movedim(pos, (member.index_dim, member.group_dim), (0, 1)).reshape(-1)
        lead = (member.sizes[member.index_dim], n)
    picked = tensor.index_select(member.axis, moved)
    picked = torch.movedim(picked, member.axis, 0)
    return picked.reshape(*lead, -1)
