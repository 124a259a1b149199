"""Fixtures for integration tests: a real server on loopback, real aiortc peers, real tokens.

The server talks to the session's MongoDB-wire server (``mongo_url`` in tests/conftest.py)
with its own database, and signs tokens with a fixed test secret so that tests can mint room
tokens exactly as ``sfu token create`` does.
"""

from __future__ import annotations

import functools
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from sfu import _aiortc_adapter as adapter
from signaling.app import create_app
from signaling.client import RoomClient
from signaling.serverproc import start_server, stop_server, wait_healthy
from signaling.settings import Settings
from tests.support.tokens import room_token
from tests.support.udp import free_udp_port

TEST_SECRET = "integration-secret-" + "s" * 40

MakeToken = Callable[..., str]


@pytest.fixture
def rtc_port(request: pytest.FixtureRequest) -> int | None:
    """The server's ``SFU_RTC_PORT``: None (each transport binds its own ports) unless a test
    parametrizes it indirectly with ``"one-port"``, then a free UDP port (issue 14)."""
    if getattr(request, "param", None) == "one-port":
        return free_udp_port()
    return None


@pytest.fixture
def media_workers() -> int:
    """Media worker processes of the ``sfu_settings`` server: 0 keeps media in the test
    process; a test parametrizes ``media_workers`` (e.g. ``[0, 2]``) to run in workers too."""
    return 0


@pytest.fixture
def sfu_settings(
    tmp_path: Path, mongo_url: str, mongo_db: str, rtc_port: int | None, media_workers: int
) -> Settings:
    return Settings(
        rtc_port=rtc_port,
        ice_hosts=["127.0.0.1"],
        ice_servers=[],
        data_dir=tmp_path,
        mongo_url=mongo_url,
        mongo_db=mongo_db,
        jwt_secret=TEST_SECRET,
        bcrypt_cost=4,
        workers=media_workers,
        worker_room_spread_at=1,  # with workers: a room spans them, its media is piped
    )


@pytest.fixture
def make_token() -> MakeToken:
    """``make_token(room, identity, publish=True, subscribe=True, data=True, ttl_s=600,
    admin=False, kind=None, role=None)``: :func:`tests.support.tokens.room_token` signed with
    the test server's secret."""
    return functools.partial(room_token, TEST_SECRET)


PODCAST_ROOM = "pod"
"""The podcast room of the ``podcast`` fixture."""


@pytest.fixture
def podcast(room_client: Callable[..., RoomClient]) -> Callable[..., RoomClient]:
    """``podcast(identity, role, **kwargs)``: a /ws client of the podcast room
    :data:`PODCAST_ROOM` whose token carries that starting role (the host's with roomAdmin,
    a listener's without canPublish)."""

    def make(identity: str, role: str, **kwargs: Any) -> RoomClient:
        return room_client(
            PODCAST_ROOM,
            identity,
            kind="podcast",
            role=role,
            admin=role == "host",
            publish=role != "listener",
            **kwargs,
        )

    return make


@pytest.fixture
async def sfu_url(sfu_settings: Settings) -> AsyncIterator[str]:
    """Base URL of a running server (HTTP + WebSocket) on 127.0.0.1."""
    if sfu_settings.workers:
        # the media runs in workers: this process's aiortc clients need loopback candidates
        adapter.set_ice_host_addresses(["127.0.0.1"])
    app = create_app(sfu_settings)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()
        if sfu_settings.workers:
            adapter.set_ice_host_addresses([])


@pytest.fixture
def room_client(sfu_url: str, make_token: MakeToken) -> Callable[..., RoomClient]:
    """``room_client(room, identity, **kwargs)``: a RoomClient holding a token for that room."""

    def make(room: str, identity: str, **kwargs: Any) -> RoomClient:
        grant_keys = ("publish", "subscribe", "data", "admin", "kind", "role")
        grants = {k: kwargs.pop(k) for k in grant_keys if k in kwargs}
        return RoomClient(
            sfu_url, room, identity, token=make_token(room, identity, **grants), **kwargs
        )

    return make


@pytest.fixture(scope="module")
def sfu_server(
    mongo_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """``(url, secret)`` of a ``sfu serve`` subprocess (its own process and event loop, as in
    production) on the session's MongoDB-wire server, one per test module."""
    secret = secrets.token_urlsafe(48)
    env = {
        "SFU_JWT_SECRET": secret,
        "MONGO_URL": mongo_url,
        "SFU_MONGO_DB": f"server_{uuid.uuid4().hex[:12]}",
    }
    proc, url = start_server(tmp_path_factory.mktemp("sfu-server"), env=env)
    try:
        wait_healthy(url, proc, timeout_s=30)
        yield url, secret
    finally:
        stop_server(proc)
