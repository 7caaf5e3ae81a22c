"""The pipeline behind Figs. 5-6: transfer a source trajectory onto a target init, then fine-tune
from the best transferred point and compare with the target's own ("standard") training.

Used by ``conv8`` (random inits: standard = training from scratch), ``pretrained`` (pretrained inits:
standard = ordinary fine-tuning) and the attention experiments. The fine-tuning uses the same
epochs, schedule and optimizer as the standard run, starting from the transferred point chosen on
validation accuracy (the paper's Sec. 4.2), with its own learning rate (``[finetune] lr``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from transfer.trajectory import Trajectory
from zoo.data import DataSplits
from zoo.experiments.common import (
    Context,
    _key,
    deep_merge,
    md_table,
    pct,
    pyplot,
    save_figure,
    train_from,
    transfer_methods,
)
from zoo.models import build

__all__ = [
    "transfer_then_finetune",
    "planted_control",
    "transfer_table",
    "finetune_table",
    "plot_transfer",
    "plot_finetune",
    "lead_epochs",
    "reinit_head",
    "LABEL",
]

LABEL = {"gmt": "GMT", "fgmt": "FGMT", "naive": "Naive", "oracle": "Oracle", "standard": "Standard"}


def lead_epochs(curve: list[float], reference: list[float]) -> int:
    """How many epochs, counted from epoch 1, ``curve`` stays strictly above ``reference``."""
    n = 0
    for a, b in zip(curve[1:], reference[1:]):
        if a <= b:
            break
        n += 1
    return n


def transfer_then_finetune(
    ctx: Context,
    model: str,
    data: DataSplits,
    source: Trajectory,
    target: Trajectory,
    cfg: Mapping[str, Any],
    standard_recipe: Mapping[str, Any],
    standard_name: str = "standard",
) -> dict[str, Any]:
    """Transfer ``source`` onto ``target``'s init with ``cfg['methods']`` (``cfg['transfer']``
    settings), fine-tune from the best point of each of ``cfg['finetune']['methods']`` with
    ``standard_recipe`` updated by ``cfg['finetune']``, and return curves and checks."""
    res = transfer_methods(ctx, cfg["methods"], source, target, data, **cfg["transfer"])
    ft_cfg = dict(cfg.get("finetune", {}))
    ft_methods = ft_cfg.pop("methods", [])
    recipe = deep_merge(dict(standard_recipe), ft_cfg)
    recipe.pop("checkpoint_every", None)
    curves: dict[str, list[float]] = {standard_name: target.metrics("val_acc")}
    starts: dict[str, int] = {}
    for m in ft_methods:
        best_t = int(res[m]["best_t"])
        starts[m] = best_t
        folder = Trajectory(res[m]["trajectory"])
        state = folder.load(best_t)
        out = ctx.pool / f"finetune_{_key(str(folder.path), best_t, recipe)}"
        ft = train_from(ctx, state, model, data, out, what=f"fine-tune from {m} t={best_t}", **recipe)
        curves[m] = ft.metrics("val_acc")
    leads = {m: lead_epochs(curves[m], curves[standard_name]) for m in ft_methods}
    return {
        "transfer": {m: {k: v for k, v in r.items() if k != "trajectory"} for m, r in res.items()},
        "source_val_acc": source.metrics("val_acc")[-1],
        "finetune": {"recipe": recipe, "start_t": starts, "curves": curves, "lead_epochs": leads},
        "standard": standard_name,
    }


def planted_control(
    ctx: Context,
    data: DataSplits,
    source: Trajectory,
    cfg: Mapping[str, Any],
    method: str = "fgmt",
    seed: int = 0,
) -> dict[str, Any]:
    """The method's transfer onto a randomly permuted copy of the source's own init: the case where
    an exact permutation exists. It separates "no good permutation between two independent inits"
    from "the machinery cannot find one" when a transfer between independent inits fails."""
    import permgraph
    from transfer.engine import TransferEngine
    from transfer.options import TransferOptions, options_from

    net = build(source.model)
    spec = permgraph.infer(net, (data.train[0][:2],))
    perm = permgraph.random_permutation(spec, generator=torch.Generator().manual_seed(seed))
    planted = permgraph.apply(spec, perm, source.init())
    out = ctx.pool / f"planted_{_key(str(source.path), seed, method, data.name, dict(cfg['transfer']))}"
    done = out / "results.json"
    if done.exists():
        import json

        entry = json.loads(done.read_text())["methods"].get(method)
        if entry is not None:
            return {"method": method, "seed": seed, "val_acc": entry["val_acc"]}
    ctx.say(f"control: {method} onto a permuted copy of the source's init -> {out}")
    options = options_from(TransferOptions, {**cfg["transfer"], "progress": ctx.progress}, "the [transfer] table")
    res = TransferEngine(net, data, options, spec=spec).run(method, source, planted, out=out)
    return {"method": method, "seed": seed, "val_acc": res["val_acc"]}


def reinit_head(state: Mapping[str, torch.Tensor], model: str, seed: int) -> dict[str, torch.Tensor]:
    """``state`` with its last ``nn.Linear`` (the classifier head) drawn afresh from ``seed``: the
    paper's pretrained scenario re-initialises the head for the new task, with different seeds."""
    torch.manual_seed(seed)
    fresh = build(model)
    last = [name for name, m in fresh.named_modules() if isinstance(m, torch.nn.Linear)][-1]
    new = dict(state)
    for k, v in fresh.state_dict().items():
        if k.startswith(last + "."):
            new[k] = v.clone()
    return new


# ---------------------------------------------------------------------------------- outputs


def transfer_table(res: Mapping[str, Any], source_acc: float | None = None, metric: str = "val_acc") -> str:
    """Method × t table of validation accuracy (%) or, with ``metric="val_loss"``, loss."""
    T = max(len(r["val_acc"]) for r in res.values()) - 1
    step = max(1, T // 10)
    ts = sorted(set(range(0, T + 1, step)) | {T})

    def fmt(v: float) -> str:
        return pct(v) if metric == "val_acc" else f"{v:.3f}"

    rows = [[LABEL.get(m, m), *[fmt(r[metric][t]) for t in ts], r["best_t"]] for m, r in res.items()]
    text = md_table(["method", *[f"t={t}" for t in ts], "best t"], rows)
    if source_acc is not None:
        text += f"\n\nThe source's final validation accuracy: {pct(source_acc)} %."
    return text


def finetune_table(ft: Mapping[str, Any], standard: str) -> str:
    """Curve × epoch table of validation accuracy (%), and the lead of each fine-tuning."""
    curves = ft["curves"]
    E = max(len(c) for c in curves.values()) - 1
    rows = []
    for name, c in curves.items():
        label = LABEL.get(name, name)
        if name in ft["start_t"]:
            label = f"from {LABEL.get(name, name)} (t={ft['start_t'][name]})"
        rows.append([label, *[pct(a) for a in c]])
    text = md_table(["run", *[f"ep {e}" for e in range(E + 1)]], rows)
    if ft["lead_epochs"]:
        parts = [f"from {LABEL.get(m, m)}: {n} of {E}" for m, n in ft["lead_epochs"].items()]
        text += f"\n\nEpochs (from epoch 1) the fine-tuning stays above {LABEL.get(standard, standard)}: "
        text += ", ".join(parts) + "."
    return text


def plot_transfer(ax: Any, res: Mapping[str, Any], title: str, source_acc: float | None = None) -> None:
    styles = {"gmt": "o-", "fgmt": "s-", "naive": "^--", "oracle": "d:"}
    for m, r in res.items():
        ax.plot(r["t"], [100 * a for a in r["val_acc"]], styles.get(m, "o-"), ms=3, label=LABEL.get(m, m))
    if source_acc is not None:
        ax.axhline(100 * source_acc, color="gray", lw=0.8, ls="--", label="source (trained)")
    ax.set_xlabel("transfer step t")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def plot_finetune(ax: Any, ft: Mapping[str, Any], standard: str, title: str) -> None:
    for name, c in ft["curves"].items():
        if name == standard:
            label, style = LABEL.get(name, name), "k--"
        else:
            label, style = f"from {LABEL.get(name, name)} (t={ft['start_t'][name]})", "o-"
        ax.plot(range(len(c)), [100 * a for a in c], style, ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def save_pair_plot(ctx: Context, result: Mapping[str, Any], title: str, suffix: str = ".png") -> str:
    """Transfer curves (left) and fine-tuning vs standard (right) side by side; returns the file name."""
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    plot_transfer(a, result["transfer"], f"{title}: transferred parameters", result.get("source_val_acc"))
    plot_finetune(b, result["finetune"], result["standard"], f"{title}: subsequent training")
    path = ctx.out(suffix)
    save_figure(fig, path)
    return path.name
