"""``python -m zoo.experiments NAME`` runs one experiment (see :mod:`zoo.experiments`)."""

import sys

from zoo.cli.experiments import main

sys.exit(main())
