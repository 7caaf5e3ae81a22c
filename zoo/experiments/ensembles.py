"""Table 3 in miniature: ensembles of transferred-then-briefly-trained members vs fully trained ones.

Both ensembles hold the trained source θ₁ᵀ plus one member per extra init (seeds ``members``):

* Full: each init trained for the whole recipe (E epochs);
* Transfer: the source's trajectory transferred onto each init (GMT / FGMT), then trained for only
  ``finetune.epochs`` (< E) from the best transferred point.

Reported: each member's accuracy, the ensemble's (mean of softmax outputs) on the validation and
test splits, and how often members disagree with the source (ensembles gain from disagreement; a
transferred member starts as a permuted copy of the source's change, so diversity is the question).
The source, the runs and the transfers are those of the experiment named by ``from``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import torch

from transfer.evaluation import logits_of
from transfer.methods import label, plot_style
from zoo.experiments.kit.base import Experiment, get, register
from zoo.experiments.kit.config import check_methods, check_recipe
from zoo.experiments.kit.context import Context
from zoo.experiments.kit.pool import ensure_run, transfer_methods
from zoo.experiments.kit.reference import PAPER_TABLE3
from zoo.experiments.kit.report import md_table, pct, pyplot
from zoo.experiments.kit.scenario import finetune_from_best
from zoo.experiments.kit.setting import Setting, open_view, setting_from
from zoo.models import build

__all__ = ["Ensembles", "ensemble_stats", "predict_probs"]

FULL = "full"  # the ensemble of fully trained members: not a transfer method


def ensemble_stats(probs: list[torch.Tensor], y: torch.Tensor) -> dict[str, Any]:
    """Accuracy of each member and of the mean-softmax ensemble, and the mean pairwise disagreement
    of the members' predictions.

    >>> p = [torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([[0.6, 0.4], [0.7, 0.3]])]
    >>> ensemble_stats(p, torch.tensor([0, 1]))
    {'members': [1.0, 0.5], 'ensemble': 1.0, 'disagreement': 0.5}
    """
    preds = [p.argmax(-1) for p in probs]
    ens = torch.stack(probs).mean(0).argmax(-1)
    pairs = list(itertools.combinations(range(len(preds)), 2))
    disagree = [float((preds[i] != preds[j]).float().mean()) for i, j in pairs]
    return {
        "members": [float((p == y).float().mean()) for p in preds],
        "ensemble": float((ens == y).float().mean()),
        "disagreement": sum(disagree) / len(disagree) if disagree else 0.0,
    }


@torch.no_grad()
def predict_probs(model: str, state: Mapping[str, torch.Tensor], x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Softmax outputs of a state dict of ``model`` on ``x`` (eval mode)."""
    net = build(model)
    net.load_state_dict(dict(state))
    net.eval()
    return torch.cat([logits_of(net(x[i : i + batch_size])).softmax(-1) for i in range(0, len(x), batch_size)])


def _recipe(st: Setting, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The members' short training: the named experiment's recipe, changed by its ``[finetune]``
    and then by this config's (less ``methods``; checkpoints every epoch)."""
    merged = {**st.train, **st.finetune, **cfg.get("finetune", {})}
    return {k: v for k, v in merged.items() if k not in ("methods", "checkpoint_every")}


@register("ensembles", "Table 3 in miniature: ensembles of transferred members", rank=60)
class Ensembles(Experiment):
    """The source plus one member per seed of ``members``, fully trained or transferred + trained briefly."""

    keys = ("from", "method", "members", "finetune", "test")
    required = ("from", "members")

    def check(self, cfg: Mapping[str, Any], where: str) -> None:
        super().check(cfg, where)
        get(cfg["from"])
        check_methods([cfg.get("method", "fgmt")], f"{where} method")

    def compute(self, ctx: Context) -> dict[str, Any]:
        cfg = ctx.config
        st = setting_from(cfg["from"], ctx.tiny)
        recipe = _recipe(st, cfg)
        check_recipe(recipe, f"{ctx.config_file} [finetune] over {cfg['from']}'s [train]")
        method = cfg.get("method", "fgmt")
        data, model = open_view(st)
        src = ensure_run(ctx, model, data, st.train, seed=st.seeds[0], what="source")
        states: dict[str, list] = {FULL: [src.final()], method: [src.final()]}
        members = []
        for seed in cfg["members"]:
            full = ensure_run(ctx, model, data, st.train, seed=seed, what=f"full member {seed}")
            res = transfer_methods(ctx, [method], src, full, data, st.transfer)[method]
            ft = finetune_from_best(ctx, res, model, data, recipe, f"{method} member {seed}")
            states[FULL].append(full.final())
            states[method].append(ft.final())
            members.append({"seed": seed, "best_t": res["best_t"], "transfer_val_acc": res["val_acc"][res["best_t"]],
                            "transfer_seconds": res["seconds"], "finetune_curve": ft.metrics("val_acc"),
                            "full_curve": full.metrics("val_acc")})  # fmt: skip
        splits = {"val": data.val, "test": data.test if cfg.get("test", True) else None}
        stats = {kind: {split: _stats(model, s, pair) for split, pair in splits.items() if pair is not None}
                 for kind, s in states.items()}  # fmt: skip
        return {
            "from": cfg["from"], "model": model, "data": data.name, "method": method, "source_seed": st.seeds[0],
            "members": members, "epochs_full": st.train["epochs"], "epochs_transfer": recipe["epochs"],
            "recipe": recipe, "stats": stats,
        }  # fmt: skip

    def plots(self, ctx: Context, results: Mapping[str, Any]) -> list[tuple[str, Any]]:
        return [("", _figure(results))]

    def sections(self, ctx: Context, results: Mapping[str, Any]) -> list[str]:
        r, m = results, label(results["method"])
        E, k, n = r["epochs_full"], r["epochs_transfer"], len(r["members"]) + 1
        rows = []
        for kind, name in ((FULL, f"Full: {n - 1} members trained {E} epochs"),
                           (r["method"], f"{m}: {n - 1} members transferred + {k} epochs")):  # fmt: skip
            for split, s in r["stats"][kind].items():
                mem = s["members"][1:]
                rows.append([name, split, pct(s["members"][0]), pct(sum(mem) / len(mem)) if mem else "-",
                             pct(s["ensemble"]), f"{100 * s['disagreement']:.1f}"])  # fmt: skip
        members = [[x["seed"], x["best_t"], pct(x["transfer_val_acc"]), pct(x["finetune_curve"][-1]),
                    pct(x["full_curve"][-1])] for x in r["members"]]  # fmt: skip
        return [
            f"Source, runs and transfers of `{r['from']}`: `{r['model']}` on `{r['data']}`.",
            f"Ensembles of {n} (the source, seed {r['source_seed']}, plus members from seeds "
            f"{[x['seed'] for x in r['members']]}), mean of softmax outputs. Transferred members: {m} from the "
            f"source onto the member's init, then {k} epochs ({r['recipe']}) from the best transferred point; "
            f"full members: {E} epochs from the same init.",
            md_table(["ensemble", "split", "source acc", "mean member acc", "ensemble acc", "disagreement %"], rows),
            "Members:",
            md_table(["seed", "best t", "acc at best t", f"after {k} epochs", f"full ({E} epochs)"], members),
            f"![ensemble accuracy by size]({ctx.figure()})",
            "Paper, Table 3 (GMT @ fewer epochs / FGMT / Full @ all epochs): "
            + "; ".join(f"{d} {g} / {f} / {u}" for d, (g, f, u) in PAPER_TABLE3.items())
            + ".",
        ]


def _stats(model: str, states: list, pair: tuple[torch.Tensor, torch.Tensor]) -> dict[str, Any]:
    """The ensemble's statistics on one split, and its accuracy as members are added one by one."""
    x, y = pair
    probs = [predict_probs(model, s, x) for s in states]
    by_size = [ensemble_stats(probs[:k], y)["ensemble"] for k in range(1, len(probs) + 1)]
    return {**ensemble_stats(probs, y), "by_size": by_size}


def _figure(results: Mapping[str, Any]) -> Any:
    fig, ax = pyplot().subplots(figsize=(5, 3.6))
    for kind in (FULL, results["method"]):
        s = results["stats"][kind]["val"]["by_size"]
        if kind == FULL:
            style = {"fmt": "k--o", "label": f"full ({results['epochs_full']} ep)"}
        else:
            style = {**plot_style(kind), "label": f"{label(kind)} + {results['epochs_transfer']} ep"}
        ax.plot(range(1, len(s) + 1), [100 * a for a in s], style.pop("fmt"), **style)
    ax.set_xlabel("ensemble size (source first)")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{results['model'].split('?')[0]} on {results['data']}", fontsize=9)
    return fig
