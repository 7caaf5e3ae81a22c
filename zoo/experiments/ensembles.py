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
from typing import Any

import torch

from transfer.trajectory import Trajectory
from zoo.experiments.common import (
    Context,
    _key,
    ensure_run,
    get_data,
    md_table,
    model_for,
    pct,
    predict_probs,
    pyplot,
    save_figure,
    setting_from,
    train_from,
    transfer_methods,
    write_json,
    write_text,
)
from zoo.experiments.reference import PAPER_TABLE3

__all__ = ["run", "ensemble_stats"]


def ensemble_stats(probs: list[torch.Tensor], y: torch.Tensor) -> dict[str, Any]:
    """Accuracy of each member and of the mean-softmax ensemble, and the mean pairwise disagreement
    of the members' predictions."""
    preds = [p.argmax(-1) for p in probs]
    ens = torch.stack(probs).mean(0).argmax(-1)
    pairs = list(itertools.combinations(range(len(preds)), 2))
    disagree = [float((preds[i] != preds[j]).float().mean()) for i, j in pairs]
    return {
        "members": [float((p == y).float().mean()) for p in preds],
        "ensemble": float((ens == y).float().mean()),
        "disagreement": sum(disagree) / len(disagree) if disagree else 0.0,
    }


def run(ctx: Context) -> dict[str, Any]:
    cfg = ctx.config
    st = setting_from(cfg["from"], ctx.tiny)
    data = get_data(st["data"], subset=st["subset"], val_subset=st["val_subset"])
    model = model_for(st["model"], data)
    src = ensure_run(ctx, model, data, seed=st["seeds"][0], what="source", **st["train"])
    method = cfg.get("method", "fgmt")
    recipe = {k: v for k, v in {**st["train"], **st["finetune"], **cfg.get("finetune", {})}.items()
              if k not in ("methods", "checkpoint_every")}  # fmt: skip
    full_states, tr_states, members = [src.final()], [src.final()], []
    for seed in cfg["members"]:
        full = ensure_run(ctx, model, data, seed=seed, what=f"full member {seed}", **st["train"])
        res = transfer_methods(ctx, [method], src, full, data, **st["transfer"])[method]
        start = Trajectory(res["trajectory"]).load(res["best_t"])
        out = ctx.pool / f"finetune_{_key(res['trajectory'], res['best_t'], recipe)}"
        ft = train_from(ctx, start, model, data, out, what=f"{method} member {seed}", **recipe)
        full_states.append(full.final())
        tr_states.append(ft.final())
        best = res["best_t"]
        members.append({"seed": seed, "best_t": best, "transfer_val_acc": res["val_acc"][best],
                        "transfer_seconds": res["seconds"], "finetune_curve": ft.metrics("val_acc"),
                        "full_curve": full.metrics("val_acc")})  # fmt: skip
    splits = {"val": data.val, "test": data.test if cfg.get("test", True) else None}
    stats: dict[str, dict[str, Any]] = {"full": {}, method: {}}
    for split, pair in splits.items():
        if pair is None:
            continue
        x, y = pair
        for kind, states in (("full", full_states), (method, tr_states)):
            probs = [predict_probs(model, s, x) for s in states]
            stats[kind][split] = ensemble_stats(probs, y)
            stats[kind][split]["by_size"] = [
                ensemble_stats(probs[:k], y)["ensemble"] for k in range(1, len(probs) + 1)
            ]
    out = {
        "experiment": ctx.name, "command": ctx.command, "from": cfg["from"], "model": model,
        "data": data.name, "method": method, "source_seed": st["seeds"][0], "members": members,
        "epochs_full": st["train"]["epochs"], "epochs_transfer": recipe["epochs"], "recipe": recipe,
        "stats": stats,
    }  # fmt: skip
    write_json(ctx.out(".json"), out)
    _plot(ctx, out)
    write_text(ctx.out(".md"), _markdown(ctx, out))
    return out


def _markdown(ctx: Context, out: dict[str, Any]) -> str:
    m = out["method"]
    E, k = out["epochs_full"], out["epochs_transfer"]
    n = len(out["members"]) + 1
    rows = []
    for kind, label in (("full", f"Full: {n - 1} members trained {E} epochs"),
                        (m, f"{m.upper()}: {n - 1} members transferred + {k} epochs")):  # fmt: skip
        for split, s in out["stats"][kind].items():
            mem = s["members"][1:]
            rows.append([label, split, pct(s["members"][0]), pct(sum(mem) / len(mem)) if mem else "-",
                         pct(s["ensemble"]), f"{100 * s['disagreement']:.1f}"])  # fmt: skip
    lines = [
        f"# {ctx.config.get('title', 'Ensembles of transferred members')}",
        "",
        f"Command: `{ctx.command}` (config `configs/{ctx.name}.toml`); source, runs and transfers of "
        f"`{out['from']}`: `{out['model']}` on `{out['data']}`.",
        "",
        f"Ensembles of {n} (the source, seed {out['source_seed']}, plus members from seeds "
        f"{[x['seed'] for x in out['members']]}), mean of softmax outputs. Transferred members: "
        f"{m.upper()} from the source onto the member's init, then {k} epochs ({out['recipe']}) from the "
        f"best transferred point; full members: {E} epochs from the same init.",
        "",
        md_table(
            ["ensemble", "split", "source acc", "mean member acc", "ensemble acc", "disagreement %"], rows
        ),
        "",
        "Members:",
        "",
        md_table(
            ["seed", "best t", "acc at best t", f"after {k} epochs", f"full ({E} epochs)"],
            [
                [
                    x["seed"],
                    x["best_t"],
                    pct(x["transfer_val_acc"]),
                    pct(x["finetune_curve"][-1]),
                    pct(x["full_curve"][-1]),
                ]
                for x in out["members"]
            ],
        ),  # fmt: skip
        "",
        f"![ensemble accuracy by size]({ctx.name}.png)",
        "",
        "Paper, Table 3 (GMT @ fewer epochs / FGMT / Full @ all epochs): "
        + "; ".join(f"{d} {g} / {f} / {u}" for d, (g, f, u) in PAPER_TABLE3.items())
        + ".",
        "",
    ]
    if ctx.config.get("notes"):
        lines += ["## Reading", "", ctx.config["notes"].strip(), ""]
    return "\n".join(lines)


def _plot(ctx: Context, out: dict[str, Any]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for kind, style in (("full", "k--o"), (out["method"], "-s")):
        s = out["stats"][kind]["val"]["by_size"]
        label = (
            f"full ({out['epochs_full']} ep)"
            if kind == "full"
            else f"{kind.upper()} + {out['epochs_transfer']} ep"
        )
        ax.plot(range(1, len(s) + 1), [100 * a for a in s], style, label=label)
    ax.set_xlabel("ensemble size (source first)")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{out['model'].split('?')[0]} on {out['data']}", fontsize=9)
    save_figure(fig, ctx.out(".png"))
