"""The user's registry list: ``brinelite registry add/list/remove``.

Stored as ``registries.json`` in ``platformdirs.user_config_dir("brinelite")`` (or
``$BRINELITE_CONFIG_DIR``). A private registry's token is never stored: only the name of the
environment variable holding it, so the file can be shared and backed up safely.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from filelock import FileLock

from . import jsonio, settings
from .atomic import write_text
from .backends import RegistryEntry, check_location
from .errors import RegistryError

CONFIG_FILE = "registries.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

__all__ = ["CONFIG_FILE", "RegistryEntry", "add", "config_dir", "load", "remove"]


def config_dir() -> Path:
    """Where brinelite keeps the user's settings."""
    return settings.config_dir()


def load() -> list[RegistryEntry]:
    """The registries added with ``brinelite registry add``, in the order added.

    An entry naming ``BRINELITE_TOKEN`` (what older versions stored by default) gets the
    global token only under the rules of ``registry.registries``.
    """
    path = config_dir() / CONFIG_FILE
    try:
        data = jsonio.loads(path.read_text(encoding="utf-8"))
        entries = [RegistryEntry(**entry) for entry in data["registries"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RegistryError(
            f"The registry list {path} is unreadable ({exc}); fix or delete it."
        ) from exc
    return [_own_token(entry) for entry in entries]


def _own_token(entry: RegistryEntry) -> RegistryEntry:
    if entry.token_env == settings.GLOBAL_TOKEN:
        return RegistryEntry(entry.name, entry.url)
    return entry


@contextmanager
def _changing() -> Iterator[list[RegistryEntry]]:
    """The registry list to change in place, saved whole when the block ends.

    The lock makes two ``registry add`` at once both count (neither reads the list before
    the other has saved it); :func:`brinelite.atomic.write_text` makes a reader always see a
    whole file.
    """
    folder = config_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(folder / f".{CONFIG_FILE}.lock"):
        entries = load()
        yield entries
        data = {"registries": [asdict(entry) for entry in entries]}
        write_text(folder / CONFIG_FILE, json.dumps(data, indent=2) + "\n")


def add(name: str, url: str, token_env: str | None = None) -> RegistryEntry:
    """Add (or replace) the registry called ``name``; it is asked after those already added.

    Args:
        name: a short name (letters, digits, ``.``, ``_``, ``-``).
        url: an existing folder, ``file://``, ``http(s)://`` or ``s3://bucket/prefix``; a
            folder is stored as an absolute path. A bad scheme or a missing folder is refused.
        token_env: the variable holding this registry's bearer token (sent to it only).

    Example: ``add("team", "https://data.lab.org/reg", token_env="TEAM_TOKEN")``.
    """
    if not _NAME.fullmatch(name or ""):
        raise RegistryError(
            f"Registry name {name!r} is not valid: use letters, digits, '.', '_' or '-'."
        )
    if token_env is not None and not _VARIABLE.fullmatch(token_env):
        raise RegistryError(f"--token-env {token_env!r} is not an environment variable name.")
    entry = _own_token(RegistryEntry(name, check_location(url or ""), token_env))
    with _changing() as entries:
        entries[:] = [*(old for old in entries if old.name != name), entry]
    return entry


def remove(name: str) -> None:
    """Forget the registry called ``name``."""
    with _changing() as entries:
        if name not in {entry.name for entry in entries}:
            raise RegistryError(f"No registry is called {name!r}; see brinelite registry list.")
        entries[:] = [entry for entry in entries if entry.name != name]
