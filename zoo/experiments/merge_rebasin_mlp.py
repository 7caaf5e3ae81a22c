"""Git Re-Basin's MNIST MLP (3 hidden layers of 512): the loss barrier of the naive average against
weight matching against activation matching, over three seed pairs (their recipe: Adam, lr 1e-3,
batch 500, 100 epochs; 25 values of λ). Done when each matching cuts the naive barrier by >= 80 %.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zoo.experiments.kit.base import register
from zoo.experiments.kit.merge_pairs import MergePairs
from zoo.experiments.kit.report import md_table

__all__ = ["MergeRebasinMLP"]


@register("merge_rebasin_mlp", "Git Re-Basin's MNIST MLP (3 × 512): loss barriers, naive vs matched", rank=71)
class MergeRebasinMLP(MergePairs):
    def anchor(self, results: Mapping[str, Any]) -> list[str]:
        naive = results["align"].get("naive")
        if naive is None:
            return []
        rows = []
        for i, seeds in enumerate(results["pairs"]):
            row = [f"{seeds[0]} / {seeds[1]}", f"{naive['loss_barrier'][i]:.3f}"]
            for name in ("weight", "activation"):
                v = results["align"].get(name)
                if v is None:
                    row.append("-")
                    continue
                cut = 1 - v["loss_barrier"][i] / naive["loss_barrier"][i] if naive["loss_barrier"][i] > 0 else float("nan")
                row.append(f"{v['loss_barrier'][i]:.3f} ({100 * cut:.0f} % cut)")
            rows.append(row)
        return [
            "### Loss barrier per pair (Git Re-Basin's headline: near zero after matching)",
            md_table(["pair", "naive", "weight matching", "activation matching"], rows),
        ]
