"""The paper's pretrained scenario (Figs. 5d-f / 6b-d) over several seed pairs, for ResNets and GPT.

For each seed pair: two networks pretrained on one task from different seeds; each is fine-tuned on a
second task (the classifier head re-initialised with its own seed where the tasks' outputs differ):
the source's fine-tuning is the trajectory transferred, the target's is the standard fine-tuning.
The source's fine-tuning is transferred onto the target's pretrained init with every method of
``methods`` (BatchNorm statistics re-estimated as the paper does), ``transfer diagnose`` measures the
pair before any transfer, and training goes on from FGMT's and Naive's best points with the very
recipe and minibatch order of the standard fine-tuning. The page reports every pair and mean ± std.

The experiments on it are registered in :mod:`zoo.experiments.pretrained` (``resnet_pretrained``:
ResNet-20 pretrained on MNIST, fine-tuned on Fashion-MNIST, a new dataset as ImageNet -> CUB / Cars
in the paper; ``gpt_pretrained``: gpt_tiny pretrained on Python source code, fine-tuned on English
prose; ``vit_pretrained``) and :mod:`zoo.experiments.bert_pretrained`; this module registers none.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from transfer.diagnose import diagnose
from transfer.methods import plot_style
from transfer.options import TransferOptions, options_from
from zoo.experiments.kit.base import Experiment
from zoo.experiments.kit.config import check_keys, check_recipe
from zoo.experiments.kit.context import Context
from zoo.experiments.kit.pool import pool_folder, train_from, transfer_methods
from zoo.experiments.kit.report import md_table, pct, pyplot
from zoo.experiments.kit.scenario import check_finetune, curve_label, finetune_from_best, finetune_recipe, reinit_head
from zoo.experiments.kit.setting import Pair, Setting, open_pair, open_view
from zoo.models import build

__all__ = ["PoolLayout", "PretrainedPairs", "summarize", "pair_title"]

ARMS = {"fgmt": "from_fgmt", "naive": "from_naive"}  # fine-tunings from a transferred point, by method


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return pct(values[0])
    return f"{100 * statistics.fmean(values):.1f} ± {100 * statistics.pstdev(values):.1f}"


def summarize(pairs: list[dict[str, Any]], methods: list[str]) -> dict[str, Any]:
    """The schema of the page's JSON: per method its best transferred accuracy per pair, per
    fine-tuning arm its epoch-1 and final accuracy per pair (fractions)."""
    out: dict[str, Any] = {"methods": {}, "finetune": {}}
    for m in methods:
        out["methods"][m] = {"best_val_acc": [max(p["transfer"][m]["val_acc"]) for p in pairs]}
    for arm in [*ARMS.values(), "scratch"]:
        curves = [p["finetune"][arm] for p in pairs if arm in p["finetune"]]
        if curves:
            out["finetune"][arm] = {"epoch1_val_acc": [c[1] for c in curves], "final_val_acc": [c[-1] for c in curves]}
    return out


@dataclass(frozen=True)
class PoolLayout:
    """How a pretrained page names its pieces in the shared pool, and what it runs besides the
    transfer. The published pages were recorded under two layouts (the Conv8 page's predates the
    ``reinit_head`` option and the fine-tunings' own seeds); folder names hash these parts, so each
    page keeps its layout and a rerun finds its recorded runs and trains with the same seeds."""

    reinit_in_name: bool = True  # the task fine-tunings' folder names include the reinit_head flag
    finetune_seed_is_head: bool = True  # fine-tunings from a transferred point: the target's head seed, else 0
    diagnose: bool = True  # ``transfer diagnose`` on each pair before transferring


class PretrainedPairs(Experiment):
    """Pretrain each pair on ``[pretrain]``, fine-tune on ``[task]``, diagnose, transfer, train on."""

    keys = ("model", "data", "val_subset", "seeds", "head_seeds", "reinit_head", "methods", "pretrain", "task",
            "transfer", "finetune", "data_options")  # fmt: skip
    required = ("model", "data", "seeds", "head_seeds", "methods", "pretrain", "task", "transfer", "finetune")
    task_keys: ClassVar[tuple[str, ...]] = ("data", "labels", "subset", "data_options")  # of [task], beside train
    layout: ClassVar[PoolLayout] = PoolLayout()

    def check(self, cfg: Mapping[str, Any], where: str) -> None:
        super().check(cfg, where)
        check_keys(cfg["pretrain"], ("labels", "subset"), f"{where} [pretrain]", required=("train",))
        check_keys(cfg["task"], self.task_keys, f"{where} [task]", required=("train",))
        check_recipe(cfg["pretrain"]["train"], f"{where} [pretrain.train]")
        check_recipe(cfg["task"]["train"], f"{where} [task.train]")
        check_finetune(cfg, cfg["task"]["train"], where)

    def compute(self, ctx: Context) -> dict[str, Any]:
        cfg = ctx.config
        pairs = [self._pair(ctx, tuple(seeds), tuple(heads)) for seeds, heads in zip(cfg["seeds"], cfg["head_seeds"])]
        first = pairs[0]
        return {
            "model": first["model"], "pretrain_data": first["pretrain_data"], "task_data": first["task_data"],
            "pairs": [p["seeds"] for p in pairs], "head_seeds": [p["head_seeds"] for p in pairs],
            "pretrain": cfg["pretrain"]["train"], "task_train": cfg["task"]["train"], "transfer_setting": cfg["transfer"],
            "finetune_recipe": finetune_recipe(cfg["task"]["train"], cfg["finetune"]),
            **summarize(pairs, cfg["methods"]), "per_pair": pairs,
        }  # fmt: skip

    def _settings(self, cfg: Mapping[str, Any], seeds: tuple[int, int]) -> tuple[Setting, Setting]:
        pre, task = cfg["pretrain"], cfg["task"]
        view = dict(model=cfg["model"], data=cfg["data"], seeds=seeds, val_subset=cfg.get("val_subset"),
                    data_options=dict(cfg.get("data_options", {})))  # fmt: skip
        pretrain = Setting(name="pretrain", **view, train=pre["train"], subset=pre.get("subset"), labels=pre.get("labels"))
        task_view = {**view, "data": task.get("data", cfg["data"]), "data_options": dict(task.get("data_options", {}))}
        return pretrain, Setting(name="task", **task_view, train=task["train"], subset=task.get("subset"),
                                 labels=task.get("labels"))  # fmt: skip

    def _task_pair(self, ctx: Context, seeds: tuple[int, int], heads: tuple[int, int]) -> tuple[Pair, Pair]:
        """The pretrained pair, and the pair of its fine-tunings on the task (heads re-initialised
        from ``heads`` unless ``reinit_head = false``): the source's is the trajectory transferred."""
        cfg = ctx.config
        pretrain_setting, task_setting = self._settings(cfg, seeds)
        pretrained = open_pair(ctx, pretrain_setting)
        data, _ = open_view(task_setting)
        recipe = dict(cfg["task"]["train"])
        reinit = cfg.get("reinit_head", True)
        runs = {}
        for role, run, head in (("source", pretrained.source, heads[0]), ("target", pretrained.target, heads[1])):
            start = reinit_head(run.final(), pretrained.model, head) if reinit else run.final()
            parts = (str(run.path), head, data.name, recipe, *((reinit,) if self.layout.reinit_in_name else ()))
            runs[role] = train_from(ctx, start, pretrained.model, data, pool_folder(ctx, "taskft", *parts), recipe,
                                    seed=head, what=f"pair {seeds} {role}: fine-tune on the task")  # fmt: skip
        return pretrained, Pair(task_setting, data, pretrained.model, runs["source"], runs["target"])

    def _pair(self, ctx: Context, seeds: tuple[int, int], heads: tuple[int, int]) -> dict[str, Any]:
        """One seed pair through the pipeline: its record on the page (``per_pair``)."""
        cfg = ctx.config
        pretrained, task = self._task_pair(ctx, seeds, heads)
        source, target, data = task.source, task.target, task.data
        diag = None
        if self.layout.diagnose:
            options = options_from(TransferOptions, {**cfg["transfer"], "progress": False, "device": ctx.device},
                                   "[transfer]")  # fmt: skip
            ctx.say(f"pair {seeds}: diagnose before transferring")
            diag = diagnose(build(task.model), data, source, target.init(), options)
        res = transfer_methods(ctx, cfg["methods"], source, target, data, cfg["transfer"])
        ft_recipe = finetune_recipe(task.setting.train, cfg.get("finetune", {}))
        finetune = {"scratch": target.metrics("val_acc")}
        seed = heads[1] if self.layout.finetune_seed_is_head else None
        for method in cfg.get("finetune", {}).get("methods", []):
            what = f"pair {seeds}: fine-tune from {method} t={int(res[method]['best_t'])}"
            tuned = finetune_from_best(ctx, res[method], task.model, data, ft_recipe, what, seed=seed)
            finetune[ARMS.get(method, f"from_{method}")] = tuned.metrics("val_acc")
        return {
            "seeds": list(seeds), "head_seeds": list(heads), "model": pretrained.model,
            "pretrain_data": pretrained.data.name, "task_data": data.name,
            "pretrained_val_acc": [r.metrics("val_acc")[-1] for r in (pretrained.source, pretrained.target)],
            "source_val_acc": source.metrics("val_acc")[-1], **({"diagnose": diag.to_json()} if diag is not None else {}),
            "transfer": {m: {k: v for k, v in r.items() if k != "trajectory"} for m, r in res.items()},
            "finetune": finetune,
        }  # fmt: skip

    def plots(self, ctx: Context, results: Mapping[str, Any]) -> list[tuple[str, Any]]:
        plt = pyplot()
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
        pairs = results["per_pair"]
        for m in results["methods"]:
            curves = [p["transfer"][m]["val_acc"] for p in pairs]
            mean = [100 * statistics.fmean(c) for c in zip(*curves)]
            style = plot_style(m)
            a.plot(range(len(mean)), mean, style.pop("fmt"), ms=3, **style)
        a.set_xlabel("transfer step t")
        a.set_ylabel("validation accuracy (%), mean over pairs")
        a.set_title("transferred parameters (before any training)", fontsize=9)
        for arm in ("scratch", "from_fgmt", "from_naive"):
            curves = [p["finetune"][arm] for p in pairs if arm in p["finetune"]]
            if curves:
                mean = [100 * statistics.fmean(c) for c in zip(*curves)]
                style = {"fmt": "k--"} if arm == "scratch" else plot_style(arm.removeprefix("from_"))
                style.pop("label", None)
                b.plot(range(len(mean)), mean, style.pop("fmt"), ms=3, label=_arm_label(arm), **style)
        b.set_xlabel("epoch of fine-tuning")
        b.set_ylabel("validation accuracy (%), mean over pairs")
        b.set_title("subsequent training", fontsize=9)
        for ax in (a, b):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(pair_title(results), fontsize=9)
        return [("", fig)]

    def sections(self, ctx: Context, results: Mapping[str, Any]) -> list[str]:
        r = results
        return [
            f"Setting: `{r['model']}`. Pretraining on `{r['pretrain_data']}` ({r['pretrain']}); fine-tuning on "
            f"`{r['task_data']}` ({r['task_train']}), seed pairs {r['pairs']}, head seeds {r['head_seeds']}. "
            f"Transfer: linear trajectory of the source's fine-tuning, {r['transfer_setting']}. Fine-tuning from a "
            f"transferred point: {r['finetune_recipe']}, the standard fine-tuning's recipe and minibatch order.",
            "## Transferred parameters: best validation accuracy (%) over t",
            _methods_table(r),
            "## Subsequent training: validation accuracy (%) after epoch 1 and at the end",
            _finetune_table(r),
            "## Before transferring: `transfer diagnose` on each pair",
            _diagnose_table(r),
            f"![transfer and fine-tuning]({ctx.figure()})",
        ]


def pair_title(results: Mapping[str, Any]) -> str:
    """A pretrained page's figure title: the model's name, pretraining data -> task data."""
    return f"{results['model'].split('?')[0]}: {results['pretrain_data']} -> {results['task_data']}"


def _arm_label(arm: str) -> str:
    return "standard fine-tuning" if arm == "scratch" else f"from {curve_label(arm.removeprefix('from_'))}'s best point"


def _methods_table(r: Mapping[str, Any]) -> str:
    rows = [[curve_label(m), *[pct(a) for a in v["best_val_acc"]], _mean_std(v["best_val_acc"])]
            for m, v in r["methods"].items()]  # fmt: skip
    return md_table(["method", *[f"pair {p}" for p in r["pairs"]], "mean ± std"], rows)


def _finetune_table(r: Mapping[str, Any]) -> str:
    rows = []
    for arm, v in r["finetune"].items():
        for key, when in (("epoch1_val_acc", "epoch 1"), ("final_val_acc", "final")):
            rows.append([f"{_arm_label(arm)}, {when}", *[pct(a) for a in v[key]], _mean_std(v[key])])
    return md_table(["run", *[f"pair {p}" for p in r["pairs"]], "mean ± std"], rows)


def _diagnose_table(r: Mapping[str, Any]) -> str:
    rows = []
    for p in r["per_pair"]:
        d = p["diagnose"]
        rows.append([p["seeds"], f"{d['cos_identity']:.3f}", f"{d['cos_permuted']:.3f}", f"{d['ratio_total']:.2f}",
                     d["verdict"]])  # fmt: skip
    header = ["pair", "gradient cosine, unpermuted", "permuted (held out)", "‖θ₂⁰‖ / ‖Δ₁‖", "verdict"]
    return md_table(header, rows)
