"""Accounts API against a real nx-27017: register, login, one-time codes, refresh, logout."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from signaling import keys
from signaling.accounts import OTP_KEY
from signaling.app import create_app
from signaling.auth import otp
from signaling.settings import Settings
from tests.conftest import Api

PASSWORD = "correct horse battery"


async def _problem(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    body: dict[str, Any] = await resp.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["type"] == f"urn:sfu:problem:{code}"
    return body


async def test_register_login_me(api: Api) -> None:
    session = await api.register("Alice@Example.com")
    assert session["token_type"] == "Bearer"
    assert session["user"]["email"] == "alice@example.com"
    assert "password_hash" not in session["user"]
    resp = await api.client.post(
        "/api/login", json={"email": "alice@example.com", "password": PASSWORD}
    )
    assert resp.status == 200
    login = await resp.json()
    me = await api.client.get("/api/me", headers=api.auth(login))
    assert me.status == 200
    assert (await me.json())["user"]["id"] == session["user"]["id"]
    stored = await api.store.db.users.find_one({"email": "alice@example.com"})
    assert stored is not None and stored["password_hash"].startswith("$2b$04$")


async def test_duplicate_email_is_409(api: Api) -> None:
    await api.register()
    resp = await api.client.post(
        "/api/register",
        json={"email": "ALICE@example.com", "password": PASSWORD, "display_name": "A"},
    )
    await _problem(resp, 409, "email_taken")


async def test_wrong_email_and_wrong_password_answer_alike(api: Api) -> None:
    await api.register()
    wrong_pw = await api.client.post(
        "/api/login", json={"email": "alice@example.com", "password": "not the password"}
    )
    unknown = await api.client.post(
        "/api/login", json={"email": "bob@example.com", "password": PASSWORD}
    )
    a = await _problem(wrong_pw, 401, "invalid_credentials")
    b = await _problem(unknown, 401, "invalid_credentials")
    assert a == b


@pytest.mark.parametrize(
    "password",
    ["short", "aaaaaaaaaaaaaa", "alice@example.com", "1234567890", "x" * 73, "é" * 40, "   \t  x "],
)
async def test_password_rules(api: Api, password: str) -> None:
    resp = await api.client.post(
        "/api/register",
        json={"email": "alice@example.com", "password": password, "display_name": "A"},
    )
    assert resp.status == 422
    body = await resp.json()
    assert body["code"] in ("weak_password", "validation_failed")
    assert await api.store.db.users.count_documents({}) == 0


async def _login(client: Any, base: str, password: str, email: str = "alice@example.com") -> Any:
    resp = await client.post(f"{base}/api/login", json={"email": email, "password": password})
    await resp.read()
    return resp


@pytest.fixture
async def backoff_app(
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
    accounts_settings: Settings,
) -> Callable[[], Awaitable[TestClient[web.Request, web.Application]]]:
    """``await backoff_app()``: a fresh app (a "restarted server") on the same database, with
    3 free failed logins and a long first back-off."""
    settings = accounts_settings.model_copy(
        update={"login_free_failures": 3, "login_backoff_base_s": 600.0}
    )

    async def make() -> TestClient[web.Request, web.Application]:
        return await aiohttp_client(create_app(settings))

    return make


async def test_failed_logins_back_off_per_account_and_address_and_survive_restart(
    backoff_app: Callable[[], Awaitable[TestClient[web.Request, web.Application]]],
) -> None:
    first = await backoff_app()
    base = str(first.make_url("")).rstrip("/")
    resp = await first.post(
        "/api/register",
        json={"email": "alice@example.com", "password": PASSWORD, "display_name": "alice"},
    )
    assert resp.status == 201
    # An attacker on another address (127.0.0.2) guesses: 3 free failures, then back-off.
    attacker = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0)))
    owner = aiohttp.ClientSession()
    try:
        statuses = [(await _login(attacker, base, "wrong guess!")).status for _ in range(12)]
        assert statuses == [401] * 3 + [429] * 9
        limited = await _login(attacker, base, PASSWORD)  # even the right password waits
        assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1
        # The owner, from her own address, is not locked out.
        assert (await _login(owner, base, PASSWORD)).status == 200
        # Her own typos count, but a success resets them: 2 + 2 failures never back off.
        for password in ("typo-1", "typo-2", PASSWORD, "typo-3", "typo-4", PASSWORD):
            expected = 200 if password == PASSWORD else 401
            assert (await _login(owner, base, password)).status == expected
        # A restarted server (a new app on the same store) keeps the attacker backing off.
        second = await backoff_app()
        base = str(second.make_url("")).rstrip("/")
        assert (await _login(attacker, base, PASSWORD)).status == 429
        assert (await _login(owner, base, PASSWORD)).status == 200
    finally:
        await attacker.close()
        await owner.close()


# -- one-time codes ------------------------------------------------------------------------


async def _otp_request(api: Api, email: str = "dora@example.com") -> dict[str, Any]:
    resp = await api.client.post("/api/otp/request", json={"email": email})
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    assert len(body["hash"]) == 64 and body["expires"] > time.time()
    return body


async def test_otp_full_flow_creates_user_then_reuses_it(api: Api) -> None:
    sent = await _otp_request(api)
    code = api.sender.last_code("dora@example.com")
    assert len(code) == 6 and code.isdigit()
    resp = await api.client.post(
        "/api/otp/verify",
        json={"email": "dora@example.com", "code": code, **sent, "display_name": "Dora"},
    )
    assert resp.status == 200, await resp.text()
    first = await resp.json()
    assert first["user"]["display_name"] == "Dora"
    # Second login with a new code: same user, no new account.
    sent2 = await _otp_request(api)
    resp = await api.client.post(
        "/api/otp/verify",
        json={
            "email": "dora@example.com",
            "code": api.sender.last_code("dora@example.com"),
            **sent2,
        },
    )
    assert resp.status == 200
    assert (await resp.json())["user"]["id"] == first["user"]["id"]
    assert await api.store.db.users.count_documents({}) == 1


async def test_otp_by_phone(api: Api) -> None:
    resp = await api.client.post("/api/otp/request", json={"phone": "+4915112345678"})
    assert resp.status == 200
    sent = await resp.json()
    resp = await api.client.post(
        "/api/otp/verify",
        json={"phone": "+4915112345678", "code": api.sender.last_code("+4915112345678"), **sent},
    )
    assert resp.status == 200
    assert (await resp.json())["user"]["phone"] == "+4915112345678"


async def test_otp_wrong_code_then_right_code(api: Api) -> None:
    sent = await _otp_request(api)
    code = api.sender.last_code("dora@example.com")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    resp = await api.client.post(
        "/api/otp/verify", json={"email": "dora@example.com", "code": wrong, **sent}
    )
    await _problem(resp, 401, "otp_invalid")
    resp = await api.client.post(
        "/api/otp/verify", json={"email": "dora@example.com", "code": code, **sent}
    )
    assert resp.status == 200


async def test_otp_hash_is_single_use(api: Api) -> None:
    sent = await _otp_request(api)
    body = {"email": "dora@example.com", "code": api.sender.last_code("dora@example.com"), **sent}
    assert (await api.client.post("/api/otp/verify", json=body)).status == 200
    await _problem(await api.client.post("/api/otp/verify", json=body), 401, "otp_used")


async def test_otp_identity_is_bound(api: Api) -> None:
    sent = await _otp_request(api)
    code = api.sender.last_code("dora@example.com")
    resp = await api.client.post(
        "/api/otp/verify", json={"email": "eve@example.com", "code": code, **sent}
    )
    await _problem(resp, 401, "otp_invalid")


async def test_otp_five_attempts(api: Api) -> None:
    sent = await _otp_request(api)
    code = api.sender.last_code("dora@example.com")
    wrong = f"{(int(code) + 7) % 1_000_000:06d}"
    for _ in range(5):
        resp = await api.client.post(
            "/api/otp/verify", json={"email": "dora@example.com", "code": wrong, **sent}
        )
        await _problem(resp, 401, "otp_invalid")
    # The sixth attempt is refused even with the right code.
    resp = await api.client.post(
        "/api/otp/verify", json={"email": "dora@example.com", "code": code, **sent}
    )
    await _problem(resp, 429, "otp_attempts_exceeded")


async def test_otp_expired(api: Api) -> None:
    key = api.app[OTP_KEY]
    expires = int(time.time()) - 1
    forged_hash = otp.code_hash(key, "email:dora@example.com", "123456", expires)
    resp = await api.client.post(
        "/api/otp/verify",
        json={
            "email": "dora@example.com",
            "code": "123456",
            "hash": forged_hash,
            "expires": expires,
        },
    )
    await _problem(resp, 401, "otp_expired")
    # Tampering with the expiry breaks the HMAC.
    resp = await api.client.post(
        "/api/otp/verify",
        json={
            "email": "dora@example.com",
            "code": "123456",
            "hash": forged_hash,
            "expires": expires + 120,
        },
    )
    await _problem(resp, 401, "otp_invalid")


async def test_otp_request_rate_limited_per_identity_and_address(api: Api) -> None:
    settings = api.app[keys.SETTINGS]
    for _ in range(settings.otp_rate_per_identity):
        await _otp_request(api)
    resp = await api.client.post("/api/otp/request", json={"email": "dora@example.com"})
    await _problem(resp, 429, "rate_limited")
    assert "Retry-After" in resp.headers
    # Per address: other identities from the same client also run out.
    statuses = []
    for i in range(settings.otp_rate_per_address + 1):
        resp = await api.client.post("/api/otp/request", json={"email": f"u{i}@example.com"})
        statuses.append(resp.status)
    assert statuses[-1] == 429


async def test_otp_request_limits_survive_a_restart(
    api: Api,
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
) -> None:
    settings = api.app[keys.SETTINGS]
    for _ in range(settings.otp_rate_per_identity):
        await _otp_request(api)
    # A restarted server (a new app on the same store) still counts them.
    restarted = await aiohttp_client(create_app(settings))
    resp = await restarted.post("/api/otp/request", json={"email": "dora@example.com"})
    await _problem(resp, 429, "rate_limited")
    other = await restarted.post("/api/otp/request", json={"email": "erin@example.com"})
    assert other.status == 200


# -- refresh and logout ----------------------------------------------------------------------


async def test_refresh_rotates_and_reuse_revokes_family(api: Api) -> None:
    s0 = await api.register()
    r1 = await api.client.post("/api/token/refresh", json={"refresh_token": s0["refresh_token"]})
    assert r1.status == 200
    s1 = await r1.json()
    assert s1["refresh_token"] != s0["refresh_token"]
    r2 = await api.client.post("/api/token/refresh", json={"refresh_token": s1["refresh_token"]})
    assert r2.status == 200
    s2 = await r2.json()
    # Replaying the spent s0 token: theft suspected, the whole family dies.
    replay = await api.client.post(
        "/api/token/refresh", json={"refresh_token": s0["refresh_token"]}
    )
    await _problem(replay, 401, "refresh_reused")
    after = await api.client.post("/api/token/refresh", json={"refresh_token": s2["refresh_token"]})
    assert after.status == 401
    # A separate login (another family) is unaffected.
    login = await api.client.post(
        "/api/login", json={"email": "alice@example.com", "password": PASSWORD}
    )
    other = await login.json()
    ok = await api.client.post("/api/token/refresh", json={"refresh_token": other["refresh_token"]})
    assert ok.status == 200


async def test_unknown_refresh_token(api: Api) -> None:
    resp = await api.client.post("/api/token/refresh", json={"refresh_token": "A" * 43})
    await _problem(resp, 401, "refresh_invalid")


async def test_logout_revokes_access_and_refresh(api: Api) -> None:
    session = await api.register()
    resp = await api.client.post(
        "/api/logout", headers=api.auth(session), json={"refresh_token": session["refresh_token"]}
    )
    assert resp.status == 204
    me = await api.client.get("/api/me", headers=api.auth(session))
    body = await _problem(me, 401, "token_revoked")
    assert body["detail"]
    assert me.headers["WWW-Authenticate"].startswith("Bearer")
    again = await api.client.post(
        "/api/token/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert again.status == 401


async def test_me_requires_token(api: Api) -> None:
    await _problem(await api.client.get("/api/me"), 401, "token_missing")
    bad = await api.client.get("/api/me", headers={"Authorization": "Bearer not.a.jwt"})
    await _problem(bad, 401, "token_invalid")
