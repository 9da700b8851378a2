"""``python -m vibtools``: see :mod:`vibtools.cli`."""

import signal
import sys


class _Terminated(KeyboardInterrupt):
    """SIGTERM before the command installs its own handler (while Python and torch start)."""


def _on_sigterm(signum, frame):
    raise _Terminated()


signal.signal(signal.SIGTERM, _on_sigterm)
try:
    from .cli import main

    sys.exit(main())
except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM while starting up or shutting down: no run is lost there
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # on the way out: a further one would print a traceback
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("python -m vibtools: error: interrupted", file=sys.stderr)
    sys.exit(143 if isinstance(exc, _Terminated) else 130)
except MemoryError:  # a memory limit too low for Python and torch to start
    print("python -m vibtools: error: ran out of memory while starting: raise the memory limit", file=sys.stderr)
    sys.exit(1)
