"""What the merging experiments share: endpoint runs, the path of one pair, and the page's pieces.

Every merging experiment (``merge_mlp``, ``merge_rebasin_mlp``, ``merge_resnet20``,
``merge_transformers``, ``merge_many``) trains its endpoints through the zoo's one training loop in
the shared pool (:func:`zoo.experiments.kit.pool.ensure_run`), so a rerun, or another experiment that
asks for the same model, data view, recipe and seed, costs no training. The merging itself is
:mod:`transfer.merge` on the spec ``permgraph.infer`` gives: nothing here is written per architecture.

One pair (:func:`pair_paths`): B aligned onto A by each of ``aligns`` (``naive``: no permutation,
``weight``: weight matching, ``activation``: activation matching on ``stat_samples`` training
samples), the linear path A → π(B) on the test split at ``points`` values of λ, and the same path
with REPAIR (BatchNorm nets: BN reset) at every λ strictly inside. The endpoints are evaluated once
per pair, as trained (π(B) computes what B computes), and shared by every curve. A finished pair is
stored under the experiment's runs folder and read back on a rerun.

The results of a setting (:func:`summarize`) have the shape the issue fixes for ``merge_mlp``::

    {"pairs": [[seed_a, seed_b], ...], "endpoints": {"a_acc": [...], "b_acc": [...]},
     "align": {ALIGN: {"midpoint_acc": [...], "midpoint_acc_repair": [...], "loss_barrier": [...],
                       "acc_barrier": [...]}}}

with the curves beside them (``"curves"``: per align, ``plain`` / ``repair``, per pair).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import torch

import permgraph
from transfer.merge import PathCurve, Repair, align_models, evaluate_path, lambda_grid
from transfer.trajectory import Trajectory
from zoo.data import DataSplits
from zoo.errors import ZooError
from zoo.experiments.kit.config import check_keys, check_recipe
from zoo.experiments.kit.context import Context
from zoo.experiments.kit.pool import ensure_run, settings_key
from zoo.experiments.kit.report import md_table, pct, pyplot, write_json
from zoo.experiments.kit.views import get_data, model_for
from zoo.models import build, example_inputs

__all__ = [
    "SETTING_KEYS", "PATH_KEYS", "ALIGNS", "open_setting", "endpoints", "check_groups", "check_setting",
    "check_path", "batches", "Merger", "pair_paths", "summarize", "align_table", "curves_figure", "mean_sd",
]  # fmt: skip

# the keys a setting (the top level of a config, or one of its ``settings`` tables) spells out
SETTING_KEYS = ("model", "data", "subset", "val_subset", "test_subset", "data_options", "train")
# how a pair's path is measured
PATH_KEYS = ("aligns", "points", "stat_samples", "batch_size")
ALIGNS = {"naive": "none", "weight": "weight", "activation": "activation"}  # page name -> transfer.merge method


def open_setting(setting: Mapping[str, Any]) -> tuple[DataSplits, str]:
    """The setting's data view and its model id filled in for that data."""
    data = get_data(setting["data"], subset=setting.get("subset"), val_subset=setting.get("val_subset"),
                    **dict(setting.get("data_options", {})))  # fmt: skip
    return data, model_for(setting["model"], data)


def endpoints(ctx: Context, setting: Mapping[str, Any], seeds: Sequence[int], what: str = "") -> list[Trajectory]:
    """The trained runs of ``setting`` for each seed (trained, resumed or reused from the pool)."""
    data, model = open_setting(setting)
    label = what or ctx.name
    return [ensure_run(ctx, model, data, setting["train"], seed=s, what=f"{label} seed {s}") for s in seeds]


def check_groups(groups: Any, size: int, where: str) -> list[list[int]]:
    """``groups`` must be a non-empty list of lists of ``size`` distinct integer seeds."""
    if not isinstance(groups, list) or not groups:
        raise ZooError(f"{where} must be a non-empty list of seed lists, e.g. [[1, 2], [3, 4]]")
    for g in groups:
        ok = isinstance(g, list) and len(g) == size and all(isinstance(s, int) and not isinstance(s, bool) for s in g)
        if not ok or len(set(g)) < size:
            raise ZooError(f"{where}: {g!r} is not a list of {size} distinct integer seeds")
    return groups


def check_setting(setting: Mapping[str, Any], where: str, extra: Sequence[str] = ()) -> None:
    """A setting table: its keys, its ``[train]`` recipe, positive sample counts."""
    check_keys(setting, (*SETTING_KEYS, *extra), where, required=("model", "data", "train"))
    check_recipe(setting["train"], f"{where} train")
    for key in ("subset", "val_subset", "test_subset"):
        v = setting.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ZooError(f"{where} {key} must be a positive integer, got {v!r}")


def check_path(cfg: Mapping[str, Any], where: str) -> None:
    """The path keys: known aligns, at least 3 values of λ, positive sample and batch counts."""
    aligns = cfg.get("aligns", list(ALIGNS))
    if not isinstance(aligns, list) or not aligns or any(a not in ALIGNS for a in aligns):
        raise ZooError(f"{where} aligns must be a non-empty list of {', '.join(map(repr, ALIGNS))}, got {aligns!r}")
    points = cfg.get("points", 25)
    if not isinstance(points, int) or isinstance(points, bool) or points < 3:
        raise ZooError(f"{where} points must be an integer >= 3 (the path needs a midpoint), got {points!r}")
    for key in ("stat_samples", "batch_size"):
        v = cfg.get(key, 1)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ZooError(f"{where} {key} must be a positive integer, got {v!r}")


def batches(split: tuple[torch.Tensor, torch.Tensor], n: int | None, size: int) -> list[tuple[torch.Tensor, ...]]:
    """The first ``n`` samples of ``split`` (all with None) in batches of ``size``."""
    x, y = split
    n = len(x) if n is None else min(n, len(x))
    return [(x[i : min(i + size, n)], y[i : min(i + size, n)]) for i in range(0, n, size)]


class Merger:
    """One setting's model, spec and data batches: what every pair of the setting is merged with."""

    def __init__(self, ctx: Context, setting: Mapping[str, Any], path: Mapping[str, Any]):
        self.ctx, self.setting = ctx, setting
        self.data, self.model_id = open_setting(setting)
        self.net = build(self.model_id)
        self.spec = permgraph.infer(self.net, example_inputs(self.net))
        self.net.to(ctx.device)  # paths and statistics are computed where the runs trained (not tried on a GPU here)
        size = int(path.get("batch_size", 500))
        self.stat = batches(self.data.train, int(path.get("stat_samples", 5000)), size)
        self.test = batches(self.data.test, setting.get("test_subset"), size)
        self.lambdas = lambda_grid(int(path.get("points", 25)))
        self.aligns = list(path.get("aligns", list(ALIGNS)))
        self.key = settings_key(self.model_id, self.data.name, dict(setting["train"]), setting.get("test_subset"),
                                {k: path.get(k) for k in PATH_KEYS})  # fmt: skip

    def groups(self) -> dict[str, int]:
        """The free groups permgraph inferred, with their sizes (the page lists them)."""
        return {g.name: g.size for g in self.spec.free_groups}


def pair_paths(merger: Merger, a: Trajectory, b: Trajectory, seeds: Sequence[int]) -> dict[str, Any]:
    """The paths of one pair under every align, plain and repaired (module docstring); stored."""
    ctx = merger.ctx
    out = ctx.runs / "pairs" / f"{merger.key}_s{seeds[0]}-{seeds[1]}.json"
    if out.exists():
        ctx.say(f"reused the paths of pair {seeds} ({out})")
        return json.loads(out.read_text())
    sa, sb = a.final(), b.final()
    ends = evaluate_path(merger.net, sa, sb, merger.test, lambdas=[0.0, 1.0])
    shared = {0.0: (ends.loss[0], ends.acc[0]), 1.0: (ends.loss[1], ends.acc[1])}
    curves, timings = {}, {}
    for name in merger.aligns:
        al = align_models(merger.net, merger.spec, sa, sb, method=ALIGNS[name], batches=merger.stat)
        plain = evaluate_path(merger.net, sa, al.state, merger.test, lambdas=merger.lambdas, points=dict(shared),
                              progress=ctx.progress)  # fmt: skip
        repair = Repair(merger.net, merger.spec, [sa, al.state], merger.stat)
        fixed = evaluate_path(merger.net, sa, al.state, merger.test, lambdas=merger.lambdas, points=dict(shared),
                              transform=repair.at, progress=ctx.progress)  # fmt: skip
        curves[name] = {"plain": plain.to_dict(), "repair": fixed.to_dict()}
        timings[name] = {**al.summary(), "repair_layers": len(repair.sites), "bn_reset": repair.batchnorm}
        ctx.say(
            f"pair {list(seeds)} {name}: midpoint {pct(plain.midpoint_acc)} % -> repaired "
            f"{pct(fixed.midpoint_acc)} %, loss barrier {plain.loss_barrier:.3f} ({al.seconds:.1f} s to align)"
        )
    result = {"seeds": list(seeds), "a_acc": ends.acc[0], "b_acc": ends.acc[1], "curves": curves, "timings": timings}
    write_json(out, result)
    return result


def summarize(pairs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The per-pair results in the published shape (module docstring), curves beside them."""
    aligns = list(pairs[0]["curves"])
    block: dict[str, Any] = {
        "pairs": [p["seeds"] for p in pairs],
        "endpoints": {"a_acc": [p["a_acc"] for p in pairs], "b_acc": [p["b_acc"] for p in pairs]},
        "align": {},
    }
    for name in aligns:
        plain = [PathCurve.from_dict(p["curves"][name]["plain"]) for p in pairs]
        fixed = [PathCurve.from_dict(p["curves"][name]["repair"]) for p in pairs]
        block["align"][name] = {
            "midpoint_acc": [c.midpoint_acc for c in plain], "midpoint_acc_repair": [c.midpoint_acc for c in fixed],
            "loss_barrier": [c.loss_barrier for c in plain], "acc_barrier": [c.acc_barrier for c in plain],
        }  # fmt: skip
    block["repaired_barriers"] = {
        name: {"loss_barrier": [PathCurve.from_dict(p["curves"][name]["repair"]).loss_barrier for p in pairs],
               "acc_barrier": [PathCurve.from_dict(p["curves"][name]["repair"]).acc_barrier for p in pairs]}
        for name in aligns
    }  # fmt: skip
    block["lambdas"] = pairs[0]["curves"][aligns[0]]["plain"]["lambdas"]
    block["curves"] = {name: {kind: [p["curves"][name][kind] for p in pairs] for kind in ("plain", "repair")}
                       for name in aligns}  # fmt: skip
    block["timings"] = [p["timings"] for p in pairs]
    return block


def mean_sd(values: Sequence[float], scale: float = 1.0, digits: int = 1) -> str:
    """``mean ± sd`` over pairs (the sd left out for one pair)."""
    vals = [scale * v for v in values]
    m = f"{statistics.fmean(vals):.{digits}f}"
    return m if len(vals) < 2 else f"{m} ± {statistics.stdev(vals):.{digits}f}"


def align_table(block: Mapping[str, Any], repair_label: str = "+ REPAIR") -> str:
    """One row per align: midpoint accuracy plain and repaired, barriers, the cut of the loss barrier."""
    naive = block["align"].get("naive")
    rows = []
    for name, v in block["align"].items():
        rep = block["repaired_barriers"][name]
        cut = "-"
        if naive is not None and name != "naive":
            cuts = [1 - lb / nb for lb, nb in zip(v["loss_barrier"], naive["loss_barrier"]) if nb > 0]
            cut = mean_sd(cuts, 100, 0) + " %" if cuts else "-"
        rows.append([name, mean_sd(v["midpoint_acc"], 100), mean_sd(v["midpoint_acc_repair"], 100),
                     mean_sd(v["loss_barrier"], digits=3), mean_sd(rep["loss_barrier"], digits=3),
                     mean_sd(v["acc_barrier"], 100), cut])  # fmt: skip
    head = ["align", "midpoint acc %", f"midpoint acc % {repair_label}", "loss barrier", f"loss barrier {repair_label}",
            "acc barrier (points)", "loss barrier cut vs naive"]  # fmt: skip
    ends = block["endpoints"]
    per_pair = "; ".join(f"{s[0]}/{s[1]}: {pct(a)} / {pct(b)}"
                         for s, a, b in zip(block["pairs"], ends["a_acc"], ends["b_acc"]))  # fmt: skip
    return md_table(head, rows) + f"\n\nEndpoints' test accuracy (%), A / B per pair: {per_pair}."


def curves_figure(blocks: Mapping[str, Mapping[str, Any]], repair_label: str = "REPAIR") -> Any:
    """Per setting (a row): test loss and accuracy over λ, mean over pairs, one colour per align,
    solid plain and dashed repaired."""
    fig, axes = pyplot().subplots(len(blocks), 2, figsize=(10, 3.4 * len(blocks)), squeeze=False)
    for row, (title, block) in zip(axes, blocks.items()):
        lams = block["lambdas"]
        for i, (name, kinds) in enumerate(block["curves"].items()):
            for kind, style in (("plain", "-"), ("repair", "--")):
                loss = [statistics.fmean(c["loss"][j] for c in kinds[kind]) for j in range(len(lams))]
                acc = [100 * statistics.fmean(c["acc"][j] for c in kinds[kind]) for j in range(len(lams))]
                label = name if kind == "plain" else f"{name} + {repair_label}"
                row[0].plot(lams, loss, style, color=f"C{i}", label=label)
                row[1].plot(lams, acc, style, color=f"C{i}", label=label)
        row[0].set_ylabel("test loss")
        row[1].set_ylabel("test accuracy (%)")
        for ax in row:
            ax.set_xlabel("λ (0: A, 1: B aligned onto A)")
            ax.grid(alpha=0.3)
            ax.set_title(title, fontsize=9)
        row[1].legend(fontsize=7)
    fig.tight_layout()
    return fig
