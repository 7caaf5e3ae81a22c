"""Fixtures the permgraph tests share (``one_thread`` comes from ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import permgraph


@pytest.fixture
def infer_verified() -> Callable[..., permgraph.PermSpec]:
    """``infer_verified(model, *args)``: infer the spec and prove it with ``verify`` (float64,
    trained-like values, a tight tolerance), so every structural assertion a test makes
    is about a spec known to be correct."""

    def run(model: nn.Module, *args: torch.Tensor) -> permgraph.PermSpec:
        torch.manual_seed(0)
        spec = permgraph.infer(model, args)
        report = permgraph.verify(model, spec, args, rtol=1e-9)
        assert report.ok, f"{report}\n{spec}"
        return spec

    return run
