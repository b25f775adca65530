"""S3 and S3-compatible storage (MinIO, Ceph, ...) through boto3, an optional extra.

boto3 is imported only when an ``s3://`` URL is used, so ``pip install brinelite`` works
without it. Credentials come from the standard AWS chain (environment, profile, instance
role); the endpoint of an S3-compatible server from ``$BRINELITE_S3_ENDPOINT_URL`` or
``$AWS_ENDPOINT_URL``. Proxies set in ``HTTPS_PROXY`` are honoured by botocore.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from . import indexes, settings
from .errors import (
    AlreadyExistsError,
    AuthError,
    DownloadError,
    RegistryError,
    UnreachableError,
)
from .hashes import CHUNK
from .transports import Opened, Transient

_CONTENT_RANGE = re.compile(r"bytes \d+-\d+/(\d+)")
_RESTART = {"PreconditionFailed", "412", "InvalidRange", "416"}  # resumed bytes would not fit
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "401"}
_MISSING = {"NoSuchKey", "404", "NoSuchBucket"}
_CHANGED = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}  # lost a race
MAX_SINGLE_PUT = 5 << 30  # S3's limit for one PUT; larger archives are uploaded multipart


def _boto() -> ModuleType:
    """botocore's exceptions, once boto3 is known to be there (else the extra to install).

    Every S3 call starts here, so a machine without the ``[s3]`` extra gets one line, never an
    ImportError from the first ``botocore`` name the code happens to need.
    """
    try:
        import boto3  # noqa: F401 (botocore alone is not enough: the client comes from boto3)
        from botocore import exceptions
    except ImportError:
        raise RegistryError(
            "s3:// registries need boto3; install it with: pip install 'brinelite[s3]'."
        ) from None
    return exceptions


def client() -> Any:
    """A boto3 S3 client with timeouts and retries, or a one-line error when boto3 is missing."""
    _boto()
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=10, read_timeout=30, retries={"max_attempts": 5, "mode": "standard"}
    )
    return boto3.client("s3", endpoint_url=settings.s3_endpoint(), config=config)


def split(url: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> ``("bucket", "some/key")``."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise RegistryError(f"{url!r} is not an s3://bucket/key URL.")
    return parts.netloc, parts.path.lstrip("/")


def _error(exc: Exception, url: str) -> Exception:
    """The brinelite error for a boto3 failure on ``url``."""
    boto = _boto()

    if isinstance(exc, boto.NoCredentialsError):
        return AuthError(
            f"No AWS credentials to read {url}; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
            "or AWS_PROFILE."
        )
    if isinstance(exc, boto.ConnectionError | boto.ConnectionClosedError | boto.ReadTimeoutError):
        return UnreachableError(f"S3 endpoint for {url} is unreachable ({exc}).")
    code = _code(exc) if isinstance(exc, boto.ClientError) else ""
    if code in _DENIED:
        return AuthError(
            f"S3 refused access to {url} ({code}); check AWS_PROFILE or the AWS_* credentials."
        )
    return RegistryError(f"S3 request for {url} failed: {exc}.")


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def read_json(url: str) -> dict[str, Any] | None:
    """The JSON object stored at ``url`` (capped and parsed as an index), None if absent."""
    return read_tagged(url)[0]


def read_tagged(url: str) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON object at ``url`` and its ETag, for a :func:`put_json` that must not race."""
    boto = _boto()

    bucket, key = split(url)
    try:
        answer = client().get_object(Bucket=bucket, Key=key)
        if answer.get("ContentLength", 0) > indexes.MAX_INDEX_BYTES:
            raise indexes.oversized(url)
        body = indexes.read_capped(answer["Body"].iter_chunks(CHUNK), url)
    except boto.ClientError as exc:
        if _code(exc) in _MISSING:
            return None, None
        raise _error(exc, url) from exc
    except boto.BotoCoreError as exc:
        raise _error(exc, url) from exc
    return indexes.parse(body, url), answer["ETag"]


def put_file(path: Path, url: str, sha256: str) -> None:
    """Upload an archive unless ``url`` holds one already; an identical one is kept.

    The PUT carries ``If-None-Match: *`` (S3 conditional writes), so a concurrent publisher
    of the same version never overwrites, and the archive's sha256 as metadata, so that
    rerunning a publish that failed later recognises its own upload. Archives over 5 GiB
    (the single-PUT limit) go multipart after a check that the key is free.
    """
    boto = _boto()

    bucket, key = split(url)
    s3 = client()
    try:
        if path.stat().st_size <= MAX_SINGLE_PUT:
            with path.open("rb") as body:
                s3.put_object(
                    Bucket=bucket, Key=key, Body=body, IfNoneMatch="*", Metadata={"sha256": sha256}
                )
        elif _present_sha256(s3, bucket, key) is None:
            s3.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {"sha256": sha256}})
        else:
            raise _taken(url)
    except boto.ClientError as exc:
        if _code(exc) not in _CHANGED:
            raise _error(exc, url) from exc
        if _present_sha256(s3, bucket, key) != sha256:
            raise _taken(url) from exc
    except boto.BotoCoreError as exc:
        raise _error(exc, url) from exc


def _present_sha256(s3: Any, bucket: str, key: str) -> str | None:
    """The sha256 recorded on an object ("" if it has none), None when there is no object."""
    boto = _boto()

    try:
        return str(s3.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get("sha256", ""))
    except boto.ClientError as exc:
        if _code(exc) in _MISSING:
            return None
        raise


def _taken(url: str) -> AlreadyExistsError:
    return AlreadyExistsError(
        f"{url} already holds another archive that no index names (left by a failed publish?); "
        "delete it, then publish again."
    )


def put_json(url: str, data: dict[str, Any], etag: str | None) -> None:
    """Store a JSON object at ``url`` in one atomic PUT, only if it is still as read.

    ``etag`` is what :func:`read_tagged` returned: the PUT carries ``If-Match`` on it, or
    ``If-None-Match: *`` when the object did not exist, so a concurrent change is never lost.
    """
    boto = _boto()

    bucket, key = split(url)
    body = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
    condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
    try:
        client().put_object(
            Bucket=bucket, Key=key, Body=body, ContentType="application/json", **condition
        )
    except boto.ClientError as exc:
        if _code(exc) in _CHANGED | _MISSING:  # changed, created or deleted since it was read
            raise RegistryError(
                f"{url} changed while publishing (another publisher at the same moment?); "
                "nothing was overwritten: run the same command again."
            ) from exc
        raise _error(exc, url) from exc
    except boto.BotoCoreError as exc:
        raise _error(exc, url) from exc


class S3Transport:
    """Moves the bytes of one S3 object: ``Range`` from an offset, ``If-Match`` on its ETag.

    Used by :func:`brinelite.download.fetch`, which owns the part file, resume and retries.
    """

    network = True

    def __init__(self) -> None:
        self.s3 = client()

    def open(self, url: str, offset: int, validator: str | None) -> Opened:
        """GET the object from ``offset``; an object changed since ``validator`` restarts."""
        boto = _boto()
        from urllib3.exceptions import HTTPError

        bucket, key = split(url)
        condition = {"IfMatch": validator} if offset and validator else {}
        try:
            answer = self.s3.get_object(
                Bucket=bucket, Key=key, Range=f"bytes={offset}-", **condition
            )
        except boto.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _RESTART:
                raise Transient(f"{url} changed ({code})", restart=True) from exc
            if code in _MISSING:
                raise DownloadError(f"{url} was not found ({code}); check the URL.") from exc
            raise _error(exc, url) from exc
        except (boto.BotoCoreError, HTTPError, OSError) as exc:
            raise Transient(str(exc)) from exc
        body = answer["Body"]
        match = _CONTENT_RANGE.fullmatch(answer.get("ContentRange", ""))
        total = int(match[1]) if match else offset + int(answer["ContentLength"])
        return Opened(
            offset, total, answer.get("ETag"), _chunks(body), getattr(body, "close", _nothing)
        )

    def close(self) -> None:
        """boto3 clients need no closing."""


def _chunks(body: Any) -> Iterator[bytes]:
    """An object body in 1 MiB chunks; a cut connection is :class:`Transient`."""
    boto = _boto()
    from urllib3.exceptions import HTTPError

    try:
        yield from body.iter_chunks(CHUNK)
    except (boto.BotoCoreError, HTTPError, OSError) as exc:
        raise Transient(f"connection lost: {exc}") from exc


def _nothing() -> None:
    """A body without close()."""
