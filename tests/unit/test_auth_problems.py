"""RFC 9457 problem responses and the error middleware (no tracebacks leak)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from signaling.problems import ProblemError, problem, problem_middleware

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError("secret internal detail /etc/passwd")


async def _typed(request: web.Request) -> web.Response:
    raise ProblemError(409, "conflict_here", "already there", headers={"X-A": "1"}, extra=1)


async def _redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/elsewhere")


async def test_middleware(aiohttp_client: ClientFactory) -> None:
    app = web.Application(middlewares=[problem_middleware])
    app.router.add_get("/boom", _boom)
    app.router.add_get("/typed", _typed)
    app.router.add_get("/redirect", _redirect)
    client = await aiohttp_client(app)
    resp = await client.get("/boom")
    text = await resp.text()
    assert resp.status == 500 and resp.content_type == "application/problem+json"
    assert "secret" not in text and "Traceback" not in text
    assert (await resp.json())["code"] == "internal_error"
    resp = await client.get("/typed")
    body = await resp.json()
    assert resp.status == 409 and body["code"] == "conflict_here" and body["extra"] == 1
    assert resp.headers["X-A"] == "1"
    resp = await client.get("/redirect", allow_redirects=False)
    assert resp.status == 302
    resp = await client.get("/missing")
    assert resp.status == 404 and (await resp.json())["title"] == "Not Found"


def test_problem_shape() -> None:
    resp = problem(429, "rate_limited", "slow down", retry_after=3)
    assert resp.status == 429 and resp.content_type == "application/problem+json"
    assert resp.text is not None and '"type": "urn:sfu:problem:rate_limited"' in resp.text
