"""Ctrl-C and SIGTERM, in one place: while the command starts, while it works, and while it saves.

- :func:`run_console` is the command's entry, for ``python -m vibtools`` and the ``vibtools`` console script alike:
  until the command's imports are done an interrupt leaves at once with one line (nothing is written yet);
- :func:`interruptible` then turns Ctrl-C into KeyboardInterrupt and SIGTERM into :class:`Terminated`, so that
  partial work is kept or removed on the way out;
- :func:`held` defers both around a save, so that a save and the count of saved epochs always agree.

Standard library only: it is imported before anything else the command loads.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interrupt so that temporary files are removed on the way out."""


def on_sigterm(signum, frame):
    """Raise :class:`Terminated` in the main thread."""
    raise Terminated()


def interruptible() -> None:
    """From here on Ctrl-C raises KeyboardInterrupt and SIGTERM :class:`Terminated` (main thread only; until the
    command's imports are done, :func:`run_console` leaves at once instead)."""
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread: leave the signals alone
        pass


@contextlib.contextmanager
def held():
    """Hold Ctrl-C and SIGTERM until the block ends, then deliver the first one (main thread only).

    A save and the count of saved epochs then always agree: an interrupt never discards a finished epoch
    half-written, nor lands between the file's rename and the bookkeeping of what is saved. (Swapping the Python
    handlers, not pthread_sigmask: the kernel may deliver a blocked-here signal to a torch or tqdm thread.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        if pending:
            signal.raise_signal(pending[0])  # the restored handler raises KeyboardInterrupt (or Terminated)


def run_console(prog: str) -> None:
    """Run the command line as ``prog`` and exit with its status.

    Ctrl-C or SIGTERM while Python, torch and the command's modules load leaves at once with one line: nothing is
    written yet, and an interrupt raised inside a library's import can leave that library half-initialized (once
    seen as a RecursionError in numpy.linalg). The command turns interrupts back into exceptions once its imports
    are done (:func:`interruptible`).
    """
    def leave_now(signum, frame):
        os.write(2, f"{prog}: error: interrupted\n".encode())
        os._exit(143 if signum == signal.SIGTERM else 130)

    signal.signal(signal.SIGTERM, leave_now)
    signal.signal(signal.SIGINT, leave_now)
    try:
        from . import cli

        cli.PROG = prog
        sys.exit(cli.main())
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM while shutting down: no run is lost there
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # on the way out: a further one would print a traceback
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(f"{prog}: error: interrupted", file=sys.stderr)
        sys.exit(143 if isinstance(exc, Terminated) else 130)
    except MemoryError:  # a memory limit too low for Python and torch to start
        print(f"{prog}: error: ran out of memory while starting: raise the memory limit", file=sys.stderr)
        sys.exit(1)


def console_script() -> None:
    """The ``vibtools`` console script: the same entry as ``python -m vibtools``."""
    run_console("vibtools")
