"""How brinelite talks HTTP: which answers it retries, how long it waits, what it says.

Downloads (:func:`brinelite.download.fetch`, its own loop, since it resumes the part file
between attempts) and registry index reads (:class:`brinelite.backends.HttpStore`, through
urllib3's ``Retry``) follow one :class:`HttpPolicy`: the same statuses retried, the same caps
on waiting (10 s between attempts, 60 s when a server asks with ``Retry-After``), the same
User-Agent, the same advice when a server refuses access. They differ only in how many
attempts they make: an archive is worth waiting for, while an index read gives up sooner so
that the next registry is asked.

    session = INDEXES.session()                 # retries mounted, for index reads
    time.sleep(DOWNLOADS.delay(failures=2))     # the download loop's wait
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from . import settings

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class HttpPolicy:
    """Retries, waits, name and refusal advice for one kind of HTTP request.

    Attributes:
        retries: attempts after the first one that failed in a way another may fix.
        backoff: seconds before the first retry; each next wait doubles, up to ``max_delay``.
        max_delay: the longest wait brinelite chooses between two attempts.
        max_retry_after: the longest wait a server's ``Retry-After`` gets.
        retry_status: the HTTP statuses worth another attempt (busy or failing servers).
        user_agent: what brinelite calls itself in requests.

    Example: ``replace(DOWNLOADS, retries=0)`` makes a single attempt.
    """

    retries: int
    backoff: float
    max_delay: float = 10.0
    max_retry_after: float = 60.0
    retry_status: frozenset[int] = RETRY_STATUS
    user_agent: str = "brinelite"

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after ``failures`` failed attempts in a row: ``backoff * 2**(n-1)``
        capped at ``max_delay``, or longer when the server asked (at most ``max_retry_after``).

        >>> DOWNLOADS.delay(3), DOWNLOADS.delay(1, retry_after=3600)
        (2.0, 60.0)
        """
        delay = min(self.backoff * 2 ** (failures - 1), self.max_delay)
        return delay if retry_after is None else max(delay, min(retry_after, self.max_retry_after))

    def session(self, *, retrying: bool = False) -> requests.Session:
        """A requests session sending the User-Agent; proxies and .netrc come from the
        environment. With ``retrying``, urllib3 retries GETs under this policy (connection
        errors and ``retry_status``, honouring ``Retry-After`` up to ``max_retry_after``)."""
        session = requests.Session()
        session.headers["User-Agent"] = self.user_agent
        if retrying:
            adapter = HTTPAdapter(max_retries=self._retry())
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        return session

    def _retry(self) -> Retry:
        retry = _CappedRetry(
            total=self.retries,
            backoff_factor=self.backoff,
            backoff_max=self.max_delay,
            status_forcelist=self.retry_status,
            allowed_methods=("GET",),
        )
        retry.max_retry_after = self.max_retry_after
        return retry

    def refused(self, what: str, url: str, status: int, token_env: str | None = None) -> str:
        """The one line for a 401 or 403 from ``url``: who refused, and how to send credentials.

        ``token_env`` is the variable a registry was added with (``--token-env``), if any.

        Example: ``raise AuthError(DOWNLOADS.refused(shown, url, 401))``.
        """
        parts = urlsplit(url)
        fix = (
            f"set {token_env} to a valid token"
            if token_env and token_env != settings.GLOBAL_TOKEN
            else f"set {settings.GLOBAL_TOKEN} (and BRINELITE_TOKEN_HOST={parts.netloc} when "
            "several registries are configured), or add the registry with `brinelite registry "
            "add NAME URL --token-env VAR`"
        )
        return (
            f"{what} refused access (HTTP {status}); {fix}, or add a .netrc entry for "
            f"{parts.hostname}."
        )


class _CappedRetry(Retry):
    """urllib3's Retry, waiting what a Retry-After asks but never over ``max_retry_after``."""

    max_retry_after = 60.0

    def new(self, **kw: Any) -> _CappedRetry:
        retry = super().new(**kw)
        retry.max_retry_after = self.max_retry_after
        return retry

    def get_retry_after(self, response: Any) -> float | None:
        after = super().get_retry_after(response)
        return None if after is None else min(after, self.max_retry_after)


DOWNLOADS = HttpPolicy(retries=5, backoff=0.5)
# An index read gives up sooner: a registry that does not answer is skipped for the next one.
INDEXES = HttpPolicy(retries=3, backoff=0.25)
