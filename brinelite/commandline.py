"""The command-line conventions shared by the ``brinelite`` and ``segtrain`` commands.

- :func:`new_app` builds a typer app whose help screens are literal text: ``[@version]`` in a
  help string is shown as written, never read as rich markup; ``-h`` is ``--help``; values
  are shown the usual Unix way (``DATASET``, ``--out PATH``, ``--fold [val|all]``), and
  docstrings' double backticks are dropped (:class:`PlainCommand`); ``--version`` if asked.
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
from typer.core import TyperArgument, TyperCommand, TyperOption
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


HELP_OPTIONS = ["-h", "--help"]

# typer's names of value types, as help screens usually spell them
METAVARS = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "path": "PATH"}


def _plain(text: str | None) -> str | None:
    """Help text without reST's double backticks (docstrings are shown as written)."""
    return None if text is None else text.replace("``", "")


def _metavar(param: TyperArgument | TyperOption, ctx: typer.Context) -> str:
    """What a parameter's value is called on a help screen: ``DATASET``, ``PATH``, ``[a|b]``.

    An argument is its name in capitals; an option's value its type as click names it
    (``TEXT``, ``INTEGER``, ``FLOAT``, ``PATH``) or its choices; typer's own ``<str>`` and
    ``{name}`` read as placeholders to fill in literally.
    """
    if param.metavar is not None:
        return param.metavar
    if isinstance(param, TyperArgument):
        return (param.name or "value").upper()
    kind = param.display_type(ctx).strip("<>")
    if "|" in kind:
        return f"[{kind}]"
    return METAVARS.get(kind.split(" ")[0], kind.upper())  # "int range": INTEGER


class PlainCommand(TyperCommand):
    """A typer command whose help screen reads as a usual Unix one.

    Usage: ``segtrain train [OPTIONS] DATASET``; arguments listed by name; options as
    ``--out PATH``; help texts (docstrings) without double backticks.
    """

    def __init__(self, *args: Any, help: str | None = None, **options: Any) -> None:  # noqa: A002
        super().__init__(*args, help=_plain(help), **options)
        for param in self.params:
            param.help = _plain(getattr(param, "help", None))

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = _metavar(param, ctx)
                name = name if param.required else f"[{name}]"
                pieces.append(name + ("..." if param.nargs != 1 else ""))
        return pieces

    def format_options(self, ctx: typer.Context, formatter: Any) -> None:
        arguments, options = [], []
        for param in self.get_params(ctx):
            if isinstance(param, TyperOption) and not (param.is_flag or param.count):
                param.metavar = _metavar(param, ctx)
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if isinstance(param, TyperArgument):
                arguments.append((_metavar(param, ctx), record[1]))
            else:
                options.append(record)
        for title, records in (("Arguments", arguments), ("Options", options)):
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)


class PlainApp(typer.Typer):
    """A typer app whose commands are :class:`PlainCommand` unless told otherwise."""

    def command(self, *args: Any, cls: type[TyperCommand] | None = None, **options: Any) -> Any:
        return super().command(*args, cls=cls or PlainCommand, **options)


def new_app(help: str, version: str | None = None, **options: Any) -> typer.Typer:
    """A typer app (or sub-app) with literal help screens and no shell-completion options.

    typer reads help text as rich markup by default, so ``scope/name[@version]`` was shown
    as ``scope/name``; with ``rich_markup_mode=None`` help is printed as written. ``-h`` is
    ``--help`` (on every command); the commands' help screens are :class:`PlainCommand`'s.
    ``version`` (e.g. "segtrain 0.1.0") adds a ``--version`` option printing it. ``options``
    go to :class:`typer.Typer` (e.g. ``no_args_is_help=True``).

    Example::

        app = new_app("Install datasets.", no_args_is_help=True)
    """
    app = PlainApp(
        help=help,
        rich_markup_mode=None,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": HELP_OPTIONS},
        **options,
    )
    if version is not None:

        def show_version(value: bool) -> None:
            if value:
                typer.echo(version)
                raise typer.Exit()

        @app.callback()
        def main(
            show: bool = typer.Option(
                False, "--version", callback=show_version, is_eager=True, help="Show the version."
            ),
        ) -> None:
            pass

    return app


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
