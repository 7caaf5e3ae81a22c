"""The pipeline behind Figs. 5-6: transfer a source trajectory onto a target init, then fine-tune
from the best transferred point and compare with the target's own ("standard") training.

:class:`TransferThenFinetune` is the experiment between two random inits (``conv8``, and the
attention experiments on top of it: standard = training from scratch); ``pretrained`` runs the same
pipeline between pretrained inits (standard = ordinary fine-tuning). The fine-tuning uses the same
epochs, schedule and optimizer as the standard run, starting from the transferred point chosen on
validation accuracy (the paper's Sec. 4.2), with what ``[finetune]`` changes (e.g. its ``lr``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

import permgraph
from transfer.data import as_transfer_data
from transfer.engine import TransferEngine
from transfer.inputs import infer_spec, inputs_from_batch
from transfer.methods import label, plot_style
from transfer.options import TransferOptions, options_from
from transfer.trajectory import Trajectory
from zoo.data import DataSplits
from zoo.errors import ZooError
from zoo.experiments.kit.base import Experiment
from zoo.experiments.kit.config import check_methods, check_recipe, deep_merge
from zoo.experiments.kit.context import Context
from zoo.experiments.kit.pool import pool_folder, train_from, transfer_methods
from zoo.experiments.kit.report import md_table, pct, pyplot
from zoo.experiments.kit.setting import Pair, Setting, open_pair
from zoo.models import build

__all__ = [
    "STANDARD",
    "curve_label",
    "lead_epochs",
    "finetune_recipe",
    "check_finetune",
    "finetune_from_best",
    "finetune_record",
    "transfer_then_finetune",
    "planted_control",
    "reinit_head",
    "transfer_table",
    "finetune_table",
    "control_lines",
    "pair_figure",
    "TransferThenFinetune",
]

STANDARD = "standard"  # the curve of the target's own training: not a transfer method


def curve_label(name: str) -> str:
    """How a curve is named on pages and plots: a method's registered label, or "Standard"."""
    return "Standard" if name == STANDARD else label(name)


def lead_epochs(curve: list[float], reference: list[float]) -> int:
    """How many epochs, counted from epoch 1, ``curve`` stays strictly above ``reference``.

    >>> lead_epochs([0.1, 0.8, 0.9, 0.9], [0.1, 0.5, 0.95, 0.99])
    1
    """
    n = 0
    for a, b in zip(curve[1:], reference[1:]):
        if a <= b:
            break
        n += 1
    return n


def finetune_recipe(standard: Mapping[str, Any], finetune: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe of a fine-tuning from a transferred point: the standard run's, changed by the
    ``[finetune]`` table (less its ``methods``), with checkpoints every epoch so the curves compare."""
    recipe = deep_merge(dict(standard), {k: v for k, v in finetune.items() if k != "methods"})
    recipe.pop("checkpoint_every", None)
    return recipe


def check_finetune(cfg: Mapping[str, Any], standard: Mapping[str, Any], where: str) -> None:
    """``[finetune]``: its methods must be transferred first (``methods``), and the recipe it makes
    of the standard one must be a valid one."""
    ft = cfg.get("finetune", {})
    methods = ft.get("methods", [])
    check_methods(methods, f"{where} [finetune] methods")
    missing = [m for m in methods if m not in cfg.get("methods", [])]
    if missing:
        raise ZooError(f"{where} [finetune] methods {missing} are not transferred: add them to methods")
    check_recipe(finetune_recipe(standard, ft), f"{where} [finetune]")


def finetune_from_best(
    ctx: Context,
    result: Mapping[str, Any],
    model: str,
    data: DataSplits,
    recipe: Mapping[str, Any],
    what: str,
    seed: int | None = None,
) -> Trajectory:
    """Train ``recipe`` from the transferred point a method reached at its best step (by validation
    accuracy), in the pool (reused when complete). ``seed`` (the minibatch order) is part of the
    folder's name when given; without it the run uses seed 0 under a name without one, as the
    pages recorded before seeds were given did."""
    best_t = int(result["best_t"])
    traj = Trajectory(result["trajectory"])
    parts = (str(traj.path), best_t, recipe) if seed is None else (str(traj.path), best_t, recipe, seed)
    out = pool_folder(ctx, "finetune", *parts)
    return train_from(ctx, traj.load(best_t), model, data, out, recipe, seed=0 if seed is None else seed, what=what)


def finetune_record(
    recipe: Mapping[str, Any], standard: list[float], curves: Mapping[str, list[float]], starts: Mapping[str, int]
) -> dict[str, Any]:
    """The pages' fine-tuning record: the recipe, each method's start ``t``, the curves (the standard
    run's first) and how long each fine-tuning stays above the standard run."""
    return {
        "recipe": dict(recipe),
        "start_t": dict(starts),
        "curves": {STANDARD: standard, **curves},
        "lead_epochs": {m: lead_epochs(c, standard) for m, c in curves.items()},
    }


def transfer_then_finetune(
    ctx: Context, pair: Pair, cfg: Mapping[str, Any], standard_recipe: Mapping[str, Any]
) -> dict[str, Any]:
    """Transfer ``pair.source`` onto ``pair.target``'s init with ``cfg['methods']`` (``cfg['transfer']``
    settings), fine-tune from the best point of each of ``cfg['finetune']['methods']``, and return
    the curves beside the target's own (standard) training."""
    res = transfer_methods(ctx, cfg["methods"], pair.source, pair.target, pair.data, cfg["transfer"])
    recipe = finetune_recipe(standard_recipe, cfg.get("finetune", {}))
    curves: dict[str, list[float]] = {}
    starts: dict[str, int] = {}
    for m in cfg.get("finetune", {}).get("methods", []):
        starts[m] = int(res[m]["best_t"])
        ft = finetune_from_best(ctx, res[m], pair.model, pair.data, recipe, f"fine-tune from {m} t={starts[m]}")
        curves[m] = ft.metrics("val_acc")
    return {
        "transfer": {m: {k: v for k, v in r.items() if k != "trajectory"} for m, r in res.items()},
        "source_val_acc": pair.source.metrics("val_acc")[-1],
        "finetune": finetune_record(recipe, pair.target.metrics("val_acc"), curves, starts),
        "standard": STANDARD,
    }


def planted_control(
    ctx: Context, data: DataSplits, source: Trajectory, transfer: Mapping[str, Any], method: str = "fgmt", seed: int = 0
) -> dict[str, Any]:
    """The method's transfer onto a randomly permuted copy of the source's own init: the case where
    an exact permutation exists. It separates "no good permutation between two independent inits"
    from "the machinery cannot find one" when a transfer between independent inits fails."""
    import json

    out = pool_folder(ctx, "planted", str(source.path), seed, method, data.name, dict(transfer))
    done = out / "results.json"
    entry = json.loads(done.read_text())["methods"].get(method) if done.exists() else None
    if entry is not None:
        return {"method": method, "seed": seed, "val_acc": entry["val_acc"]}
    net = build(source.model)
    spec = infer_spec(net, inputs_from_batch(net, as_transfer_data(data).example_batch()))  # as the engine would
    perm = permgraph.random_permutation(spec, generator=torch.Generator().manual_seed(seed))
    planted = permgraph.apply(spec, perm, source.init())
    ctx.say(f"control: {method} onto a permuted copy of the source's init -> {out}")
    options = options_from(TransferOptions, {**transfer, "progress": ctx.progress}, "the transfer options")
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


# ---------------------------------------------------------------------------------- pages


def transfer_table(res: Mapping[str, Any], source_acc: float | None = None, metric: str = "val_acc") -> str:
    """Method × t table of validation accuracy (%) or, with ``metric="val_loss"``, loss."""
    T = max(len(r["val_acc"]) for r in res.values()) - 1
    step = max(1, T // 10)
    ts = sorted(set(range(0, T + 1, step)) | {T})

    def fmt(v: float) -> str:
        return pct(v) if metric == "val_acc" else f"{v:.3f}"

    rows = [[label(m), *[fmt(r[metric][t]) for t in ts], r["best_t"]] for m, r in res.items()]
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
        start = ft["start_t"].get(name)
        rows.append([curve_label(name) if start is None else f"from {label(name)} (t={start})", *map(pct, c)])
    text = md_table(["run", *[f"ep {e}" for e in range(E + 1)]], rows)
    if ft["lead_epochs"]:
        parts = [f"from {label(m)}: {n} of {E}" for m, n in ft["lead_epochs"].items()]
        text += f"\n\nEpochs (from epoch 1) the fine-tuning stays above {curve_label(standard)}: "
        text += ", ".join(parts) + "."
    return text


def finetune_section(ctx: Context, results: Mapping[str, Any], heading: str) -> list[str]:
    """The subsequent-training section of a transfer-then-fine-tune page: ``heading``, the
    fine-tuning table and the page's figure."""
    table = finetune_table(results["finetune"], results["standard"])
    return [heading, table, f"![transfer and fine-tuning]({ctx.figure()})"]


def control_lines(results: Mapping[str, Any]) -> list[str]:
    """The planted control's paragraph (none without one), beside the source's own checkpoints."""
    c = results.get("planted_control")
    if not c:
        return []
    return [
        f"Control: {label(c['method'])} onto a randomly permuted copy of the source's own init (an exact "
        f"permutation exists), t = 0..T: {' '.join(pct(a) for a in c['val_acc'])}. Source's own checkpoints "
        f"by epoch: {' '.join(pct(a) for a in results['source_val_acc_per_epoch'])}."
    ]


def _plot_transfer(ax: Any, res: Mapping[str, Any], title: str, source_acc: float | None) -> None:
    for m, r in res.items():
        style = plot_style(m)
        ax.plot(r["t"], [100 * a for a in r["val_acc"]], style.pop("fmt"), ms=3, **style)
    if source_acc is not None:
        ax.axhline(100 * source_acc, color="gray", lw=0.8, ls="--", label="source (trained)")
    _finish(ax, "transfer step t", title)


def _plot_finetune(ax: Any, ft: Mapping[str, Any], standard: str, title: str) -> None:
    for name, c in ft["curves"].items():
        if name == standard:
            lab, style = curve_label(name), "k--"
        else:
            lab, style = f"from {label(name)} (t={ft['start_t'][name]})", "o-"
        ax.plot(range(len(c)), [100 * a for a in c], style, ms=3, label=lab)
    _finish(ax, "epoch", title)


def _finish(ax: Any, xlabel: str, title: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def pair_figure(results: Mapping[str, Any], title: str) -> Any:
    """Transfer curves (left) and fine-tuning vs standard (right) side by side."""
    fig, (a, b) = pyplot().subplots(1, 2, figsize=(10, 3.8))
    _plot_transfer(a, results["transfer"], f"{title}: transferred parameters", results.get("source_val_acc"))
    _plot_finetune(b, results["finetune"], results["standard"], f"{title}: subsequent training")
    return fig


# ---------------------------------------------------------------------------------- the experiment


class TransferThenFinetune(Experiment):
    """Source and target trained from random inits, the source's trajectory transferred onto the
    target's init, then fine-tuning from the best transferred point against training from scratch;
    with ``planted_control``, the FGMT control onto a permuted copy of the source's own init."""

    keys = ("model", "data", "subset", "val_subset", "data_options", "seeds", "methods", "planted_control",
            "train", "transfer", "finetune")  # fmt: skip
    required = ("model", "data", "seeds", "methods", "train", "transfer")

    def check(self, cfg: Mapping[str, Any], where: str) -> None:
        super().check(cfg, where)
        check_finetune(cfg, cfg["train"], where)

    def compute(self, ctx: Context) -> dict[str, Any]:
        cfg = ctx.config
        pair = open_pair(ctx, Setting.from_config(cfg, ctx.name))
        result = transfer_then_finetune(ctx, pair, cfg, cfg["train"])
        out = {
            "model": pair.model, "data": pair.data.name, "train": dict(cfg["train"]),
            "transfer_setting": cfg["transfer"], "seeds": list(pair.setting.seeds),
            "train_size": len(pair.data.train[1]), **result,
            "source_val_acc_per_epoch": pair.source.metrics("val_acc"),
        }  # fmt: skip
        if cfg.get("planted_control"):
            out["planted_control"] = planted_control(ctx, pair.data, pair.source, cfg["transfer"])
        return out

    def plots(self, ctx: Context, results: Mapping[str, Any]) -> list[tuple[str, Any]]:
        return [("", pair_figure(results, f"{results['model'].split('?')[0]} on {results['data']}"))]

    def setting_line(self, results: Mapping[str, Any]) -> str:
        """The paragraph that states the setting, for the page."""
        return (
            f"Setting: `{results['model']}` on `{results['data']}` ({results['train_size']} training samples); "
            f"source seed {results['seeds'][0]}, target seed {results['seeds'][1]}; training {results['train']}. "
            f"Transfer: linear trajectory, {results['transfer_setting']}. Fine-tuning from the best transferred "
            f"point (by validation accuracy): {results['finetune']['recipe']}. Standard = the target's own "
            "training from its random init (scratch)."
        )
