"""Oracle: one permutation for every step, from weight matching of the real target run's change
(theta_2^T - theta_2^0) against the source's (theta_1^T - theta_1^0). It needs the target run, so it
is a reference, not a method a user without that run could apply."""

from __future__ import annotations

from permgraph.apply import Permutation
from transfer.matching import SORTED
from transfer.methods.base import TransferMethod, register

__all__ = ["Oracle"]


@register
class Oracle(TransferMethod):
    name = "oracle"
    label = "Oracle"
    style = "d:"
    color = "C3"
    needs_target = True
    summary = "weight matching of the real target run's change (needs --target)"
    rank = 40

    def start(self) -> Permutation:
        ctx = self.ctx
        assert ctx.target is not None, "the engine checks needs_target"
        t_init, t_final = ctx.target.init(), ctx.target.final()
        d2 = {k: t_final[k] - t_init[k] for k in ctx.param_keys}
        matcher = ctx.new_matcher().add(d2, ctx.source.delta(ctx.options.T))
        return ctx.solve(matcher, init=[None, SORTED], seed=ctx.options.seed)
