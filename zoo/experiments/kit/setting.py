"""Every experiment's opening, in one place: a setting (data view, model, seeds, recipe) becomes the
data, the model id filled in for it, and the source and target runs of a seed pair.

A setting comes from the experiment's own config (:meth:`Setting.from_config`) or from another
experiment's (:func:`setting_from`, for ``from = "fig5a"``): asking for the same settings finds the
same runs and transfers in the pool, so building on another experiment costs no training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from transfer.trajectory import Trajectory
from zoo.data import DataSplits
from zoo.errors import ZooError
from zoo.experiments.kit.base import Experiment, get, load_config
from zoo.experiments.kit.config import check_keys
from zoo.experiments.kit.context import Context
from zoo.experiments.kit.pool import ensure_run
from zoo.experiments.kit.views import get_data, model_for

__all__ = ["Setting", "setting_from", "Pair", "open_view", "open_pair", "case_name", "Cases"]


@dataclass(frozen=True)
class Setting:
    """Where a pair of runs comes from. ``train`` and ``transfer`` are the config tables as written
    (their hashes name the pool's folders); the config's check has validated them already."""

    name: str  # for messages and pages: the experiment or case it belongs to
    model: str  # a model id before :func:`model_for` fills in the data's sizes
    data: str
    seeds: tuple[int, int]
    train: Mapping[str, Any]
    transfer: Mapping[str, Any] = field(default_factory=dict)
    finetune: Mapping[str, Any] = field(default_factory=dict)
    subset: int | None = None
    val_subset: int | None = None
    labels: Sequence[int] | None = None
    data_options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], name: str, seeds: Sequence[int] | None = None) -> Setting:
        """The setting a config's top level spells out (``model``, ``data``, ``subset``,
        ``val_subset``, ``data_options``, ``seeds``, ``[train]``, ``[transfer]``, ``[finetune]``);
        ``seeds`` picks one pair where the config lists several."""
        s1, s2 = seeds if seeds is not None else cfg["seeds"]
        return cls(
            name=name, model=cfg["model"], data=cfg["data"], seeds=(s1, s2), train=dict(cfg["train"]),
            transfer=dict(cfg.get("transfer", {})), finetune=dict(cfg.get("finetune", {})),
            subset=cfg.get("subset"), val_subset=cfg.get("val_subset"),
            data_options=dict(cfg.get("data_options", {})),
        )  # fmt: skip


def setting_from(name: str, tiny: bool = False, schedule: str | None = None) -> Setting:
    """The setting of experiment ``name`` (its config file; its first seed pair) for an experiment
    that builds on its runs. ``schedule`` overrides the transfer schedule (default: the config's,
    else the first of its ``schedules``)."""
    cfg = load_config(name, tiny=tiny)
    seeds = cfg["seeds"][0] if isinstance(cfg["seeds"][0], list) else cfg["seeds"]
    transfer = dict(cfg["transfer"])
    transfer["schedule"] = schedule or transfer.get("schedule") or cfg.get("schedules", ["uniform"])[0]
    return Setting.from_config({**cfg, "transfer": transfer}, name, seeds=seeds)


@dataclass(frozen=True)
class Pair:
    """An opened setting: the data view, the model id, and the trained source and target runs."""

    setting: Setting
    data: DataSplits
    model: str
    source: Trajectory
    target: Trajectory


def open_view(setting: Setting) -> tuple[DataSplits, str]:
    """The setting's data view and its model id filled in for that data."""
    data = get_data(setting.data, subset=setting.subset, val_subset=setting.val_subset, labels=setting.labels,
                    **setting.data_options)  # fmt: skip
    return data, model_for(setting.model, data)


def open_pair(ctx: Context, setting: Setting) -> Pair:
    """Data, model id, then the source and target runs of the setting's seed pair (trained, resumed
    or reused from the pool)."""
    data, model = open_view(setting)
    s1, s2 = setting.seeds
    source = ensure_run(ctx, model, data, setting.train, seed=s1, what=f"{setting.name} source (seed {s1})")
    target = ensure_run(ctx, model, data, setting.train, seed=s2, what=f"{setting.name} target (seed {s2})")
    return Pair(setting, data, model, source, target)


def case_name(case: Mapping[str, Any]) -> str:
    """A case's row name: its ``name``, else the experiment it takes its runs ``from``."""
    return case.get("name") or case["from"]


class Cases(Experiment):
    """An experiment over ``cases``, each taking the runs of the experiment it names
    (``from = "fig5a"``; ``name`` tells two cases of one experiment apart). Each case is a row."""

    keys = ("methods", "cases")
    required = ("methods", "cases")
    rows = "cases"
    case_keys: ClassVar[tuple[str, ...]] = ("from", "name")  # what a ``from`` case may say

    def check(self, cfg: Mapping[str, Any], where: str) -> None:
        super().check(cfg, where)
        for case in cfg["cases"]:
            at = f"{where} cases {case.get('name') or case.get('from')!r}"
            if "from" in case:
                check_keys(case, self.case_keys, at)
                get(case["from"])
            else:
                self.check_own_case(case, at)

    def check_own_case(self, case: Mapping[str, Any], where: str) -> None:
        """A case without ``from``: refused unless the experiment lets a case spell out its setting."""
        raise ZooError(f"{where} names no experiment: add from = NAME")

    def row_names(self, cfg: Mapping[str, Any]) -> list[str]:
        return [case_name(c) for c in cfg["cases"]]
