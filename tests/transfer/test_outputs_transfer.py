"""``TransferOptions(outputs=...)``: the transfer route infers (and caches) the spec preserving only
the outputs it names, as ``permgraph.infer(outputs=...)`` does; the choice is part of the setting."""

from __future__ import annotations

import pytest
import torch

import permgraph
from transfer.engine import TransferEngine
from transfer.inputs import ModelInputs
from transfer.options import OptionsError, TransferOptions
from transfer.results import TransferError


@pytest.fixture(scope="module")
def t5():
    """A tiny T5 from a config, its keyword inputs, and data the engine accepts (never read here:
    the spec is inferred on the example inputs)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.T5Config(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16, vocab_size=64)
    model = transformers.T5ForConditionalGeneration(config)
    ids = torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(0))
    inputs = ModelInputs((), {"input_ids": ids, "decoder_input_ids": ids, "use_cache": False}, "test")
    data = ((ids.float(), ids[:, 0]), (ids.float(), ids[:, 0]))
    return model, inputs, data


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PERMGRAPH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _engine(t5, **options) -> TransferEngine:
    model, inputs, data = t5
    return TransferEngine(model, data, TransferOptions(progress=False, **options), example_inputs=inputs)


def _encoder_stream(spec: permgraph.PermSpec) -> permgraph.Group:
    return next(g for g in spec.groups if any(m.param == "encoder.final_layer_norm.weight" for m in g.members))


def _permuted(spec: permgraph.PermSpec) -> set[str]:
    return {m.param for g in spec.free_groups for m in g.members}


def test_t5_permutes_every_tensor_when_only_the_logits_are_kept_and_the_cache_keeps_the_two_apart(t5, cache,
                                                                                                  monkeypatch):  # fmt: skip
    model, inputs, _ = t5
    logits = _engine(t5, outputs=("logits",)).spec
    assert logits.outputs == ("logits",)
    assert _encoder_stream(logits).is_free
    assert _permuted(logits) == set(logits.param_shapes)  # every tensor (the tied embeddings are aliases of one)
    assert set(logits.param_shapes) | set(logits.aliases) == set(model.state_dict())
    report = permgraph.verify(model, logits, inputs.args, inputs.kwargs)
    assert report.ok and report.outputs == ("logits",), report
    # the cache now holds the logits-only spec: every output's spec must not be served from it
    every = _engine(t5).spec
    assert every.outputs is None
    assert "model output" in (_encoder_stream(every).blocked or "")
    assert _permuted(every) < set(every.param_shapes)
    assert len(list(cache.rglob("*.json"))) == 2  # one entry per choice of outputs
    # and the logits-only spec comes back from the cache under its own key, not inferred again
    import transfer.spec_lookup as lookup

    def no_inference(*args, **kwargs):
        raise AssertionError("inferred again instead of read from the cache")

    monkeypatch.setattr(lookup, "infer_spec", no_inference)
    assert _engine(t5, outputs=("logits",)).spec == logits


def test_an_output_the_model_does_not_return_is_refused_naming_those_it_has(t5, cache):
    with pytest.raises(TransferError, match="no output 'decoder_hidden'; its outputs are: logits, encoder_last_hidden"):
        _ = _engine(t5, outputs=("decoder_hidden",)).spec


def test_a_given_spec_must_preserve_what_the_options_say(t5):
    model, inputs, data = t5
    spec = permgraph.infer(model, inputs.args, inputs.kwargs, outputs=("logits",))
    with pytest.raises(TransferError, match="preserves only logits but the options say every output"):
        TransferEngine(model, data, TransferOptions(), spec=spec)
    assert TransferEngine(model, data, TransferOptions(outputs=("logits",)), spec=spec).spec is spec


def test_outputs_are_names_and_part_of_the_setting_only_when_chosen():
    assert TransferOptions(outputs=["logits"]).outputs == ("logits",)  # a config table's list
    assert TransferOptions(outputs=("logits", "loss")).setting()["outputs"] == ["logits", "loss"]  # as JSON holds it
    assert "outputs" not in TransferOptions().setting()  # results written before the option stay comparable
    for bad in ("logits", (), ("",), (0,)):
        with pytest.raises(OptionsError, match="outputs must be"):
            TransferOptions(outputs=bad)
