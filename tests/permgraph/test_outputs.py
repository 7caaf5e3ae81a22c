"""``infer(..., outputs=...)``: only the chosen outputs must be preserved; the spec records
the choice and ``verify`` compares only those outputs."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

import permgraph
from permgraph.infer import analyse, spec_from_analysis
from permgraph.trace import trace
from zoo.cli.permgraph import main


@pytest.fixture(scope="module")
def t5():
    """A tiny T5 and its specs inferred with every output counting and with the logits only
    (traced once each: torch.export of T5 is the slow part)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.T5Config(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16, vocab_size=64)
    model = transformers.T5ForConditionalGeneration(config)
    ids = torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(0))
    kwargs = {"input_ids": ids, "decoder_input_ids": ids, "use_cache": False}
    traced = trace(model, (), kwargs)  # analysed twice: what infer(outputs=...) does after tracing
    every, logits = (spec_from_analysis(analyse(traced, outputs)) for outputs in (None, ("logits",)))
    return model, kwargs, every, logits


def _encoder_stream(spec: permgraph.PermSpec) -> permgraph.Group:
    return next(g for g in spec.groups if any(m.param == "encoder.final_layer_norm.weight" for m in g.members))


def test_t5_encoder_stream_is_free_when_only_the_logits_count(t5):
    model, kwargs, every, logits = t5
    assert every.outputs is None
    assert "model output" in (_encoder_stream(every).blocked or "")
    assert logits.outputs == ("logits",)
    assert _encoder_stream(logits).is_free
    assert len(logits.free_groups) > len(every.free_groups)
    report = permgraph.verify(model, logits, (), kwargs, control=True)
    assert report.ok and report.outputs == ("logits",), report
    assert report.outputs_compared == 1 and "outputs compared: logits" in str(report)
    # the same groups checked on every output are wrong: encoder_last_hidden_state moves
    assert not permgraph.verify(model, dataclasses.replace(logits, outputs=None), (), kwargs).ok


def test_chosen_outputs_survive_json(t5):
    _, _, every, spec = t5
    data = json.loads(spec.to_json())
    assert data["outputs"] == ["logits"]
    back = permgraph.PermSpec.from_json(spec.to_json())
    assert back == spec and back.outputs == ("logits",)
    assert "outputs" not in json.loads(every.to_json())
    data["outputs"] = "logits"  # not a list of names
    with pytest.raises(ValueError, match="list of output names"):
        permgraph.PermSpec.from_dict(data)


class TwoHeads(nn.Module):
    """A trunk, a head, and the trunk's features returned beside it (a tuple or a dict)."""

    def __init__(self, as_dict: bool = False):
        super().__init__()
        self.trunk, self.mid, self.head = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 3)
        self.as_dict = as_dict

    def forward(self, x):
        features = self.mid(torch.relu(self.trunk(x)))
        out = self.head(torch.relu(features))
        return {"out": out, "features": features} if self.as_dict else (out, features)


def test_an_unknown_output_name_lists_the_model_s_outputs():
    with pytest.raises(ValueError, match="no output 'logits'; its outputs are: out, features"):
        permgraph.infer(TwoHeads(as_dict=True), (torch.randn(5, 4),), outputs=("logits",))
    with pytest.raises(ValueError, match="no output '2'; its outputs are: 0, 1"):
        permgraph.infer(TwoHeads(), (torch.randn(5, 4),), outputs=(2,))
    with pytest.raises(ValueError, match="names no output"):
        permgraph.infer(TwoHeads(), (torch.randn(5, 4),), outputs=())


@pytest.mark.parametrize("as_dict,chosen", [(False, (0,)), (False, ("0",)), (True, ("out",)), (True, "out")])
def test_tuple_index_or_dict_key_chooses_the_output(as_dict, chosen):
    torch.manual_seed(0)
    model, x = TwoHeads(as_dict), torch.randn(5, 4)
    assert [g.size for g in permgraph.infer(model, (x,)).free_groups] == [8]  # mid's units are returned
    spec = permgraph.infer(model, (x,), outputs=chosen)
    assert sorted(g.size for g in spec.free_groups) == [8, 8]
    report = permgraph.verify(model, spec, (x,), control=True)
    assert report.ok and report.outputs_compared == 1, report


def test_command_line_output_flag(user_module, capsys):
    user_module("two_heads", "from tests.permgraph.test_outputs import TwoHeads\n"
                "def net():\n    return TwoHeads(as_dict=True)\n")  # fmt: skip
    assert main(["inspect", "two_heads:net", "--input", "5,4"]) == 0
    assert "1 free groups" in capsys.readouterr().out
    assert main(["inspect", "two_heads:net", "--input", "5,4", "--output", "out"]) == 0
    assert "2 free groups" in capsys.readouterr().out
    assert main(["verify", "two_heads:net", "--input", "5,4", "--output", "out"]) == 0
    out = capsys.readouterr().out
    assert "verify OK" in out and "outputs compared: out" in out
    assert main(["verify", "two_heads:net", "--input", "5,4", "--output", "logits"]) == 2
    err = capsys.readouterr().err
    assert "no output 'logits'" in err and "out, features" in err
