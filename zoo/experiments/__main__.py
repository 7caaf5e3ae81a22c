"""``python -m zoo.experiments NAME`` runs one experiment (see :mod:`zoo.experiments`)."""

from zoo.cli.experiments import console

console()
