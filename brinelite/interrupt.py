"""Ctrl-C while the ``brinelite`` command is still starting: ``Aborted.``, not a traceback.

Importing brinelite takes a few tenths of a second (numpy, OpenCV, requests), and a Ctrl-C
then printed a ``KeyboardInterrupt`` traceback from deep inside an import. When this process
is the ``brinelite`` command (``brinelite ...`` or ``python -m brinelite ...``), importing
this module (the first thing ``brinelite/__init__.py`` does) makes SIGINT print ``Aborted.``
and exit 130 until :func:`started` hands SIGINT back to Python, once the command runs (the CLI
then turns it into ``Aborted.`` itself, after its cleanups). ``import brinelite`` in any other
program is left alone.
"""

from __future__ import annotations

import os
import signal
import sys
import threading


def _is_command() -> bool:
    """Whether this process is the ``brinelite`` command (console script or ``-m``)."""
    argv = list(getattr(sys, "orig_argv", ()))
    by_module = "-m" in argv[:-1] and argv[argv.index("-m") + 1] == "brinelite"
    return by_module or (bool(sys.argv) and os.path.basename(sys.argv[0]) == "brinelite")


def _abort(signum: int, frame: object) -> None:
    sys.stderr.write("Aborted.\n")
    raise SystemExit(130)  # unwinds the imports quietly: SystemExit prints no traceback


def guard_startup() -> None:
    """In the ``brinelite`` command, make Ctrl-C during start-up a quiet ``Aborted.`` (130).

    Called when this module is imported, before the heavy imports of the package.
    """
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        and _is_command()
    ):
        signal.signal(signal.SIGINT, _abort)


def started() -> None:
    """The command runs: SIGINT raises ``KeyboardInterrupt`` again (which the CLI handles)."""
    if signal.getsignal(signal.SIGINT) is _abort:
        signal.signal(signal.SIGINT, signal.default_int_handler)


guard_startup()
