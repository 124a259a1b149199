"""CORS (Fetch standard): which browser origins may call the HTTP API.

Two policies, decided by path:

* ``/whip/*`` and ``/whep/*`` (RFC 9725 §4.8, WHEP): **any origin**. Browser WHIP/WHEP players
  live on other sites, and these endpoints authenticate with a bearer room token only (never
  a cookie), so another origin gains nothing it does not already hold. Preflights are
  answered 204 with ``Access-Control-Allow-Origin: *``; every response (errors included)
  carries ``Access-Control-Allow-Origin: *`` and exposes ``Location``, ``Link``, ``ETag``,
  ``Accept-Patch`` and ``Accept-Post``. No credentials mode.
* everything else (``/api``): origins in ``SFU_ALLOWED_ORIGINS`` (exact
  ``scheme://host[:port]`` matches, ``*`` for any); none listed: same-origin only, and a
  preflight from another origin gets 403 ``origin_not_allowed``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from signaling import keys
from signaling.problems import problem
from signaling.settings import Settings


def origin_allowed(settings: Settings, origin: str | None) -> bool:
    """True when ``origin`` is in ``settings.allowed_origins`` (or the list holds ``*``)."""
    if not origin:
        return False
    allowed = settings.allowed_origins
    return "*" in allowed or origin.rstrip("/") in (item.rstrip("/") for item in allowed)


_CORS_METHODS = "GET, POST, PATCH, DELETE, OPTIONS"
_CORS_HEADERS = "Authorization, Content-Type, If-Match, X-Filename"
_CORS_EXPOSE = "Location, ETag, Link, Retry-After, Content-Disposition"

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

OPEN_PREFIXES = ("/whip/", "/whep/")
"""Paths under these prefixes accept any origin (bearer-token endpoints, see above)."""
_OPEN_METHODS = "POST, PATCH, DELETE, OPTIONS"
_OPEN_HEADERS = "Authorization, Content-Type, If-Match"
_OPEN_EXPOSE = "Location, Link, ETag, Accept-Patch, Accept-Post"


async def _open_cors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """The any-origin policy of the WHIP/WHEP endpoints: the handler answers (``OPTIONS``
    included), then the CORS headers are added."""
    response = await handler(request)
    if not response.prepared:
        headers = response.headers
        headers["Access-Control-Allow-Origin"] = "*"
        headers["Access-Control-Expose-Headers"] = _OPEN_EXPOSE
        if request.method == "OPTIONS":
            headers["Access-Control-Allow-Methods"] = _OPEN_METHODS
            headers["Access-Control-Allow-Headers"] = _OPEN_HEADERS
            headers["Access-Control-Max-Age"] = "600"
    return response


@web.middleware
async def cors_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """CORS for origins in ``SFU_ALLOWED_ORIGINS`` (RFC 6454 origins, exact match); any
    origin for ``/whip/*`` and ``/whep/*`` (see the module docstring).

    Preflights (``OPTIONS`` with ``Access-Control-Request-Method``) are answered here: 204 for
    an allowed origin, 403 ``origin_not_allowed`` otherwise. Other requests run normally;
    allowed origins get ``Access-Control-Allow-Origin`` (no credentials: tokens are bearer).
    """
    if request.path.startswith(OPEN_PREFIXES):
        return await _open_cors(request, handler)
    origin = request.headers.get("Origin")
    allowed = origin_allowed(request.app[keys.SETTINGS], origin)
    if (
        request.method == "OPTIONS"
        and origin
        and "Access-Control-Request-Method" in request.headers
    ):
        if not allowed:
            return problem(403, "origin_not_allowed", "this origin is not allowed")
        response: web.StreamResponse = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = _CORS_METHODS
        response.headers["Access-Control-Allow-Headers"] = _CORS_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
    else:
        response = await handler(request)
    if allowed and origin and not response.prepared:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = _CORS_EXPOSE
        response.headers.add("Vary", "Origin")
    return response
