"""The three kinds of registry storage: a folder, an http(s) server (read-only), an S3 bucket.

Each store reads and writes files by their path relative to the registry root, so the
registry logic (``registry.py``) is written once. Only folders and S3 can be published to;
an HTTP registry is a folder (or bucket) served by someone, e.g. with ``brinelite serve``.
Every index a store reads is capped and parsed by :mod:`brinelite.indexes`.
"""

from __future__ import annotations

import json
import shutil
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit

import requests
from filelock import FileLock

from . import indexes, s3, settings
from .atomic import atomic_write, write_text
from .errors import AuthError, InvalidIndexError, RegistryError, UnreachableError
from .hashes import CHUNK, file_info
from .http_policy import INDEXES

_SCHEMES = {"http": "http", "https": "http", "s3": "s3", "file": "folder"}


@dataclass(frozen=True)
class RegistryEntry:
    """A registry to ask: its name, URL or path, and the variable holding its token (if any)."""

    name: str
    url: str
    token_env: str | None = None


class Store(Protocol):
    """Files of one registry, addressed by their path relative to its root."""

    url: str
    headers: dict[str, str]

    def read_json(self, relative: str) -> dict[str, Any] | None: ...

    def location(self, relative: str) -> str: ...


class WritableStore(Store, Protocol):
    """A store that can be published to.

    ``read_tagged`` returns a file with a tag that ``put_json`` can require: on S3 the write
    then succeeds only if the file is still the one read (``None``: still absent); a folder
    needs no tag, its lock keeps other publishers out.
    """

    def lock(self) -> AbstractContextManager[object]: ...

    def read_tagged(self, relative: str) -> tuple[dict[str, Any] | None, str | None]: ...

    def put_archive(self, path: Path, relative: str, sha256: str) -> None: ...

    def put_json(self, relative: str, data: dict[str, Any], tag: str | None) -> None: ...


def _kind(url: str) -> str:
    """ "http", "s3" or "folder"; a URL of another scheme (``htp://``, ``ftp://``) is refused."""
    if "://" not in url:
        return "folder"
    scheme = urlsplit(url).scheme.lower()
    if scheme not in _SCHEMES:
        raise RegistryError(
            f"Registry {url!r} has an unknown scheme {scheme + '://'!r}; use a folder, "
            "file://, http(s):// or s3:// URL."
        )
    return _SCHEMES[scheme]


def _folder(url: str) -> Path:
    path = unquote(urlsplit(url).path) if url.startswith("file://") else url
    return Path(path).expanduser().absolute()


def check_location(url: str) -> str:
    """``url`` as a registry to add: a known scheme with a host, or an existing folder.

    Returns it normalised (a folder as an absolute path), so that a registry added from one
    directory means the same from any other. Example: ``check_location("../reg")``.
    """
    if not url.strip():
        raise RegistryError("A registry needs a folder or a URL.")
    kind = _kind(url)
    if kind == "http" and not urlsplit(url).hostname:
        raise RegistryError(f"Registry URL {url!r} names no host.")
    if kind == "s3":
        S3Store(url)
    if kind == "folder":
        folder = _folder(url)
        if not folder.is_dir():
            raise RegistryError(f"Registry folder {folder} does not exist.")
        return url if url.startswith("file://") else str(folder)
    return url


class FolderStore:
    """A registry on a local or shared disk; writes are atomic renames under a file lock."""

    headers: dict[str, str] = {}

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)

    def read_json(self, relative: str) -> dict[str, Any] | None:
        where = f"{self.url}/{relative}"
        if not self.root.is_dir():
            raise UnreachableError(f"Registry folder {self.url} does not exist (not mounted?).")
        try:
            with (self.root / relative).open("rb") as handle:
                body = indexes.read_capped(iter(lambda: handle.read(CHUNK), b""), where)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise InvalidIndexError(f"{where} is unreadable ({exc}).") from exc
        return indexes.parse(body, where)

    def read_tagged(self, relative: str) -> tuple[dict[str, Any] | None, str | None]:
        return self.read_json(relative), None

    def location(self, relative: str) -> str:
        return str(self.root / relative)

    def lock(self) -> AbstractContextManager[object]:
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(self.root / ".registry.lock")

    def put_archive(self, path: Path, relative: str, sha256: str) -> None:
        """Copy the archive in, unless an identical one is there (left by a failed publish).

        A different file not named by the index is replaced: the lock keeps other
        publishers out, and no reader can have found it.
        """
        target = self.root / relative
        if target.is_file() and file_info(target).sha256 == sha256:
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        with path.open("rb") as source, atomic_write(target, "wb") as out:
            shutil.copyfileobj(source, out, CHUNK)

    def put_json(self, relative: str, data: dict[str, Any], tag: str | None) -> None:
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        write_text(target, json.dumps(data, indent=2, sort_keys=True) + "\n")

    def dataset_names(self) -> list[str]:
        """Every ``scope/name`` with an index, found by scanning (no top-level listing needed)."""
        return sorted(
            p.parent.relative_to(self.root).as_posix() for p in self.root.glob("*/*/index.json")
        )


class HttpStore:
    """A registry served over http(s); sends its bearer token, if any, to its own host only.

    ``token_env`` names the variable holding this registry's token (``None``: no token).
    """

    def __init__(self, url: str, token_env: str | None) -> None:
        self.url = url.rstrip("/")
        self.token_env = token_env
        token = settings.token(token_env) if token_env else None
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def location(self, relative: str) -> str:
        return f"{self.url}/{quote(relative)}"

    def read_json(self, relative: str) -> dict[str, Any] | None:
        url = self.location(relative)
        body = self._get(url)
        return None if body is None else indexes.parse(body, url)

    def _get(self, url: str) -> bytes | None:
        """The body at ``url`` (None on 404), streamed within the index size cap."""
        try:
            with (
                INDEXES.session(retrying=True) as session,
                session.get(url, headers=self.headers, timeout=30, stream=True) as response,
            ):
                if response.status_code == 404:
                    return None
                if response.status_code in (401, 403):
                    raise AuthError(
                        INDEXES.refused(
                            f"Registry {self.url}", url, response.status_code, self.token_env
                        )
                    )
                if not response.ok:
                    raise UnreachableError(
                        f"Registry {self.url} answered HTTP {response.status_code} for {url}."
                    )
                length = response.headers.get("Content-Length", "")
                if length.isdigit() and int(length) > indexes.MAX_INDEX_BYTES:
                    raise indexes.oversized(url)
                return indexes.read_capped(response.iter_content(CHUNK), url)
        except requests.RequestException as exc:
            raise UnreachableError(f"Registry {self.url} is unreachable ({exc}).") from exc


class S3Store:
    """A registry in an S3 bucket: no lock, but every write is conditional (see s3.py)."""

    headers: dict[str, str] = {}

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        s3.split(self.url + "/x")  # fail early on a malformed URL

    def location(self, relative: str) -> str:
        return f"{self.url}/{relative}"

    def read_json(self, relative: str) -> dict[str, Any] | None:
        return s3.read_json(self.location(relative))

    def read_tagged(self, relative: str) -> tuple[dict[str, Any] | None, str | None]:
        return s3.read_tagged(self.location(relative))

    def lock(self) -> AbstractContextManager[object]:
        return nullcontext()

    def put_archive(self, path: Path, relative: str, sha256: str) -> None:
        s3.put_file(path, self.location(relative), sha256)

    def put_json(self, relative: str, data: dict[str, Any], tag: str | None) -> None:
        s3.put_json(self.location(relative), data, tag)


def open_store(entry: RegistryEntry) -> Store:
    """The store behind a configured registry URL or path."""
    kind = _kind(entry.url)
    if kind == "http":
        return HttpStore(entry.url, entry.token_env)
    if kind == "s3":
        return S3Store(entry.url)
    return FolderStore(_folder(entry.url))


def open_writable(dest: str) -> WritableStore:
    """The store to publish to: a folder path, ``file://`` URL or ``s3://bucket/prefix``."""
    store = open_store(RegistryEntry(dest, dest))
    if isinstance(store, HttpStore):
        raise RegistryError(
            f"Cannot publish to {dest}: HTTP registries are read-only. Publish to the folder "
            "or s3:// bucket it serves."
        )
    return store  # type: ignore[return-value]
