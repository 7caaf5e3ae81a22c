"""FGMT (Alg. 2): one new gradient pair per step, taken under the latest permutation; older pairs
stay cached, never refreshed. ``pi_t`` solves the t pairs so far.

The matcher sums each pair into its cost matrices as it arrives, so only the pairs' tensors that
couple several groups are kept. Each new pair is also written to the run's store, which is how an
interrupted run rebuilds the matcher (:meth:`FGMT.resume`).
"""

from __future__ import annotations

from permgraph.apply import Permutation
from transfer.context import State, TransferContext
from transfer.methods.base import TransferMethod, register

__all__ = ["FGMT"]


@register
class FGMT(TransferMethod):
    name = "fgmt"
    label = "FGMT"
    style = "s-"
    color = "C1"
    summary = "fast gradient matching: one new pair per step, older pairs cached (Alg. 2)"
    rank = 20

    def __init__(self, ctx: TransferContext) -> None:
        super().__init__(ctx)
        self.matcher = ctx.new_matcher()
        self._touched = set(ctx.spec.members_by_param())

    def step(self, t: int, prev: Permutation) -> Permutation:
        ctx = self.ctx
        g1 = ctx.source_gradient(t)
        g2 = ctx.target_gradient(prev, t)
        ctx.store.save_pair(t, self._kept(g2), self._kept(g1))
        self.matcher.add(g2, g1)
        return ctx.solve(self.matcher, init=[prev, "sorted"], seed=ctx.options.seed + t)

    def resume(self, done: int) -> None:
        for t in range(1, done + 1):
            target, source = self.ctx.store.load_pair(t)
            self.matcher.add(target, source)

    def _kept(self, grads: State) -> State:
        """Only the tensors a free group touches matter to the matcher."""
        return {k: v for k, v in grads.items() if k in self._touched}
