"""Which trajectory to transfer: the linear one (init and final only; uniform or cosine schedule)
against the actual recorded one (one checkpoint per epoch), as in the paper's Fig. 4 and Fig. 9.

For each case (the runs of the experiment it names) every method transfers three trajectories of
the same number of steps T = the source's number of epochs: linear-uniform, linear-cosine and
actual. Same source, same target init, same gradient batches; only the trajectory differs. Each case
is a row (``only = [names]``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from transfer.methods import label
from zoo.experiments.kit.base import register
from zoo.experiments.kit.context import Context
from zoo.experiments.kit.pool import transfer_methods
from zoo.experiments.kit.report import md_table, pct, pyplot
from zoo.experiments.kit.setting import Cases, case_name, open_pair, setting_from

__all__ = ["Trajectories", "VARIANTS"]

# the trajectories compared (not methods): what each changes in the named experiment's [transfer]
VARIANTS = {
    "linear, uniform": {"linear": True, "schedule": "uniform"},
    "linear, cosine": {"linear": True, "schedule": "cosine"},
    "actual": {"linear": False, "schedule": "uniform"},
}
_LINES = {"linear, uniform": "o-", "linear, cosine": "s--", "actual": "^:"}
KEPT = ("t", "val_acc", "val_loss", "best_t", "seconds")


@register("trajectories", "linear vs actual trajectories; uniform vs cosine", rank=70)
class Trajectories(Cases):
    """Per case: every method on the three trajectories of one source run."""

    case_keys = ("from", "name", "T")

    def recorded_rows(self, recorded: Mapping[str, Any]) -> list[dict[str, Any]]:
        # files written before rows had names named them by "from"
        return [{**r, "name": r.get("name") or r["from"]} for r in recorded.get("cases", [])]

    def compute(self, ctx: Context) -> dict[str, Any]:
        cfg = ctx.config
        chosen = ctx.selected(self.row_names(cfg))
        cases = [(c, setting_from(c["from"], ctx.tiny)) for c in cfg["cases"] if case_name(c) in chosen]
        rows = []
        for case, st in cases:
            pair = open_pair(ctx, dataclasses.replace(st, name=case_name(case)))
            T = int(case.get("T", len(pair.source) - 1))
            per_variant = {}
            for name, over in VARIANTS.items():
                res = transfer_methods(ctx, cfg["methods"], pair.source, pair.target, pair.data,
                                       {**st.transfer, **over, "T": T})  # fmt: skip
                per_variant[name] = {m: {k: r[k] for k in KEPT} for m, r in res.items()}
            rows.append({"name": case_name(case), "from": case["from"], "model": pair.model, "data": pair.data.name,
                         "T": T, "source_val_acc_per_checkpoint": pair.source.metrics("val_acc"),
                         "variants": per_variant})  # fmt: skip
        return {"methods": cfg["methods"], "cases": rows}

    def plots(self, ctx: Context, results: Mapping[str, Any]) -> list[tuple[str, Any]]:
        return [("", _figure(results))]

    def sections(self, ctx: Context, results: Mapping[str, Any]) -> list[str]:
        blocks = [
            "Reuses the runs of " + ", ".join(f"`{c['from']}`" for c in results["cases"]) + ". "
            "Validation accuracy (%) of the transferred parameters. T = the source's number of epochs: the "
            "actual trajectory transfers one recorded checkpoint per step; the linear ones interpolate init and "
            "final with λ_t = t/T (uniform) or the released code's cosine steps.",
        ]
        for c in results["cases"]:
            T = c["T"]
            ts = sorted({1, 2, max(1, T // 2), T})
            rows = []
            for m in results["methods"]:
                for v, res in c["variants"].items():
                    r = res[m]
                    best = f"{pct(r['val_acc'][r['best_t']])} (t={r['best_t']})"
                    rows.append([label(m), v, *[pct(r["val_acc"][t]) for t in ts], best])
            src = " ".join(pct(a) for a in c["source_val_acc_per_checkpoint"])
            blocks += [
                f"## {c['name']}: `{c['model']}` on `{c['data']}`, T = {T}",
                md_table(["method", "trajectory", *[f"t={t}" for t in ts], "best"], rows),
                f"Source run, val acc at its checkpoints: {src}.",
            ]
        return [*blocks, f"![trajectories]({ctx.figure()})"]


def _figure(results: Mapping[str, Any]) -> Any:
    methods, cases = results["methods"], results["cases"]
    fig, axes = pyplot().subplots(len(cases), len(methods), figsize=(3.3 * len(methods), 3.0 * len(cases)),
                                  squeeze=False, sharey="row")  # fmt: skip
    for row, c in zip(axes, cases):
        for ax, m in zip(row, methods):
            for v, res in c["variants"].items():
                ax.plot(res[m]["t"], [100 * a for a in res[m]["val_acc"]], _LINES[v], ms=3, label=v)
            ax.set_title(f"{c['name']}: {label(m)}", fontsize=9)
            ax.set_xlabel("t")
            ax.grid(alpha=0.3)
        row[0].set_ylabel("validation accuracy (%)")
        row[-1].legend(fontsize=7)
    return fig
