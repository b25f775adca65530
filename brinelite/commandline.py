"""The one-line error convention shared by the ``brinelite`` and ``segtrain`` commands.

A command-line tool built on brinelite calls :func:`run_app` with its typer app and the error
types it raises on purpose: those become one line on stderr and a non-zero exit, never a
traceback. Nothing here knows about datasets.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from typer.exceptions import TyperException

from .errors import BrineliteError


def run_app(app: typer.Typer, handled: tuple[type[Exception], ...] = (BrineliteError,)) -> None:
    """Run a typer ``app`` with brinelite's error convention, then exit.

    An exception of a ``handled`` type prints ``Error: <message>`` on one line of stderr and
    exits 1; a usage mistake (unknown option, missing argument) exits 2 the same way; no
    traceback is shown for either. Tools built on brinelite (segtrain) use it too.
    """
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        code = app(standalone_mode=False)
    except handled as exc:
        errors.print(f"Error: {exc}", markup=False)
        sys.exit(1)
    except TyperException as exc:  # usage mistakes: unknown option, missing argument...
        context = getattr(exc, "ctx", None)
        hint = f" (see: {context.command_path} --help)" if context else ""
        errors.print(f"Error: {exc.format_message()}{hint}", markup=False)
        sys.exit(exc.exit_code)
    except typer.Abort:
        errors.print("Aborted.")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
