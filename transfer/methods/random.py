"""Random permutation: one uniformly random permutation of every free group, fixed for all steps.

A control between Naive and Oracle. It moves the source's change as far from Naive as a matched
permutation does, but by chance: when GMT / FGMT beat it, the gain comes from matching, not from
merely scrambling units; when Naive beats it, the identity already carries shared structure
(both runs started from related inits).
"""

from __future__ import annotations

import torch

from permgraph.apply import Permutation, random_permutation
from transfer.data import mix_seed
from transfer.methods.base import TransferMethod, register

__all__ = ["RandomPermutation"]

RANDOM_STREAM = -2  # a generator stream of its own, apart from the gradient minibatches


@register
class RandomPermutation(TransferMethod):
    name = "random"
    label = "Random π"
    style = "x-."
    color = "C7"
    summary = "a random permutation (control): what an unmatched permutation gives"
    rank = 50

    def start(self) -> Permutation:
        gen = torch.Generator().manual_seed(mix_seed(self.ctx.options.seed, RANDOM_STREAM))
        return random_permutation(self.ctx.spec, generator=gen)
