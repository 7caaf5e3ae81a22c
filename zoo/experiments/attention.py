"""Beyond the paper: trajectory transfer for attention models through inferred head structure.

``vit_tiny`` (MNIST) and ``gpt_tiny`` (characters of Python's standard library) have no hand-written
permutation spec anywhere: ``permgraph.infer`` finds their groups (the residual stream, the MLP
hidden units, and per attention layer the heads, the query/key dims within a head and the value
dims within a head), and GMT / FGMT solve over them (heads by an outer assignment, dims within).
The experiment is the Conv8 one (random inits, transfer, then fine-tuning against scratch) with the
groups listed beside, and for the language model the loss as well as the next-character accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import permgraph
from zoo.experiments.kit.base import register
from zoo.experiments.kit.context import Context
from zoo.experiments.kit.report import md_table
from zoo.experiments.kit.scenario import TransferThenFinetune, control_lines, finetune_section, transfer_table
from zoo.models import build, example_inputs

__all__ = ["group_summary", "AttentionTransfer", "VitTiny", "GptTiny"]


def group_summary(model: str) -> list[dict[str, Any]]:
    """The inferred groups of ``model``: name, size, free or blocked (with the reason), and the
    structures its members see the permutation in."""
    net = build(model)
    spec = permgraph.infer(net, example_inputs(net))
    return [
        {
            "name": g.name,
            "size": g.size,
            "blocked": g.blocked,
            "members": len(g.members),
            "structures": sorted({m.structure for m in g.members}),
        }
        for g in spec.groups
    ]


class AttentionTransfer(TransferThenFinetune):
    """The Conv8 scenario for a model whose groups nobody wrote down: the page lists what
    ``permgraph.infer`` found, and the transferred parameters' loss beside their accuracy."""

    def compute(self, ctx: Context) -> dict[str, Any]:
        out = super().compute(ctx)
        out["groups"] = group_summary(out["model"])
        return out

    def sections(self, ctx: Context, results: Mapping[str, Any]) -> list[str]:
        free = [g for g in results["groups"] if not g["blocked"]]
        rows = [[f"`{g['name']}`", g["size"], g["members"], "; ".join(g["structures"])] for g in free]
        blocked = [f"`{g['name']}` ({g['blocked']})" for g in results["groups"] if g["blocked"]]
        return [
            self.setting_line(results),
            f"## Groups found by `permgraph.infer` ({len(free)} free)",
            md_table(["group", "size", "tensors", "how members see it"], rows),
            "Blocked: " + (", ".join(blocked) if blocked else "none") + ".",
            "## Transferred parameters: validation accuracy (%)",
            transfer_table(results["transfer"], results["source_val_acc"]),
            "## Transferred parameters: validation loss",
            transfer_table(results["transfer"], metric="val_loss"),
            *control_lines(results),
            *finetune_section(ctx, results, "## Subsequent training: fine-tuning vs scratch (validation accuracy, %)"),
        ]


@register("vit_tiny", "beyond the paper: ViT on MNIST through inferred head groups", rank=80)
class VitTiny(AttentionTransfer):
    """ViT on MNIST (``configs/vit_tiny.toml``)."""


@register("gpt_tiny", "beyond the paper: GPT on characters through inferred head groups", rank=90)
class GptTiny(AttentionTransfer):
    """A character-level GPT on Python's standard library (``configs/gpt_tiny.toml``)."""
