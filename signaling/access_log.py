"""The HTTP access log, without credentials.

aiohttp's default access log writes the request line (path *and query*) and the ``Referer``
header, so ``/join?token=<room token>`` (and any page loaded from it) would put a bearer token
into every log file and log shipper downstream. :class:`RedactingAccessLogger` writes the same
fields in the same Apache-like layout as aiohttp's default (``%a %t "%r" %s %b "%{Referer}i"
"%{User-Agent}i"``) with :func:`redact_target` applied to the request target and the referrer:
credential query values and invite codes become ``REDACTED``.

``sfu serve`` installs it (``web.run_app(..., access_log_class=RedactingAccessLogger)``).
"""

from __future__ import annotations

import datetime
import logging
import re
from urllib.parse import SplitResult, unquote_plus, urlsplit, urlunsplit

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

__all__ = ["REDACTED", "SENSITIVE_QUERY_KEYS", "RedactingAccessLogger", "redact_target"]

REDACTED = "REDACTED"

SENSITIVE_QUERY_KEYS = frozenset(
    {"token", "access_token", "refresh_token", "id_token", "code", "password", "secret", "otp"}
)
"""Query parameter names (case-insensitive) whose values never reach a log; so does any name
containing ``token``."""

# /join/<invite code> and /api/join/<invite code>: the code is redeemable for a room token.
_SECRET_PATH = re.compile(r"^(/(?:api/)?join/)[^/]+")


def _redact_query(query: str) -> str:
    parts = []
    for part in query.split("&"):
        key, eq, _value = part.partition("=")
        name = unquote_plus(key).lower()
        if eq and (name in SENSITIVE_QUERY_KEYS or "token" in name):
            part = f"{key}={REDACTED}"
        parts.append(part)
    return "&".join(parts)


def redact_target(target: str) -> str:
    """``target`` (a request target ``/path?query`` or an absolute URL such as a ``Referer``)
    with the values of credential query parameters (:data:`SENSITIVE_QUERY_KEYS`) and invite
    codes in ``/join/<code>`` paths replaced by ``REDACTED``; the fragment is dropped."""
    try:
        parts = urlsplit(target)
    except ValueError:
        return REDACTED  # unparsable (e.g. a bad IPv6 literal): log nothing of it
    path = _SECRET_PATH.sub(rf"\g<1>{REDACTED}", parts.path)
    query = _redact_query(parts.query) if parts.query else ""
    return urlunsplit(SplitResult(parts.scheme, parts.netloc, path, query, ""))


class RedactingAccessLogger(AbstractAccessLogger):
    """An aiohttp access logger (``AbstractAccessLogger``) whose lines carry no bearer
    credentials; one ``INFO`` record per request on ``aiohttp.access``. ``log_format`` is
    ignored (the layout is aiohttp's default)."""

    @property
    def enabled(self) -> bool:
        """Whether a line would be written at all (the logger is enabled for INFO)."""
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        """Write one line for ``request`` answered by ``response`` after ``time`` seconds."""
        started = datetime.datetime.now(datetime.UTC).astimezone() - datetime.timedelta(
            seconds=time
        )
        version = request.version
        referer = request.headers.get("Referer")
        self.logger.info(
            '%s [%s] "%s %s HTTP/%d.%d" %d %d "%s" "%s"',
            request.remote or "-",
            started.strftime("%d/%b/%Y:%H:%M:%S %z"),
            request.method,
            redact_target(request.raw_path),
            version.major,
            version.minor,
            response.status,
            response.body_length,
            redact_target(referer) if referer else "-",
            request.headers.get("User-Agent", "-"),
        )
