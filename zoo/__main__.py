"""``python -m zoo`` runs the ``zoo`` command line."""

from zoo.cli.zoo import console

console()
