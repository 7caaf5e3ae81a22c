"""Zoo models build from ids, run forward and backward, export, and refuse what they cannot do."""

import pytest
import torch

from zoo import ZooError, build, example_inputs, list_models
from zoo.models import parse_model_id

SMALL = {
    "mlp2": "zoo:mlp2?width=16",
    "mlp": "zoo:mlp?depth=2&width=16",
    "conv8": "zoo:conv8?width=0.125",
    "resnet18": "zoo:resnet18?width=0.125",
    "resnet20": "zoo:resnet20?width=0.5",
    "vgg16": "zoo:vgg16?width=0.125&batch_norm=true",
    "vit_tiny": "zoo:vit_tiny?dim=32&depth=1",
    "gpt_tiny": "zoo:gpt_tiny?dim=32&depth=1&block_size=16",
}


def test_every_zoo_model_has_a_small_test_id():
    assert sorted(SMALL) == sorted(list_models())


@pytest.mark.parametrize("model_id", SMALL.values())
def test_zoo_model_forward_backward_and_export(model_id):
    torch.manual_seed(0)
    model = build(model_id)
    x = example_inputs(model_id)
    assert [a.shape for a in x] == [a.shape for a in example_inputs(model)]
    y = model(*x)
    y.float().square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    ep = torch.export.export(model.eval(), x, strict=False)
    assert torch.allclose(ep.module()(*x), model(*x), atol=1e-5)


def test_paper_shapes():
    assert [tuple(p.shape) for p in build("mlp2").parameters()] == [(4096, 784), (4096,), (10, 4096), (10,)]
    out = build("zoo:conv8?width=0.125&in_channels=1")(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 10)
    r18 = build("zoo:resnet18?stem=imagenet&width=0.125")
    assert r18(*example_inputs("zoo:resnet18?stem=imagenet")).shape == (2, 10)
    assert build("zoo:resnet20").layer3[0].shortcut is not None


def test_same_seed_same_init():
    torch.manual_seed(3)
    a = build("zoo:mlp2?width=8").state_dict()
    torch.manual_seed(3)
    b = build("mlp2", width=8).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_gpt_tiny_ties_head_to_token_embedding():
    m = build("zoo:gpt_tiny?dim=32&depth=1")
    assert m.head.weight is m.tok.weight
    assert torch.equal(m.state_dict()["head.weight"], m.state_dict()["tok.weight"])


def test_query_values_are_typed():
    assert parse_model_id("zoo:conv8?width=0.25&num_classes=10&batch_norm=false&stem=cifar") == (
        "zoo",
        "conv8",
        {"width": 0.25, "num_classes": 10, "batch_norm": False, "stem": "cifar"},
    )
    assert parse_model_id("mlp2") == ("zoo", "mlp2", {})


def test_other_sources_build_random_init_models():
    tv = build("torchvision:resnet18?num_classes=10")
    assert tv.fc.out_features == 10
    timm_vit = build("timm:test_vit")
    assert timm_vit(*example_inputs("timm:test_vit", batch=1)).shape[0] == 1
    gpt2 = build("hf:gpt2?n_layer=1&n_embd=32&n_head=2&vocab_size=100&n_positions=32")
    assert type(gpt2).__name__ == "GPT2LMHeadModel" and gpt2.config.use_cache is False
    out = gpt2(*example_inputs("hf:gpt2?vocab_size=100"))
    assert out.logits.shape == (2, 8, 100)
    bert = build("hf:BertModel?num_hidden_layers=1&hidden_size=32&num_attention_heads=2&intermediate_size=64")
    assert type(bert).__name__ == "BertModel"
    lin = build("torch.nn:Linear?in_features=3&out_features=2", trust_code=True)
    assert isinstance(lin, torch.nn.Linear)


def test_code_ids_are_built_only_when_trusted():
    """An id read from a file must not import code: ``module:factory`` needs ``trust_code=True``."""
    with pytest.raises(ZooError, match="names Python code to import .'subprocess'."):
        build("subprocess:getoutput?cmd=touch /tmp/permgraph-pwned")
    with pytest.raises(ZooError, match="names Python code"):
        example_inputs("subprocess:getoutput")


def test_import_failures_name_the_real_problem(tmp_path, monkeypatch):
    (tmp_path / "broken_models_xyz.py").write_text("import not_installed_dependency_xyz\n")
    (tmp_path / "syntax_models_xyz.py").write_text("def f(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ZooError, match="no Python module 'no_such_package_xyz' .check the spelling"):
        build("no_such_package_xyz:f", trust_code=True)
    with pytest.raises(ZooError, match="imports 'not_installed_dependency_xyz', which is not installed"):
        build("broken_models_xyz:f", trust_code=True)
    with pytest.raises(ZooError, match="importing 'syntax_models_xyz' failed: SyntaxError"):
        build("syntax_models_xyz:f", trust_code=True)


@pytest.mark.parametrize(
    "model_id, message",
    [
        ("zoo:nope", "unknown zoo model 'nope'; known: mlp2, conv8"),
        ("torchvision:nope", "unknown torchvision model"),
        ("timm:nope", "unknown timm model"),
        ("hf:nope", "unknown Hugging Face model"),
        ("torchvision:resnet18?weights=DEFAULT", "never downloads weights; load them yourself"),
        ("timm:test_vit?pretrained=true", "never downloads weights"),
        ("zoo:mlp2?depth=3", "cannot build"),
        ("", "non-empty"),
    ],
)
def test_bad_ids_raise_clear_errors(model_id, message):
    with pytest.raises(ZooError, match=message):
        build(model_id)


def test_mlp_depth_counts_hidden_layers():
    model = build("zoo:mlp?depth=7&width=128")
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 8 and all(m.out_features == 128 for m in linears[:-1])
    with pytest.raises(ZooError, match="depth and width must be >= 1"):
        build("zoo:mlp?depth=0")


def test_encoder_decoder_examples_are_keyword_inputs():
    model_id = "hf:t5?d_model=32&d_ff=64&num_layers=1&num_heads=2&d_kv=16&vocab_size=64"
    inputs = example_inputs(model_id)
    assert sorted(inputs) == ["decoder_input_ids", "input_ids"]
    out = build(model_id).eval()(**inputs)
    assert out.logits.shape == (2, 4, 64)


def test_a_factory_that_raises_is_bad_input_naming_it(user_module):
    user_module("brokenmodels", "def net(width=4):\n    raise RuntimeError('no GPU here')\n")
    with pytest.raises(ZooError, match=r"brokenmodels\.net .*RuntimeError: no GPU here"):
        build("brokenmodels:net?width=8", trust_code=True)
