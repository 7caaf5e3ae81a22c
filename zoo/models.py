"""Random-init models by name: the paper's architectures, small test models, and other libraries'.

Model ids::

    mlp2                                   same as zoo:mlp2
    zoo:conv8?width=0.25&num_classes=10    a zoo factory; query values parsed as int/float/bool/str
    torchvision:resnet18                   torchvision.models.get_model(name, weights=None, **kw)
    timm:vit_tiny_patch16_224              timm.create_model(name, pretrained=False, **kw)
    hf:gpt2?n_layer=2&n_embd=64            a transformers Config(**kw) and its model class, use_cache=False
    package.module:factory                 any callable returning an nn.Module (trusted ids only)

Trust: a ``package.module:factory`` id imports and runs Python code, so :func:`build` refuses it
unless the caller says the id came from the user (``trust_code=True``: typed on a command line or
passed in Python). Ids read from files people share (a trajectory's ``manifest.json``, a
``results.json``, a config) may only name the built-in sources ``zoo:``, ``torchvision:``,
``timm:`` and ``hf:``.

Nothing is ever downloaded: asking for pretrained weights is an error. Every zoo model's forward is
``torch.export.export(model, example_inputs(...), strict=False)``-able: no data-dependent control flow.

>>> model = build("zoo:conv8?width=0.25")
>>> model(*example_inputs("conv8")).shape
torch.Size([2, 10])
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ZooError
from zoo.imports import import_for

__all__ = [
    "MLP2",
    "Conv8",
    "ResNet",
    "BasicBlock",
    "ResNet20",
    "VGG",
    "ViTTiny",
    "GPTTiny",
    "mlp2",
    "conv8",
    "resnet18",
    "resnet20",
    "vgg16",
    "vit_tiny",
    "gpt_tiny",
    "ZOO",
    "HF_MODELS",
    "build",
    "refuse_untrusted",
    "scale_init",
    "parse_model_id",
    "canonical_id",
    "example_inputs",
    "list_models",
]


def _w(channels: int, width: float) -> int:
    """Channel count scaled by a width multiplier, at least 1."""
    return max(1, int(round(channels * width)))


def _images(batch: int, channels: int, size: int) -> tuple[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (torch.randn(batch, channels, size, size, generator=g),)


# --------------------------------------------------------------------------- MLP


class MLP2(nn.Sequential):
    """Flatten → Linear → ReLU → Linear, the paper's 2-MLP (784→4096→10, with biases)."""

    def __init__(self, width: int = 4096, in_features: int = 784, num_classes: int = 10) -> None:
        super().__init__(
            OrderedDict(
                flatten=nn.Flatten(),
                fc1=nn.Linear(in_features, width),
                relu=nn.ReLU(),
                fc2=nn.Linear(width, num_classes),
            )
        )
        self.in_features = in_features

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        if self.in_features == 784:
            return _images(batch, 1, 28)
        g = torch.Generator().manual_seed(0)
        return (torch.randn(batch, self.in_features, generator=g),)


def scale_init(model: nn.Module, scale: float) -> nn.Module:
    """Multiply every parameter of ``model``'s init by ``scale`` (in place; returns the model).

    The init scale decides whether the training change Δ dominates θ⁰ (|θ⁰|/|Δ|): Naive transfer
    (θ₂⁰ + Δ₁) can only work where it does, which is what the Fig. 5a gap experiment varies."""
    if scale != 1.0:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(float(scale))
    return model


def mlp2(width: int = 4096, in_features: int = 784, num_classes: int = 10, init_scale: float = 1.0) -> MLP2:
    """The paper's 2-MLP; ``init_scale`` multiplies PyTorch's default init (1: the same numbers)."""
    return scale_init(MLP2(width=width, in_features=in_features, num_classes=num_classes), init_scale)


# --------------------------------------------------------------------------- Conv8


class Conv8(nn.Module):
    """The paper's Conv8: 8 conv3×3 layers [64,64]-pool-[128,128]-pool-[256,256]-pool-[512,512], a global
    max pool (the paper's MaxPool(4) on 32×32; adaptive so 28×28 works too), then 512→256→256→classes.

    The paper's code writes the last three layers as 1×1 convs on a 1×1 map; they are ``nn.Linear``
    here, which is the same function. ReLU after every layer but the last, biases, no BatchNorm.
    """

    def __init__(self, width: float = 1.0, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for stage, c in enumerate((64, 128, 256, 512)):
            for _ in range(2):
                layers += [nn.Conv2d(c_in, _w(c, width), 3, padding=1), nn.ReLU()]
                c_in = _w(c, width)
            if stage < 3:
                layers.append(nn.MaxPool2d(2))
        layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        h = _w(256, width)
        self.classifier = nn.Sequential(
            nn.Linear(c_in, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, num_classes)
        )
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        return _images(batch, self.in_channels, 32)


def conv8(
    width: float = 1.0,
    num_classes: int = 10,
    in_channels: int = 3,
    init: str = "default",
    init_scale: float = 1.0,
    io_scale: float = 1.0,
) -> Conv8:
    """The paper's Conv8. ``init="he"``: He (Kaiming-normal, fan-in, ReLU gain) weights and zero
    biases instead of PyTorch's default, which shrinks the signal ~6x in variance per layer, so the
    plain 8-layer net sits at chance for thousands of steps (the paper's CIFAR-10 scratch run is at
    13.5 % after a whole epoch). ``init_scale`` multiplies every parameter of the init (as for
    :func:`mlp2`); ``io_scale`` only the first conv and the last linear layer. The defaults draw the
    very same numbers as before these options existed."""
    model = Conv8(width=width, num_classes=num_classes, in_channels=in_channels)
    if init == "he":
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)
    elif init != "default":
        raise ZooError(f"conv8: init must be 'default' or 'he', got {init!r}")
    scale_init(model, init_scale)
    if io_scale != 1.0:  # the first conv and the last linear layer only
        first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        for m in (first, last):
            scale_init(m, io_scale)
    return model


# --------------------------------------------------------------------------- ResNets


class BasicBlock(nn.Module):
    """Two 3×3 conv+BN with a residual; the shortcut is 1×1 conv+BN when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + identity)


class ResNet(nn.Module):
    """ResNet of BasicBlocks. ``stem="cifar"``: one 3×3 conv, no pooling (kuangliu-style, 32×32 input);
    ``stem="imagenet"``: 7×7/2 conv + 3×3/2 max pool (224×224 input)."""

    def __init__(
        self,
        blocks: tuple[int, ...] = (2, 2, 2, 2),
        channels: tuple[int, ...] = (64, 128, 256, 512),
        num_classes: int = 10,
        stem: str = "cifar",
        width: float = 1.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if stem not in ("cifar", "imagenet"):
            raise ZooError(f"unknown stem {stem!r}; use 'cifar' (32×32 inputs) or 'imagenet' (224×224)")
        chans = [_w(c, width) for c in channels]
        if stem == "cifar":
            self.conv1 = nn.Conv2d(in_channels, chans[0], 3, padding=1, bias=False)
            self.maxpool: nn.Module | None = None
        else:
            self.conv1 = nn.Conv2d(in_channels, chans[0], 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(chans[0])
        c_in = chans[0]
        for i, (n, c) in enumerate(zip(blocks, chans)):
            stage = []
            for j in range(n):
                stage.append(BasicBlock(c_in, c, stride=2 if (i > 0 and j == 0) else 1))
                c_in = c
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
        self.num_stages = len(blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        self.stem = stem
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            x = self.maxpool(x)
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        return _images(batch, self.in_channels, 32 if self.stem == "cifar" else 224)


class ResNet20(ResNet):
    """CIFAR ResNet-20: 3×3 stem, 3 stages × 3 BasicBlocks of 16/32/64 × width channels."""

    def __init__(self, width: float = 1, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__((3, 3, 3), (16, 32, 64), num_classes, "cifar", width, in_channels)


def resnet18(num_classes: int = 10, stem: str = "cifar", width: float = 1.0, in_channels: int = 3) -> ResNet:
    return ResNet((2, 2, 2, 2), (64, 128, 256, 512), num_classes, stem, width, in_channels)


def resnet20(width: float = 1, num_classes: int = 10, in_channels: int = 3) -> ResNet20:
    return ResNet20(width=width, num_classes=num_classes, in_channels=in_channels)


# --------------------------------------------------------------------------- VGG


_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG(nn.Module):
    """CIFAR VGG16 (32×32 inputs → 1×1×512 after five pools), classifier Linear→ReLU→Linear."""

    def __init__(
        self, num_classes: int = 10, width: float = 1.0, batch_norm: bool = False, in_channels: int = 3
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for v in _VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            c = _w(int(v), width)
            layers.append(nn.Conv2d(c_in, c, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.ReLU())
            c_in = c
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        h = _w(512, width)
        self.classifier = nn.Sequential(nn.Linear(c_in, h), nn.ReLU(), nn.Linear(h, num_classes))
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        return _images(batch, self.in_channels, 32)


def vgg16(num_classes: int = 10, width: float = 1.0, batch_norm: bool = False, in_channels: int = 3) -> VGG:
    return VGG(num_classes=num_classes, width=width, batch_norm=batch_norm, in_channels=in_channels)


# --------------------------------------------------------------------------- transformers


class SelfAttention(nn.Module):
    """Multi-head attention with separate q, k, v projections, split into heads by view+transpose."""

    def __init__(self, dim: int, heads: int, causal: bool = False) -> None:
        super().__init__()
        if dim % heads:
            raise ZooError(f"dim={dim} is not divisible by heads={heads}; pick dim a multiple of heads")
        self.heads, self.causal = heads, causal
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h = self.heads
        q = self.q(x).view(b, n, h, c // h).transpose(1, 2)
        k = self.k(x).view(b, n, h, c // h).transpose(1, 2)
        v = self.v(x).view(b, n, h, c // h).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(LN(x)), then x + MLP(LN(x)) with GELU."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, causal: bool = False) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, causal=causal)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            OrderedDict(fc1=nn.Linear(dim, mlp_dim), act=nn.GELU(), fc2=nn.Linear(mlp_dim, dim))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class ViTTiny(nn.Module):
    """A small ViT: conv patch embedding, class token, learned positions, pre-LN blocks, head on cls."""

    def __init__(
        self,
        image_size: int = 28,
        patch_size: int = 7,
        in_channels: int = 1,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        mlp_dim: int = 128,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ZooError(f"image_size={image_size} is not a multiple of patch_size={patch_size}")
        n = (image_size // patch_size) ** 2
        self.patch = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, n + 1, dim))
        nn.init.trunc_normal_(self.cls, std=0.02)
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.image_size, self.in_channels = image_size, in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        return _images(batch, self.in_channels, self.image_size)


class GPTTiny(nn.Module):
    """A small causal decoder: token + position embeddings, pre-LN blocks, LM head tied to the tokens."""

    def __init__(
        self,
        vocab_size: int = 128,
        block_size: int = 64,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: int = 4,
    ) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab_size, dim)
        self.pos = nn.Embedding(block_size, dim)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio * dim, causal=True) for _ in range(depth)])
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        self.head.weight = self.tok.weight
        self.vocab_size, self.block_size = vocab_size, block_size

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.tok(idx) + self.pos(pos)
        return self.head(self.ln_f(self.blocks(x)))

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(0)
        return (torch.randint(0, self.vocab_size, (batch, min(16, self.block_size)), generator=g),)


def vit_tiny(
    image_size: int = 28,
    patch_size: int = 7,
    in_channels: int = 1,
    dim: int = 64,
    depth: int = 2,
    heads: int = 4,
    mlp_dim: int = 128,
    num_classes: int = 10,
) -> ViTTiny:
    return ViTTiny(image_size, patch_size, in_channels, dim, depth, heads, mlp_dim, num_classes)


def gpt_tiny(
    vocab_size: int = 128,
    block_size: int = 64,
    dim: int = 64,
    depth: int = 2,
    heads: int = 4,
    mlp_ratio: int = 4,
) -> GPTTiny:
    return GPTTiny(vocab_size, block_size, dim, depth, heads, mlp_ratio)


ZOO: dict[str, Callable[..., nn.Module]] = {
    "mlp2": mlp2,
    "conv8": conv8,
    "resnet18": resnet18,
    "resnet20": resnet20,
    "vgg16": vgg16,
    "vit_tiny": vit_tiny,
    "gpt_tiny": gpt_tiny,
}

# short name -> (Config class, model class) in transformers; any transformers model class name works too.
HF_MODELS: dict[str, tuple[str, str]] = {
    "gpt2": ("GPT2Config", "GPT2LMHeadModel"),
    "bert": ("BertConfig", "BertModel"),
    "roberta": ("RobertaConfig", "RobertaModel"),
    "distilbert": ("DistilBertConfig", "DistilBertModel"),
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "mistral": ("MistralConfig", "MistralForCausalLM"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
    "opt": ("OPTConfig", "OPTForCausalLM"),
    "vit": ("ViTConfig", "ViTForImageClassification"),
}

SOURCES = ("zoo", "torchvision", "timm", "hf")


# --------------------------------------------------------------------------- ids and building


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def parse_model_id(model_id: str) -> tuple[str, str, dict[str, Any]]:
    """Split a model id into ``(source, name, kwargs)``.

    >>> parse_model_id("zoo:conv8?width=0.25&bias=true")
    ('zoo', 'conv8', {'width': 0.25, 'bias': True})
    >>> parse_model_id("mypkg.models:make_net")
    ('mypkg.models', 'make_net', {})
    """
    if not isinstance(model_id, str) or not model_id.strip():
        raise ZooError(f"a model id must be a non-empty string, got {model_id!r}")
    base, _, query = model_id.strip().partition("?")
    kwargs = {k: _parse_value(v) for k, v in parse_qsl(query, keep_blank_values=True)}
    source, sep, name = base.partition(":")
    if not sep:
        source, name = "zoo", base
    if not name:
        raise ZooError(f"model id {model_id!r} has no model name after {source + ':'!r}")
    return source, name, kwargs


def _format_value(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def canonical_id(model_id: str, **overrides: Any) -> str:
    """The id in full form, with ``overrides`` merged into its query (query order kept, new keys last).

    >>> canonical_id("mlp2", width=8)
    'zoo:mlp2?width=8'
    """
    source, name, kwargs = parse_model_id(model_id)
    kwargs.update(overrides)
    query = "&".join(f"{k}={_format_value(v)}" for k, v in kwargs.items())
    return f"{source}:{name}" + (f"?{query}" if query else "")


def _refuse_weights(model_id: str, kwargs: dict[str, Any]) -> None:
    bad = {k: v for k, v in kwargs.items() if k in ("pretrained", "weights", "checkpoint_path")}
    bad = {k: v for k, v in bad.items() if v not in (None, False, "", "none", "None")}
    if bad:
        raise ZooError(
            f"{model_id}: {bad} asks for pretrained weights; permgraph never downloads weights; "
            "load them yourself into the built model (model.load_state_dict(...))"
        )


def _import(package: str, model_id: str):
    return import_for(package, f"model {model_id!r}")


def _build_hf(name: str, kwargs: dict[str, Any], model_id: str) -> nn.Module:
    transformers = _import("transformers", model_id)
    if name in HF_MODELS:
        config_cls = getattr(transformers, HF_MODELS[name][0])
        model_cls = getattr(transformers, HF_MODELS[name][1])
    elif isinstance(getattr(transformers, name, None), type) and hasattr(
        getattr(transformers, name), "config_class"
    ):
        model_cls = getattr(transformers, name)
        config_cls = model_cls.config_class
    else:
        raise ZooError(
            f"unknown Hugging Face model {name!r} in {model_id!r}; use one of {sorted(HF_MODELS)} or a "
            "transformers model class name (e.g. hf:GPT2LMHeadModel)"
        )
    vocab = kwargs.get("vocab_size")
    if isinstance(vocab, int):  # a small vocabulary: drop default special-token ids that fall outside it
        defaults = config_cls()
        for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(defaults, attr, None)
            if attr not in kwargs and isinstance(value, int) and value >= vocab:
                kwargs[attr] = None
    config = config_cls(**kwargs)
    if hasattr(config, "use_cache"):
        config.use_cache = False
    return model_cls(config)


def refuse_untrusted(model_id: str) -> None:
    """Raise unless ``model_id`` names a built-in source (see the module docstring on trust)."""
    source, _, _ = parse_model_id(model_id)
    if source not in SOURCES:
        raise ZooError(
            f"model id {model_id!r} names Python code to import ({source!r}); an id read from a file may only "
            f"name a built-in model ({', '.join(s + ':' for s in SOURCES)}). If you trust that code, give the id "
            "yourself (--model on the command line, or trust_code=True in Python)"
        )


def build(name: str, *, trust_code: bool = False, **overrides: Any) -> nn.Module:
    """Build a random-init model from a model id (see the module docstring).

    ``overrides`` win over the id's query. Seed with ``torch.manual_seed`` first for a reproducible
    init. ``trust_code``: the id came from the user, so a ``package.module:factory`` id may be
    imported. Raises :class:`ZooError` for unknown names, untrusted code, missing packages and
    requests for weights.
    """
    if not trust_code:
        refuse_untrusted(name)
    source, fname, kwargs = parse_model_id(name)
    kwargs.update(overrides)
    _refuse_weights(name, kwargs)
    if source == "zoo":
        if fname not in ZOO:
            raise ZooError(f"unknown zoo model {fname!r}; known: {', '.join(ZOO)}")
        factory: Callable[..., Any] = ZOO[fname]
        kwargs.pop("pretrained", None)
        kwargs.pop("weights", None)
    elif source == "torchvision":
        tv_models = _import("torchvision", name).models
        kwargs.pop("pretrained", None)
        kwargs["weights"] = None
        try:
            tv_models.get_model_builder(fname)
        except ValueError:
            raise ZooError(
                f"unknown torchvision model {fname!r}; see torchvision.models.list_models()"
            ) from None

        def factory(**kw):
            return tv_models.get_model(fname, **kw)
    elif source == "timm":
        timm = _import("timm", name)
        if not timm.is_model(fname):
            raise ZooError(f"unknown timm model {fname!r}; see timm.list_models()")
        kwargs["pretrained"] = False

        def factory(**kw):
            return timm.create_model(fname, **kw)
    elif source == "hf":
        return _build_hf(fname, kwargs, name)
    else:
        module = _import(source, name)
        factory = getattr(module, fname, None)
        if not callable(factory):
            raise ZooError(f"{source!r} has no callable {fname!r} (model id {name!r})")
    try:
        model = factory(**kwargs)
    except TypeError as e:
        raise ZooError(f"cannot build {name!r} with {kwargs}: {e}") from e
    if not isinstance(model, nn.Module):
        raise ZooError(f"{name!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def list_models() -> list[str]:
    """The zoo's own model names (other sources: torchvision, timm, hf; see :func:`build`)."""
    return list(ZOO)


def example_inputs(name_or_model_id: str | nn.Module, batch: int = 2, *, trust_code: bool = False) -> tuple:
    """Inputs that fit a model: 1×28×28 images for mlp2/vit_tiny, 3×32×32 for conv8/resnet/vgg, token
    ids for gpt_tiny and Hugging Face text models, 3×224×224 for torchvision/timm. Deterministic."""
    if isinstance(name_or_model_id, nn.Module):
        if hasattr(name_or_model_id, "example_inputs"):
            return tuple(name_or_model_id.example_inputs(batch))
        raise ZooError(
            f"no example inputs known for a {type(name_or_model_id).__name__}; pass a model id or your own"
        )
    source, fname, kwargs = parse_model_id(name_or_model_id)
    g = torch.Generator().manual_seed(0)
    if source == "zoo":
        if fname not in ZOO:
            raise ZooError(f"unknown zoo model {fname!r}; known: {', '.join(ZOO)}")
        if fname == "mlp2":
            n = kwargs.get("in_features", 784)
            return _images(batch, 1, 28) if n == 784 else (torch.randn(batch, n, generator=g),)
        if fname == "vit_tiny":
            return _images(batch, kwargs.get("in_channels", 1), kwargs.get("image_size", 28))
        if fname == "gpt_tiny":
            vocab, block = kwargs.get("vocab_size", 128), kwargs.get("block_size", 64)
            return (torch.randint(0, vocab, (batch, min(16, block)), generator=g),)
        size = 224 if kwargs.get("stem") == "imagenet" else 32
        return _images(batch, kwargs.get("in_channels", 3), size)
    if source == "hf":
        if fname == "vit" or "ViT" in fname:
            return _images(batch, kwargs.get("num_channels", 3), kwargs.get("image_size", 224))
        vocab = kwargs.get("vocab_size", 1000)
        return (torch.randint(0, min(vocab, 1000), (batch, 8), generator=g),)
    if source in ("torchvision", "timm"):
        return _images(batch, kwargs.get("in_chans", kwargs.get("in_channels", 3)), 224)
    model = build(name_or_model_id, trust_code=trust_code)
    return example_inputs(model, batch)
