"""Errors as JSON problem details (RFC 9457, ``application/problem+json``).

Every error body looks like::

    {"type": "urn:sfu:problem:<code>", "title": "Unauthorized", "status": 401,
     "code": "<code>", "detail": "human-readable sentence"}

``code`` is stable (clients switch on it); ``type`` is the same code as a URN, since RFC 9457
asks for a URI identifying the problem type. Extension members (``errors`` for validation
failures, ``retry_after`` for 429) may be added.

Handlers raise :class:`ProblemError` (or return :func:`problem`); :func:`problem_middleware`
turns ``ProblemError``, aiohttp's ``HTTPException`` (>= 400: unknown route, wrong method, body
too large ...) and any unexpected exception into a problem response. Unexpected exceptions
are logged with their traceback and answered with a bare 500 ``internal_error``: no traceback
or exception text ever reaches the client.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web

from signaling.access_log import redact_target

log = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    """A ``application/problem+json`` response with ``status``, stable ``code`` and ``detail``.

    ``extra`` members are added to the body (they must be JSON-serialisable).
    """
    body: dict[str, Any] = {
        "type": f"urn:sfu:problem:{code}",
        "title": _title(status),
        "status": status,
        "code": code,
        "detail": detail,
    }
    body.update(extra)
    return web.Response(
        status=status,
        text=json.dumps(body, ensure_ascii=True),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


class ProblemError(Exception):
    """Raise from a handler to answer with a problem response (see :func:`problem`)."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers
        self.extra = extra

    def response(self) -> web.Response:
        """The problem response for this error."""
        return problem(self.status, self.code, self.detail, headers=self.headers, **self.extra)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
}


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Convert errors raised by handlers into problem responses (never leaks a traceback)."""
    try:
        return await handler(request)
    except ProblemError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {
            key: value
            for key, value in exc.headers.items()
            if key.lower() in ("allow", "retry-after", "www-authenticate")
        }
        code = _HTTP_CODES.get(exc.status, "http_error")
        return problem(exc.status, code, exc.reason or _title(exc.status), headers=headers)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, redact_target(request.path))
        return problem(500, "internal_error", "internal server error")
