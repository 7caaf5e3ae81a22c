"""The random-init scenario for ResNet-20 and Conv8, in the regime where transfer can work.

The Fig. 5a gap finding: trajectory transfer between independent inits works when the training change
outweighs the init (|θ⁰| / |Δ| small). Each case spells out a recipe the CPU affords (learning rate,
epochs, width, init scale) and the page reports, per case and seed pair, the ratio ``transfer
diagnose`` measures before any transfer, then what every method reached: where GMT / FGMT separate
from Naive, and where they do not. Each case is a row (``only = [names]`` reruns some).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

from transfer.diagnose import diagnose
from transfer.methods import label
from transfer.options import TransferOptions, options_from
from zoo.experiments.kit.base import Experiment, register
from zoo.experiments.kit.config import check_keys, check_recipe, check_transfer
from zoo.experiments.kit.context import Context
from zoo.experiments.kit.pool import transfer_methods
from zoo.experiments.kit.report import md_table, pct, pyplot
from zoo.experiments.kit.setting import Setting, open_pair
from zoo.models import build

__all__ = ["RandomInit"]

KEPT = ("t", "val_acc", "val_loss", "best_t", "seconds")


@register("random_init", "random inits, ResNet-20 and Conv8: where GMT / FGMT separate from Naive", rank=44)
class RandomInit(Experiment):
    """Per case and seed pair: train both runs, diagnose, transfer with every method."""

    keys = ("methods", "cases", "seeds")
    required = ("methods", "cases", "seeds")
    rows = "cases"

    def check(self, cfg: Mapping[str, Any], where: str) -> None:
        super().check(cfg, where)
        for case in cfg["cases"]:
            at = f"{where} cases {case.get('name')!r}"
            check_keys(case, ("subset", "val_subset", "why"), at, required=("name", "model", "data", "train", "transfer"))
            check_recipe(case["train"], f"{at} train")
            check_transfer(case["transfer"], f"{at} transfer")

    def row_names(self, cfg: Mapping[str, Any]) -> list[str]:
        return [c["name"] for c in cfg["cases"]]

    def compute(self, ctx: Context) -> dict[str, Any]:
        cfg = ctx.config
        chosen = ctx.selected(self.row_names(cfg))
        rows = [self._case(ctx, c) for c in cfg["cases"] if c["name"] in chosen]
        return {"methods": cfg["methods"], "seeds": cfg["seeds"], "cases": rows}

    def _case(self, ctx: Context, case: Mapping[str, Any]) -> dict[str, Any]:
        pairs = []
        for seeds in ctx.config["seeds"]:
            setting = Setting(name=case["name"], model=case["model"], data=case["data"], seeds=tuple(seeds),
                              train=case["train"], transfer=case["transfer"], subset=case.get("subset"),
                              val_subset=case.get("val_subset"))  # fmt: skip
            pair = open_pair(ctx, setting)
            table = {**case["transfer"], "progress": False, "device": ctx.device}
            options = options_from(TransferOptions, table, "transfer")
            diag = diagnose(build(pair.model), pair.data, pair.source, pair.target.init(), options)
            res = transfer_methods(ctx, ctx.config["methods"], pair.source, pair.target, pair.data, case["transfer"])
            pairs.append({
                "seeds": list(seeds), "source_val_acc": pair.source.metrics("val_acc")[-1],
                "target_val_acc": pair.target.metrics("val_acc")[-1], "diagnose": diag.to_json(),
                "transfer": {m: {k: r[k] for k in KEPT} for m, r in res.items()},
            })  # fmt: skip
        return {"name": case["name"], "why": case.get("why", ""), "model": pair.model, "data": pair.data.name,
                "train": dict(case["train"]), "transfer_setting": dict(case["transfer"]), "pairs": pairs,
                "margins": _margins(pairs, ctx.config["methods"])}  # fmt: skip

    def plots(self, ctx: Context, results: Mapping[str, Any]) -> list[tuple[str, Any]]:
        plt = pyplot()
        cases = results["cases"]
        fig, ax = plt.subplots(figsize=(7, 4))
        for m in [m for m in results["methods"] if m != "naive"]:
            xs = [c["pairs"][0]["diagnose"]["ratio_total"] for c in cases]
            ys = [100 * statistics.fmean(c["margins"][m]) for c in cases]
            ax.plot(xs, ys, "o", label=label(m))
        for c in cases:
            ax.annotate(c["name"], (c["pairs"][0]["diagnose"]["ratio_total"], 100 * statistics.fmean(c["margins"]["fgmt"])
                                    if "fgmt" in c["margins"] else 0), fontsize=6)  # fmt: skip
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("|θ₂⁰| / |Δ₁| (before transferring)")
        ax.set_ylabel("best accuracy minus Naive's best (points)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        return [("", fig)]

    def sections(self, ctx: Context, results: Mapping[str, Any]) -> list[str]:
        blocks = ["Per case: the recipe and why it was chosen, `transfer diagnose` before transferring, then each "
                  "method's best validation accuracy (%) over t (mean over the seed pairs "
                  f"{results['seeds']}) and its margin over Naive."]  # fmt: skip
        for c in results["cases"]:
            blocks += [f"## {c['name']}", f"`{c['model']}` on `{c['data']}`, {c['train']}; transfer {c['transfer_setting']}."
                       + (f" {c['why']}" if c["why"] else ""), _case_table(c, results["methods"])]  # fmt: skip
        blocks.append(f"![margins over Naive against the init/change ratio]({ctx.figure()})")
        return blocks


def _margins(pairs: list[dict[str, Any]], methods: list[str]) -> dict[str, list[float]]:
    """Per method, its best accuracy minus Naive's best, per pair."""
    if "naive" not in methods:
        return {}
    naive = [max(p["transfer"]["naive"]["val_acc"]) for p in pairs]
    return {m: [max(p["transfer"][m]["val_acc"]) - n for p, n in zip(pairs, naive)] for m in methods}


def _case_table(c: Mapping[str, Any], methods: list[str]) -> str:
    d = [p["diagnose"] for p in c["pairs"]]
    rows = [["diagnose: ‖θ₂⁰‖ / ‖Δ₁‖", *[f"{x['ratio_total']:.2f}" for x in d]],
            ["diagnose: gradient cosine unpermuted / permuted", *[f"{x['cos_identity']:.2f} / {x['cos_permuted']:.2f}"
                                                                  for x in d]],
            ["diagnose: verdict", *[x["verdict"] for x in d]],
            ["trained source / target", *[f"{pct(p['source_val_acc'])} / {pct(p['target_val_acc'])}"
                                          for p in c["pairs"]]]]  # fmt: skip
    for m in methods:
        best = [max(p["transfer"][m]["val_acc"]) for p in c["pairs"]]
        margin = c["margins"].get(m)
        cells = [pct(b) + (f" ({100 * mg:+.1f})" if margin and m != "naive" else "") for b, mg in
                 zip(best, margin or [0.0] * len(best))]  # fmt: skip
        rows.append([f"{label(m)}: best (vs Naive)", *cells])
    return md_table(["", *[f"pair {p['seeds']}" for p in c["pairs"]]], rows)
