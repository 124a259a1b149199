"""Shared fixtures: a real MongoDB-wire server for the whole session.

``mongo_url`` is ``TEST_MONGO_URL`` when set (a real MongoDB), otherwise an ``nx-27017`` child
process started once per session on a private Unix socket (as ``sfu serve`` runs it) with its
data in a temp directory.
No in-memory fake: the accounts tests run against the same wire protocol as production.
Each test that needs a store gets its own database name (``mongo_db``), so tests never see
each other's documents.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from signaling import accounts
from signaling.app import create_app
from signaling.settings import Settings
from signaling.store.embedded import SOCKET_NAME, unix_server_command, unix_socket_url
from signaling.store.mongo import Store

# Media in the test process unless a test asks for worker processes (issue 12: the default
# is one worker per CPU).
os.environ.setdefault("SFU_WORKERS", "0")


def _wait_ping(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nx-27017 exited early: {log_path.read_text(errors='replace')}")
        client: MongoClient[dict[str, object]] = MongoClient(url, serverSelectionTimeoutMS=300)
        try:
            client.admin.command("ping")
            return
        except PyMongoError:
            time.sleep(0.1)
        finally:
            client.close()
    raise RuntimeError(f"nx-27017 did not answer on {url}")


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real MongoDB-wire server for the session (TEST_MONGO_URL or nx-27017)."""
    external = os.environ.get("TEST_MONGO_URL")
    if external:
        yield external
        return
    data_dir = tmp_path_factory.mktemp("nx27017")
    (data_dir / "db").mkdir()
    # As ``sfu serve`` runs it: on a private Unix socket (a short path: 107 bytes at most).
    socket_dir = Path(tempfile.mkdtemp(prefix="sfu-test-store-"))
    socket_path = socket_dir / SOCKET_NAME
    log_path = data_dir / "out.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            unix_server_command(sys.executable, data_dir, socket_path),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    url = unix_socket_url(socket_path)
    try:
        _wait_ping(url, proc, log_path, timeout_s=20.0)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(socket_dir, ignore_errors=True)


@pytest.fixture
def mongo_db() -> str:
    """A database name unique to this test."""
    return "t_" + uuid.uuid4().hex[:16]


class RecordingSender:
    """A ``CodeSender`` that keeps every code it was asked to deliver (for tests)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    async def send(self, channel: str, address: str, code: str, expires_at: object) -> None:
        """Record ``(channel, address, code)``."""
        self.sent.append((channel, address, code))

    def last_code(self, address: str) -> str:
        """The latest code sent to ``address``."""
        for _channel, to, code in reversed(self.sent):
            if to == address:
                return code
        raise LookupError(address)


@pytest.fixture
def accounts_settings(tmp_path: Path, mongo_url: str, mongo_db: str) -> Settings:
    """Settings for an app on the session's store, its own database, fast bcrypt."""
    return Settings(
        mongo_url=mongo_url,
        mongo_db=mongo_db,
        data_dir=tmp_path,
        jwt_secret="test-secret-" + "x" * 40,
        bcrypt_cost=4,
        ice_hosts=["127.0.0.1"],
        allowed_origins=["https://allowed.example"],
    )


class Api:
    """A running app (``create_app``) with a test client and helpers for the accounts API."""

    def __init__(self, client: TestClient[web.Request, web.Application], sender: RecordingSender):
        self.client = client
        self.sender = sender

    @property
    def app(self) -> web.Application:
        """The application under test."""
        return self.client.app

    @property
    def store(self) -> Store:
        """The app's store."""
        return self.app[accounts.STORE]

    async def register(
        self, email: str = "alice@example.com", password: str = "correct horse battery"
    ) -> dict[str, Any]:
        """Register and return the session body (asserts 201)."""
        resp = await self.client.post(
            "/api/register",
            json={"email": email, "password": password, "display_name": email.split("@")[0]},
        )
        assert resp.status == 201, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body

    @staticmethod
    def auth(session: dict[str, Any]) -> dict[str, str]:
        """``Authorization`` header for a session body or a room-token body."""
        token = session.get("access_token") or session["token"]
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def api(
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
    accounts_settings: Settings,
) -> Api:
    """The full app (``create_app``) on the session store, with a recording code sender."""
    app = create_app(accounts_settings)
    sender = RecordingSender()
    app[accounts.CODE_SENDER] = sender
    client = await aiohttp_client(app)
    return Api(client, sender)
