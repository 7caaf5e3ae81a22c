"""FGMT (Alg. 2): one new gradient pair per step, taken under the latest permutation; older pairs
stay cached. ``pi_t`` solves the t pairs so far.

The matcher sums each pair into its cost matrices as it arrives, so only the pairs' tensors that
couple several groups are kept, and those in files (:class:`~transfer.pairs.DiskPairs`), streamed
back one pair at a time: FGMT's memory does not grow with T. Each new pair is also written to the
run's store, which is how an interrupted run rebuilds the matcher (:meth:`FGMT.resume`).

Two options trade FGMT's cache against GMT's recomputation (``TransferOptions``):

* ``fgmt_decay`` = d < 1 down-weights old pairs: at step t pair j counts ``d ** (t - j)``. Since the
  argmax does not change when every weight is scaled by ``d ** -t``, pair j is simply added once with
  weight ``d ** -j``: nothing is rescaled later.
* ``fgmt_refresh`` = R refreshes the last R pairs: their target gradients are recomputed under the
  latest permutation, the stale ones subtracted from the matcher (a negative weight) and the fresh
  ones added. Only those R pairs are held in memory.
"""

from __future__ import annotations

from collections import deque

from permgraph.apply import Permutation, State
from transfer import distributed as dist
from transfer.context import TransferContext
from transfer.matching import SORTED
from transfer.methods.base import TransferMethod, register
from transfer.pairs import DiskPairs

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
        self.matcher = ctx.new_matcher(pairs=DiskPairs() if dist.is_main() else None)
        self._touched = set(ctx.spec.members_by_param())
        self._recent: deque[tuple[int, State, State]] = deque(maxlen=max(ctx.options.fgmt_refresh, 1))

    def _weight(self, j: int) -> float:
        return self.ctx.options.fgmt_decay ** (-j)

    def step(self, t: int, prev: Permutation) -> Permutation:
        ctx = self.ctx
        if ctx.options.fgmt_refresh:
            self._refresh(prev)
        g1 = self._kept(ctx.source_gradient(t))
        g2 = self._kept(ctx.target_gradient(prev, t))
        ctx.store.save_pair(t, g2, g1)
        self.matcher.add(g2, g1, weight=self._weight(t))
        if ctx.options.fgmt_refresh:
            self._recent.append((t, g2, g1))
        return ctx.solve(self.matcher, init=[prev, SORTED], seed=ctx.options.seed + t)

    def _refresh(self, prev: Permutation) -> None:
        """The last R pairs' target gradients again, under ``prev``: subtract the stale, add the fresh."""
        ctx, fresh = self.ctx, []
        for j, g2_old, g1 in self._recent:
            g2 = self._kept(ctx.target_gradient(prev, j))
            self.matcher.add(g2_old, g1, weight=-self._weight(j))
            self.matcher.add(g2, g1, weight=self._weight(j))
            ctx.store.save_pair(j, g2, g1)
            fresh.append((j, g2, g1))
        self._recent.clear()
        self._recent.extend(fresh)

    def resume(self, done: int) -> None:
        for t in range(1, done + 1):
            target, source = self.ctx.store.load_pair(t)
            self.matcher.add(target, source, weight=self._weight(t))
            if self.ctx.options.fgmt_refresh and t > done - self.ctx.options.fgmt_refresh:
                self._recent.append((t, target, source))

    def _kept(self, grads: State) -> State:
        """Only the tensors a free group touches matter to the matcher."""
        return {k: v for k, v in grads.items() if k in self._touched}
