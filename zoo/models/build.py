"""Building a model from its id, and example inputs that fit it.

One builder per source in :data:`BUILDERS` (the zoo's own factories, torchvision, timm, Hugging Face
transformers); any other source is the user's ``package.module:factory``, imported only when trusted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from zoo.errors import ZooError
from zoo.imports import import_for
from zoo.models.common import example_images
from zoo.models.conv import conv8, vgg16
from zoo.models.ids import parse_model_id, refuse_untrusted, refuse_weights
from zoo.models.mlp import mlp, mlp2
from zoo.models.resnet import resnet18, resnet20
from zoo.models.transformer import gpt_tiny, vit_tiny

__all__ = ["ZOO", "HF_MODELS", "BUILDERS", "build", "list_models", "example_inputs"]

ZOO: dict[str, Callable[..., nn.Module]] = {
    "mlp2": mlp2,
    "conv8": conv8,
    "resnet18": resnet18,
    "resnet20": resnet20,
    "vgg16": vgg16,
    "vit_tiny": vit_tiny,
    "gpt_tiny": gpt_tiny,
    "mlp": mlp,
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
    "t5": ("T5Config", "T5ForConditionalGeneration"),
    "vit": ("ViTConfig", "ViTForImageClassification"),
}


def _library(package: str, model_id: str):
    return import_for(package, f"model {model_id!r}")


def _zoo_factory(name: str, kwargs: dict[str, Any], model_id: str) -> Callable[..., nn.Module]:
    if name not in ZOO:
        raise ZooError(f"unknown zoo model {name!r}; known: {', '.join(ZOO)}")
    kwargs.pop("pretrained", None)
    kwargs.pop("weights", None)
    return ZOO[name]


def _torchvision_factory(name: str, kwargs: dict[str, Any], model_id: str) -> Callable[..., nn.Module]:
    tv_models = _library("torchvision", model_id).models
    kwargs.pop("pretrained", None)
    kwargs["weights"] = None
    try:
        return tv_models.get_model_builder(name)
    except ValueError:
        raise ZooError(f"unknown torchvision model {name!r}; see torchvision.models.list_models()") from None


def _timm_factory(name: str, kwargs: dict[str, Any], model_id: str) -> Callable[..., nn.Module]:
    timm = _library("timm", model_id)
    if not timm.is_model(name):
        raise ZooError(f"unknown timm model {name!r}; see timm.list_models()")
    kwargs["pretrained"] = False
    return lambda **kw: timm.create_model(name, **kw)


def _hf_classes(name: str, model_id: str) -> tuple[type, type]:
    transformers = _library("transformers", model_id)
    if name in HF_MODELS:
        return getattr(transformers, HF_MODELS[name][0]), getattr(transformers, HF_MODELS[name][1])
    model_cls = getattr(transformers, name, None)
    if isinstance(model_cls, type) and hasattr(model_cls, "config_class"):
        return model_cls.config_class, model_cls
    raise ZooError(
        f"unknown Hugging Face model {name!r} in {model_id!r}; use one of {sorted(HF_MODELS)} or a "
        "transformers model class name (e.g. hf:GPT2LMHeadModel)"
    )


def _hf_config(name: str, kwargs: dict[str, Any], model_id: str) -> tuple[Any, type]:
    """The model's config (no cache; special-token ids outside a small vocabulary dropped) and class."""
    config_cls, model_cls = _hf_classes(name, model_id)
    vocab = kwargs.get("vocab_size")
    if isinstance(vocab, int):  # a small vocabulary: drop default special-token ids that fall outside it
        defaults = config_cls()
        for attr in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id"):
            value = getattr(defaults, attr, None)
            if attr not in kwargs and isinstance(value, int) and value >= vocab:
                kwargs[attr] = 0 if attr == "decoder_start_token_id" else None
    try:
        config = config_cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ZooError(f"cannot build {model_id!r}: {config_cls.__name__}({kwargs}) failed: {e}") from e
    if hasattr(config, "use_cache"):
        config.use_cache = False
    return config, model_cls


def _hf_factory(name: str, kwargs: dict[str, Any], model_id: str) -> Callable[..., nn.Module]:
    config, model_cls = _hf_config(name, kwargs, model_id)
    kwargs.clear()  # the config holds them
    return lambda: model_cls(config)


BUILDERS: dict[str, Callable[[str, dict[str, Any], str], Callable[..., nn.Module]]] = {
    "zoo": _zoo_factory,
    "torchvision": _torchvision_factory,
    "timm": _timm_factory,
    "hf": _hf_factory,
}


def _user_factory(source: str, name: str, model_id: str) -> Callable[..., nn.Module]:
    factory = getattr(_library(source, model_id), name, None)
    if not callable(factory):
        raise ZooError(f"{source!r} has no callable {name!r} (model id {model_id!r})")
    return factory


def build(name: str, *, trust_code: bool = False, **overrides: Any) -> nn.Module:
    """Build a random-init model from a model id (see :mod:`zoo.models`).

    ``overrides`` win over the id's query. Seed with ``torch.manual_seed`` first for a reproducible
    init. ``trust_code``: the id came from the user, so a ``package.module:factory`` id may be
    imported. Raises :class:`ZooError` for unknown names, untrusted code, missing packages, requests
    for weights, and a factory that fails (naming it and its error).
    """
    if not trust_code:
        refuse_untrusted(name)
    source, fname, kwargs = parse_model_id(name)
    kwargs.update(overrides)
    refuse_weights(name, kwargs)
    users = source not in BUILDERS
    factory = _user_factory(source, fname, name) if users else BUILDERS[source](fname, kwargs, name)
    try:
        model = factory(**kwargs)
    except ZooError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's code or arguments failed: bad input, not our bug
        if not users and not isinstance(e, TypeError):
            raise
        where = f"{source}.{fname}" if users else repr(name)
        raise ZooError(f"cannot build {where} with {kwargs}: {type(e).__name__}: {e}") from e
    if not isinstance(model, nn.Module):
        raise ZooError(f"{name!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def list_models() -> list[str]:
    """The zoo's own model names (other sources: torchvision, timm, hf; see :func:`build`)."""
    return list(ZOO)


def _zoo_inputs(name: str, kwargs: dict[str, Any], batch: int) -> tuple:
    g = torch.Generator().manual_seed(0)
    if name in ("mlp2", "mlp"):
        n = kwargs.get("in_features", 784)
        return example_images(batch, 1, 28) if n == 784 else (torch.randn(batch, n, generator=g),)
    if name == "vit_tiny":
        return example_images(batch, kwargs.get("in_channels", 1), kwargs.get("image_size", 28))
    if name == "gpt_tiny":
        vocab, block = kwargs.get("vocab_size", 128), kwargs.get("block_size", 64)
        return (torch.randint(0, vocab, (batch, min(16, block)), generator=g),)
    size = 224 if kwargs.get("stem") == "imagenet" else 32
    return example_images(batch, kwargs.get("in_channels", 3), size)


def _hf_inputs(name: str, kwargs: dict[str, Any], batch: int, model_id: str) -> tuple | dict:
    if name == "vit" or "ViT" in name:
        return example_images(batch, kwargs.get("num_channels", 3), kwargs.get("image_size", 224))
    g = torch.Generator().manual_seed(0)
    vocab = min(kwargs.get("vocab_size", 1000), 1000)
    ids = torch.randint(0, vocab, (batch, 8), generator=g)
    config, _ = _hf_config(name, dict(kwargs), model_id)
    if getattr(config, "is_encoder_decoder", False):  # T5, BART, ...: the decoder needs its own tokens
        return {"input_ids": ids, "decoder_input_ids": torch.randint(0, vocab, (batch, 4), generator=g)}
    return (ids,)


def example_inputs(name_or_model_id: str | nn.Module, batch: int = 2, *, trust_code: bool = False) -> tuple | dict:
    """Inputs that fit a model: 1×28×28 images for the MLPs and vit_tiny, 3×32×32 for conv8/resnet/vgg,
    token ids for gpt_tiny and Hugging Face text models (a dict of ``input_ids`` and
    ``decoder_input_ids`` for encoder-decoder models such as T5: pass it as keyword arguments),
    3×224×224 for torchvision/timm. Deterministic."""
    if isinstance(name_or_model_id, nn.Module):
        if hasattr(name_or_model_id, "example_inputs"):
            return tuple(name_or_model_id.example_inputs(batch))
        raise ZooError(
            f"no example inputs known for a {type(name_or_model_id).__name__}: it has no example_inputs(batch) method"
        )
    source, fname, kwargs = parse_model_id(name_or_model_id)
    if source == "zoo":
        if fname not in ZOO:
            raise ZooError(f"unknown zoo model {fname!r}; known: {', '.join(ZOO)}")
        return _zoo_inputs(fname, kwargs, batch)
    if source == "hf":
        return _hf_inputs(fname, kwargs, batch, name_or_model_id)
    if source in ("torchvision", "timm"):
        return example_images(batch, kwargs.get("in_chans", kwargs.get("in_channels", 3)), 224)
    model = build(name_or_model_id, trust_code=trust_code)
    return example_inputs(model, batch)
