"""A model torch.export cannot follow gets a TraceError naming the module and what to try."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import permgraph


class DataDependent(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # branching on a tensor's value cannot be traced
            return x * 2
        return x


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.branchy = DataDependent()

    def forward(self, x):
        return self.branchy(self.fc(x))


def test_untraceable_model_names_the_failing_module():
    with pytest.raises(permgraph.TraceError) as info:
        permgraph.infer(Net(), (torch.randn(2, 4),))
    message = str(info.value)
    assert "'branchy'" in message
    assert "control flow" in message


def test_non_module_is_rejected():
    with pytest.raises(TypeError, match="expects an nn.Module"):
        permgraph.infer(lambda x: x, (torch.randn(2, 4),))


def test_a_failed_trace_writes_nothing_to_stderr(capsys, caplog):
    """torch.export prints its partial graph to stderr before raising; the caller sees only
    the TraceError, which keeps that text, and the DEBUG log has it too."""
    with caplog.at_level("DEBUG", logger="permgraph.trace"):
        with pytest.raises(permgraph.TraceError) as info:
            permgraph.infer(Net(), (torch.randn(2, 4),))
    assert capsys.readouterr().err == ""
    assert isinstance(info.value.export_log, str)
    if info.value.export_log:
        assert info.value.export_log in caplog.text
