"""ResNet-20 (BatchNorm) on Fashion-MNIST at several widths: naive, weight-matched and
activation-matched midpoints, each with BatchNorm statistics reset (REPAIR's remedy for BN nets).

Our own setting, not a reproduction of REPAIR's CIFAR-10 numbers (12.5 % -> 67.0 % at 1×,
11.7 % -> 90.3 % at 4×): the recipe is reduced to fit two shared CPU cores (the config says how).
Done when matched + BN reset beats the naive midpoint by >= 30 points at 4×.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zoo.errors import ZooError
from zoo.experiments.kit.base import register
from zoo.experiments.kit.merge_common import PATH_KEYS, SETTING_KEYS, mean_sd
from zoo.experiments.kit.merge_pairs import MergeSettings
from zoo.experiments.kit.report import md_table
from zoo.models import canonical_id

__all__ = ["MergeResNet20"]


@register("merge_resnet20", "Merging ResNet-20 (BatchNorm) on Fashion-MNIST at 1× and 4×: ± BN reset", rank=72)
class MergeResNet20(MergeSettings):
    keys = (*SETTING_KEYS, *PATH_KEYS, "pairs", "widths")
    required = ("model", "data", "train", "pairs", "widths")
    repair_label = "+ BN reset"

    def settings_of(self, cfg: Mapping[str, Any], where: str = "the config") -> list[tuple[str, dict[str, Any]]]:
        widths = cfg["widths"]
        if not isinstance(widths, list) or not widths or not all(isinstance(w, (int, float)) and w > 0 for w in widths):
            raise ZooError(f"{where} widths must be a non-empty list of positive width multipliers, e.g. [1, 4]")
        base = {k: cfg[k] for k in SETTING_KEYS if k in cfg}
        return [(f"width {w}×", {**base, "model": canonical_id(cfg["model"], width=w)}) for w in widths]

    def anchor(self, results: Mapping[str, Any]) -> list[str]:
        rows = []
        for name, b in results["settings"].items():
            naive = b["align"].get("naive")
            for align in ("weight", "activation"):
                v = b["align"].get(align)
                if naive is None or v is None:
                    continue
                gain = [r - n for r, n in zip(v["midpoint_acc_repair"], naive["midpoint_acc"])]
                rows.append([name, align, mean_sd(naive["midpoint_acc"], 100), mean_sd(v["midpoint_acc_repair"], 100),
                             mean_sd(gain, 100)])  # fmt: skip
        return [
            "## Matched + BN reset against the naive midpoint (test accuracy %)",
            md_table(["width", "matching", "naive midpoint", "matched + BN reset", "gain (points)"], rows),
        ]


@register("merge_resnet20_4x", "Merging ResNet-20 4× on Fashion-MNIST, endpoints trained longer: ± BN reset", rank=73)
class MergeResNet20Wide(MergeResNet20):
    """The 4× row with its own recipe and page: the 1× recipe (2000 images, 2 epochs) leaves 4×
    endpoints at 27-48 %, too undertrained to say anything about width."""
