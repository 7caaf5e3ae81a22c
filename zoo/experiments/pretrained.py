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

from zoo.experiments.kit.base import register
from zoo.experiments.kit.context import Context
from zoo.experiments.kit.pretrained_pairs import PoolLayout, PretrainedPairs, pair_title
from zoo.experiments.kit.report import pct
from zoo.experiments.kit.scenario import (
    STANDARD,
    finetune_recipe,
    finetune_record,
    finetune_section,
    pair_figure,
    transfer_table,
)

__all__ = ["Pretrained", "ResNetPretrained", "GPTPretrained", "ViTPretrained"]


@register("pretrained", "Fig. 5d-f/6b-d in miniature: transfer between pretrained inits", rank=40)
class Pretrained(PretrainedPairs):
    """One seed pair through :class:`PretrainedPairs` (heads always re-initialised, no diagnose),
    on the page's own schema: the transfer curves, then the fine-tunings beside the standard one.
    Its pool layout is the one it was published with (:class:`PoolLayout`), so a rerun reuses the
    recorded runs and rewrites the same numbers."""

    keys = ("model", "data", "val_subset", "seeds", "head_seeds", "methods", "pretrain", "task", "transfer",
            "finetune")  # fmt: skip
    required = ("model", "data", "seeds", "head_seeds", "methods", "pretrain", "task", "transfer")
    task_keys = ("data", "labels", "subset")
    layout = PoolLayout(reinit_in_name=False, finetune_seed_is_head=False, diagnose=False)

    def compute(self, ctx: Context) -> dict[str, Any]:
        cfg = ctx.config
        pair = self._pair(ctx, tuple(cfg["seeds"]), tuple(cfg["head_seeds"]))
        transfer, curves = pair["transfer"], pair["finetune"]
        tuned = {arm.removeprefix("from_"): c for arm, c in curves.items() if arm != "scratch"}
        ft = finetune_record(finetune_recipe(cfg["task"]["train"], cfg.get("finetune", {})), curves["scratch"], tuned,
                             {m: int(transfer[m]["best_t"]) for m in tuned})  # fmt: skip
        return {
            "model": pair["model"], "pretrain_data": pair["pretrain_data"], "task_data": pair["task_data"],
            "seeds": pair["seeds"], "head_seeds": pair["head_seeds"], "pretrain": cfg["pretrain"]["train"],
            "task_train": dict(cfg["task"]["train"]), "transfer_setting": cfg["transfer"],
            "pretrained_val_acc": pair["pretrained_val_acc"], "transfer": transfer,
            "source_val_acc": pair["source_val_acc"], "finetune": ft, "standard": STANDARD,
        }  # fmt: skip

    def plots(self, ctx: Context, results: Mapping[str, Any]) -> list[tuple[str, Any]]:
        return [("", pair_figure(results, pair_title(results)))]

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
            *finetune_section(
                ctx, r, "## Subsequent training (Fig. 6b-d): from the transferred point vs standard fine-tuning"
            ),
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
