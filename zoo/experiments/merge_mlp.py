"""REPAIR's MNIST MLP (8 linear layers of width 128, no BatchNorm): naive, weight and activation
matching, each with and without REPAIR, over three seed pairs, beside REPAIR's published numbers
(:class:`zoo.experiments.kit.merge_pairs.MergePairs` with the anchor table). The ``probes`` retrain the
same pairs with a much shorter recipe.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zoo.experiments.kit.base import register
from zoo.experiments.kit.merge_common import mean_sd
from zoo.experiments.kit.merge_pairs import MergePairs
from zoo.experiments.kit.report import md_table

__all__ = ["MergeMLP"]

# REPAIR's notebook, MNIST MLP, activation-matched pair (test accuracy %)
REPAIR_MLP = {"endpoints": (96.51, 96.59), "midpoint": 71.68, "repair": 82.96}


@register("merge_mlp", "Merging REPAIR's MNIST MLP: naive / weight / activation matching, ± REPAIR", rank=70)
class MergeMLP(MergePairs):
    def anchor(self, results: Mapping[str, Any]) -> list[str]:
        act = results["align"].get("activation")
        if act is None:
            return []
        ends = results["endpoints"]
        rows = [
            ["REPAIR (notebook)", "{:.2f} / {:.2f}".format(*REPAIR_MLP["endpoints"]), f"{REPAIR_MLP['midpoint']:.2f}",
             f"{REPAIR_MLP['repair']:.2f}"],
            ["ours (activation matching)", f"{mean_sd(ends['a_acc'], 100, 2)} / {mean_sd(ends['b_acc'], 100, 2)}",
             mean_sd(act["midpoint_acc"], 100, 2), mean_sd(act["midpoint_acc_repair"], 100, 2)],
        ]  # fmt: skip
        return ["### Beside REPAIR's numbers (test accuracy %)",
                md_table(["", "endpoints A / B", "matched midpoint", "+ REPAIR"], rows)]  # fmt: skip
