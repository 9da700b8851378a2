"""``python -m vibtools``: see :mod:`vibtools.cli`."""

import sys

try:
    from .cli import main

    sys.exit(main())
except KeyboardInterrupt:  # Ctrl-C while starting up or shutting down: nothing of a run is lost there
    print("python -m vibtools: error: interrupted", file=sys.stderr)
    sys.exit(130)
except MemoryError:  # a memory limit too low for Python and torch to start
    print("python -m vibtools: error: ran out of memory while starting: raise the memory limit", file=sys.stderr)
    sys.exit(1)
