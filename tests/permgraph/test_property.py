"""Property: randomly generated MLP / conv / residual / attention models always verify, and
every generated model with a hidden layer has at least one free group."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import permgraph

ACTS = [nn.ReLU, nn.GELU, nn.Tanh, nn.SiLU, nn.Identity]


class RandomMLP(nn.Module):
    def __init__(self, widths: list[int], act: type[nn.Module], residual: bool, norm: str | None):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
        self.norms = nn.ModuleList(
            (nn.LayerNorm(b) if norm == "ln" else nn.BatchNorm1d(b) if norm == "bn" else nn.Identity())
            for b in widths[1:-1]
        )
        self.act = act()
        self.residual = residual

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            y = layer(x)
            if i < len(self.layers) - 1:
                y = self.act(self.norms[i](y))
                if self.residual and y.shape == x.shape:
                    y = y + x
            x = y
        return x


class RandomConvNet(nn.Module):
    def __init__(self, channels: list[int], groups: int, residual: bool, norm: str | None, pool: str):
        super().__init__()
        convs, norms = [], []
        for i, (a, b) in enumerate(zip(channels, channels[1:])):
            g = groups if i > 0 and a % groups == 0 and b % groups == 0 else 1
            convs.append(nn.Conv2d(a, b, 3, padding=1, groups=g))
            norms.append(nn.BatchNorm2d(b) if norm == "bn" else
                         nn.GroupNorm(2, b) if norm == "gn" and b % 2 == 0 else nn.Identity())
        self.convs, self.norms = nn.ModuleList(convs), nn.ModuleList(norms)
        self.residual, self.pool = residual, pool
        self.head = nn.Linear(channels[-1] * (1 if pool == "gap" else 16), 3)

    def forward(self, x):
        for conv, norm in zip(self.convs, self.norms):
            y = F.relu(norm(conv(x)))
            x = y + x if self.residual and y.shape == x.shape else y
        x = x.mean((2, 3)) if self.pool == "gap" else F.adaptive_avg_pool2d(x, 4).flatten(1)
        return self.head(x)


class RandomAttention(nn.Module):
    def __init__(self, dim: int, heads: int, fused: bool, causal: bool, depth: int):
        super().__init__()
        self.heads, self.fused, self.causal = heads, fused, causal
        self.embed = nn.Linear(5, dim)
        self.blocks = nn.ModuleList()
        for _ in range(depth):
            block = nn.ModuleDict({"ln": nn.LayerNorm(dim), "proj": nn.Linear(dim, dim)})
            if fused:
                block["qkv"] = nn.Linear(dim, 3 * dim)
            else:
                block["q"], block["k"], block["v"] = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
            self.blocks.append(block)
        self.out = nn.Linear(dim, 2)

    def forward(self, x):
        x = self.embed(x)
        b, n, d = x.shape
        for blk in self.blocks:
            h = blk["ln"](x)
            if self.fused:
                q, k, v = blk["qkv"](h).split(d, dim=-1)
            else:
                q, k, v = blk["q"](h), blk["k"](h), blk["v"](h)
            q, k, v = (t.view(b, n, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
            if self.causal:
                a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                a = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, dim=-1) @ v
            x = x + blk["proj"](a.transpose(1, 2).reshape(b, n, d))
        return self.out(x.mean(1))


def _check(model: nn.Module, x: torch.Tensor, per_block: bool = False) -> permgraph.PermSpec:
    spec = permgraph.infer(model, (x,), per_block=per_block)
    report = permgraph.verify(model, spec, (x,), rtol=1e-9, control=True)
    assert report.ok, f"{report}\n{spec}"
    if spec.free_groups:  # the check is sensitive: breaking one tie moves the outputs
        assert report.control_diff > 1e-6 * report.max_abs_output, report
    return spec


# derandomize: CI sees the same examples on every run, so a failure reproduces
SETTINGS = settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(
    widths=st.lists(st.integers(2, 9), min_size=2, max_size=5),
    act=st.sampled_from(ACTS),
    residual=st.booleans(),
    norm=st.sampled_from([None, "ln", "bn"]),
)
def test_random_mlps_verify(widths, act, residual, norm):
    torch.manual_seed(0)
    model = RandomMLP([4, *widths, 3], act, residual, norm)
    spec = _check(model, torch.randn(16, 4))
    assert len(spec.free_groups) >= 1


@SETTINGS
@given(
    channels=st.lists(st.sampled_from([2, 4, 6, 8]), min_size=1, max_size=4),
    groups=st.sampled_from([1, 2]),
    residual=st.booleans(),
    norm=st.sampled_from([None, "bn", "gn"]),
    pool=st.sampled_from(["gap", "flatten"]),
    per_block=st.booleans(),
)
def test_random_convnets_verify(channels, groups, residual, norm, pool, per_block):
    torch.manual_seed(0)
    model = RandomConvNet([3, *channels], groups, residual, norm, pool)
    spec = _check(model, torch.randn(2, 3, 8, 8), per_block)
    assert len(spec.free_groups) >= 1


@SETTINGS
@given(
    heads=st.sampled_from([1, 2, 4]),
    head_dim=st.sampled_from([2, 3, 4]),
    fused=st.booleans(),
    causal=st.booleans(),
    depth=st.integers(1, 2),
    per_block=st.booleans(),
)
def test_random_attention_verify(heads, head_dim, fused, causal, depth, per_block):
    torch.manual_seed(0)
    model = RandomAttention(heads * head_dim, heads, fused, causal, depth)
    spec = _check(model, torch.randn(2, 5, 5), per_block)
    if per_block and heads > 1 and head_dim > 1 and not fused:
        assert any(g.indexed_by for g in spec.free_groups), spec
    if heads > 1:
        assert any("heads" in g.structure for g in spec.free_groups), spec
