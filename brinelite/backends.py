"""The three kinds of registry storage: a folder, an http(s) server (read-only), an S3 bucket.

Each store reads and writes files by their path relative to the registry root, so the
registry logic (``registry.py``) is written once. Only folders and S3 can be published to;
an HTTP registry is a folder (or bucket) served by someone, e.g. with ``brinelite serve``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit

import requests
from filelock import FileLock
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from . import s3
from .config import RegistryEntry
from .errors import AuthError, RegistryError


class Store(Protocol):
    """Files of one registry, addressed by their path relative to its root."""

    url: str
    headers: dict[str, str]

    def read_json(self, relative: str) -> dict[str, Any] | None: ...

    def location(self, relative: str) -> str: ...


class WritableStore(Store, Protocol):
    """A store that can be published to."""

    def lock(self) -> AbstractContextManager[object]: ...

    def put_file(self, path: Path, relative: str) -> None: ...

    def put_json(self, relative: str, data: dict[str, Any]) -> None: ...


class FolderStore:
    """A registry on a local or shared disk; writes are atomic renames under a file lock."""

    headers: dict[str, str] = {}

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)

    def read_json(self, relative: str) -> dict[str, Any] | None:
        path = self.root / relative
        try:
            return dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            raise RegistryError(
                f"Registry {self.url} has an unreadable {relative}: {exc}."
            ) from exc

    def location(self, relative: str) -> str:
        return str(self.root / relative)

    def lock(self) -> AbstractContextManager[object]:
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(self.root / ".registry.lock")

    def put_file(self, path: Path, relative: str) -> None:
        with _replacing(self.root / relative) as tmp:
            shutil.copyfile(path, tmp)

    def put_json(self, relative: str, data: dict[str, Any]) -> None:
        with _replacing(self.root / relative) as tmp:
            tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    def dataset_names(self) -> list[str]:
        """Every ``scope/name`` with an index, found by scanning (no top-level listing needed)."""
        return sorted(
            p.parent.relative_to(self.root).as_posix() for p in self.root.glob("*/*/index.json")
        )


@contextmanager
def _replacing(target: Path) -> Iterator[Path]:
    """A temporary file beside ``target`` that replaces it in one rename if all goes well."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


class HttpStore:
    """A registry served over http(s); sends its bearer token, if set, to its own host only."""

    def __init__(self, url: str, token_env: str) -> None:
        self.url = url.rstrip("/")
        self.token_env = token_env
        token = os.environ.get(token_env)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def location(self, relative: str) -> str:
        return f"{self.url}/{quote(relative)}"

    def read_json(self, relative: str) -> dict[str, Any] | None:
        url = self.location(relative)
        try:
            with _session() as session:
                response = session.get(url, headers=self.headers, timeout=30)
        except requests.RequestException as exc:
            raise RegistryError(f"Registry {self.url} is unreachable ({exc}).") from exc
        if response.status_code == 404:
            return None
        if response.status_code in (401, 403):
            host = urlsplit(url).hostname
            raise AuthError(
                f"Registry {self.url} refused access (HTTP {response.status_code}); set "
                f"{self.token_env} to a valid token or add a .netrc entry for {host}."
            )
        if not response.ok:
            raise RegistryError(
                f"Registry {self.url} answered HTTP {response.status_code} for {url}."
            )
        try:
            return dict(response.json())
        except (ValueError, TypeError) as exc:
            raise RegistryError(
                f"Registry {self.url} has an unreadable {relative}: {exc}."
            ) from exc


def _session() -> requests.Session:
    """Retries connection errors and 5xx with exponential backoff; proxies/.netrc from the env."""
    session = requests.Session()
    session.headers["User-Agent"] = "brinelite"
    retry = Retry(total=3, backoff_factor=0.25, status_forcelist=(500, 502, 503, 504))
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


class S3Store:
    """A registry in an S3 bucket. S3 has no lock: index writes are atomic, last one wins."""

    headers: dict[str, str] = {}

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        s3.split(self.url + "/x")  # fail early on a malformed URL

    def location(self, relative: str) -> str:
        return f"{self.url}/{relative}"

    def read_json(self, relative: str) -> dict[str, Any] | None:
        return s3.read_json(self.location(relative))

    def lock(self) -> AbstractContextManager[object]:
        return nullcontext()

    def put_file(self, path: Path, relative: str) -> None:
        s3.put_file(path, self.location(relative))

    def put_json(self, relative: str, data: dict[str, Any]) -> None:
        s3.put_json(self.location(relative), data)


def open_store(entry: RegistryEntry) -> Store:
    """The store behind a configured registry URL or path."""
    url = entry.url
    if url.startswith(("http://", "https://")):
        return HttpStore(url, entry.token_env)
    if url.startswith("s3://"):
        return S3Store(url)
    if url.startswith("file://"):
        return FolderStore(Path(unquote(urlsplit(url).path)))
    return FolderStore(Path(url))


def open_writable(dest: str) -> WritableStore:
    """The store to publish to: a folder path, ``file://`` URL or ``s3://bucket/prefix``."""
    store = open_store(RegistryEntry(dest, dest))
    if isinstance(store, HttpStore):
        raise RegistryError(
            f"Cannot publish to {dest}: HTTP registries are read-only. Publish to the folder "
            "or s3:// bucket it serves."
        )
    return store  # type: ignore[return-value]
