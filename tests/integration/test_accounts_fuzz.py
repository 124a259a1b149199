"""Property-based tests: malformed and hostile requests to every accounts endpoint.

For every endpoint hypothesis sends raw garbage, non-object JSON, objects with the endpoint's
field names bound to hostile values (wrong types, huge strings, NUL and lone surrogates, Mongo
operators, deep nesting), hostile Authorization headers and path parameters. Properties: the
answer is never 5xx, error bodies are RFC 9457 problem+json with a stable ``code``, and a
refused request stores nothing (document counts in every collection are unchanged).

Hypothesis drives a synchronous test that runs each request on one event loop, because the
app, its ``AsyncMongoClient`` and the test client all belong to that loop.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling import accounts
from signaling.app import create_app
from signaling.settings import Settings

ALLOWED = {200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 422, 429}

HOSTILE_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b@example.com",
    "\ud800",
    "\udfff@example.com",
    "a" * 5000,
    "é" * 300,
    "$where",
    "$gt",
    "'; DROP TABLE users; --",
    "<script>alert(1)</script>",
    "../../../etc/passwd",
    "a@b",
    "@example.com",
    "+1",
    "12345",
    "1234567",
    "0" * 64 + "0",
    "g" * 64,
    "null",
    "true",
    "\u202eevil",
    "\n\r\t",
    "%00",
]

HOSTILE_VALUES = st.recursive(
    st.one_of(
        st.sampled_from(HOSTILE_STRINGS),
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=50),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.sampled_from(["$gt", "$ne", "$where", "$regex", "x"]), children, max_size=2
        ),
    ),
    max_leaves=6,
)

RAW_BODIES = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(
        [
            b"",
            b"{",
            b"[" * 5000 + b"]" * 5000,
            b'{"a":' * 3000 + b"1" + b"}" * 3000,
            b"NaN",
            b'{"email": NaN}',
            b'{"expires": 1e999}',
            b"\xef\xbb\xbf{}",
            b"\xff\xfe{}",
            b'{"email": "\\ud800"}',
            b'"just a string"',
            b"123",
            b"null",
            b"[]",
        ]
    ),
)


@dataclass(frozen=True)
class Endpoint:
    """One route: method, path template, the JSON fields it knows, whether it needs a token."""

    method: str
    path: str
    fields: tuple[str, ...]
    auth: bool = False


ENDPOINTS = [
    Endpoint("POST", "/api/register", ("email", "password", "display_name")),
    Endpoint("POST", "/api/login", ("email", "password")),
    Endpoint("POST", "/api/otp/request", ("email", "phone")),
    Endpoint(
        "POST", "/api/otp/verify", ("email", "phone", "code", "hash", "expires", "display_name")
    ),
    Endpoint("POST", "/api/token/refresh", ("refresh_token",)),
    Endpoint("POST", "/api/logout", ("refresh_token",), auth=True),
    Endpoint("GET", "/api/me", (), auth=True),
    Endpoint("POST", "/api/rooms", ("name", "kind"), auth=True),
    Endpoint("GET", "/api/rooms", (), auth=True),
    Endpoint("POST", "/api/rooms/{room}/invites", ("role", "max_uses", "ttl_s"), auth=True),
    Endpoint("POST", "/api/rooms/{room}/token", (), auth=True),
    Endpoint("GET", "/api/rooms/{room}/history", (), auth=True),
    Endpoint("POST", "/api/join/{code}", ("display_name",)),
]


def bodies(fields: tuple[str, ...]) -> st.SearchStrategy[bytes]:
    """Raw bytes, JSON non-objects, and objects of known and unknown keys with hostile values."""
    keys = st.sampled_from(
        [*fields, "extra", "$where", "__proto__", "a" * 300] if fields else ["x"]
    )
    objects = st.dictionaries(keys, HOSTILE_VALUES, max_size=len(fields) + 1)
    encoded = st.one_of(objects, HOSTILE_VALUES).map(
        lambda value: json.dumps(value).encode("utf-8", "surrogatepass")
    )
    return st.one_of(encoded, RAW_BODIES)


AUTH_HEADERS = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "Bearer",
            "Bearer ",
            "Basic YTpi",
            "Bearer " + "a" * 5000,
            "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
            "Bearer a.b.c",
        ]
    ),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80).map(
        lambda s: "Bearer " + s
    ),
)

PATH_PARAMS = st.one_of(
    st.sampled_from(["nosuchroom", "a" * 500, "..", "%2e%2e", "$gt", "\u00e9", " ", "x" * 64]),
    st.text(max_size=40).filter(lambda s: "\x00" not in s),
)


@dataclass
class Harness:
    """App, client and an event loop shared by one endpoint's hypothesis run."""

    loop: asyncio.AbstractEventLoop
    client: TestClient[Any, Any]
    token: str
    room: str
    code: str
    baseline: dict[str, int] | None = None

    def run(self, coro: Any) -> Any:
        """Run a coroutine on the harness loop."""
        return self.loop.run_until_complete(coro)

    async def counts(self) -> dict[str, int]:
        """Documents per collection."""
        return await self.client.app[accounts.STORE].count_all()


@pytest.fixture(scope="module")
def harness(mongo_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """A started app with one user, one room and one invite, shared by this module."""
    accounts_settings = Settings(
        mongo_url=mongo_url,
        mongo_db="fuzz_" + uuid.uuid4().hex[:12],
        data_dir=tmp_path_factory.mktemp("fuzz"),
        jwt_secret="fuzz-secret-" + "x" * 40,
        bcrypt_cost=4,
        ice_hosts=["127.0.0.1"],
    )
    loop = asyncio.new_event_loop()
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(accounts_settings)), loop=loop)

    async def setup() -> tuple[str, str, str]:
        await client.start_server()
        resp = await client.post(
            "/api/register",
            json={"email": "o@example.com", "password": "owner password 1", "display_name": "O"},
        )
        token = (await resp.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        resp = await client.post("/api/rooms", headers=headers, json={"name": "R"})
        room = (await resp.json())["room"]["id"]
        resp = await client.post(f"/api/rooms/{room}/invites", headers=headers, json={})
        return token, room, (await resp.json())["code"]

    token, room, code = loop.run_until_complete(setup())
    try:
        yield Harness(loop, client, token, room, code)
    finally:
        loop.run_until_complete(client.close())
        loop.close()


async def _check(h: Harness, method: str, path: str, body: bytes, auth: str | None) -> None:
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = auth
    if h.baseline is None:
        h.baseline = await h.counts()
    resp = await h.client.request(
        method, path, data=body if method != "GET" else None, headers=headers
    )
    text = await resp.text()
    assert resp.status in ALLOWED, (resp.status, path, body[:200], text[:300])
    if resp.status >= 400:
        assert resp.content_type == "application/problem+json", text[:200]
        problem = json.loads(text)
        assert problem["status"] == resp.status and problem["code"]
        assert "Traceback" not in text
        if method != "GET":
            assert await h.counts() == h.baseline, (path, body[:200])
    else:
        h.baseline = None  # an accepted request may store: take a new baseline next time


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
def test_fuzz_bodies(harness: Harness, endpoint: Endpoint) -> None:
    """Hostile bodies, with a valid token where one is needed."""

    @settings(
        max_examples=30,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(body=bodies(endpoint.fields))
    def run(body: bytes) -> None:
        path = endpoint.path.format(room=harness.room, code="zz-unknown-code")
        auth = f"Bearer {harness.token}" if endpoint.auth else None
        harness.run(_check(harness, endpoint.method, path, body, auth))

    run()


@pytest.mark.parametrize(
    "endpoint", [e for e in ENDPOINTS if e.auth or "{" in e.path], ids=lambda e: e.path
)
def test_fuzz_headers_and_paths(harness: Harness, endpoint: Endpoint) -> None:
    """Hostile Authorization headers and path parameters, with an empty object body."""

    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(auth=AUTH_HEADERS, param=PATH_PARAMS)
    def run(auth: str | None, param: str) -> None:
        safe = quote(param, safe="")
        path = endpoint.path.format(room=safe, code=safe)
        harness.run(_check(harness, endpoint.method, path, b"{}", auth))

    run()
