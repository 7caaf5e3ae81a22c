"""``python -m transfer`` runs the ``transfer`` command line."""

import sys

from transfer.cli import main

sys.exit(main())
