"""The store: embedded nx-27017 launcher, indexes, restart persistence, start-up refusals."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from signaling import accounts
from signaling.app import create_app
from signaling.auth.secrets import SecretError
from signaling.settings import Settings
from signaling.store import DuplicateError, EmbeddedMongo, Store, StoreStartError
from signaling.store.mongo import utcnow

PASSWORD = "correct horse battery"


async def test_store_indexes_and_ttl_filters(mongo_url: str, mongo_db: str) -> None:
    store = await Store.connect(mongo_url, mongo_db)
    try:
        await store.ensure_indexes()
        await store.ensure_indexes()  # idempotent
        await store.create_user(display_name="a", email="a@example.com")
        with pytest.raises(DuplicateError):
            await store.create_user(display_name="b", email="a@example.com")
        # Phone-only users do not collide on the (sparse) email index.
        await store.create_user(display_name="p1", phone="+15550000001")
        await store.create_user(display_name="p2", phone="+15550000002")
        # Expired documents are filtered even before the TTL monitor deletes them.
        await store.revoke_jti("old", utcnow() - timedelta(seconds=1))
        await store.revoke_jti("new", utcnow() + timedelta(minutes=5))
        assert not await store.is_revoked("old")
        assert await store.is_revoked("new")
        invite = await store.create_invite(
            room_id="r", created_by="u", role="speaker", max_uses=2, ttl=timedelta(minutes=5)
        )
        assert (await store.use_invite(invite.code)) is not None
        assert (await store.use_invite(invite.code)) is not None
        assert (await store.use_invite(invite.code)) is None
    finally:
        await store.close()


async def test_chat_history_keeps_store_order_within_one_millisecond(
    mongo_url: str, mongo_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BSON dates keep ms: messages stored within one ms must still come back in order."""
    store = await Store.connect(mongo_url, mongo_db)
    try:
        await store.ensure_indexes()
        instant = utcnow()
        monkeypatch.setattr("signaling.store.mongo.utcnow", lambda: instant)
        texts = [f"line {i}" for i in range(12)]
        for text in texts:
            await store.add_chat_message(
                room_id="same-ms", participant="p", identity="w", name="w", text=text
            )
        records = await store.recent_chat_messages("same-ms", limit=50)
        assert {r.at for r in records} == {instant}
        assert [r.text for r in records] == texts
        assert [r.text for r in await store.recent_chat_messages("same-ms", limit=5)] == texts[-5:]
    finally:
        await store.close()


async def test_embedded_start_stop_and_persistence(tmp_path: Path) -> None:
    server = EmbeddedMongo(tmp_path / "mongo")
    url = await server.start()
    store = await Store.connect(url, "sfu")
    await store.ensure_indexes()
    await store.create_user(display_name="kept", email="kept@example.com")
    await store.close()
    await server.stop()
    await server.stop()  # safe twice

    again = EmbeddedMongo(tmp_path / "mongo")
    url2 = await again.start()
    store = await Store.connect(url2, "sfu")
    try:
        user = await store.find_user(email="kept@example.com")
        assert user is not None and user.display_name == "kept"
    finally:
        await store.close()
        await again.stop()


def _socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets process ``pid`` holds open (``/proc/<pid>/fd``)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _listening_inodes(pid: int, table: str) -> set[str]:
    """Inodes of the LISTEN sockets in ``/proc/<pid>/net/<table>`` (``tcp``, ``tcp6``,
    ``unix``)."""
    with open(f"/proc/{pid}/net/{table}") as handle:
        rows = [line.split() for line in handle.readlines()[1:]]
    if table == "unix":  # Num RefCount Protocol Flags Type St Inode [Path]; Flags 00010000
        return {r[6] for r in rows if len(r) >= 7 and int(r[3], 16) & 0x10000}
    return {r[9] for r in rows if len(r) >= 10 and r[3] == "0A"}  # st 0A = LISTEN


async def test_embedded_store_has_no_tcp_port(tmp_path: Path) -> None:
    """nx-27017 has no authentication: it must not listen on TCP (any local user could reach
    a loopback port), only on a Unix socket that only our user can open."""
    server = EmbeddedMongo(tmp_path / "mongo")
    url = await server.start()
    try:
        assert server._proc is not None
        pid = server._proc.pid
        held = _socket_inodes(pid)
        tcp = _listening_inodes(pid, "tcp") | _listening_inodes(pid, "tcp6")
        assert not held & tcp, "the embedded store listens on a TCP port"
        assert held & _listening_inodes(pid, "unix")
        assert url.startswith("mongodb://%2F") and url.endswith(".sock/")
        socket_path = server.socket_path
        assert socket_path is not None and stat.S_ISSOCK(socket_path.stat().st_mode)
        assert stat.S_IMODE(socket_path.stat().st_mode) & 0o077 == 0
        assert stat.S_IMODE(socket_path.parent.stat().st_mode) == 0o700
        store = await Store.connect(url, "sfu")
        try:
            await store.create_user(display_name="u", email="u@example.com")
            assert await store.find_user(email="u@example.com") is not None
        finally:
            await store.close()
    finally:
        await server.stop()
    assert not socket_path.parent.exists()  # removed on stop


async def test_embedded_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreStartError, match="cannot run"):
        await EmbeddedMongo(tmp_path / "a", executable=str(tmp_path / "missing")).start()
    with pytest.raises(StoreStartError, match="exited with status"):
        await EmbeddedMongo(tmp_path / "b", executable="/bin/false").start()


async def test_restart_keeps_users_rooms_and_secret(tmp_path: Path) -> None:
    """``sfu serve`` defaults: embedded store + generated secret, both under the data dir."""
    settings = Settings(data_dir=tmp_path, bcrypt_cost=4, ice_hosts=["127.0.0.1"])

    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        resp = await client.post(
            "/api/register",
            json={"email": "kept@example.com", "password": PASSWORD, "display_name": "K"},
        )
        assert resp.status == 201
        session = await resp.json()
        headers = {"Authorization": f"Bearer {session['access_token']}"}
        resp = await client.post("/api/rooms", headers=headers, json={"name": "R"})
        room_id = (await resp.json())["room"]["id"]
        embedded = client.app[accounts.EMBEDDED]
        assert embedded is not None
        proc = embedded._proc
    finally:
        await client.close()
    assert proc is not None and proc.returncode is not None  # the child was stopped
    secret_file = tmp_path / "jwt_secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600

    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        resp = await client.post(
            "/api/login", json={"email": "kept@example.com", "password": PASSWORD}
        )
        assert resp.status == 200
        # The secret survived too: the old access token still verifies.
        resp = await client.get("/api/rooms", headers=headers)
        assert resp.status == 200
        assert [r["id"] for r in (await resp.json())["rooms"]] == [room_id]
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"env": "production"}, "required in production"),
        ({"env": "production", "jwt_secret": "short"}, "at least 32 bytes"),
        ({"mongo_url": "mongodb://127.0.0.1:1/"}, "required with MONGO_URL"),
    ],
)
async def test_refuses_to_start_without_usable_secret(
    tmp_path: Path, overrides: dict[str, object], match: str
) -> None:
    settings = Settings(data_dir=tmp_path, ice_hosts=["127.0.0.1"], **overrides)  # type: ignore[arg-type]
    client = TestClient(TestServer(create_app(settings)))
    with pytest.raises(SecretError, match=match):
        await client.start_server()
    await client.close()


async def test_unreachable_mongo_is_a_clear_error(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        mongo_url="mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300",
        jwt_secret="s" * 40,
        ice_hosts=["127.0.0.1"],
    )
    client = TestClient(TestServer(create_app(settings)))
    with pytest.raises(StoreStartError, match="cannot reach MongoDB"):
        await client.start_server()
    await client.close()
