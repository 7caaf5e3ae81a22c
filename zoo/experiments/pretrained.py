"""Figs. 5d-f / 6b-d in miniature: transfer a fine-tuning trajectory between two pretrained inits.

Two networks are pretrained on one task from different seeds (by default MNIST digits 0-4), their
classifier heads are re-initialised with different seeds, and each is fine-tuned on a second task
(digits 5-9): the "standard" fine-tuning. The source's fine-tuning trajectory is then transferred
onto the other pretrained init, and training goes on from the best transferred point. This is the
paper's ImageNet -> Cars / CUB setting, shrunk to what a CPU does in minutes.

The same scenario over several seed pairs, with ``transfer diagnose`` on each pair, runs through
:class:`zoo.experiments.kit.pretrained_pairs.PretrainedPairs`: ``resnet_pretrained``,
``gpt_pretrained`` and ``vit_pretrained`` below.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zoo.experiments.kit.base import Experiment, register
from zoo.experiments.kit.config import check_keys, check_recipe
from zoo.experiments.kit.context import Context
from zoo.experiments.kit.pool import pool_folder, train_from
from zoo.experiments.kit.pretrained_pairs import PretrainedPairs
from zoo.experiments.kit.report import pct
from zoo.experiments.kit.scenario import (
    check_finetune,
    finetune_table,
    pair_figure,
    reinit_head,
    transfer_table,
    transfer_then_finetune,
)
from zoo.experiments.kit.setting import Pair, Setting, open_pair, open_view

__all__ = ["Pretrained", "ResNetPretrained", "GPTPretrained", "ViTPretrained"]


@register("pretrained", "Fig. 5d-f/6b-d in miniature: transfer between pretrained inits", rank=40)
class Pretrained(Experiment):
    """Pretrain a pair on ``[pretrain]``, fine-tune both on ``[task]`` from fresh heads, transfer
    the source's fine-tuning onto the target's pretrained init, and train on from there."""

    keys = ("model", "data", "val_subset", "seeds", "head_seeds", "methods", "pretrain", "task", "transfer",
            "finetune")  # fmt: skip
    required = ("model", "data", "seeds", "head_seeds", "methods", "pretrain", "task", "transfer")

    def check(self, cfg: Mapping[str, Any], where: str) -> None:
        super().check(cfg, where)
        check_keys(cfg["pretrain"], ("labels", "subset"), f"{where} [pretrain]", required=("train",))
        check_keys(cfg["task"], ("data", "labels", "subset"), f"{where} [task]", required=("train",))
        check_recipe(cfg["pretrain"]["train"], f"{where} [pretrain.train]")
        check_recipe(cfg["task"]["train"], f"{where} [task.train]")
        check_finetune(cfg, cfg["task"]["train"], where)

    def compute(self, ctx: Context) -> dict[str, Any]:
        cfg = ctx.config
        pre, task = cfg["pretrain"], cfg["task"]
        view = dict(name="pretrain", model=cfg["model"], data=cfg["data"], seeds=tuple(cfg["seeds"]),
                    val_subset=cfg.get("val_subset"))  # fmt: skip
        pretrained = open_pair(ctx, Setting(**view, train=pre["train"], subset=pre.get("subset"), labels=pre.get("labels")))
        task_setting = Setting(**{**view, "name": "task", "data": task.get("data", cfg["data"])}, train=task["train"],
                               subset=task.get("subset"), labels=task.get("labels"))  # fmt: skip
        data_b, _ = open_view(task_setting)
        recipe = dict(task["train"])
        runs = {}
        for role, pre_run, head in (("source", pretrained.source, cfg["head_seeds"][0]),
                                    ("target", pretrained.target, cfg["head_seeds"][1])):  # fmt: skip
            init = reinit_head(pre_run.final(), pretrained.model, head)
            folder = pool_folder(ctx, "taskft", str(pre_run.path), head, data_b.name, recipe)
            runs[role] = train_from(ctx, init, pretrained.model, data_b, folder, recipe, seed=head,
                                    what=f"{role}: fine-tune on the task")  # fmt: skip
        task_pair = Pair(task_setting, data_b, pretrained.model, runs["source"], runs["target"])
        result = transfer_then_finetune(ctx, task_pair, cfg, recipe)
        return {
            "model": pretrained.model, "pretrain_data": pretrained.data.name, "task_data": data_b.name,
            "seeds": list(cfg["seeds"]), "head_seeds": list(cfg["head_seeds"]), "pretrain": pre["train"],
            "task_train": recipe, "transfer_setting": cfg["transfer"],
            "pretrained_val_acc": [r.metrics("val_acc")[-1] for r in (pretrained.source, pretrained.target)], **result,
        }  # fmt: skip

    def plots(self, ctx: Context, results: Mapping[str, Any]) -> list[tuple[str, Any]]:
        title = f"{results['model'].split('?')[0]}: {results['pretrain_data']} -> {results['task_data']}"
        return [("", pair_figure(results, title))]

    def sections(self, ctx: Context, results: Mapping[str, Any]) -> list[str]:
        r = results
        return [
            f"Setting: `{r['model']}`. Pretraining on `{r['pretrain_data']}` from seeds {r['seeds']} "
            f"({r['pretrain']}; val acc {', '.join(pct(a) for a in r['pretrained_val_acc'])} %). Heads "
            f"re-initialised with seeds {r['head_seeds']}, then fine-tuned on `{r['task_data']}` "
            f"({r['task_train']}): the source's fine-tuning is the trajectory transferred; the target's is "
            f"Standard. Transfer: linear trajectory, {r['transfer_setting']}.",
            "## Transferred parameters (Fig. 5d-f)",
            transfer_table(r["transfer"], r["source_val_acc"]),
            "## Subsequent training (Fig. 6b-d): from the transferred point vs standard fine-tuning",
            finetune_table(r["finetune"], r["standard"]),
            f"![transfer and fine-tuning]({ctx.figure()})",
        ]


@register("resnet_pretrained", "pretrained scenario with ResNet-20: MNIST -> Fashion-MNIST, 3 seed pairs", rank=42)
class ResNetPretrained(PretrainedPairs):
    """ResNet-20 pretrained on MNIST, fine-tuned on Fashion-MNIST (BatchNorm statistics re-estimated)."""


@register("gpt_pretrained", "pretrained scenario with gpt_tiny: Python code -> English prose", rank=43)
class GPTPretrained(PretrainedPairs):
    """The same pipeline for the character GPT (no head to re-initialise: one vocabulary)."""


@register("vit_pretrained", "pretrained scenario with vit_tiny: MNIST -> Fashion-MNIST, 3 seed pairs", rank=44)
class ViTPretrained(PretrainedPairs):
    """The same pipeline for the small ViT: its heads, query/key and value groups carry the transfer."""
