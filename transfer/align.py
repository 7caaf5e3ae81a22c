"""Git Re-Basin weight matching of two trained runs: permute run B's final weights onto run A's.

``align(a, b, model=..., example_inputs=...)`` infers the spec from the model (or takes ``spec=``),
matches B onto A with the LSA coordinate descent of :mod:`transfer.matching` (started from the
identity and from the within-row sorted start), and reports the objective and the L2 distance
before and after (``transfer match A B`` prints it).
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch
from torch import nn

import permgraph
from permgraph.apply import identity_permutation
from permgraph.spec import PermSpec
from transfer.engine import _check_same_architecture, open_trajectory
from transfer.matching import Matcher, permuted_distance
from transfer.results import TransferError
from transfer.trajectory import Trajectory

__all__ = ["align"]


def align(
    a: Trajectory | str | os.PathLike,
    b: Trajectory | str | os.PathLike,
    *,
    model: nn.Module,
    example_inputs: tuple | None = None,
    spec: PermSpec | None = None,
    seed: int = 0,
    restarts: int = 0,
) -> dict[str, Any]:
    """The permutation of B's final weights closest to A's, its objective, the L2 distance before
    and after, and the units moved per group."""
    ta, tb = open_trajectory(a, "run A"), open_trajectory(b, "run B")
    sa, sb = ta.final(), tb.final()  # one architecture: both must fit ``model`` (ids may be spelt differently)
    _check_same_architecture(model.state_dict(), sa, f"run {ta.path}")
    _check_same_architecture(model.state_dict(), sb, f"run {tb.path}")
    if spec is None:
        if example_inputs is None:
            raise TransferError("align needs spec= or example_inputs= to infer the model's permutation groups")
        spec = permgraph.infer(model, example_inputs)
    t0 = time.perf_counter()
    m = Matcher(spec).add(sa, sb)
    perm = m.solve(init=[None, "sorted"], seed=seed, restarts=restarts)
    seconds = time.perf_counter() - t0
    ident = identity_permutation(spec)
    return {
        "perm": perm,
        "objective": m.stats.objective,
        "distance_before": permuted_distance(spec, ident, sa, sb),
        "distance_after": permuted_distance(spec, perm, sa, sb),
        "moved_units": {g: int((p != torch.arange(len(p))).sum()) for g, p in perm.items()},
        "lsa_calls": m.stats.lsa_calls,
        "seconds": seconds,
        "spec": spec,
    }
