"""Model ids: parsing, canonical form, and the trust rule for ids read from files.

A model id is ``source:name?key=value&...``; the sources are the zoo's own models and three libraries
(``zoo``, ``torchvision``, ``timm``, ``hf``), or ``package.module:factory`` for the user's own code,
which is imported only when the user gave the id (see :mod:`zoo.models`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from zoo.errors import ZooError

__all__ = ["SOURCES", "parse_model_id", "canonical_id", "refuse_untrusted", "refuse_weights"]

SOURCES = ("zoo", "torchvision", "timm", "hf")


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


def refuse_weights(model_id: str, kwargs: dict[str, Any]) -> None:
    bad = {k: v for k, v in kwargs.items() if k in ("pretrained", "weights", "checkpoint_path")}
    bad = {k: v for k, v in bad.items() if v not in (None, False, "", "none", "None")}
    if bad:
        raise ZooError(
            f"{model_id}: {bad} asks for pretrained weights; permgraph never downloads weights; "
            "load them yourself into the built model (model.load_state_dict(...))"
        )



def refuse_untrusted(model_id: str) -> None:
    """Raise unless ``model_id`` names a built-in source (see the module docstring on trust)."""
    source, _, _ = parse_model_id(model_id)
    if source not in SOURCES:
        raise ZooError(
            f"model id {model_id!r} names Python code to import ({source!r}); an id read from a file may only "
            f"name a built-in model ({', '.join(s + ':' for s in SOURCES)}). If you trust that code, give the id "
            "yourself (--model on the command line, or trust_code=True in Python)"
        )
