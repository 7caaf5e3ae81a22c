"""Drawings: a PNG ``save_png`` writes says it is ours, so the command line can tell it
from a user's file before overwriting."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import permgraph


def test_a_saved_png_carries_permgraph_in_its_metadata(tmp_path):
    pytest.importorskip("matplotlib")
    from permgraph.draw import save_png

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    spec, analysis = permgraph.infer(model, (torch.randn(2, 4),), return_analysis=True)
    path = save_png(analysis, spec, tmp_path / "graph.png")
    head = path.read_bytes()[:4096]
    assert head.startswith(b"\x89PNG")
    assert b"permgraph" in head


class TinyAttention(nn.Module):
    """Two heads of four dims: the value path carries a heads group and a head-dim group."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(8, 8) for _ in range(4))

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = (f(x).view(b, n, 2, 4).transpose(1, 2) for f in (self.q, self.k, self.v))
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return self.o(y.transpose(1, 2).reshape(b, n, 8))


def attention():
    model = TinyAttention()
    return permgraph.infer(model, (torch.randn(2, 3, 8),), per_block=True, return_analysis=True)


def test_a_node_with_several_groups_carries_them_all_widest_first():
    from permgraph.draw import dataflow_graph

    spec, analysis = attention()
    sizes = {g.name: g.size for g in spec.free_groups}
    dg = dataflow_graph(analysis, spec)
    multi = [d for _, d in dg.nodes(data=True) if len(d["groups"]) >= 2]
    assert multi, "the attention ops carry their heads and their head dim"
    for d in multi:
        assert d["group"] == d["groups"][0]
        assert [sizes[g] for g in d["groups"]] == sorted((sizes[g] for g in d["groups"]), reverse=True)
    shown = {g for _, d in dg.nodes(data=True) for g in d["groups"]}
    assert {g.name for g in spec.free_groups} <= shown, "every free group appears on some op"


def test_the_png_has_a_legend_naming_every_group_drawn_and_a_ring_per_group():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from permgraph.draw import dataflow_graph, draw_figure

    spec, analysis = attention()
    fig = draw_figure(analysis, spec)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(fig)
    for g in spec.free_groups:
        assert f"{g.name} ({g.size})" in labels
    assert labels[-1] == "no free group"
    depth = max(len(d["groups"]) for _, d in dataflow_graph(analysis, spec).nodes(data=True))
    assert len(ax.collections) >= depth + 1, "one scatter layer per ring, plus the edges"


def test_dot_fills_a_node_with_every_group_colour():
    from permgraph.draw import to_dot

    spec, analysis = attention()
    dot = to_dot(analysis, spec)
    assert "style=wedged" in dot and 'tooltip="groups ' in dot
