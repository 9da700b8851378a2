"""``python -m vibtools``: see :mod:`vibtools.cli`."""

import sys

from .cli import main

sys.exit(main())
