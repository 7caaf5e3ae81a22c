"""Structured cases that need more than one op to show (test_op_table.py has one row per op),
each stated as the groups it must produce and proven by verify (the ``infer_verified`` fixture)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def sizes(spec):
    return sorted(g.size for g in spec.free_groups)


class ConcatSplit(nn.Module):
    """DenseNet-style concat, then a split: each part keeps its own group."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(3, 5)
        self.c, self.d = nn.Linear(9, 6), nn.Linear(4, 2)

    def forward(self, x):
        h = torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], dim=-1)
        left, right = h.split([4, 5], dim=-1)
        return self.c(h) + self.d(left).sum(-1, keepdim=True) + right.mean(-1, keepdim=True)


def test_concat_keeps_one_group_per_part(infer_verified):
    spec = infer_verified(ConcatSplit(), torch.randn(2, 3))
    assert sizes(spec) == [2, 4, 5]  # a, b parts; d's outputs are summed, so they may move too
    c_members = [m for g in spec.free_groups for m in g.members if m.param == "c.weight"]
    assert sorted((m.offset, m.sizes) for m in c_members) == [(0, (4,)), (4, (5,))]


def test_grouped_conv_moves_groups_as_blocks_and_units_within(infer_verified):
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=4), nn.ReLU(),
                          nn.Conv2d(8, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    spec = infer_verified(model, torch.randn(1, 3, 6, 6))
    roles = {g.structure for g in spec.free_groups}
    assert "conv groups" in roles
    assert sizes(spec) == [2, 2, 4]  # 4 conv groups; 2 in-channels and 2 out-channels within each


def test_depthwise_conv_ties_channels_through(infer_verified):
    model = nn.Sequential(nn.Conv2d(3, 6, 1), nn.ReLU(), nn.Conv2d(6, 6, 3, groups=6), nn.ReLU(),
                          nn.Conv2d(6, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    spec = infer_verified(model, torch.randn(1, 3, 6, 6))
    (group,) = spec.free_groups
    assert {m.param for m in group.members} == {"0.weight", "0.bias", "2.weight", "2.bias", "4.weight"}


def test_group_norm_factors_channels_into_groups(infer_verified):
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.GroupNorm(2, 8), nn.ReLU(), nn.Conv2d(8, 2, 1),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten())
    spec = infer_verified(model, torch.randn(1, 3, 5, 5))
    assert sizes(spec) == [2, 4]
    assert any(g.structure == "norm groups" for g in spec.free_groups)


def test_channel_shuffle_is_followed_through_reshape_and_transpose(infer_verified):
    class Shuffle(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 6, 1), nn.Conv2d(6, 2, 1)

        def forward(self, x):
            h = F.relu(self.a(x))
            n, c, hh, ww = h.shape
            h = h.view(n, 2, c // 2, hh, ww).transpose(1, 2).reshape(n, c, hh, ww)
            return self.b(h).mean((2, 3))

    spec = infer_verified(Shuffle(), torch.randn(1, 3, 4, 4))
    assert sizes(spec) == [2, 3]


def test_tied_embedding_and_head_share_the_embedding_axis(infer_verified):
    class TiedLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.fc = nn.Embedding(11, 6), nn.Linear(6, 6)
            self.head = nn.Linear(6, 11, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, ids):
            return self.head(torch.tanh(self.fc(self.emb(ids))))

    spec = infer_verified(TiedLM(), torch.randint(0, 11, (2, 5)))
    assert spec.aliases in ({"head.weight": "emb.weight"}, {"emb.weight": "head.weight"})
    (group,) = spec.free_groups  # fc's outputs, fc's inputs and the tied embedding axis
    assert {(m.param, m.axis) for m in group.members} >= {("fc.weight", 0), ("fc.weight", 1)}
    by_param = spec.members_by_param()
    assert {m.axis for _, m in by_param["emb.weight"]} == {m.axis for _, m in by_param["head.weight"]} == {1}


def test_sdpa_grouped_query_attention(infer_verified):
    class GQA(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v = nn.Linear(8, 8), nn.Linear(8, 4), nn.Linear(8, 4)
            self.o = nn.Linear(8, 8)

        def forward(self, x):
            b, n, _ = x.shape
            q = self.q(x).view(b, n, 4, 2).transpose(1, 2)
            k = self.k(x).view(b, n, 2, 2).transpose(1, 2)
            v = self.v(x).view(b, n, 2, 2).transpose(1, 2)
            a = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
            return self.o(a.transpose(1, 2).reshape(b, n, 8)).sum(1)

    spec = infer_verified(GQA(), torch.randn(2, 3, 8))
    roles = {g.structure for g in spec.free_groups}
    assert "heads" in roles and "query heads per key head" in roles


def test_integer_indexing_blocks_the_indexed_axis_only(infer_verified):
    class Pick(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 6), nn.Linear(6, 2)
            self.register_buffer("rows", torch.tensor([0, 2, 3]))

        def forward(self, x):  # x: (batch, positions, features)
            return self.b(F.relu(self.a(x))[:, self.rows]).sum(1)

    spec = infer_verified(Pick(), torch.randn(2, 5, 3))
    assert sizes(spec) == [6]
