"""Which trajectory to transfer: the linear one (init and final only; uniform or cosine schedule)
against the actual recorded one (one checkpoint per epoch), as in the paper's Fig. 4 and Fig. 9.

For each case (the runs of the experiment it names) every method transfers three trajectories of
the same number of steps T = the source's number of epochs: linear-uniform, linear-cosine and
actual. Same source, same target init, same gradient batches; only the trajectory differs.
"""

from __future__ import annotations

from typing import Any

from zoo.experiments.common import (
    Context,
    ensure_run,
    get_data,
    md_table,
    model_for,
    pct,
    pyplot,
    save_figure,
    setting_from,
    transfer_methods,
    write_json,
    write_text,
)
from zoo.experiments.scenario import LABEL

__all__ = ["run", "VARIANTS"]

VARIANTS = {
    "linear, uniform": {"linear": True, "schedule": "uniform"},
    "linear, cosine": {"linear": True, "schedule": "cosine"},
    "actual": {"linear": False, "schedule": "uniform"},
}


def run(ctx: Context) -> dict[str, Any]:
    cfg = ctx.config
    cases = []
    for case in cfg["cases"]:
        st = setting_from(case["from"], ctx.tiny)
        data = get_data(st["data"], subset=st["subset"], val_subset=st["val_subset"])
        model = model_for(st["model"], data)
        s1, s2 = st["seeds"]
        src = ensure_run(ctx, model, data, seed=s1, what=f"{st['from']} source", **st["train"])
        tgt = ensure_run(ctx, model, data, seed=s2, what=f"{st['from']} target", **st["train"])
        T = int(case.get("T", len(src) - 1))
        per_variant = {}
        for name, over in VARIANTS.items():
            kw = {**st["transfer"], **over, "T": T}
            res = transfer_methods(ctx, cfg["methods"], src, tgt, data, **kw)
            per_variant[name] = {m: {k: r[k] for k in ("t", "val_acc", "val_loss", "best_t", "seconds")}
                                 for m, r in res.items()}  # fmt: skip
        cases.append(
            {
                "from": st["from"],
                "model": model,
                "data": data.name,
                "T": T,
                "source_val_acc_per_checkpoint": src.metrics("val_acc"),
                "variants": per_variant,
            }
        )
    out = {"experiment": ctx.name, "command": ctx.command, "methods": cfg["methods"], "cases": cases}
    write_json(ctx.out(".json"), out)
    _plot(ctx, out)
    write_text(ctx.out(".md"), _markdown(ctx, out))
    return out


def _markdown(ctx: Context, out: dict[str, Any]) -> str:
    lines = [
        f"# {ctx.config.get('title', 'Linear vs actual trajectories; uniform vs cosine')}",
        "",
        f"Command: `{ctx.command}` (config `configs/{ctx.name}.toml`); reuses the runs of "
        + ", ".join(f"`{c['from']}`" for c in out["cases"])
        + ".",
        "",
        "Validation accuracy (%) of the transferred parameters. T = the source's number of epochs: the "
        "actual trajectory transfers one recorded checkpoint per step; the linear ones interpolate init and "
        "final with λ_t = t/T (uniform) or the released code's cosine steps.",
        "",
    ]
    for c in out["cases"]:
        T = c["T"]
        ts = sorted({1, 2, max(1, T // 2), T})
        rows = []
        for m in out["methods"]:
            for v, res in c["variants"].items():
                r = res[m]
                best = r["val_acc"][r["best_t"]]
                rows.append(
                    [
                        LABEL.get(m, m),
                        v,
                        *[pct(r["val_acc"][t]) for t in ts],
                        f"{pct(best)} (t={r['best_t']})",
                    ]
                )
        lines += [f"## {c['from']}: `{c['model']}` on `{c['data']}`, T = {T}", ""]
        lines.append(md_table(["method", "trajectory", *[f"t={t}" for t in ts], "best"], rows))
        src = c["source_val_acc_per_checkpoint"]
        lines += ["", f"Source run, val acc at its checkpoints: {' '.join(pct(a) for a in src)}.", ""]
    lines += [f"![trajectories]({ctx.name}.png)", ""]
    if ctx.config.get("notes"):
        lines += ["## Reading", "", ctx.config["notes"].strip(), ""]
    return "\n".join(lines)


def _plot(ctx: Context, out: dict[str, Any]) -> None:
    plt = pyplot()
    methods = out["methods"]
    cases = out["cases"]
    fig, axes = plt.subplots(len(cases), len(methods), figsize=(3.3 * len(methods), 3.0 * len(cases)),
                             squeeze=False, sharey="row")  # fmt: skip
    styles = {"linear, uniform": "o-", "linear, cosine": "s--", "actual": "^:"}
    for row, c in zip(axes, cases):
        for ax, m in zip(row, methods):
            for v, res in c["variants"].items():
                r = res[m]
                ax.plot(r["t"], [100 * a for a in r["val_acc"]], styles[v], ms=3, label=v)
            ax.set_title(f"{c['from']}: {LABEL.get(m, m)}", fontsize=9)
            ax.set_xlabel("t")
            ax.grid(alpha=0.3)
        row[0].set_ylabel("validation accuracy (%)")
        row[-1].legend(fontsize=7)
    save_figure(fig, ctx.out(".png"))
