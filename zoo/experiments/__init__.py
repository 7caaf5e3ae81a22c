"""Reproductions of the paper's figures, one command each, and the experiments beyond it.

    python -m zoo.experiments NAME [--config configs/NAME.toml] [--tiny] [--set KEY=VALUE] [--runs DIR] [--docs DIR]
    python -m zoo.experiments list

Each experiment is a class registered in its own module (:mod:`zoo.experiments.kit.base`). It reads
``configs/NAME.toml`` (every key checked before anything trains), trains (or reuses) the runs it
needs in the shared pool ``runs/experiments/_runs/``, and the runner writes ``docs/results/NAME.json``
(numbers), ``NAME*.png`` (plots) and ``NAME.md`` (standard header, the experiment's sections, then
the page's own ``## Reading``, kept verbatim). ``--tiny`` merges the config's ``[tiny]`` table on
top: seconds instead of minutes, for the test suite; its outputs go under ``runs/experiments-tiny/``
unless ``--runs`` / ``--docs`` say otherwise, so a tiny run never overwrites the published results.

The modules of this package are the experiments, each registering one or more; what they share is
in :mod:`zoo.experiments.kit`, which never imports an experiment: ``base`` (protocol, registry,
checked config loading), ``runner`` (run, merge, publish), ``config`` (files and key checks),
``context``, ``setting`` (every experiment's opening: data, model id, the runs of a seed pair),
``views`` (data views, model ids), ``pool`` (the shared runs and transfers), ``scenario`` (transfer
then fine-tune), ``pretrained_pairs`` (the pretrained scenario over seed pairs), ``merge_common`` and
``merge_pairs`` (the merging experiments' pipeline), ``report`` (tables, files), ``reference``
(published numbers).
"""

from __future__ import annotations

__all__ = ["names", "get", "run"]


def names() -> list[str]:
    """Every experiment's name, in the order ``list`` shows them."""
    from zoo.experiments.kit.base import experiments

    return list(experiments())


def get(name: str):
    """The experiment registered as ``name`` (an :class:`zoo.experiments.kit.base.Experiment`)."""
    from zoo.experiments.kit.base import get as get_experiment

    return get_experiment(name)


def run(name: str, **kwargs) -> dict:
    """Run experiment ``name`` (see :func:`zoo.experiments.kit.runner.run_experiment` for the arguments)."""
    from zoo.experiments.kit.runner import run_experiment

    return run_experiment(name, **kwargs)
