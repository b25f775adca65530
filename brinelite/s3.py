"""S3 and S3-compatible storage (MinIO, Ceph, ...) through boto3, an optional extra.

boto3 is imported only when an ``s3://`` URL is used, so ``pip install brinelite`` works
without it. Credentials come from the standard AWS chain (environment, profile, instance
role); the endpoint of an S3-compatible server from ``$BRINELITE_S3_ENDPOINT_URL`` or
``$AWS_ENDPOINT_URL``. Proxies set in ``HTTPS_PROXY`` are honoured by botocore.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import AuthError, DownloadError, RegistryError
from .hashes import CHUNK
from .transports import Opened, Transient

_CONTENT_RANGE = re.compile(r"bytes \d+-\d+/(\d+)")
_CHANGED = {"PreconditionFailed", "412", "InvalidRange", "416"}
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "401"}
_MISSING = {"NoSuchKey", "404", "NoSuchBucket"}


def client() -> Any:
    """A boto3 S3 client with timeouts and retries, or a one-line error when boto3 is missing."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise RegistryError(
            "s3:// registries need boto3; install it with: pip install 'brinelite[s3]'."
        ) from None
    endpoint = os.environ.get("BRINELITE_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
    config = Config(
        connect_timeout=10, read_timeout=30, retries={"max_attempts": 5, "mode": "standard"}
    )
    return boto3.client("s3", endpoint_url=endpoint or None, config=config)


def split(url: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> ``("bucket", "some/key")``."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise RegistryError(f"{url!r} is not an s3://bucket/key URL.")
    return parts.netloc, parts.path.lstrip("/")


def _error(exc: Exception, url: str) -> Exception:
    """The brinelite error for a boto3 failure on ``url``."""
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return AuthError(
            f"No AWS credentials to read {url}; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
            "or AWS_PROFILE."
        )
    code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
    if code in _DENIED:
        return AuthError(
            f"S3 refused access to {url} ({code}); check AWS_PROFILE or the AWS_* credentials."
        )
    return RegistryError(f"S3 request for {url} failed: {exc}.")


def read_json(url: str) -> dict[str, Any] | None:
    """The JSON object stored at ``url``, or None when there is no such key."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split(url)
    try:
        body = client().get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "") in _MISSING:
            return None
        raise _error(exc, url) from exc
    except BotoCoreError as exc:
        raise _error(exc, url) from exc
    try:
        return dict(json.loads(body))
    except (ValueError, TypeError) as exc:
        raise RegistryError(f"{url} is not a valid JSON index: {exc}.") from exc


def put_file(path: Path, url: str) -> None:
    """Upload a file (multipart for big ones); S3 makes it visible only once complete."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split(url)
    try:
        client().upload_file(str(path), bucket, key)
    except (BotoCoreError, ClientError) as exc:
        raise _error(exc, url) from exc


def put_json(url: str, data: dict[str, Any]) -> None:
    """Store a JSON object at ``url`` in one atomic PUT."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split(url)
    body = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
    try:
        client().put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    except (BotoCoreError, ClientError) as exc:
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
        from botocore.exceptions import BotoCoreError, ClientError
        from urllib3.exceptions import HTTPError

        bucket, key = split(url)
        condition = {"IfMatch": validator} if offset and validator else {}
        try:
            answer = self.s3.get_object(
                Bucket=bucket, Key=key, Range=f"bytes={offset}-", **condition
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _CHANGED:
                raise Transient(f"{url} changed ({code})", restart=True) from exc
            if code in _MISSING:
                raise DownloadError(f"{url} was not found ({code}); check the URL.") from exc
            raise _error(exc, url) from exc
        except (BotoCoreError, HTTPError, OSError) as exc:
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
    from botocore.exceptions import BotoCoreError
    from urllib3.exceptions import HTTPError

    try:
        yield from body.iter_chunks(CHUNK)
    except (BotoCoreError, HTTPError, OSError) as exc:
        raise Transient(f"connection lost: {exc}") from exc


def _nothing() -> None:
    """A body without close()."""
