"""Transformers, which no merging anchor covers: ``vit_tiny`` on MNIST and ``gpt_tiny`` on
characters, merged through the groups permgraph infers (heads, per-head dims, the residual
stream, the MLPs' hidden units): naive vs weight / activation matching, each ± REPAIR.

Activation matching reads a group's clean activations; a group without one (attention's heads and
per-head dims, which the fused attention op mixes) is weight-matched with the others fixed
(``transfer.merge``; the page lists which group got which). Reported as measured: not required to win.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zoo.experiments.kit.base import register
from zoo.experiments.kit.merge_pairs import MergeSettings
from zoo.experiments.kit.report import md_table

__all__ = ["MergeTransformers"]


@register("merge_transformers", "Merging vit_tiny and gpt_tiny through inferred head groups", rank=73)
class MergeTransformers(MergeSettings):
    def anchor(self, results: Mapping[str, Any]) -> list[str]:
        rows = []
        for name, b in results["settings"].items():
            first = b["timings"][0]
            for align, t in first.items():
                by = ", ".join(f"{k}: {n}" for k, n in sorted(t.get("groups_by", {}).items())) or "-"
                rows.append([name, align, by, t.get("repair_layers", 0)])
        return [
            "## How each group was matched (first pair), and the layers REPAIR corrected",
            md_table(["setting", "align", "groups matched by", "REPAIR layers"], rows),
        ]
