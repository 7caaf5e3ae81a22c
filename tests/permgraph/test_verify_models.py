"""Every inferred spec is proven by ``verify``, and each test model declares a contract: the
number of free groups and of permuted state-dict tensors, so a change that finds fewer
symmetries (or invents some) fails here."""

from __future__ import annotations

import pytest
import torch
import torchvision

import permgraph
from tests.permgraph.rebasin_round_trip import assert_rebasin_round_trip
from zoo.models import build, example_inputs

# model id -> (free groups, permuted tensors). Derivations: ResNet-18 = 4 stage streams + 8
# block-inner groups, and every tensor but fc.bias and the 20 num_batches_tracked moves;
# attention models: per block one MLP group, one head group, one q/k-dim and one v-dim group,
# plus the residual stream where the output does not expose it.
ZOO_CONTRACTS = {
    "zoo:mlp2?width=64": (1, 3),
    "zoo:conv8?width=0.125": (10, 21),
    "zoo:resnet18?width=0.125": (12, 101),
    "zoo:resnet18?width=0.125&stem=imagenet": (12, 101),
    "zoo:resnet20?width=1": (12, 106),
    "zoo:vgg16?width=0.125": (None, None),
    "zoo:vit_tiny": (9, 39),
    "zoo:gpt_tiny": (9, None),
}

TORCHVISION_CONTRACTS = {  # name -> (input size, free groups, permuted tensors)
    "resnet18": (64, 12, 101),
    "resnet50": (64, 37, 266),
    "vgg11": (64, 10, 21),
    "mobilenet_v2": (64, 25, 261),
    "densenet121": (64, 120, 605),
    "efficientnet_b0": (64, 40, 310),
    "regnet_y_400mf": (64, 69, 330),
    "convnext_tiny": (64, 22, 181),
    "vit_b_16": (224, 49, 151),  # nn.MultiheadAttention: q/k dims and value dims apart in each of 12 blocks
}


def check(model, args, kwargs=None, contract=(None, None)):
    spec = permgraph.infer(model, args, kwargs)
    report = permgraph.verify(model, spec, args, kwargs)
    assert report.ok, f"{report}\n{spec}"
    groups, permuted = contract
    if groups is not None:
        assert len(spec.free_groups) == groups, spec
    if permuted is not None:
        assert len(report.permuted_params) == permuted, spec
    assert len(spec.free_groups) > 0
    assert_rebasin_round_trip(model, spec)  # check_spec reads its to_rebasin() back exactly
    return spec, report


@pytest.mark.parametrize("model_id", list(ZOO_CONTRACTS))
def test_zoo_models_verify(model_id):
    torch.manual_seed(0)
    check(build(model_id), example_inputs(model_id), contract=ZOO_CONTRACTS[model_id])


@pytest.mark.parametrize("model_id", ["zoo:vit_tiny", "zoo:gpt_tiny"])
def test_per_head_inner_permutations_verify(model_id):
    torch.manual_seed(0)
    model, args = build(model_id), example_inputs(model_id)
    spec = permgraph.infer(model, args, per_block=True)
    report = permgraph.verify(model, spec, args, trials=2, control=True)
    assert report.ok, report
    assert report.control_diff > 1e-6 * report.max_abs_output
    indexed = [g for g in spec.free_groups if g.indexed_by]
    assert len(indexed) == 4  # q/k dims and v dims of 2 blocks, each per head
    assert all("heads" in spec.group(g.indexed_by).structure for g in indexed)


@pytest.mark.parametrize("name", list(TORCHVISION_CONTRACTS))
def test_torchvision_models_verify(name):
    size, groups, permuted = TORCHVISION_CONTRACTS[name]
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None)
    check(model, (torch.randn(1, 3, size, size),), contract=(groups, permuted))


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "convnext_atto"])
def test_timm_models_verify(name):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10)
    spec, _ = check(model, (torch.randn(1, 3, 224, 224),))
    if name.startswith("vit"):
        assert any("heads" in g.structure for g in spec.free_groups)


def _hf(kind):
    import transformers as T

    if kind == "bert":
        cfg = T.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                           vocab_size=100)
        return T.BertModel(cfg), {}
    if kind == "gpt2":
        cfg = T.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=100, n_positions=32)
        return T.GPT2LMHeadModel(cfg), {"use_cache": False}
    cfg = T.LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                        intermediate_size=128, vocab_size=100, max_position_embeddings=32)
    return T.LlamaForCausalLM(cfg), {"use_cache": False}


@pytest.mark.parametrize("kind,contract", [("bert", (8, 20)), ("gpt2", (9, 29)), ("llama", (9, 21))])
def test_hugging_face_models_verify_with_heads(kind, contract):
    torch.manual_seed(0)
    model, kwargs = _hf(kind)
    ids = torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(0))
    spec, _ = check(model, (ids,), kwargs, contract=contract)
    heads = [g for g in spec.free_groups if "heads" in g.structure]
    assert len(heads) >= 2, "attention heads must be inferred from the graph"
    if kind == "gpt2":  # the lm head is tied to the token embedding: both keys move together
        pair = {"lm_head.weight", "transformer.wte.weight"}
        assert len(spec.aliases) == 1 and set(spec.aliases.items()).pop() in {tuple(pair), tuple(pair)[::-1]}
        assert spec.members_by_param()["lm_head.weight"] == spec.members_by_param()["transformer.wte.weight"]
    if kind == "llama":  # grouped-query attention: key/value heads, and query heads within each
        q, k = "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight"
        kv_heads = [g for g in heads if k in g.params and q in g.params]
        q_within = [g for g in heads if q in g.params and k not in g.params]
        assert len(kv_heads) == 1 and kv_heads[0].size == 2
        assert len(q_within) == 1 and q_within[0].size == 2
        # RoPE binds query/key dims to fixed frequencies: they must not be free
        assert not any("query/key dims" in g.structure for g in spec.free_groups)
