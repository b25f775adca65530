"""URLs as they may be stored and shown: without the credentials they can carry.

A URL's user and password (``https://user:pass@host/``) and its query (a signed URL's
``?sig=…&se=…``) are secrets. What brinelite writes to disk (``install.json``) and prints
(``info``, every message) goes through :func:`redact_url`; what identifies a URL without
storing it is :func:`url_key`. As pip's ``redact_auth_from_url``, plus the query.
"""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

HIDDEN = "****"


def redact_url(url: str) -> str:
    """``url`` with its user, password and query values replaced by ``****``.

    Paths and anything that is not a URL with a scheme are returned unchanged.

    >>> redact_url("https://bob:pw@host/a.tar.gz?sig=abc&se=2030")
    'https://****@host/a.tar.gz?sig=****&se=****'
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a malformed port raises here
    except ValueError:
        return HIDDEN if "@" in url or "?" in url else url
    if not parts.scheme or len(parts.scheme) == 1:  # a path, or a Windows drive letter
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{HIDDEN}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(key, HIDDEN) for key, _ in pairs], safe="*") if pairs else HIDDEN
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def url_key(url: str) -> str:
    """A sha256 (hex) of the whole URL: tells two URLs apart without storing their secrets."""
    return hashlib.sha256(url.encode()).hexdigest()
