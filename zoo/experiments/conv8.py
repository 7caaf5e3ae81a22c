"""Figs. 5b / 6a: Conv8 trajectory transfer between random inits, then fine-tuning from the best
transferred point against training from scratch.

The paper's setting is CIFAR-10, full width, 60 epochs, T = 30 (``configs/conv8_cifar10.toml``, for
a machine with the CIFAR-10 folder). The default config runs Conv8 at width 0.25 on Fashion-MNIST
(``apt-get install dataset-fashion-mnist``), which fits a 2-core CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transfer.methods import label
from zoo.experiments.kit.base import register
from zoo.experiments.kit.context import Context
from zoo.experiments.kit.reference import PAPER_CONV8
from zoo.experiments.kit.scenario import TransferThenFinetune, control_lines, finetune_section, transfer_table

__all__ = ["Conv8"]


@register("conv8", "Fig. 5b/6a: Conv8 trajectory transfer, then fine-tuning vs scratch", rank=30)
class Conv8(TransferThenFinetune):
    """The paper's Conv8 scenario (:class:`~zoo.experiments.kit.scenario.TransferThenFinetune`), beside
    the paper's CIFAR-10 numbers."""

    def sections(self, ctx: Context, results: Mapping[str, Any]) -> list[str]:
        paper = PAPER_CONV8
        return [
            self.setting_line(results),
            "## Transferred parameters (Fig. 5b)",
            transfer_table(results["transfer"], results["source_val_acc"]),
            *control_lines(results),
            *finetune_section(ctx, results, "## Subsequent training (Fig. 6a): fine-tuning vs scratch"),
            "Paper, CIFAR-10, full width, for context: transfer at t=30 "
            + ", ".join(f"{label(m)} {v}" for m, v in paper["transfer_t30"].items())
            + f"; subsequent training epoch 1: transferred {paper['finetune_epoch1'][0]}-"
            f"{paper['finetune_epoch1'][1]} vs scratch {paper['scratch_epoch1']}.",
        ]
