"""Registry index files: reading them within a size cap and checking their documented schema.

A registry is untrusted input. Every ``index.json`` a store reads goes through
:func:`read_capped` (at most :data:`MAX_INDEX_BYTES`, streamed: a huge body is never held
whole) and :func:`parse`; the registry logic then checks it against the schema of
``docs/registry.md`` with :func:`check_dataset` or :func:`check_top`. A violation raises
:class:`InvalidIndexError` naming the registry and the field, so the caller can skip that
registry with one line and ask the next one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from . import jsonio
from .errors import InvalidIndexError, InvalidNameError
from .names import is_name, parse_version

INDEX = "index.json"
FORMAT_VERSION = 1
MAX_INDEX_BYTES = 16 << 20  # 16 MiB: about 40 000 versions; an index is a few KB
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def read_capped(chunks: Iterable[bytes], where: str) -> bytes:
    """Join ``chunks`` (a body being streamed), refusing it once it passes the size cap.

    Args:
        chunks: the body, in pieces, as a socket or file yields them.
        where: the file's URL or path, for the message.

    Example: ``read_capped(response.iter_content(1 << 20), url)``.
    """
    body, size = [], 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_INDEX_BYTES:
            raise oversized(where)
        body.append(chunk)
    return b"".join(body)


def oversized(where: str) -> InvalidIndexError:
    """The error for an index over the cap (raised early when a server declares its size)."""
    return InvalidIndexError(
        f"{where} is larger than {MAX_INDEX_BYTES >> 20} MiB; a registry index is a few KB: "
        "this is not one."
    )


def parse(body: bytes, where: str) -> dict[str, Any]:
    """The JSON object in ``body``; anything else (bad JSON, a list, a number) is refused."""
    try:
        data = jsonio.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidIndexError(f"{where} is not valid JSON ({exc}).") from exc
    if not isinstance(data, dict):
        raise InvalidIndexError(f"{where} holds a JSON {type(data).__name__}, not an object.")
    return data


def check_dataset(index: dict[str, Any], where: str, name: str) -> dict[str, Any]:
    """Check a dataset index (``<scope>/<name>/index.json``) and return it.

    Each version needs ``archive`` (a path relative to the dataset's folder, never a URL),
    a hex ``sha256`` and an integer ``size``; ``rows``, ``columns``, ``description`` and
    ``created`` are checked when present. Unknown fields are ignored.

    Example: ``check_dataset(store.read_json("lab/cells/index.json"), url, "lab/cells")``.
    """
    _check_format(index, where)
    if index.get("name") != name:
        _bad(where, f"names {index.get('name')!r}, not {name!r}")
    versions = _field(index, "versions", dict, where)
    for version, item in versions.items():
        _check_version_key(version, where)
        spot = f"{where} version {version}"
        if not isinstance(item, dict):
            _bad(spot, "is not an object")
        archive = _field(item, "archive", str, spot)
        if not archive or _SCHEME.match(archive):
            _bad(
                spot, f"has archive {archive!r}: it must be a path relative to the dataset's folder"
            )
        if not _SHA256.fullmatch(_field(item, "sha256", str, spot)):
            _bad(spot, "has a sha256 that is not 64 hex digits")
        _count(item, "size", spot, required=True)
        _count(item, "rows", spot)
        _optional(item, "columns", list, spot)
        _optional(item, "description", str, spot)
        _optional(item, "created", str, spot)
    return index


def check_top(index: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """Check a top-level index (``<root>/index.json``) and return its ``datasets``."""
    _check_format(index, where)
    datasets = _field(index, "datasets", dict, where)
    for name, summary in datasets.items():
        spot = f"{where} dataset {name!r}"
        if not is_name(name) or not isinstance(summary, dict):
            _bad(spot, "is not a scope/name with an object")
        for version in _optional(summary, "versions", list, spot) or []:
            _check_version_key(version, spot)
        _optional(summary, "latest", str, spot)
        _optional(summary, "description", str, spot)
        _count(summary, "rows", spot)
        _count(summary, "size", spot)
    return datasets


def _check_format(index: dict[str, Any], where: str) -> None:
    if index.get("format_version") != FORMAT_VERSION:
        raise InvalidIndexError(
            f"{where} is in index format {index.get('format_version')!r}; this brinelite reads "
            f"format {FORMAT_VERSION}. Upgrade brinelite."
        )


def _check_version_key(version: Any, where: str) -> None:
    try:
        if not isinstance(version, str):
            raise InvalidNameError(version)
        parse_version(version)
    except InvalidNameError:
        _bad(where, f"lists {_shown(version)}, which is not a semantic version")


def _field(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind):
        _bad(where, f"has {key} {_shown(value)}, expected a {kind.__name__}")
    return value


def _optional(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
    return _field(data, key, kind, where) if key in data else None


def _count(data: dict[str, Any], key: str, where: str, *, required: bool = False) -> None:
    value = data.get(key)
    if (required or key in data) and (
        not isinstance(value, int) or isinstance(value, bool) or value < 0
    ):
        _bad(where, f"has {key} {_shown(value)}, expected a whole number")


def _shown(value: Any) -> str:
    text = json.dumps(value) if value is not None else "missing"
    return text if len(text) <= 40 else text[:37] + "..."


def _bad(where: str, what: str) -> None:
    raise InvalidIndexError(f"{where} {what}.")
