"""Naive: ``pi = id`` at every step, so theta_2^t = theta_2^0 + (theta_1^t - theta_1^0)."""

from __future__ import annotations

from transfer.methods.base import TransferMethod, register

__all__ = ["Naive"]


@register
class Naive(TransferMethod):
    name = "naive"
    label = "Naive"
    style = "^--"
    color = "C2"
    summary = "no permutation: the source's change added to the target init"
    rank = 30
