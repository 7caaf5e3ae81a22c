"""Sec. 4.3: where do transferred parameters land? Loss and accuracy along linear paths.

For a transfer θ̃ = θ₂⁰ + π(θ₁ᵀ − θ₁⁰) (the final step of GMT / FGMT), three straight paths:

* permuted source π(θ₁ᵀ) ↔ θ̃: do the transferred parameters sit in the source's (permuted) basin?
* trained target θ₂ᵀ ↔ θ̃: or in the basin that the target's own training reaches?
* source θ₁ᵀ (unpermuted) ↔ θ̃: the control; without the permutation the two are unrelated.

π is recovered from the transfer itself by weight matching of θ̃ − θ₂⁰ against θ₁ᵀ − θ₁⁰ (a planted
permutation: the match is exact, and the residual is reported). Each case reuses the runs and
transfers of the experiment it names (``from = "fig5a"``), so this costs only evaluations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

import permgraph
from transfer.evaluation import evaluate
from transfer.matching import weight_matching
from transfer.trajectory import Trajectory
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
from zoo.models import build, example_inputs

__all__ = ["run", "interpolate"]

PATHS = ("permuted source ↔ transferred", "trained target ↔ transferred", "source (unpermuted) ↔ transferred")


def _case_setting(case: Mapping[str, Any], tiny: bool) -> dict[str, Any]:
    """A case names an experiment (``from``: its runs and transfers) or spells out its own setting
    (``name``, ``model``, ``data``, ``seeds``, ``train``, ``transfer``), e.g. an ablation row."""
    if "from" in case:
        return setting_from(case["from"], tiny, case.get("schedule"))
    return {
        "from": case["name"], "model": case["model"], "data": case["data"], "subset": case.get("subset"),
        "val_subset": case.get("val_subset"), "seeds": list(case["seeds"]), "train": dict(case["train"]),
        "transfer": dict(case["transfer"]),
    }  # fmt: skip


def interpolate(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], alpha: float) -> dict:
    """(1 - alpha) a + alpha b on floating tensors; other tensors from ``a``."""
    return {k: (1 - alpha) * v + alpha * b[k] if v.is_floating_point() else v for k, v in a.items()}


def run(ctx: Context) -> dict[str, Any]:
    cfg = ctx.config
    n = int(cfg.get("points", 11))
    alphas = [i / (n - 1) for i in range(n)]
    cases_out = []
    for case in cfg["cases"]:
        st = _case_setting(case, ctx.tiny)
        data = get_data(st["data"], subset=st["subset"], val_subset=st["val_subset"])
        model = model_for(st["model"], data)
        s1, s2 = st["seeds"]
        src = ensure_run(ctx, model, data, seed=s1, what=f"{st['from']} source", **st["train"])
        tgt = ensure_run(ctx, model, data, seed=s2, what=f"{st['from']} target", **st["train"])
        res = transfer_methods(ctx, cfg["methods"], src, tgt, data, **st["transfer"])
        net = build(model)
        spec = permgraph.infer(net, example_inputs(net))
        th1_0, th1_T, th2_0, th2_T = src.init(), src.final(), tgt.init(), tgt.final()
        keys = [k for k, _ in net.named_parameters()]
        per_method: dict[str, Any] = {}
        for m in cfg["methods"]:
            T = len(res[m]["val_acc"]) - 1
            moved = Trajectory(res[m]["trajectory"]).load(T)
            d_tr = {k: moved[k] - th2_0[k] for k in keys}
            d_1 = {k: th1_T[k] - th1_0[k] for k in keys}
            perm = weight_matching(spec, d_tr, d_1)
            check = permgraph.apply(spec, perm, d_1)
            residual = max(float((check[k] - d_tr[k]).abs().max()) for k in keys)
            ends = {
                PATHS[0]: permgraph.apply(spec, perm, th1_T),
                PATHS[1]: th2_T,
                PATHS[2]: th1_T,
            }
            paths = {}
            for name, start in ends.items():
                loss, acc = [], []
                for a in alphas:
                    net.load_state_dict(interpolate(start, moved, a))
                    lo, ac = evaluate(net, *data.val)
                    loss.append(lo)
                    acc.append(ac)
                barrier = max(lo - ((1 - a) * loss[0] + a * loss[-1]) for a, lo in zip(alphas, loss))
                paths[name] = {"loss": loss, "acc": acc, "loss_barrier": barrier, "min_acc": min(acc)}
            per_method[m] = {"t": T, "perm_residual": residual, "paths": paths}
            summary = "; ".join(
                f"{p}: barrier {v['loss_barrier']:.3f}, min acc {pct(v['min_acc'])}" for p, v in paths.items()
            )
            ctx.say(f"{st['from']} {m}: {summary}")
        cases_out.append({"case": st, "model": model, "data": data.name, "methods": per_method})
    out = {"experiment": ctx.name, "command": ctx.command, "alphas": alphas, "cases": cases_out}
    write_json(ctx.out(".json"), out)
    _plot(ctx, out)
    write_text(ctx.out(".md"), _markdown(ctx, out))
    return out


def _markdown(ctx: Context, out: dict[str, Any]) -> str:
    lines = [
        f"# {ctx.config.get('title', 'Linear paths around transferred parameters')}",
        "",
        f"Command: `{ctx.command}` (config `configs/{ctx.name}.toml`); reuses the runs and transfers of "
        + ", ".join(f"`{c['case']['from']}`" for c in out["cases"])
        + ".",
        "",
        "Validation loss and accuracy along (1 − α)·A + α·θ̃, θ̃ = the transferred parameters at t = T. "
        "Loss barrier = max over α of the loss above the straight line between the end points' losses.",
        "",
    ]
    for c in out["cases"]:
        lines += [f"## {c['case']['from']}: `{c['model']}` on `{c['data']}`", ""]
        rows = []
        for m, r in c["methods"].items():
            for p, v in r["paths"].items():
                a0, a1 = v["acc"][0], v["acc"][-1]
                rows.append([m.upper(), p, pct(a0), pct(v["min_acc"]), pct(a1), f"{v['loss_barrier']:.3f}"])
        lines.append(
            md_table(["method", "path A ↔ θ̃", "acc at A", "min acc", "acc at θ̃", "loss barrier"], rows)
        )
        lines.append("")
        resid = ", ".join(f"{m.upper()} {r['perm_residual']:.1e}" for m, r in c["methods"].items())
        lines += [f"Recovered permutation reproduces θ̃ − θ₂⁰ to max abs error {resid}.", ""]
    lines += [f"![paths]({ctx.name}.png)", ""]
    if ctx.config.get("notes"):
        lines += ["## Reading", "", ctx.config["notes"].strip(), ""]
    return "\n".join(lines)


def _plot(ctx: Context, out: dict[str, Any]) -> None:
    plt = pyplot()
    cases = out["cases"]
    fig, axes = plt.subplots(len(cases), 2, figsize=(10, 3.4 * len(cases)), squeeze=False)
    styles = ["-", "--", ":"]
    for row, c in zip(axes, cases):
        for j, (m, r) in enumerate(c["methods"].items()):
            for i, (p, v) in enumerate(r["paths"].items()):
                label = f"{m.upper()}: {p}"
                row[0].plot(out["alphas"], v["loss"], styles[j % 3], color=f"C{i}", label=label)
                row[1].plot(
                    out["alphas"], [100 * a for a in v["acc"]], styles[j % 3], color=f"C{i}", label=label
                )
        row[0].set_ylabel("validation loss")
        row[1].set_ylabel("validation accuracy (%)")
        for ax in row:
            ax.set_xlabel("α (0: A, 1: transferred)")
            ax.grid(alpha=0.3)
            ax.set_title(f"{c['case']['from']}: {c['model'].split('?')[0]} on {c['data']}", fontsize=9)
        row[1].legend(fontsize=6)
    save_figure(fig, ctx.out(".png"))
