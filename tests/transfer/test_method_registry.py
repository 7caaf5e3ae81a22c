"""A transfer method is one class and one registration: the engine, the registry's lists, labels and
plot styles pick it up with no other change."""

from __future__ import annotations

import pytest
from test_methods import MLP, record, run, tiny_data

from permgraph.apply import Permutation
from transfer.methods import TransferMethod, get_method, label, method_names, plot_style, register
from transfer.methods import base as registry


@pytest.fixture
def reversed_method():
    @register
    class Reversed(TransferMethod):
        """Every unit in reverse order: a deterministic non-identity permutation."""

        name, label, style, color, rank = "reversed", "Reversed", "v-", "C9", 60

        def start(self) -> Permutation:
            import torch

            return {g.name: torch.arange(g.size - 1, -1, -1) for g in self.ctx.spec.free_groups}

    yield Reversed
    del registry._REGISTRY["reversed"]


def test_a_registered_method_runs_through_the_engine_and_appears_everywhere(tmp_path, reversed_method):
    assert method_names()[-1] == "reversed" and get_method("reversed") is reversed_method
    assert label("reversed") == "Reversed" and plot_style("reversed") == {"fmt": "v-", "label": "Reversed",
                                                                          "color": "C9"}  # fmt: skip
    data = tiny_data((6,), 3)
    src = record(tmp_path / "src", MLP, 0, data)
    res = run("reversed", src, 1, data, tmp_path / "out", T=2)
    assert res["t"] == [0, 1, 2] and len(res["val_acc"]) == 3


def test_names_must_be_unique():
    with pytest.raises(ValueError, match="already registered"):

        @register
        class Another(TransferMethod):
            name, label = "fgmt", "Another FGMT"
