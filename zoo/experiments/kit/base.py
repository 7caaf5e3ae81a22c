"""The experiment protocol and its registry.

An experiment is a small class registered in its own module::

    @register("fig5a", "Fig. 5a: 2-MLP on MNIST, T=5, beside the paper and the official code")
    class Fig5a(Experiment):
        keys = ("model", "data", "seeds", "train", "transfer")   # the top-level config keys it reads

        def compute(self, ctx):            # train / reuse runs, transfer; the results (JSON-able)
            ...
        def plots(self, ctx, results):     # [(suffix, matplotlib figure)] -> NAME<suffix>.png
            ...
        def sections(self, ctx, results):  # markdown sections of the page, after the standard header
            ...

The runner (:mod:`zoo.experiments.kit.runner`) does the rest the same way for every experiment: it
loads and checks the config (:func:`load_config`, before anything trains), calls ``compute``, merges
a partial rerun into the recorded results (``rows``), and writes ``NAME.json``, the plots and
``NAME.md``. Listing the experiments imports every module of :mod:`zoo.experiments` (not this
``kit`` subpackage, the machinery they share, which registers none), so registering a new one is
writing its module there; nothing else keeps a list.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from zoo.errors import ZooError
from zoo.experiments.kit.config import (
    check_keys,
    check_methods,
    check_recipe,
    check_transfer,
    config_path,
    deep_merge,
    read_config,
    shown_path,
)
from zoo.experiments.kit.context import Context

__all__ = ["Experiment", "register", "experiments", "get", "load_config"]


class Experiment:
    """Base class. ``rows`` names the results field that holds the experiment's rows (a list of
    dicts, each with a unique ``"name"``): such an experiment may compute a subset of them
    (``only = [names]``), and the runner merges them into the recorded ones instead of erasing the
    others."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""  # one line: `list` shows it, and it is the page's title unless the config has one
    rank: ClassVar[int] = 100  # position in `list`
    keys: ClassVar[tuple[str, ...]] = ()  # top-level config keys the experiment reads ("title" always allowed)
    required: ClassVar[tuple[str, ...]] = ()  # those of them it cannot run without
    rows: ClassVar[str | None] = None

    def check(self, cfg: Mapping[str, Any], where: str) -> None:
        """Check the config's tables beyond its top-level keys; the default checks ``methods``,
        ``[train]`` and ``[transfer]`` where present. Extend it for other tables."""
        if "methods" in cfg:
            check_methods(cfg["methods"], f"{where} methods")
        if "train" in cfg:
            check_recipe(cfg["train"], f"{where} [train]")
        if "transfer" in cfg:
            check_transfer(cfg["transfer"], f"{where} [transfer]")

    def row_names(self, cfg: Mapping[str, Any]) -> list[str]:
        """Every row the config defines, in page order (for ``only`` and for merging)."""
        return []

    def recorded_rows(self, recorded: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The rows of a recorded results file, each with its ``"name"`` (override where older files
        named their rows otherwise, so a partial rerun keeps them too)."""
        return [r for r in recorded.get(self.rows or "", []) if isinstance(r, dict) and "name" in r]

    def compute(self, ctx: Context) -> dict[str, Any]:
        """Train or reuse what the experiment needs and return its results (JSON-able)."""
        raise NotImplementedError

    def plots(self, ctx: Context, results: Mapping[str, Any]) -> list[tuple[str, Any]]:
        """``(suffix, figure)`` pairs; each is saved as ``ctx.figure(suffix)``."""
        return []

    def sections(self, ctx: Context, results: Mapping[str, Any]) -> list[str]:
        """Markdown blocks of the page between the standard header and the reading."""
        return []

    def validate(self, cfg: Mapping[str, Any], where: str) -> None:
        """Top-level keys, then :meth:`check`, then the row names and ``only``: what
        :func:`load_config` runs before anything trains."""
        allowed = {"title", *self.keys, *(("only",) if self.rows else ())}
        check_keys(cfg, allowed, where, required=self.required)
        self.check(cfg, where)
        if self.rows:
            self._check_rows(cfg, where)

    def _check_rows(self, cfg: Mapping[str, Any], where: str) -> None:
        names = self.row_names(cfg)
        if len(set(names)) < len(names):
            raise ZooError(f"{where}: two rows share a name ({', '.join(names)}); give each its own `name`")
        only = cfg.get("only")
        if only is None:
            return
        if isinstance(only, str) or not isinstance(only, list):
            raise ZooError(f"{where} only must be a list of row names, e.g. only = {names[:1]!r}")
        for row in only:
            if row not in names:
                raise ZooError(f"{where} only: no row named {row!r}; rows: {', '.join(map(repr, names))}")


_REGISTRY: dict[str, type[Experiment]] = {}


def register(name: str, title: str, rank: int = 100) -> Callable[[type[Experiment]], type[Experiment]]:
    """Class decorator: make the experiment runnable as ``python -m zoo.experiments NAME``."""

    def wrap(cls: type[Experiment]) -> type[Experiment]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ZooError(f"an experiment named {name!r} is already registered")
        cls.name, cls.title, cls.rank = name, title, rank
        _REGISTRY[name] = cls
        return cls

    return wrap


def _discover() -> None:
    """Import every module of :mod:`zoo.experiments`: the experiments register themselves on
    import. Subpackages (``kit``, the shared machinery) are not experiments and are skipped."""
    import zoo.experiments as package

    for info in pkgutil.iter_modules(package.__path__):
        if not info.ispkg and not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")


def experiments() -> dict[str, type[Experiment]]:
    """Every registered experiment, in ``list`` order."""
    _discover()
    return dict(sorted(_REGISTRY.items(), key=lambda kv: (kv[1].rank, kv[0])))


def get(name: str) -> Experiment:
    """The experiment registered as ``name``."""
    known = experiments()
    if name not in known:
        raise ZooError(f"unknown experiment {name!r}; known: {', '.join(known)}")
    return known[name]()


def load_config(
    name: str,
    path: str | os.PathLike | None = None,
    *,
    tiny: bool = False,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The checked config of experiment ``name``: ``path`` or ``configs/NAME.toml``, with its
    ``[tiny]`` table (``tiny``) and then ``overrides`` (``--set``) merged over it. Every key is
    checked here, before anything trains; an unknown or misspelled one fails naming it."""
    experiment = get(name)
    file = config_path(name, path)
    cfg = read_config(file, tiny=tiny)
    if overrides:
        cfg = deep_merge(cfg, overrides)
    experiment.validate(cfg, shown_path(file))
    return cfg
