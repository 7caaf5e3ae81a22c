"""GMT (Alg. 1): at step t, pairs (grad L(theta_1^{j-1}), grad L(theta_2^{j-1} under pi_{t-1})) for
j = 1..t, target gradients recomputed under the latest permutation; ``pi_t`` solves all t pairs.

Pair j always uses minibatch set j, so the source gradients are the same at every step and are
computed once (GMT then costs T source and T(T+1)/2 - 1 target gradients instead of T(T+1)); the first
target gradient, taken at theta_2^0, does not depend on pi and is cached too.
"""

from __future__ import annotations

from permgraph.apply import Permutation, State
from transfer.context import TransferContext
from transfer.matching import SORTED
from transfer.methods.base import TransferMethod, register

__all__ = ["GMT"]


@register
class GMT(TransferMethod):
    name = "gmt"
    label = "GMT"
    style = "o-"
    color = "C0"
    summary = "gradient matching, every pair recomputed under the latest permutation (Alg. 1)"
    rank = 10

    def __init__(self, ctx: TransferContext) -> None:
        super().__init__(ctx)
        self._source: dict[int, State] = {}
        self._target_first: State | None = None

    def step(self, t: int, prev: Permutation) -> Permutation:
        ctx = self.ctx
        matcher = ctx.new_matcher()
        for j in range(1, t + 1):
            if j not in self._source:
                self._source[j] = ctx.source_gradient(j)
            matcher.add(self._target(j, prev), self._source[j])
        return ctx.solve(matcher, init=[prev, SORTED], seed=ctx.options.seed + t)

    def _target(self, j: int, prev: Permutation) -> State:
        if j > 1:
            return self.ctx.target_gradient(prev, j)
        if self._target_first is None:  # at theta_2^0: the same under every permutation
            self._target_first = self.ctx.gradients.gradient(dict(self.ctx.theta2_0), k=1)
        return self._target_first
