"""The merging experiment of one setting over seed pairs, and of several settings.

:class:`MergePairs` measures the config's setting (its top level) over its seed pairs with
:func:`zoo.experiments.kit.merge_common.pair_paths`; ``probes`` (optional) repeat the setting with other
training recipes (one ``[train]`` table each): how the numbers move with how the endpoints were
trained. :class:`MergeSettings` does the same for each of several settings (a page section each).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zoo.errors import ZooError
from zoo.experiments.kit.base import Experiment
from zoo.experiments.kit.config import check_keys, check_recipe
from zoo.experiments.kit.context import Context
from zoo.experiments.kit.merge_common import (
    PATH_KEYS,
    SETTING_KEYS,
    Merger,
    align_table,
    check_groups,
    check_path,
    check_setting,
    curves_figure,
    endpoints,
    pair_paths,
    summarize,
)

__all__ = ["MergePairs", "MergeSettings", "setting_text"]


def setting_text(merger: Merger, cfg: Mapping[str, Any], pairs: list[list[int]]) -> str:
    """The setting in one paragraph: model, data, recipe, pairs, inferred groups, the path's grid."""
    groups = ", ".join(f"`{g}` ({n})" for g, n in merger.groups().items())
    n_test = sum(len(b[1]) for b in merger.test)
    n_stat = sum(len(b[1]) for b in merger.stat)
    recipe = ", ".join(f"{k} {v}" for k, v in cfg["train"].items())
    return (
        f"`{merger.model_id}` on `{merger.data.name}`; recipe: {recipe}; seed pairs {pairs} (fixed before looking). "
        f"Inferred free groups (units): {groups}. Path: (1 − λ)·A + λ·π(B) at {len(merger.lambdas)} values of λ, "
        f"test loss and accuracy on {n_test} test samples; activation matching and REPAIR statistics on the first "
        f"{n_stat} training samples. Loss barrier = max_λ L(λ) − ½(L(0) + L(1)); accuracy barrier = "
        f"½(acc(0) + acc(1)) − min_λ acc(λ) (Git Re-Basin). REPAIR is applied at every λ inside the path."
    )


class MergePairs(Experiment):
    """The paths of the config's setting over its seed pairs (``merge_common.pair_paths``)."""

    keys = (*SETTING_KEYS, *PATH_KEYS, "pairs", "probes")
    required = ("model", "data", "train", "pairs")

    def check(self, cfg: Mapping[str, Any], where: str) -> None:
        check_setting({k: cfg[k] for k in SETTING_KEYS if k in cfg}, where)
        check_path(cfg, where)
        check_groups(cfg["pairs"], 2, f"{where} pairs")
        for probe in cfg.get("probes", []):
            at = f"{where} probes {probe.get('name')!r}" if isinstance(probe, Mapping) else f"{where} probes"
            if not isinstance(probe, Mapping):
                raise ZooError(f"{at} must be a table with name and train")
            check_keys(probe, ("name", "train"), at, required=("name", "train"))
            check_recipe(probe["train"], f"{at} train")

    def run_setting(self, ctx: Context, setting: Mapping[str, Any], what: str) -> tuple[Merger, dict[str, Any]]:
        """Train (or reuse) the setting's endpoints and measure every pair."""
        cfg = ctx.config
        merger = Merger(ctx, setting, cfg)
        pairs = []
        for sa, sb in cfg["pairs"]:
            a, b = endpoints(ctx, setting, [sa, sb], what=what)
            pairs.append(pair_paths(merger, a, b, [sa, sb]))
        return merger, summarize(pairs)

    def compute(self, ctx: Context) -> dict[str, Any]:
        cfg = ctx.config
        setting = {k: cfg[k] for k in SETTING_KEYS if k in cfg}
        merger, block = self.run_setting(ctx, setting, ctx.name)
        probes = {}
        for probe in cfg.get("probes", []):
            _, probes[probe["name"]] = self.run_setting(ctx, {**setting, "train": probe["train"]}, probe["name"])
        return {**block, "model": merger.model_id, "data": merger.data.name, "groups": merger.groups(),
                "setting": setting_text(merger, cfg, cfg["pairs"]), "probes": probes}  # fmt: skip

    def plots(self, ctx: Context, results: Mapping[str, Any]) -> list[tuple[str, Any]]:
        blocks = {f"{results['model']} on {results['data']}": results}
        blocks.update({f"probe: {name}": b for name, b in results.get("probes", {}).items()})
        return [("", curves_figure(blocks))]

    def anchor(self, results: Mapping[str, Any]) -> list[str]:
        """Blocks comparing with the published numbers (none by default)."""
        return []

    def sections(self, ctx: Context, results: Mapping[str, Any]) -> list[str]:
        blocks = ["## Setting", results["setting"], "## Results", align_table(results), *self.anchor(results)]
        for name, b in results.get("probes", {}).items():
            recipe = ", ".join(f"{k} {v}" for k, v in _probe(ctx, name)["train"].items())
            blocks += [f"### Probe: {name} ({recipe})", align_table(b)]
        return [*blocks, f"![paths]({ctx.figure()})"]


def _probe(ctx: Context, name: str) -> Mapping[str, Any]:
    return next(p for p in ctx.config.get("probes", []) if p["name"] == name)


class MergeSettings(MergePairs):
    """:class:`MergePairs` for each of several settings (``settings``: tables with a ``name`` and
    the setting's keys); the results hold one block of the published shape per setting."""

    keys = (*PATH_KEYS, "pairs", "settings")
    required = ("pairs", "settings")
    repair_label = "+ REPAIR"

    def check(self, cfg: Mapping[str, Any], where: str) -> None:
        check_path(cfg, where)
        check_groups(cfg["pairs"], 2, f"{where} pairs")
        names = []
        for name, setting in self.settings_of(cfg, where):
            check_setting(setting, f"{where} settings {name!r}")
            names.append(name)
        if len(set(names)) < len(names):
            raise ZooError(f"{where}: two settings share a name ({', '.join(names)})")

    def settings_of(self, cfg: Mapping[str, Any], where: str = "the config") -> list[tuple[str, dict[str, Any]]]:
        """``(name, setting)`` of every setting, in page order."""
        tables = cfg["settings"]
        if not isinstance(tables, list) or not tables or not all(isinstance(t, Mapping) and "name" in t for t in tables):
            raise ZooError(f"{where} settings must be a non-empty list of tables, each with a name")
        return [(t["name"], {k: v for k, v in t.items() if k != "name"}) for t in tables]

    def compute(self, ctx: Context) -> dict[str, Any]:
        out = {}
        for name, setting in self.settings_of(ctx.config):
            merger, block = self.run_setting(ctx, setting, name)
            out[name] = {**block, "model": merger.model_id, "data": merger.data.name, "groups": merger.groups(),
                         "setting": setting_text(merger, {**ctx.config, **setting}, ctx.config["pairs"])}  # fmt: skip
        return {"pairs": ctx.config["pairs"], "settings": out}

    def plots(self, ctx: Context, results: Mapping[str, Any]) -> list[tuple[str, Any]]:
        label = self.repair_label.removeprefix("+ ")
        return [("", curves_figure(results["settings"], label))]

    def sections(self, ctx: Context, results: Mapping[str, Any]) -> list[str]:
        blocks = []
        for name, b in results["settings"].items():
            blocks += [f"## {name}", b["setting"], align_table(b, self.repair_label)]
        return [*blocks, *self.anchor(results), f"![paths]({ctx.figure()})"]
