"""``python -m vibtools``: see :mod:`vibtools.cli`."""

import os
import signal
import sys


def _leave_now(signum, frame):
    """Ctrl-C or SIGTERM while Python, torch and the command's modules load: nothing is written yet, so leave at
    once. (An interrupt raised inside a library's import can leave that library half-initialized, so that a later
    use of it fails: once seen as a RecursionError in numpy.linalg.) The command turns interrupts back into
    KeyboardInterrupt once its imports are done (``cli._interruptible``)."""
    os.write(2, b"python -m vibtools: error: interrupted\n")
    os._exit(143 if signum == signal.SIGTERM else 130)


signal.signal(signal.SIGTERM, _leave_now)
signal.signal(signal.SIGINT, _leave_now)
try:
    from .cli import main

    sys.exit(main())
except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM while shutting down: no run is lost there
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # on the way out: a further one would print a traceback
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("python -m vibtools: error: interrupted", file=sys.stderr)
    sys.exit(143 if type(exc).__name__ == "_Terminated" else 130)
except MemoryError:  # a memory limit too low for Python and torch to start
    print("python -m vibtools: error: ran out of memory while starting: raise the memory limit", file=sys.stderr)
    sys.exit(1)
