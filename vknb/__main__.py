"""``python -m vknb devices`` and friends (see :mod:`vknb.cli`)."""

import sys

from .cli import main

sys.exit(main())
