"""The user's registry list: ``brinelite registry add/list/remove``.

Stored as ``registries.json`` in ``platformdirs.user_config_dir("brinelite")`` (or
``$BRINELITE_CONFIG_DIR``). A private registry's token is never stored: only the name of the
environment variable holding it, so the file can be shared and backed up safely.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import platformdirs

from .errors import RegistryError

CONFIG_FILE = "registries.json"
DEFAULT_TOKEN_ENV = "BRINELITE_TOKEN"


@dataclass(frozen=True)
class RegistryEntry:
    """A registry to ask: its name, URL or path, and the variable holding its token."""

    name: str
    url: str
    token_env: str = DEFAULT_TOKEN_ENV


def config_dir() -> Path:
    """Where brinelite keeps the user's settings."""
    configured = os.environ.get("BRINELITE_CONFIG_DIR")
    return Path(configured) if configured else Path(platformdirs.user_config_dir("brinelite"))


def load() -> list[RegistryEntry]:
    """The registries added with ``brinelite registry add``, in the order added."""
    path = config_dir() / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [RegistryEntry(**entry) for entry in data["registries"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RegistryError(
            f"The registry list {path} is unreadable ({exc}); fix or delete it."
        ) from exc


def _save(entries: list[RegistryEntry]) -> None:
    folder = config_dir()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{CONFIG_FILE}.tmp"
    data = {"registries": [asdict(entry) for entry in entries]}
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, folder / CONFIG_FILE)


def add(name: str, url: str, token_env: str | None = None) -> RegistryEntry:
    """Add (or replace) the registry called ``name``; it is asked after those already added."""
    if not name or not url:
        raise RegistryError("A registry needs a name and a URL or path.")
    entry = RegistryEntry(name, url, token_env or DEFAULT_TOKEN_ENV)
    entries = [old for old in load() if old.name != name]
    _save([*entries, entry])
    return entry


def remove(name: str) -> None:
    """Forget the registry called ``name``."""
    entries = load()
    if name not in {entry.name for entry in entries}:
        raise RegistryError(f"No registry is called {name!r}; see brinelite registry list.")
    _save([entry for entry in entries if entry.name != name])
