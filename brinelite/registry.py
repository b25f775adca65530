"""Registries: static trees of files holding published datasets, and finding names in them.

The layout (``docs/registry.md``, format version 1)::

    <root>/index.json                              the datasets it holds (optional)
    <root>/<scope>/<name>/index.json               the dataset's versions
    <root>/<scope>/<name>/<name>-<version>.tar.gz  one archive per version

A registry is a folder, an http(s) URL or an ``s3://bucket/prefix`` (see ``backends.py``).
They are asked in order: ``$BRINELITE_REGISTRY`` (comma separated), those added with
``brinelite registry add``, then the demo registry shipped inside the package (offline).
A registry that cannot be reached or whose index breaks its schema (``indexes.py``) is
skipped and reported in the result (:class:`Skipped`); the next one is asked. Writing to a
registry is :mod:`brinelite.publishing`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import config, indexes, settings
from .backends import (
    FolderStore,
    RegistryEntry,
    Store,
    open_store,
)
from .errors import (
    BrineliteError,
    DatasetNotFoundError,
    InvalidIndexError,
    OfflineError,
    RegistryError,
    UnreachableError,
)
from .indexes import INDEX
from .names import DatasetRef, Version, is_name, newest, parse_name, parse_version, suggest
from .paths import UnsafePathError, safe_relpath

INDEX_FORMAT_VERSION = indexes.FORMAT_VERSION
DEMO_REGISTRY = Path(__file__).parent / "demo" / "registry"


@dataclass(frozen=True)
class Skipped:
    """A registry passed over: unreachable, or holding an index that breaks its schema."""

    registry: str
    reason: str
    unreachable: bool = False

    def __str__(self) -> str:
        return f"registry {self.registry} skipped: {self.reason}"


@dataclass(frozen=True)
class Resolved:
    """Where one pinned version's archive is, what it must hash to, and how to ask for it.

    ``skipped`` lists the registries passed over before this one was found (for a warning).
    """

    ref: DatasetRef
    location: str
    sha256: str
    size: int
    registry: str
    headers: dict[str, str] = field(default_factory=dict)
    skipped: tuple[Skipped, ...] = ()


@dataclass(frozen=True)
class Listing:
    """One dataset of one registry, as ``brinelite search`` shows it."""

    registry: str
    name: str
    versions: list[str]
    latest: str
    rows: int
    size: int
    description: str


@dataclass(frozen=True)
class SearchResult:
    """What :func:`search` found, and the registries it had to skip."""

    listings: list[Listing]
    skipped: list[Skipped]


def registries() -> list[RegistryEntry]:
    """The registries to ask, in order, each with the variable of its own token (if any).

    ``BRINELITE_TOKEN`` goes to one registry only: the single one configured, or the one
    whose host (``host`` or ``host:port``) is ``BRINELITE_TOKEN_HOST``. A registry added
    with ``--token-env VAR`` gets ``$VAR`` and nothing else.
    """
    listed = settings.listed_registries()
    configured = [RegistryEntry(url, url) for url in listed] + config.load()
    demo = RegistryEntry("demo", str(DEMO_REGISTRY))
    return [_with_token(entry, len(configured)) for entry in configured] + [demo]


def _with_token(entry: RegistryEntry, configured: int) -> RegistryEntry:
    if entry.token_env:
        return entry
    host = settings.token_host()
    parts = urlsplit(entry.url)
    names = {parts.hostname, f"{parts.hostname}:{parts.port}" if parts.port else None}
    owner = host in names if host else configured == 1
    return replace(entry, token_env=settings.GLOBAL_TOKEN) if owner else entry


def _online(what: str) -> None:
    if settings.offline():
        raise OfflineError(
            f"BRINELITE_OFFLINE is set: {what} needs the registries; unset BRINELITE_OFFLINE, "
            "or use an installed dataset."
        )


def checked_index(
    store: Store, ref: DatasetRef, index: dict[str, Any] | None
) -> dict[str, Any] | None:
    """A dataset index read from ``store``, checked against its schema (None if absent)."""
    if index is None:
        return None
    where = store.location(f"{ref.scope}/{ref.name}/{INDEX}")
    indexes.check_dataset(index, where, ref.full_name)
    for item in index["versions"].values():
        try:
            _archive_path(store, ref, item["archive"])
        except BrineliteError as exc:
            raise InvalidIndexError(str(exc)) from exc
    return index


def _pick(index: dict[str, Any], ref: DatasetRef) -> Version | None:
    versions = [parse_version(v) for v in index["versions"]]
    if ref.version is None:
        return newest(versions)
    return ref.version if ref.version in versions else None


def _archive_path(store: Store, ref: DatasetRef, relative: str) -> str:
    """The archive's location; an index may only point inside the dataset's folder."""
    try:
        path = safe_relpath(relative, normalise=True)
    except UnsafePathError as exc:
        raise RegistryError(
            f"Registry {store.url} lists an unsafe archive path {relative!r} ({exc.reason})."
        ) from None
    if not path:
        raise RegistryError(f"Registry {store.url} lists an empty archive path {relative!r}.")
    return store.location(f"{ref.scope}/{ref.name}/{path}")


def resolve(ref: DatasetRef) -> Resolved:
    """The archive of ``ref`` (newest version unless pinned) in the first registry holding it.

    A registry that cannot be reached, or whose index is malformed, is skipped and listed in
    ``Resolved.skipped``; the next one is asked, so the demo registry works offline. Raises
    :class:`OfflineError` under ``BRINELITE_OFFLINE`` (nothing is read), :class:`AuthError`
    when a registry refuses access, :class:`UnreachableError` when the name was found nowhere
    but some registry could not be reached, else :class:`DatasetNotFoundError`.

    Example: ``resolve(parse_name("lab/cells@1.2.0")).location``.
    """
    _online(f"finding {ref}")
    asked, skipped, versions = [], [], set()
    for entry in registries():
        asked.append(entry.url)
        try:
            store = open_store(entry)
            index = checked_index(store, ref, store.read_json(f"{ref.scope}/{ref.name}/{INDEX}"))
            version = _pick(index, ref) if index else None
            if version is None:
                versions.update(index["versions"] if index else ())
                continue
            item = index["versions"][str(version)]
            location = _archive_path(store, ref, item["archive"])
        except RegistryError as exc:
            skipped.append(Skipped(entry.url, str(exc), isinstance(exc, UnreachableError)))
            continue
        return Resolved(
            ref.with_version(version),
            location,
            item["sha256"],
            item["size"],
            entry.url,
            store.headers,
            tuple(skipped),
        )
    raise _not_found(ref, asked, versions, skipped)


def _not_found(
    ref: DatasetRef, asked: list[str], versions: set[str], skipped: list[Skipped]
) -> RegistryError | DatasetNotFoundError:
    """The error for a name found nowhere: unreachable registries first, then suggestions."""
    where = f"Dataset {ref} was not found in the registries asked ({', '.join(asked)})"
    notes = "".join(f" Skipped {s.registry}: {s.reason}" for s in skipped)
    unreachable = [s.registry for s in skipped if s.unreachable]
    if unreachable:
        return UnreachableError(f"{where}; unreachable: {', '.join(unreachable)}.{notes}")
    if versions:
        listed = ", ".join(str(v) for v in sorted(parse_version(v) for v in versions))
        return DatasetNotFoundError(
            f"{where}; published versions of {ref.full_name}: {listed}.{notes}"
        )
    try:
        known = [listing.name for listing in search().listings]
    except RegistryError:
        known = []
    return DatasetNotFoundError(f"{where}." + suggest(ref.full_name, known) + notes)


def search(text: str = "") -> SearchResult:
    """Datasets of every registry whose name or description contains ``text``.

    A registry without top-level ``index.json`` is scanned if it is a folder. A registry
    that cannot be reached or holds a malformed index is skipped and listed in
    ``SearchResult.skipped``; the others are still searched. Raises :class:`OfflineError`
    under ``BRINELITE_OFFLINE``.

    Example: ``[item.name for item in search("cells").listings]``.
    """
    _online("search")
    found, skipped = [], []
    for entry in registries():
        try:
            datasets = _datasets(open_store(entry))
        except (UnreachableError, InvalidIndexError) as exc:
            skipped.append(Skipped(entry.url, str(exc), isinstance(exc, UnreachableError)))
            continue
        for name, summary in sorted(datasets.items()):
            if text.lower() in f"{name} {summary.get('description', '')}".lower():
                found.append(
                    Listing(
                        entry.url,
                        name,
                        summary.get("versions", []),
                        summary.get("latest", ""),
                        summary.get("rows", 0),
                        summary.get("size", 0),
                        summary.get("description", ""),
                    )
                )
    return SearchResult(found, skipped)


def _datasets(store: Store) -> dict[str, dict[str, Any]]:
    """The top-level listing of a registry (rebuilt by scanning a folder that has none)."""
    top = store.read_json(INDEX)
    if top is not None:
        return dict(indexes.check_top(top, store.location(INDEX)))
    if not isinstance(store, FolderStore):
        return {}
    found = {}
    for name in filter(is_name, store.dataset_names()):
        ref = parse_name(name)
        index = checked_index(store, ref, store.read_json(f"{name}/{INDEX}"))
        found[name] = summary(index or {"versions": {}})
    return found


def summary(index: dict[str, Any]) -> dict[str, Any]:
    """A dataset's entry in the top-level listing: its versions and its latest one's details."""
    versions = sorted(index["versions"], key=parse_version)
    latest = index["versions"][versions[-1]] if versions else {}
    return {
        "versions": versions,
        "latest": versions[-1] if versions else "",
        "rows": latest.get("rows", 0),
        "size": latest.get("size", 0),
        "description": latest.get("description", ""),
    }
