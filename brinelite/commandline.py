"""The command-line conventions shared by the ``brinelite`` and ``segtrain`` commands.

- :func:`new_app` builds a typer app whose help screens are literal text: ``[@version]`` in a
  help string is shown as written, never read as rich markup.
- :class:`Output` prints lines literally (no markup, no highlighting, no emoji codes, no
  wrapping, control characters made visible) and JSON for scripts: paths, names and user
  input are shown as they are, and piped output is never cut into 80-column lines.
- :func:`run_app` runs an app with the one-line error convention: the error types a tool raises
  on purpose become one line on stderr and a non-zero exit, never a traceback. So does a
  missing extra (:func:`missing_extra`): the line names the ``pip install`` to run, and Ctrl-C
  (``Aborted.``, exit 130).
- :func:`storable_path` refuses, as a usage error, a path argument no file system can hold.

Nothing here knows about datasets.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer
from typer.exceptions import TyperException

from .errors import BrineliteError

# C0 control characters and DEL, except tab and newline: a name or a registry's description
# must not be able to move the cursor, retitle the terminal or hide text (ESC sequences).
_VISIBLE = {c: f"\\x{c:02x}" for c in (*range(0x09), *range(0x0B, 0x20), 0x7F)}

# The optional modules and the extra of pyproject.toml that installs each.
EXTRAS = {
    "keras": "keras",
    "tensorflow": "train",
    "matplotlib": "train",
    "tensorboard": "train",
    "jax": "train",
    "boto3": "s3",
    "botocore": "s3",
}


def new_app(help: str, **options: Any) -> typer.Typer:
    """A typer app (or sub-app) with literal help screens and no shell-completion options.

    typer reads help text as rich markup by default, so ``scope/name[@version]`` was shown
    as ``scope/name``; with ``rich_markup_mode=None`` help is printed as written. ``options``
    go to :class:`typer.Typer` (e.g. ``no_args_is_help=True``).

    Example::

        app = new_app("Install datasets.", no_args_is_help=True)
    """
    return typer.Typer(
        help=help,
        rich_markup_mode=None,
        add_completion=False,
        pretty_exceptions_enable=False,
        **options,
    )


class Output:
    """Prints lines to stdout (or stderr) exactly as given: the one way a command talks.

    Nothing is read as markup (``grid[best].png`` stays ``grid[best].png``), nothing is
    wrapped (``$(brinelite cache dir)`` is one line however long), and control characters
    are shown as ``\\xNN`` so text from a registry cannot drive the terminal.

    Example::

        out = Output()
        out.print(f"Wrote {path}")
        out.json({"name": "demo/membrane", "rows": 30})
    """

    def __init__(self, *, err: bool = False) -> None:
        self._err = err

    def print(self, text: str) -> None:
        """Print one message (a line, or several separated by newlines) literally."""
        typer.echo(str(text).translate(_VISIBLE), err=self._err)

    def json(self, value: Any) -> None:
        """Print ``value`` as indented JSON (keys as given) for scripts and ``jq``."""
        typer.echo(json.dumps(value, indent=2, ensure_ascii=False), err=self._err)


NAME_MAX = 255  # bytes in one part of a path (Linux, macOS and Windows file systems)
PATH_MAX = 4095  # bytes in a whole path (Linux)


def storable_path(value: str | Path | None) -> str | Path | None:
    """A typer callback: ``value`` unchanged, or a usage error if no file system can hold it.

    A path part over 255 bytes, or a path over 4095, makes every file call fail with
    ``File name too long``; refusing it where it is typed turns that into one line.
    Arguments that may be a name or a path (``info NAME``) use it too: a name is shorter.

    Example: ``typer.Argument(callback=storable_path)``.
    """
    if value is None:
        return value
    raw = os.fsencode(value)
    longest = max((len(part) for part in raw.split(b"/")), default=0)
    if longest > NAME_MAX or len(raw) > PATH_MAX:
        shown = os.fsdecode(raw[:60])
        raise typer.BadParameter(
            f"{shown}... is too long for a path ({len(raw)} bytes, a part of {longest}); "
            f"a part holds at most {NAME_MAX} bytes and a path {PATH_MAX}."
        )
    return value


def missing_extra(exc: ModuleNotFoundError, extra: str | None = None) -> str | None:
    """The one-line message for an optional module that is not installed, or None.

    The wording every missing extra follows: what is missing, then the ``pip install`` that
    adds it. Only a top-level module of :data:`EXTRAS` counts (``tensorflow``, not
    ``tensorflow.python.x``, which is a broken install and must stay a real error).

    Args:
        exc: the import error.
        extra: the extra the whole tool needs (segtrain: ``"train"``); default: the module's.

    Example::

        missing_extra(ModuleNotFoundError(name="boto3"))
        # "boto3 is not installed: pip install 'brinelite[s3]'"
    """
    if exc.name not in EXTRAS:
        return None
    return f"{exc.name} is not installed: pip install 'brinelite[{extra or EXTRAS[exc.name]}]'"


def run_app(
    app: typer.Typer,
    handled: tuple[type[Exception], ...] = (BrineliteError,),
    extra: str | None = None,
) -> None:
    """Run a typer ``app`` with brinelite's error convention, then exit.

    An exception of a ``handled`` type prints ``Error: <message>`` on one line of stderr and
    exits 1; so does an optional module that is not installed (:func:`missing_extra`, naming
    ``extra`` if given, the extra the whole tool needs); a usage mistake (unknown option,
    missing argument) exits 2 the same way; no traceback is shown for any. Tools built on
    brinelite (segtrain) use it too.
    """
    errors = Output(err=True)
    try:
        code = app(standalone_mode=False)
    except handled as exc:
        errors.print(f"Error: {exc}")
        sys.exit(1)
    except ModuleNotFoundError as exc:
        message = missing_extra(exc, extra)
        if message is None:
            raise
        errors.print(f"Error: {message}")
        sys.exit(1)
    except TyperException as exc:  # usage mistakes: unknown option, missing argument...
        context = getattr(exc, "ctx", None)
        hint = f" (see: {context.command_path} --help)" if context else ""
        errors.print(f"Error: {exc.format_message()}{hint}")
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        errors.print("Aborted.")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
