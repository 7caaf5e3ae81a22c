"""``python -m zoo`` runs the ``zoo`` command line."""

import sys

from zoo.cli.zoo import main

sys.exit(main())
