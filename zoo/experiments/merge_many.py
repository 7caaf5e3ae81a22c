"""Three models merged at once: REPAIR's MNIST MLP, each triple of runs aligned to its first model
and averaged, or Git Re-Basin's MergeMany loop (each model aligned to the mean of the others until
nothing moves), by weight or activation matching, each ± REPAIR, beside the naive average.

The curves: test accuracy along the straight line from the triple's first model (λ = 0) to the
merged model (λ = 1), plain (the merged end without REPAIR).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from typing import Any

from transfer.evaluation import evaluate_batches
from transfer.merge import MergeOptions, Repair, evaluate_path, merge
from zoo.errors import ZooError
from zoo.experiments.kit.base import Experiment, register
from zoo.experiments.kit.context import Context
from zoo.experiments.kit.merge_common import (
    ALIGNS,
    SETTING_KEYS,
    Merger,
    check_groups,
    check_path,
    check_setting,
    endpoints,
    mean_sd,
)
from zoo.experiments.kit.report import md_table, pct, pyplot, write_json

__all__ = ["MergeMany"]


def _arms(methods: list[str]) -> list[tuple[str, str, bool]]:
    """(row name, transfer.merge method, MergeMany?) of every merge the page shows."""
    arms = [("naive average", "none", False)]
    for m in methods:
        arms += [(f"{m}: align to the first", ALIGNS[m], False), (f"{m}: MergeMany", ALIGNS[m], True)]
    return arms


def _acc(merger: Merger, state: Mapping[str, Any]) -> float:
    merger.net.load_state_dict(state)
    _, correct, count = evaluate_batches(merger.net, merger.test)
    return correct / count


def _triple(ctx: Context, merger: Merger, seeds: list[int]) -> dict[str, Any]:
    """Every merge of one triple: accuracy plain and repaired, seconds, MergeMany's sweeps, the curve."""
    out = ctx.runs / "triples" / f"{merger.key}_s{'-'.join(map(str, seeds))}.json"
    if out.exists():
        ctx.say(f"reused the merges of triple {seeds} ({out})")
        return json.loads(out.read_text())
    states = [t.final() for t in endpoints(ctx, merger.setting, seeds)]
    res: dict[str, Any] = {"seeds": seeds, "members_acc": [_acc(merger, s) for s in states], "merges": {}}
    for name, method, many in _arms(ctx.config.get("methods", ["weight", "activation"])):
        options = MergeOptions(method=method, mergemany=many, max_sweeps=int(ctx.config.get("max_sweeps", 10)))
        m = merge(merger.net, states, spec=merger.spec, batches=merger.stat, options=options)
        repaired = Repair(merger.net, merger.spec, m.aligned, merger.stat)(m.state, [1 / len(states)] * len(states))
        curve = evaluate_path(merger.net, m.aligned[0], m.state, merger.test, lambdas=merger.lambdas)
        res["merges"][name] = {"acc": _acc(merger, m.state), "acc_repair": _acc(merger, repaired),
                               "seconds": m.timings.get("total", 0.0), "sweeps": m.sweeps,
                               "curve": curve.to_dict()}  # fmt: skip
        ctx.say(
            f"triple {seeds} {name}: {pct(res['merges'][name]['acc'])} % -> repaired "
            f"{pct(res['merges'][name]['acc_repair'])} % ({m.sweeps} sweeps, {m.timings.get('total', 0):.0f} s)"
        )
    write_json(out, res)
    return res


@register("merge_many", "Merging three MNIST MLPs at once: align to one reference vs MergeMany", rank=74)
class MergeMany(Experiment):
    keys = (*SETTING_KEYS, "stat_samples", "batch_size", "points", "triples", "methods", "max_sweeps")
    required = ("model", "data", "train", "triples")

    def check(self, cfg: Mapping[str, Any], where: str) -> None:
        check_setting({k: cfg[k] for k in SETTING_KEYS if k in cfg}, where)
        check_path({**cfg, "aligns": cfg.get("methods", ["weight"])}, where)
        check_groups(cfg["triples"], 3, f"{where} triples")
        if any(m == "naive" for m in cfg.get("methods", [])):
            raise ZooError(f"{where} methods: the naive average is always included; list weight and/or activation")
        sweeps = cfg.get("max_sweeps", 10)
        if not isinstance(sweeps, int) or isinstance(sweeps, bool) or sweeps < 1:
            raise ZooError(f"{where} max_sweeps must be a positive integer, got {sweeps!r}")

    def compute(self, ctx: Context) -> dict[str, Any]:
        cfg = ctx.config
        setting = {k: cfg[k] for k in SETTING_KEYS if k in cfg}
        merger = Merger(ctx, setting, {**cfg, "points": cfg.get("points", 11)})
        triples = [_triple(ctx, merger, seeds) for seeds in cfg["triples"]]
        names = list(triples[0]["merges"])
        merges = {n: {k: [t["merges"][n][k] for t in triples] for k in ("acc", "acc_repair", "seconds", "sweeps")}
                  for n in names}  # fmt: skip
        curves = {n: [t["merges"][n]["curve"] for t in triples] for n in names}
        return {"model": merger.model_id, "data": merger.data.name, "groups": merger.groups(),
                "triples": cfg["triples"], "members_acc": [t["members_acc"] for t in triples], "merges": merges,
                "lambdas": merger.lambdas, "curves": curves}  # fmt: skip

    def sections(self, ctx: Context, results: Mapping[str, Any]) -> list[str]:
        members = [a for t in results["members_acc"] for a in t]
        rows = [[n, mean_sd(v["acc"], 100), mean_sd(v["acc_repair"], 100),
                 mean_sd([float(s) for s in v["sweeps"]], digits=1), mean_sd(v["seconds"], digits=1)]
                for n, v in results["merges"].items()]  # fmt: skip
        groups = ", ".join(f"`{g}` ({n})" for g, n in results["groups"].items())
        recipe = ", ".join(f"{k} {v}" for k, v in ctx.config["train"].items())
        return [
            "## Setting",
            f"`{results['model']}` on `{results['data']}`; recipe: {recipe}; triples {results['triples']} (fixed "
            f"before looking; seeds 1-6 are merge_mlp's runs). Inferred free groups: {groups}. Test accuracy of the "
            "uniform average of the three aligned models; REPAIR renormalises it toward the mean of the aligned "
            "models' statistics.",
            "## Results",
            md_table(["merge", "test acc %", "test acc % + REPAIR", "MergeMany sweeps", "seconds"], rows),
            f"Members' test accuracy: {mean_sd(members, 100)} % (9 models).",
            f"![merges]({ctx.figure()})",
        ]

    def plots(self, ctx: Context, results: Mapping[str, Any]) -> list[tuple[str, Any]]:
        fig, axes = pyplot().subplots(1, 2, figsize=(11, 3.6))
        lams = results["lambdas"]
        for i, (name, curves) in enumerate(results["curves"].items()):
            acc = [100 * statistics.fmean(c["acc"][j] for c in curves) for j in range(len(lams))]
            axes[0].plot(lams, acc, color=f"C{i}", label=name)
        axes[0].set_xlabel("λ (0: the first model as aligned, 1: the merged model)")
        axes[0].set_ylabel("test accuracy (%)")
        axes[0].legend(fontsize=7)
        axes[0].grid(alpha=0.3)
        names = list(results["merges"])
        for k, (key, label) in enumerate((("acc", "plain"), ("acc_repair", "+ REPAIR"))):
            vals = [100 * statistics.fmean(results["merges"][n][key]) for n in names]
            axes[1].barh([j + 0.4 * k for j in range(len(names))], vals, height=0.4, label=label)
        axes[1].set_yticks([j + 0.2 for j in range(len(names))], names, fontsize=7)
        axes[1].set_xlabel("merged model's test accuracy (%), mean over triples")
        axes[1].legend(fontsize=7)
        return [("", fig)]
