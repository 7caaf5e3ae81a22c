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
