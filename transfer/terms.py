"""The terms a :class:`transfer.matching.Matcher` sums into a group's cost: the rows of a member (its
units along one axis, everything else flattened), a tensor permuted by the other groups' permutations,
and one pair's product of target and source rows, cached with the permutations it was made under."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from permgraph.apply import member_positions
from permgraph.spec import Member

__all__ = ["PairTerm", "same_signature", "pair_term", "member_layout", "member_rows", "permute_tensor", "gather_axis"]


@dataclass
class PairTerm:
    """One cached coupled term: the permutations it was formed under, the pairs it has summed."""

    signature: tuple[torch.Tensor, ...]
    count: int = 0
    matrix: torch.Tensor | None = None


def same_signature(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def pair_term(t: torch.Tensor, s: torch.Tensor, m: Member, on_target: list, on_source: list, sort: bool) -> torch.Tensor:
    """One pair's term of a group's cost through member ``m``: ``rows(t) @ rows(s).T`` with the
    other permutations applied (or, for the sorted start, with each row sorted)."""
    if sort:
        return member_rows(t, m).sort(dim=-1).values @ member_rows(s, m).sort(dim=-1).values.transpose(-1, -2)
    t_rows = member_rows(permute_tensor(t, on_target), m) if on_target else member_rows(t, m)
    return t_rows @ member_rows(permute_tensor(s, on_source), m).transpose(-1, -2)


@functools.lru_cache(maxsize=4096)
def member_layout(m: Member) -> tuple[torch.Tensor | None, tuple[int, ...]]:
    """The axis positions :func:`permgraph.apply.group_rows` gathers for ``m`` (None when they are
    the axis in order, as for plain and block-expanded members), and the rows' leading shape."""
    pos = member_positions(m)
    n = m.sizes[m.group_dim]
    if m.index_dim is None:
        moved, lead = torch.movedim(pos, m.group_dim, 0).reshape(-1), (n,)
    else:
        moved = torch.movedim(pos, (m.index_dim, m.group_dim), (0, 1)).reshape(-1)
        lead = (m.sizes[m.index_dim], n)
    if moved.numel() == m.axis_size and torch.equal(moved, torch.arange(m.axis_size)):
        return None, lead
    return moved, lead


def member_rows(x: torch.Tensor, m: Member) -> torch.Tensor:
    """``group_rows(x, m)``, the same contiguous tensor, without gathering an axis that is already in
    order: a block-expanded member (a conv channel seen by a linear layer as 7x7=49 features) is a
    reshape of its axis, which an element-wise ``index_select`` on that axis made 10x slower."""
    moved, lead = member_layout(m)
    picked = x if moved is None else x.index_select(m.axis, moved)
    rows = torch.movedim(picked, m.axis, 0).reshape(*lead, -1).contiguous()
    # A view of x may sit off the allocator's 64-byte alignment (tensors read from safetensors do),
    # and BLAS then takes other kernels with other rounding: copy, as group_rows always did.
    return rows if rows.data_ptr() % 64 == 0 else rows.clone()


def permute_tensor(tensor: torch.Tensor, entries: list[tuple[Member, torch.Tensor]]) -> torch.Tensor:
    """Gather-permute ``tensor`` by each (member, perm) on ``member.axis``."""
    per_axis: dict[int, list[tuple[Member, torch.Tensor]]] = {}
    for m, p in entries:
        per_axis.setdefault(m.axis, []).append((m, p))
    out = tensor
    for axis, pairs in per_axis.items():
        index = torch.arange(tensor.shape[axis])
        for m, p in pairs:
            pos = member_positions(m)
            if m.index_dim is None:
                moved = pos.index_select(m.group_dim, p.cpu())
            else:
                shape = [1] * pos.dim()
                shape[m.index_dim], shape[m.group_dim] = p.shape
                moved = torch.gather(pos, m.group_dim, p.cpu().reshape(shape).expand(pos.shape))
            new_index = index.clone()
            new_index[pos.reshape(-1)] = index[moved.reshape(-1)]
            index = new_index
        out = gather_axis(out, axis, index)
    return out


def gather_axis(x: torch.Tensor, axis: int, index: torch.Tensor) -> torch.Tensor:
    """``x.index_select(axis, index)``, moving aligned runs of consecutive positions as blocks: a
    permutation of 512 conv channels on the 25088 inputs of vgg's first linear layer moves 512
    blocks of 49 (a 4096 x 25088 gather: 1.3 s element-wise, 0.1 s by blocks)."""
    size = index.numel()
    if torch.equal(index, torch.arange(size)):
        return x
    starts = torch.ones(size, dtype=torch.bool)
    starts[1:] = index[1:] != index[:-1] + 1
    at = torch.nonzero(starts).reshape(-1)
    run = int(np.gcd.reduce(np.concatenate([[size], at.numpy(), index[at].numpy()])))
    if run == 1:
        return x.index_select(axis, index.to(x.device))
    shape = x.shape
    blocks = x.reshape(*shape[:axis], size // run, run, *shape[axis + 1 :])
    return blocks.index_select(axis, (index[::run] // run).to(x.device)).reshape(shape)
