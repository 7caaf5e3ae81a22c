"""Merge models on inferred specs: align, interpolate, REPAIR, merge N, evaluate the path.

No spec is written by hand: ``permgraph.infer`` gives the groups, and each group names the
activations it permutes (``Group.activations``), which activation matching and REPAIR read.

>>> import torch, permgraph
>>> from transfer.merge import align_models, evaluate_path, Repair
>>> torch.manual_seed(0) and None
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
>>> a = {k: v.clone() for k, v in model.state_dict().items()}
>>> spec = permgraph.infer(model, (torch.randn(2, 4),))
>>> b = permgraph.apply(spec, permgraph.random_permutation(spec), a)   # a permuted copy of a
>>> batches = [(torch.randn(32, 4), torch.randint(0, 3, (32,))) for _ in range(2)]
>>> al = align_models(model, spec, a, b, method="activation", batches=batches)
>>> all(torch.equal(al.state[k], a[k]) for k in a)
True
>>> curve = evaluate_path(model, a, al.state, batches, lambdas=5)
>>> abs(curve.loss_barrier) < 1e-5
True

Modules: :mod:`~transfer.merge.alignment` (weight and activation matching),
:mod:`~transfer.merge.path` (interpolation, the path and its barriers), :mod:`~transfer.merge.repair`
(REPAIR and BN reset), :mod:`~transfer.merge.many` (N models, MergeMany).
"""

from transfer.merge.alignment import (
    ALIGN_METHODS,
    Alignment,
    activation_correlations,
    align_models,
    match_activations,
    match_weights,
)
from transfer.merge.many import MergeOptions, MergeResult, merge
from transfer.merge.path import PathCurve, evaluate_path, interpolate, lambda_grid, lerp
from transfer.merge.repair import Repair, has_batchnorm, reset_batchnorm

__all__ = [
    "ALIGN_METHODS", "Alignment", "activation_correlations", "align_models", "match_activations", "match_weights",
    "MergeOptions", "MergeResult", "merge", "PathCurve", "evaluate_path", "interpolate", "lambda_grid", "lerp",
    "Repair", "has_batchnorm", "reset_batchnorm",
]  # fmt: skip
