"""Experiment configs: read ``configs/NAME.toml``, merge ``[tiny]`` and ``--set`` over it, and check
every key before anything trains.

A misspelled key must fail at once, naming the key and the table: an hour into an experiment is
too late to learn that ``[train] lerning_rate`` was ignored. Each experiment declares the top-level
keys it reads (:class:`zoo.experiments.kit.base.Experiment`); its training tables are checked as
:class:`zoo.train.TrainRecipe` and its transfer tables as :class:`transfer.options.TransferOptions`
with the helpers here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from transfer.methods import get_method
from transfer.options import OptionsError, TransferOptions, options_from
from zoo.errors import ZooError
from zoo.train import TrainRecipe

__all__ = [
    "CONFIG_DIR",
    "deep_merge",
    "config_path",
    "read_config",
    "shown_path",
    "check_keys",
    "check_recipe",
    "check_transfer",
    "check_methods",
]

CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs"


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in; nested tables merge key by key, everything else is replaced
    (how ``[tiny]`` and ``--set`` change a config without restating it).

    >>> deep_merge({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"b": 5}, "d": [2]})
    {'a': {'b': 5, 'c': 2}, 'd': [2]}
    """
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def config_path(name: str, path: str | os.PathLike | None = None) -> Path:
    """``path``, or the experiment's own ``configs/NAME.toml``."""
    return Path(path) if path is not None else CONFIG_DIR / f"{name}.toml"


def shown_path(path: Path) -> str:
    """``path`` as a page and an error message show it: relative to the repository when inside it,
    so published pages do not carry one machine's folders."""
    try:
        return str(path.resolve().relative_to(CONFIG_DIR.parent))
    except ValueError:
        return str(path)


def read_config(path: Path, tiny: bool = False) -> dict[str, Any]:
    """The TOML (or JSON) file at ``path``; with ``tiny``, its ``[tiny]`` table merged over the rest
    (the seconds-long version the tests run), without it the ``[tiny]`` table dropped."""
    if not path.exists():
        raise ZooError(f"config file {path} does not exist; pass --config PATH to a .toml or .json file")
    if path.suffix == ".json":
        cfg = json.loads(path.read_text())
    else:
        cfg = _parse_toml(path)
    small = cfg.pop("tiny", {})
    return deep_merge(cfg, small) if tiny else cfg


def _parse_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError as e:
            raise ZooError(f"reading {path} needs Python >= 3.11 or `pip install tomli`") from e
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ZooError(f"{path} is not valid TOML: {e}") from e


def check_keys(table: Mapping[str, Any], allowed: Iterable[str], where: str, required: Iterable[str] = ()) -> None:
    """Refuse a key of ``table`` that is not in ``allowed``, naming it, the table and the valid keys,
    and a missing ``required`` one (which would otherwise fail later as a bare ``KeyError``).

    >>> check_keys({"seeds": [1, 2], "sedes": 3}, ["seeds", "data"], "configs/x.toml")
    Traceback (most recent call last):
    ...
    zoo.errors.ZooError: unknown key 'sedes' in configs/x.toml; valid keys: data, seeds
    >>> check_keys({"seeds": [1, 2]}, ["seeds", "data"], "configs/x.toml", required=["data"])
    Traceback (most recent call last):
    ...
    zoo.errors.ZooError: configs/x.toml lacks 'data'
    """
    valid = sorted(set(allowed) | set(required))
    if not isinstance(table, Mapping):
        raise ZooError(f"{where} must be a table, got {table!r}")
    for key in table:
        if key not in valid:
            raise ZooError(f"unknown key {key!r} in {where}; valid keys: {', '.join(valid)}")
    missing = [k for k in required if k not in table]
    if missing:
        raise ZooError(f"{where} lacks {', '.join(map(repr, missing))}")


def check_recipe(table: Mapping[str, Any], where: str) -> TrainRecipe:
    """``table`` as a training recipe; an unknown key or a bad value fails here, naming ``where``."""
    return _named(lambda: TrainRecipe.from_mapping(table, where), where)


def check_transfer(table: Mapping[str, Any], where: str) -> TransferOptions:
    """``table`` as transfer options; an unknown key or a bad value fails here, naming ``where``."""
    return _named(lambda: options_from(TransferOptions, table, where), where)


def _named(make: Callable[[], Any], where: str) -> Any:
    """``make()``, with ``where`` in the message of a bad value too (an unknown key names it already)."""
    try:
        return make()
    except OptionsError as e:
        if where in str(e):
            raise
        raise OptionsError(f"{where}: {e}") from None


def check_methods(names: Any, where: str) -> None:
    """Every name must be a registered transfer method (:mod:`transfer.methods`)."""
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise ZooError(f"{where} must be a list of method names, got {names!r}")
    for name in names:
        try:
            get_method(name)
        except ValueError as e:
            raise ZooError(f"{where}: {e}") from None
