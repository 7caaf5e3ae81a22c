"""Reproductions of the paper's figures, one command each, and the experiments beyond it.

    python -m zoo.experiments NAME [--config configs/NAME.toml] [--tiny] [--runs DIR] [--docs DIR]
    python -m zoo.experiments list

Each experiment reads ``configs/NAME.toml``, trains (or reuses) the runs it needs under
``runs/experiments/NAME/``, and writes ``docs/results/NAME.json`` (numbers), ``NAME*.png`` (plots)
and ``NAME.md`` (the summary with its command). ``--tiny`` merges the config's ``[tiny]`` table on
top: seconds instead of minutes, for the test suite; its outputs go under ``runs/experiments-tiny/``
unless ``--runs`` / ``--docs`` say otherwise, so a tiny run never overwrites the published results.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXPERIMENTS", "get", "run"]

# name -> (module, one line)
EXPERIMENTS: dict[str, tuple[str, str]] = {
    "fig5a": (
        "zoo.experiments.fig5a",
        "Fig. 5a: 2-MLP on MNIST, T=5, beside the paper and the official code",
    ),
    "fig5a_gap": ("zoo.experiments.gap", "what closes the gap to the paper's Fig. 5a: ablations"),
    "conv8": ("zoo.experiments.conv8", "Fig. 5b/6a: Conv8 trajectory transfer, then fine-tuning vs scratch"),
    "pretrained": (
        "zoo.experiments.pretrained",
        "Fig. 5d-f/6b-d in miniature: transfer between pretrained inits",
    ),
    "connectivity": ("zoo.experiments.connectivity", "Sec. 4.3: loss and accuracy along linear paths"),
    "ensembles": ("zoo.experiments.ensembles", "Table 3 in miniature: ensembles of transferred members"),
    "trajectories": ("zoo.experiments.trajectories", "linear vs actual trajectories; uniform vs cosine"),
    "vit_tiny": ("zoo.experiments.attention", "beyond the paper: ViT on MNIST through inferred head groups"),
    "gpt_tiny": (
        "zoo.experiments.attention",
        "beyond the paper: GPT on characters through inferred head groups",
    ),
}


def get(name: str) -> ModuleType:
    """The module that implements experiment ``name`` (it has ``run(ctx) -> dict``)."""
    from zoo.errors import ZooError

    if name not in EXPERIMENTS:
        raise ZooError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    return importlib.import_module(EXPERIMENTS[name][0])


def run(name: str, **kwargs) -> dict:
    """Run experiment ``name`` (see :func:`zoo.experiments.runner.run_experiment` for the arguments)."""
    from zoo.experiments.runner import run_experiment

    return run_experiment(name, **kwargs)
