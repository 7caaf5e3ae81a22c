"""Sec. 4.3: where do transferred parameters land? Loss and accuracy along linear paths.

For a transfer θ̃ = θ₂⁰ + π(θ₁ᵀ − θ₁⁰) (the final step of GMT / FGMT), three straight paths:

* permuted source π(θ₁ᵀ) ↔ θ̃: do the transferred parameters sit in the source's (permuted) basin?
* trained target θ₂ᵀ ↔ θ̃: or in the basin that the target's own training reaches?
* source θ₁ᵀ (unpermuted) ↔ θ̃: the control; without the permutation the two are unrelated.

π is recovered from the transfer itself by weight matching of θ̃ − θ₂⁰ against θ₁ᵀ − θ₁⁰ (a planted
permutation: the match is exact, and the residual is reported). Each case reuses the runs and
transfers of the experiment it names (``from = "fig5a"``), so this costs only evaluations; a case
may instead spell out its own setting (an ablation row). Each case is a row (``only = [names]``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

import permgraph
from transfer.evaluation import evaluate
from transfer.matching import weight_matching
from transfer.methods import label
from transfer.trajectory import Trajectory
from zoo.experiments.kit.base import register
from zoo.experiments.kit.config import check_keys, check_recipe, check_transfer
from zoo.experiments.kit.context import Context
from zoo.experiments.kit.pool import transfer_methods
from zoo.experiments.kit.report import md_table, pct, pyplot
from zoo.experiments.kit.setting import Cases, Pair, Setting, case_name, open_pair, setting_from
from zoo.models import build, example_inputs

__all__ = ["Connectivity", "interpolate"]

PATHS = ("permuted source ↔ transferred", "trained target ↔ transferred", "source (unpermuted) ↔ transferred")


def interpolate(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], alpha: float) -> dict:
    """(1 - alpha) a + alpha b on floating tensors; other tensors (counters) from ``a``.

    >>> interpolate({"w": torch.zeros(2)}, {"w": torch.ones(2)}, 0.25)["w"].tolist()
    [0.25, 0.25]
    """
    return {k: (1 - alpha) * v + alpha * b[k] if v.is_floating_point() else v for k, v in a.items()}


def _case_setting(case: Mapping[str, Any], tiny: bool) -> Setting:
    """A case names an experiment (``from``: its runs and transfers) or spells out its own setting."""
    if "from" in case:
        return dataclasses.replace(setting_from(case["from"], tiny, case.get("schedule")), name=case_name(case))
    return Setting(name=case["name"], model=case["model"], data=case["data"], seeds=tuple(case["seeds"]),
                   train=dict(case["train"]), transfer=dict(case["transfer"]), subset=case.get("subset"),
                   val_subset=case.get("val_subset"))  # fmt: skip


@register("connectivity", "Sec. 4.3: loss and accuracy along linear paths", rank=50)
class Connectivity(Cases):
    """Per case and method: the three linear paths, their loss barriers and lowest accuracies."""

    keys = ("methods", "points", "cases")
    case_keys = ("from", "schedule", "name")

    def check_own_case(self, case: Mapping[str, Any], where: str) -> None:
        check_keys(case, ("subset", "val_subset"), where, required=("name", "model", "data", "seeds", "train", "transfer"))
        check_recipe(case["train"], f"{where} train")
        check_transfer(case["transfer"], f"{where} transfer")

    def recorded_rows(self, recorded: Mapping[str, Any]) -> list[dict[str, Any]]:
        # files written before rows had names named them by case.from
        return [{**r, "name": r.get("name") or r["case"]["from"]} for r in recorded.get("cases", [])]

    def compute(self, ctx: Context) -> dict[str, Any]:
        cfg = ctx.config
        n = int(cfg.get("points", 11))
        alphas = [i / (n - 1) for i in range(n)]
        chosen = ctx.selected(self.row_names(cfg))
        settings = [_case_setting(c, ctx.tiny) for c in cfg["cases"] if case_name(c) in chosen]  # all checked first
        cases = []
        for st in settings:
            pair = open_pair(ctx, st)
            res = transfer_methods(ctx, cfg["methods"], pair.source, pair.target, pair.data, st.transfer)
            net = build(pair.model)
            spec = permgraph.infer(net, example_inputs(net))
            per_method = {m: _method_paths(net, spec, pair, res[m], alphas) for m in cfg["methods"]}
            for m, r in per_method.items():
                summary = "; ".join(f"{p}: barrier {v['loss_barrier']:.3f}, min acc {pct(v['min_acc'])}"
                                    for p, v in r["paths"].items())  # fmt: skip
                ctx.say(f"{st.name} {m}: {summary}")
            cases.append({"name": st.name, "case": dataclasses.asdict(st), "model": pair.model, "data": pair.data.name,
                          "methods": per_method})  # fmt: skip
        return {"alphas": alphas, "cases": cases}

    def plots(self, ctx: Context, results: Mapping[str, Any]) -> list[tuple[str, Any]]:
        return [("", _figure(results))]

    def sections(self, ctx: Context, results: Mapping[str, Any]) -> list[str]:
        blocks = [
            "Reuses the runs and transfers of " + ", ".join(f"`{c['name']}`" for c in results["cases"]) + ". "
            "Validation loss and accuracy along (1 − α)·A + α·θ̃, θ̃ = the transferred parameters at t = T. "
            "Loss barrier = max over α of the loss above the straight line between the end points' losses.",
        ]
        for c in results["cases"]:
            rows = [[label(m), p, pct(v["acc"][0]), pct(v["min_acc"]), pct(v["acc"][-1]), f"{v['loss_barrier']:.3f}"]
                    for m, r in c["methods"].items() for p, v in r["paths"].items()]  # fmt: skip
            resid = ", ".join(f"{label(m)} {r['perm_residual']:.1e}" for m, r in c["methods"].items())
            blocks += [
                f"## {c['name']}: `{c['model']}` on `{c['data']}`",
                md_table(["method", "path A ↔ θ̃", "acc at A", "min acc", "acc at θ̃", "loss barrier"], rows),
                f"Recovered permutation reproduces θ̃ − θ₂⁰ to max abs error {resid}.",
            ]
        return [*blocks, f"![paths]({ctx.figure()})"]


def _method_paths(net: Any, spec: Any, pair: Pair, result: Mapping[str, Any], alphas: list[float]) -> dict[str, Any]:
    """The permutation recovered from one method's transfer, and the three paths to its last point
    (``net``: the model, whose weights are overwritten; ``spec``: its inferred groups)."""
    th1_0, th1_T, th2_0, th2_T = pair.source.init(), pair.source.final(), pair.target.init(), pair.target.final()
    keys = [k for k, _ in net.named_parameters()]
    T = len(result["val_acc"]) - 1
    moved = Trajectory(result["trajectory"]).load(T)
    d_tr = {k: moved[k] - th2_0[k] for k in keys}
    d_1 = {k: th1_T[k] - th1_0[k] for k in keys}
    perm = weight_matching(spec, d_tr, d_1)
    check = permgraph.apply(spec, perm, d_1)
    residual = max(float((check[k] - d_tr[k]).abs().max()) for k in keys)
    ends = dict(zip(PATHS, (permgraph.apply(spec, perm, th1_T), th2_T, th1_T)))
    paths = {}
    for name, start in ends.items():
        loss, acc = [], []
        for a in alphas:
            net.load_state_dict(interpolate(start, moved, a))
            lo, ac = evaluate(net, *pair.data.val)
            loss.append(lo)
            acc.append(ac)
        barrier = max(lo - ((1 - a) * loss[0] + a * loss[-1]) for a, lo in zip(alphas, loss))
        paths[name] = {"loss": loss, "acc": acc, "loss_barrier": barrier, "min_acc": min(acc)}
    return {"t": T, "perm_residual": residual, "paths": paths}


def _figure(results: Mapping[str, Any]) -> Any:
    cases = results["cases"]
    fig, axes = pyplot().subplots(len(cases), 2, figsize=(10, 3.4 * len(cases)), squeeze=False)
    styles = ["-", "--", ":"]
    for row, c in zip(axes, cases):
        for j, (m, r) in enumerate(c["methods"].items()):
            for i, (p, v) in enumerate(r["paths"].items()):
                lab = f"{label(m)}: {p}"
                row[0].plot(results["alphas"], v["loss"], styles[j % 3], color=f"C{i}", label=lab)
                row[1].plot(results["alphas"], [100 * a for a in v["acc"]], styles[j % 3], color=f"C{i}", label=lab)
        row[0].set_ylabel("validation loss")
        row[1].set_ylabel("validation accuracy (%)")
        for ax in row:
            ax.set_xlabel("α (0: A, 1: transferred)")
            ax.grid(alpha=0.3)
            ax.set_title(f"{c['name']}: {c['model'].split('?')[0]} on {c['data']}", fontsize=9)
        row[1].legend(fontsize=6)
    return fig
