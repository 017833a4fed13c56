"""``python -m vknb devices`` and friends (see :mod:`vknb.cli`)."""

import sys

from .ui.cli import main

sys.exit(main())
