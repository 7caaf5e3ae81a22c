"""Fig. 5a: the 2-MLP on MNIST, linear trajectory, T = 5; GMT, FGMT, Naive, Oracle.

Trains the source and target runs of each seed pair with the paper's recipe (E = 15, SGD lr 0.01,
momentum 0.9, batch 128), transfers with each setting of ``variants`` (schedule, minibatches per
gradient), and stands the numbers beside the paper's and beside the released code's, measured on
this machine (``zoo.experiments.kit.reference``). Each variant is a row: ``only = [labels]`` reruns some
and keeps the others' recorded numbers.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

from transfer.methods import label, method_names, plot_style
from zoo.experiments.kit.base import Experiment, register
from zoo.experiments.kit.config import check_transfer
from zoo.experiments.kit.context import Context
from zoo.experiments.kit.pool import transfer_methods
from zoo.experiments.kit.reference import OFFICIAL_FIG5A, PAPER_FIG5A, PAPER_FIG5A_TRAINED
from zoo.experiments.kit.report import md_table, num, pct, pyplot
from zoo.experiments.kit.setting import Setting, open_pair

__all__ = ["Fig5a", "mean_curves", "comparison_rows", "variant_label"]

KEPT = ("val_acc", "val_loss", "best_t", "seconds")  # what a pair's page and plots use of each transfer


def mean_curves(per_pair: list[dict[str, dict]]) -> dict[str, dict[str, list[float]]]:
    """Mean and (population) std over seed pairs of each method's val-acc curve.

    >>> mean_curves([{"gmt": {"val_acc": [0.1, 0.5]}}, {"gmt": {"val_acc": [0.3, 0.5]}}])["gmt"]["mean"]
    [0.2, 0.5]
    """
    out: dict[str, dict[str, list[float]]] = {}
    for m in per_pair[0]:
        curves = [p[m]["val_acc"] for p in per_pair]
        out[m] = {
            "mean": [statistics.fmean(c) for c in zip(*curves)],
            "std": [statistics.pstdev(c) for c in zip(*curves)],
        }
    return out


def variant_label(variant: Mapping[str, Any], transfer: Mapping[str, Any]) -> str:
    """A variant's row name: its schedule and minibatches per gradient.

    >>> variant_label({"schedule": "cosine", "grad_batches": 1}, {"grad_batches": 20})
    'cosine, 1 batch'
    """
    gb = variant.get("grad_batches", transfer.get("grad_batches", 20))
    return f"{variant['schedule']}, {gb} batch{'es' if gb != 1 else ''}"


def _slug(name: str) -> str:
    return name.replace(", ", "_").replace(" batches", "b").replace(" batch", "b")


def _variants(cfg: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Row name -> the transfer settings of that variant (``[transfer]`` updated by it)."""
    variants = cfg.get("variants") or [{"schedule": s} for s in cfg["schedules"]]
    return {variant_label(v, cfg["transfer"]): {**cfg["transfer"], **v} for v in variants}


@register("fig5a", "Fig. 5a: 2-MLP on MNIST, T=5, beside the paper and the official code", rank=10)
class Fig5a(Experiment):
    """Every seed pair of ``seeds`` transferred with every variant; the mean and std over pairs."""

    keys = ("model", "data", "subset", "val_subset", "seeds", "schedules", "variants", "methods", "train",
            "transfer")  # fmt: skip
    required = ("model", "data", "seeds", "train", "transfer")
    rows = "variants"

    def check(self, cfg: Mapping[str, Any], where: str) -> None:
        super().check(cfg, where)
        for name, setting in _variants(cfg).items():
            check_transfer(setting, f"{where} variants {name!r}")

    def row_names(self, cfg: Mapping[str, Any]) -> list[str]:
        return list(_variants(cfg))

    def recorded_rows(self, recorded: Mapping[str, Any]) -> list[dict[str, Any]]:
        variants = recorded.get("variants", [])
        if isinstance(variants, list):
            return super().recorded_rows(recorded)
        # files written before rows were lists: {label: {setting, curves}}, per-pair numbers in pairs[i]
        return [{"name": lb, **v, "pairs": [p["variants"][lb] for p in recorded["pairs"]]} for lb, v in variants.items()]

    def compute(self, ctx: Context) -> dict[str, Any]:
        cfg = ctx.config
        methods = cfg.get("methods", method_names())
        variants = {n: s for n, s in _variants(cfg).items() if n in ctx.selected(list(_variants(cfg)))}
        per_variant: dict[str, list[dict]] = {n: [] for n in variants}
        pairs = []
        for seeds in cfg["seeds"]:
            pair = open_pair(ctx, Setting.from_config(cfg, ctx.name, seeds=seeds))
            pairs.append({"source": str(pair.source.path), "target": str(pair.target.path),
                          "source_val_acc_per_epoch": pair.source.metrics("val_acc"),
                          "target_val_acc_per_epoch": pair.target.metrics("val_acc")})  # fmt: skip
            for name, setting in variants.items():
                res = transfer_methods(ctx, methods, pair.source, pair.target, pair.data, setting)
                per_variant[name].append({m: {k: r[k] for k in KEPT} for m, r in res.items()})
        trained = [p["source_val_acc_per_epoch"] for p in pairs]
        return {
            "model": pair.model, "data": pair.data.name, "train": dict(cfg["train"]), "transfer": dict(cfg["transfer"]),
            "seeds": cfg["seeds"], "val_size": len(pair.data.val[1]), "pairs": pairs,
            "variants": [{"name": n, "setting": s, "curves": mean_curves(per_variant[n]), "pairs": per_variant[n]}
                         for n, s in variants.items()],
            "trained_val_acc_per_epoch": [statistics.fmean(c) for c in zip(*trained)],
        }  # fmt: skip

    def plots(self, ctx: Context, results: Mapping[str, Any]) -> list[tuple[str, Any]]:
        return [(f"_{_slug(v['name'])}", _figure(results, v)) for v in results["variants"]]

    def sections(self, ctx: Context, results: Mapping[str, Any]) -> list[str]:
        T, tr, tf = results["transfer"]["T"], results["train"], results["transfer"]
        blocks = [
            f"Setting: `{results['model']}` on `{results['data']}`, {tr['epochs']} epochs, SGD lr {tr['lr']}, "
            f"momentum {tr.get('momentum', 0.9)}, batch {tr.get('batch_size', 128)}; seed pairs {results['seeds']}; "
            f"linear trajectory, T = {T}, {tf.get('grad_batches', 20)} minibatches of {tf.get('batch_size', 128)} "
            f"per gradient, gradient batches seeded. Validation accuracy (%) of the transferred parameters before "
            f"any training, on the {results['val_size']}-sample validation split (the paper's 9:1 split, seed 777). "
            f"Runs and transfers in `{ctx.pool}`.",
        ]
        for v in results["variants"]:
            blocks += _variant_blocks(ctx, v, T)
        trained = results["trained_val_acc_per_epoch"]
        rows = [[e, pct(trained[e]), num(PAPER_FIG5A_TRAINED.get(e))]
                for e in sorted({1, 4, 10, len(trained) - 1}) if e < len(trained)]  # fmt: skip
        return [*blocks, "## Trained source (val acc % by epoch)", md_table(["epoch", "ours", "paper"], rows)]


def _variant_blocks(ctx: Context, variant: Mapping[str, Any], T: int) -> list[str]:
    sched, gb = variant["setting"]["schedule"], variant["setting"].get("grad_batches", 20)
    rows, margins = comparison_rows(variant["curves"], sched, T)
    blocks = [
        f"## {sched.capitalize()} schedule, {gb} minibatch{'es' if gb > 1 else ''} per gradient",
        md_table(["method", "numbers", *[f"t={t}" for t in range(1, T + 1)]], rows),
    ]
    if margins:
        blocks.append(_verdict(margins))
    return [*blocks, f"![{variant['name']}]({ctx.figure('_' + _slug(variant['name']))})"]


def comparison_rows(ours: dict[str, dict[str, list[float]]], sched: str, T: int) -> tuple[list, dict]:
    """Rows method × source (ours / official / paper) over t = 1..T, and per method the smallest
    margin (ours - official) over t, in points, with the t and our std there."""
    official = OFFICIAL_FIG5A.get(("relu", sched), {})
    rows, margins = [], {}
    for m in ours:
        mean, std = ours[m]["mean"], ours[m]["std"]
        cells = [f"**{pct(mean[t])}**" + (f" ± {100 * std[t]:.1f}" if std[t] > 0 else "") for t in range(1, T + 1)]
        rows.append([label(m), "ours", *cells])
        if m in official:
            rows.append(["", f"official code (ReLU, {sched})", *[num(official[m].get(t)) for t in range(1, T + 1)]])
            diffs = [(round(100 * mean[t], 1) - official[m][t], t, 100 * std[t])
                     for t in range(1, T + 1) if t in official[m]]  # fmt: skip
            margins[m] = min(diffs) if diffs else None
        rows.append(["", "paper v2", *[num(PAPER_FIG5A.get(m, {}).get(t)) for t in range(1, T + 1)]])
    return rows, margins


def _verdict(margins: dict[str, tuple[float, int, float] | None]) -> str:
    """One line: where ours stands against the official code. GMT / FGMT are the transfer algorithm;
    Naive and Oracle involve no gradient matching (they depend only on the trained pair), so they are
    context, not a verdict."""

    def part(m: str) -> str:
        d, t, sd = margins[m]  # type: ignore[misc]
        return f"{label(m)} {d:+.1f} (at t={t}, our std there {sd:.1f})"

    algo = [m for m in ("gmt", "fgmt") if margins.get(m) is not None]
    ok = all(margins[m][0] >= -1e-9 for m in algo)  # type: ignore[index]
    text = "Smallest margin over t, ours minus the official code, in points: " + ", ".join(part(m) for m in algo)
    text += " -> GMT / FGMT **" + ("at least as good at every t" if ok else "below at some t") + "**."
    refs = [m for m in ("naive", "oracle") if margins.get(m) is not None]
    if refs:
        text += " Without gradient matching (a function of the trained pair only): " + ", ".join(map(part, refs)) + "."
    return text


def _figure(results: Mapping[str, Any], variant: Mapping[str, Any]) -> Any:
    fig, ax = pyplot().subplots(figsize=(6, 4))
    official = OFFICIAL_FIG5A.get(("relu", variant["setting"]["schedule"]), {})
    for m, c in variant["curves"].items():
        style = plot_style(m)
        color, name = style.get("color"), style["label"]
        ax.errorbar(range(len(c["mean"])), [100 * a for a in c["mean"]], yerr=[100 * s for s in c["std"]], fmt="o-",
                    color=color, label=f"{name} (ours)", capsize=2)  # fmt: skip
        for ref, fmt, kw, who in ((official, "--", {"alpha": 0.6}, "official"), (PAPER_FIG5A, "x", {"ms": 8}, "paper")):
            if m in ref:
                ts = sorted(ref[m])
                ax.plot(ts, [ref[m][t] for t in ts], fmt, color=color, label=f"{name} ({who})", **kw)
    ax.set_xlabel("transfer step t")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.set_title(f"{results['model']} on {results['data']}: {variant['name']} per gradient", fontsize=9)
    ax.legend(fontsize=6.5, ncol=3, loc="lower right")
    return fig
