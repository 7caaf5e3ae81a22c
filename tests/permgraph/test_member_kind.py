"""A member's kind is a type (``MemberKind``), and its label is made from it, never parsed back."""

from __future__ import annotations

from permgraph.spec import Member, MemberKind


def member(sizes, strides, group_dim=0, offset=0, index_dim=None, axis_size=8):
    return Member("w", 0, axis_size, sizes, strides, group_dim, offset, index_dim)


def test_every_kind_and_its_label():
    cases = [
        (member((8,), (1,)), MemberKind.PLAIN, "plain"),
        (member((2, 4), (4, 1)), MemberKind.BLOCK_EXPANDED, "block-expanded x4"),
        (member((4,), (1,), offset=4), MemberKind.SLICE, "slice [4:8]"),
        (member((2, 4), (4, 1), group_dim=1), MemberKind.FACTOR, "factor 1 of 2x4"),
        (member((2, 4), (4, 1), group_dim=1, index_dim=0), MemberKind.WITHIN_BLOCKS,
         "within each of 2 blocks, factor 1 of 2x4"),
    ]  # fmt: skip
    for m, kind, label in cases:
        assert (m.kind, m.structure) == (kind, label)
