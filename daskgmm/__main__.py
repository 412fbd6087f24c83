"""``python -m daskgmm``: the ``daskgmm`` command (see :mod:`daskgmm.cli`)."""

import sys

from .cli import main

sys.exit(main())
