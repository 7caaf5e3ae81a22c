"""``python -m transfer`` (and ``torchrun ... -m transfer``) runs the ``transfer`` command line.

An entry point, not library code: like every command line it lives in the top layer (``zoo.cli``).
"""

import sys

from zoo.cli.transfer import main

sys.exit(main())
