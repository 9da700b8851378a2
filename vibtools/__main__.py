"""``python -m vibtools``: see :mod:`vibtools.cli` (the entry and its interrupts: :mod:`vibtools.interrupts`)."""

from .interrupts import run_console

run_console("python -m vibtools")
