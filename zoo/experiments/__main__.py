"""``python -m zoo.experiments NAME`` runs one experiment (see :mod:`zoo.experiments`)."""

import sys

from zoo.experiments.cli import main

sys.exit(main())
