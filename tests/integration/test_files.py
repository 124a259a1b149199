"""Encrypted file sharing (signaling/files.py) against a real server and the session's MongoDB.

Covers: byte-exact round trip, listing, authorisation, size limits (announced and streamed),
empty bodies, interrupted uploads leaving nothing behind, ciphertext at rest, tampering, and
the chat announcement (live and in chat history).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from signaling.app import create_app
from signaling.client import RoomClient
from signaling.files import FILES
from signaling.files_crypto import CHUNK_SIZE, FileCipher, resolve_master_key, unwrap_room_key
from signaling.settings import Settings
from signaling.store import files as stored
from signaling.store.files import FileStore
from tests.integration.conftest import TEST_SECRET, MakeToken

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]

LIMIT = CHUNK_SIZE + CHUNK_SIZE // 2  # 1.5 MiB: a chunk is stored before the limit is hit


@pytest.fixture
def make_client(
    aiohttp_client: Callable[..., Awaitable[Client]], sfu_settings: Settings
) -> MakeClient:
    """``await make_client(**settings_overrides)``: a test client on a fresh app."""

    async def make(**overrides: Any) -> Client:
        return await aiohttp_client(create_app(sfu_settings.model_copy(update=overrides)))

    return make


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def store_of(client: Client) -> FileStore:
    return client.app[FILES].store


async def counts(client: Client) -> dict[str, int]:
    db = store_of(client).db
    return {name: await db[name].count_documents({}) for name in (stored.FILES, stored.CHUNKS)}


async def upload(
    client: Client, room: str, token: str, data: Any, name: str = "data.bin", **headers: str
) -> aiohttp.ClientResponse:
    return await client.post(
        f"/api/rooms/{room}/files",
        data=data,
        headers={**auth(token), "X-Filename": name, **headers},
    )


class Spy:
    """Counts calls of a FileStore method (wrapping the bound method on the instance)."""

    def __init__(self, store: FileStore, method: str) -> None:
        self.calls = 0
        self.done = asyncio.Event()
        original = getattr(store, method)

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = await original(*args, **kwargs)
            self.calls += 1
            self.done.set()
            return result

        setattr(store, method, wrapper)


async def raw_http(client: Client, head: str, body: bytes = b"") -> tuple[int, str]:
    """Send a hand-written request; returns (status, response text up to the body)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        await writer.drain()
        status_line = await reader.readline()
        rest = await reader.read(4096)
        return int(status_line.split()[1]), (status_line + rest).decode(errors="replace")
    finally:
        writer.close()


async def test_round_trip_listing_and_headers(
    make_client: MakeClient, make_token: MakeToken
) -> None:
    client = await make_client()
    alice = make_token("lab", "alice", name="Alice")
    bob = make_token("lab", "bob", publish=False, data=False)  # may list and download
    data = os.urandom(3 * CHUNK_SIZE + 12345)

    resp = await upload(client, "lab", alice, data, "..%2F..%5Cr%C3%A9sum%C3%A9%20v1.bin")
    assert resp.status == 201, await resp.text()
    first = await resp.json()
    assert set(first) == {"id", "name", "size", "content_type", "uploaded_by", "at"}
    assert first["name"] == "résumé v1.bin"  # the path component is stripped
    assert first["size"] == len(data)
    assert first["uploaded_by"] == "alice"
    assert first["content_type"] == "application/octet-stream"
    assert resp.headers["Location"] == f"/api/rooms/lab/files/{first['id']}"
    assert await counts(client) == {stored.FILES: 1, stored.CHUNKS: 4}

    exact = os.urandom(2 * CHUNK_SIZE)  # ends on a chunk boundary: 2 chunks, not 3
    resp = await client.post(
        "/api/rooms/lab/files",
        params={"name": "photo.png"},
        data=exact,
        headers={**auth(alice), "Content-Type": "image/png; charset=x"},
    )
    assert resp.status == 201, await resp.text()
    second = await resp.json()
    assert second["content_type"] == "image/png"
    assert await counts(client) == {stored.FILES: 2, stored.CHUNKS: 6}

    resp = await client.get("/api/rooms/lab/files", headers=auth(bob))
    assert resp.status == 200
    assert (await resp.json())["files"] == [second, first]  # newest first

    resp = await client.get(f"/api/rooms/lab/files/{first['id']}", headers=auth(bob))
    assert resp.status == 200
    assert await resp.read() == data
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert resp.headers["Content-Length"] == str(len(data))
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Content-Disposition"] == (
        "attachment; filename=\"resume v1.bin\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20v1.bin"
    )
    assert "Content-Security-Policy" in resp.headers

    resp = await client.get(f"/api/rooms/lab/files/{second['id']}", headers=auth(alice))
    assert resp.status == 200
    assert await resp.read() == exact
    assert resp.headers["Content-Type"] == "application/octet-stream"  # never image/png


async def test_stored_bytes_are_ciphertext_under_a_wrapped_room_key(
    make_client: MakeClient, make_token: MakeToken, sfu_settings: Settings
) -> None:
    client = await make_client()
    marker = b"PLAINTEXT-MARKER-0123456789 "
    data = marker * (2 * CHUNK_SIZE // len(marker))
    resp = await upload(client, "vault", make_token("vault", "alice"), data)
    assert resp.status == 201
    file_id = (await resp.json())["id"]

    db = store_of(client).db
    chunks = [doc async for doc in db[stored.CHUNKS].find({"files_id": file_id}).sort("n", 1)]
    assert [doc["n"] for doc in chunks] == [0, 1]
    assert all(marker[:16] not in bytes(doc["data"]) for doc in chunks)
    key_doc = await db[stored.ROOM_KEYS].find_one({"_id": "vault"})
    assert key_doc is not None and key_doc["alg"] == "A256GCM"
    file_doc = await db[stored.FILES].find_one({"_id": file_id})
    assert file_doc is not None
    assert file_doc["length"] == len(data) + 2 * 16  # GridFS length: the stored bytes

    # The stored chunks open with the room key unwrapped by the (HKDF-derived) master key.
    master = resolve_master_key(sfu_settings, TEST_SECRET)
    data_key = unwrap_room_key(master, "vault", bytes(key_doc["wrapped"]))
    assert data_key not in bytes(key_doc["wrapped"])
    nonce_prefix = bytes.fromhex(file_doc["metadata"]["nonce_prefix"])
    cipher = FileCipher(data_key, "vault", file_id, nonce_prefix)
    assert cipher.decrypt([bytes(doc["data"]) for doc in chunks]) == data

    # A second file of the room reuses the room key.
    resp = await upload(client, "vault", make_token("vault", "bob"), b"hello")
    assert resp.status == 201
    assert await db[stored.ROOM_KEYS].count_documents({}) == 1


async def test_authorisation(make_client: MakeClient, make_token: MakeToken) -> None:
    client = await make_client()
    resp = await upload(client, "alpha", make_token("alpha", "alice"), b"alpha file")
    assert resp.status == 201
    alpha_id = (await resp.json())["id"]
    beta = make_token("beta", "mallory")
    paths = ("/api/rooms/alpha/files", f"/api/rooms/alpha/files/{alpha_id}")

    for path in paths:
        resp = await client.get(path)
        assert resp.status == 401
        assert resp.content_type == "application/problem+json"
        assert (await resp.json())["code"] == "token_missing"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        resp = await client.get(path, headers=auth("not-a-token"))
        assert (resp.status, (await resp.json())["code"]) == (401, "token_invalid")
        resp = await client.get(path, headers=auth(beta))  # a token of another room
        assert (resp.status, (await resp.json())["code"]) == (403, "wrong_room")
    resp = await client.post("/api/rooms/alpha/files", data=b"x")
    assert resp.status == 401
    resp = await upload(client, "alpha", beta, b"x")
    assert (resp.status, (await resp.json())["code"]) == (403, "wrong_room")
    resp = await upload(client, "alpha", make_token("alpha", "viewer", data=False), b"x")
    assert (resp.status, (await resp.json())["code"]) == (403, "cannot_publish_data")

    # Another room's file id is not found, even with a valid token for this room.
    resp = await client.get(f"/api/rooms/beta/files/{alpha_id}", headers=auth(beta))
    assert (resp.status, (await resp.json())["code"]) == (404, "file_not_found")
    for bad_id in ("f_" + "0" * 24, "nope", "f_" + "A" * 24):
        resp = await client.get(f"/api/rooms/beta/files/{bad_id}", headers=auth(beta))
        assert resp.status == 404
    resp = await client.get("/api/rooms/beta/files", headers=auth(beta))
    assert (await resp.json())["files"] == []
    assert await counts(client) == {stored.FILES: 1, stored.CHUNKS: 1}


async def test_limits_empty_bodies_and_bad_names(
    make_client: MakeClient, make_token: MakeToken
) -> None:
    client = await make_client(max_upload_bytes=LIMIT)
    token = make_token("small", "alice")
    put_chunk = Spy(store_of(client), "put_chunk")

    # Announced too large: refused from the headers, before any body byte is sent.
    status, text = await raw_http(
        client,
        f"POST /api/rooms/small/files HTTP/1.1\nHost: x\nAuthorization: Bearer {token}\n"
        f"X-Filename: big.bin\nContent-Length: {LIMIT + 1}\n",
    )
    assert status == 413 and "file_too_large" in text
    # The same with Expect: 100-continue: 413 instead of "100 Continue".
    status, text = await raw_http(
        client,
        f"POST /api/rooms/small/files HTTP/1.1\nHost: x\nAuthorization: Bearer {token}\n"
        f"Expect: 100-continue\nContent-Length: {LIMIT + 1}\n",
    )
    assert status == 413 and "file_too_large" in text
    assert put_chunk.calls == 0
    # A body within the limit gets "100 Continue", then is stored.
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        f"POST /api/rooms/small/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        "Expect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n".encode()
    )
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 100")
    assert await reader.readline() == b"\r\n"
    writer.write(b"hello")
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 201")
    writer.close()
    assert put_chunk.calls == 1
    put_chunk.calls = 0

    # Streamed without Content-Length (chunked) past the limit: refused mid-stream.
    async def endless() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b"\xaa" * (64 * 1024)

    resp = await upload(client, "small", token, endless())
    assert resp.status == 413
    body = await resp.json()
    assert body["code"] == "file_too_large" and body["max_bytes"] == LIMIT
    assert put_chunk.calls == 1  # one chunk was stored before the limit was passed ...
    assert await counts(client) == {stored.FILES: 1, stored.CHUNKS: 1}  # deleted: only "hello"

    # Exactly at the limit is fine.
    resp = await upload(client, "small", token, os.urandom(LIMIT))
    assert resp.status == 201
    assert (await resp.json())["size"] == LIMIT

    async def nothing() -> AsyncIterator[bytes]:
        for _ in ():
            yield b""

    resp = await upload(client, "small", token, b"")
    assert (resp.status, (await resp.json())["code"]) == (400, "empty_file")
    resp = await upload(client, "small", token, nothing())  # chunked, zero bytes
    assert (resp.status, (await resp.json())["code"]) == (400, "empty_file")

    for bad in ("%FF%FE.txt", "caf%C3"):
        resp = await upload(client, "small", token, b"x", bad)
        assert (resp.status, (await resp.json())["code"]) == (400, "invalid_filename")
    resp = await upload(client, "small", token, b"x", "a" * 5000)
    assert (resp.status, (await resp.json())["code"]) == (400, "invalid_filename")

    resp = await client.post("/api/rooms/small/files", data=b"x", headers=auth(token))
    assert resp.status == 201
    assert (await resp.json())["name"] == "file"  # no name given
    resp = await upload(client, "small", token, b"x", "..%2F..%2F.%0A")
    assert (await resp.json())["name"] == "file"
    assert await counts(client) == {stored.FILES: 4, stored.CHUNKS: 5}


@pytest.mark.parametrize("cancel_handlers", [True, False], ids=["cancelled", "not-cancelled"])
async def test_interrupted_upload_leaves_nothing(
    sfu_settings: Settings, make_token: MakeToken, cancel_handlers: bool
) -> None:
    """aiohttp either cancels the handler when its client goes away (TestServer) or lets it
    run on to a read error (``web.run_app``, as ``sfu serve``): both must clean up."""
    app = create_app(sfu_settings)
    runner = web.AppRunner(app, handler_cancellation=cancel_handlers)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    url = f"http://{host}:{port}"
    token = make_token("flaky", "alice")
    try:
        store = app[FILES].store
        put_chunk = Spy(store, "put_chunk")
        delete_chunks = Spy(store, "delete_chunks")

        async def counted() -> dict[str, int]:
            return {n: await store.db[n].count_documents({}) for n in (stored.FILES, stored.CHUNKS)}

        # 1. An aiohttp client whose body generator fails after two stored chunks (chunked).
        async def dies() -> AsyncIterator[bytes]:
            for _ in range(40):
                yield os.urandom(64 * 1024)  # 2.5 MiB in all
            while put_chunk.calls < 2:
                await asyncio.sleep(0.01)
            raise RuntimeError("client gone")

        async with aiohttp.ClientSession() as http:
            with pytest.raises((aiohttp.ClientError, RuntimeError)):
                resp = await http.post(
                    f"{url}/api/rooms/flaky/files", data=dies(), headers=auth(token)
                )
                await resp.read()
        await asyncio.wait_for(delete_chunks.done.wait(), timeout=10)
        assert put_chunk.calls == 2
        assert await counted() == {stored.FILES: 0, stored.CHUNKS: 0}

        # 2. A raw client that announces 3 MiB, sends 2.5 MiB and closes the connection.
        delete_chunks.done.clear()
        _reader, writer = await asyncio.open_connection(host, port)
        head = (
            f"POST /api/rooms/flaky/files HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: {3 * CHUNK_SIZE}\r\n\r\n"
        )
        writer.write(head.encode() + os.urandom(5 * CHUNK_SIZE // 2))
        await writer.drain()
        while put_chunk.calls < 4:
            await asyncio.sleep(0.01)
        writer.close()
        await asyncio.wait_for(delete_chunks.done.wait(), timeout=10)
        assert delete_chunks.calls == 2
        assert await counted() == {stored.FILES: 0, stored.CHUNKS: 0}
        assert await store.list_files("flaky") == []
    finally:
        await runner.cleanup()


async def test_tampered_chunks_never_reach_the_client_as_content(
    make_client: MakeClient, make_token: MakeToken
) -> None:
    client = await make_client()
    token = make_token("evil", "alice")
    resp = await upload(client, "evil", token, os.urandom(5 * CHUNK_SIZE // 2))
    file_id = (await resp.json())["id"]
    chunks = store_of(client).db[stored.CHUNKS]

    async def flip(n: int) -> None:
        doc = await chunks.find_one({"files_id": file_id, "n": n})
        assert doc is not None
        data = bytearray(doc["data"])
        data[100] ^= 0xFF
        await chunks.delete_one({"_id": doc["_id"]})
        await chunks.insert_one({"files_id": file_id, "n": n, "data": bytes(data)})

    await flip(1)  # a middle chunk: headers are sent, then the connection is cut short
    with pytest.raises(aiohttp.ClientPayloadError):
        resp = await client.get(f"/api/rooms/evil/files/{file_id}", headers=auth(token))
        assert resp.status == 200
        await resp.read()
    await flip(0)  # the first chunk: a clean 500 problem
    resp = await client.get(f"/api/rooms/evil/files/{file_id}", headers=auth(token))
    assert (resp.status, (await resp.json())["code"]) == (500, "file_unreadable")


async def test_upload_is_announced_in_chat_and_history(
    sfu_settings: Settings, make_token: MakeToken
) -> None:
    server = TestServer(create_app(sfu_settings), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    alice = RoomClient(url, "party", "alice", token=make_token("party", "alice"), subscribe=False)
    bob = RoomClient(url, "party", "bob", token=make_token("party", "bob"), subscribe=False)
    late = RoomClient(url, "party", "carol", token=make_token("party", "carol"), subscribe=False)

    def chat_files(client: RoomClient) -> list[dict[str, Any]]:
        return [e["message"] for e in client.events if e["type"] == "chat"]

    try:
        await alice.connect()
        await bob.connect()
        name = '<img src=x onerror="alert(1)">.txt'
        async with aiohttp.ClientSession() as http:
            resp = await http.post(
                f"{url}/api/rooms/party/files",
                params={"name": name},
                data=b"meeting notes",
                headers={**auth(make_token("party", "alice")), "Content-Type": "text/plain"},
            )
            assert resp.status == 201
            uploaded = await resp.json()
        expected_file = {
            "id": uploaded["id"],
            "name": name,
            "size": 13,
            "content_type": "text/plain",
        }
        for client in (alice, bob):
            await client.wait_for(lambda c=client: len(chat_files(c)) == 1, timeout=5)
            (message,) = chat_files(client)
            assert message["file"] == expected_file
            assert message["identity"] == "alice"
            assert message["participant"] == alice.joined["participant"]["sid"]
            assert message["text"] == f"shared a file: {name}"

        await late.connect()
        await late.wait_for(lambda: "chat_history" in late.message_types, timeout=5)
        (history,) = [e for e in late.events if e["type"] == "chat_history"]
        assert [m["file"] for m in history["messages"]] == [expected_file]
        await late.request({"type": "chat", "text": "thanks"})
        await late.wait_for(lambda: len(chat_files(late)) == 1, timeout=5)
        assert chat_files(late)[0]["file"] is None  # ordinary messages carry no file
    finally:
        for client in (alice, bob, late):
            await client.close()
        await server.close()


async def test_storage_quotas_per_identity_and_per_room(
    make_client: MakeClient, make_token: MakeToken
) -> None:
    client = await make_client(file_quota_per_identity_bytes=3000, file_quota_per_room_bytes=5000)
    alice = make_token("quota", "alice")
    bob = make_token("quota", "bob")
    carol = make_token("quota", "carol")

    async def problem(resp: aiohttp.ClientResponse) -> dict[str, Any]:
        assert resp.status == 413, await resp.text()
        body: dict[str, Any] = await resp.json()
        assert body["code"] == "quota_exceeded"
        return body

    assert (await upload(client, "quota", alice, os.urandom(2000))).status == 201
    body = await problem(await upload(client, "quota", alice, os.urandom(1500)))
    assert body["quota_bytes"] == 3000 and body["used_bytes"] == 2000
    assert (await upload(client, "quota", alice, os.urandom(1000))).status == 201  # exactly 3000

    async def chunks(total: int) -> AsyncIterator[bytes]:
        for _ in range(total // 500):
            yield os.urandom(500)

    before = await counts(client)
    # A streamed body (no Content-Length) that passes the room's quota is cut off and
    # leaves nothing behind.
    await problem(await upload(client, "quota", bob, chunks(2500)))
    assert await counts(client) == before
    assert (await upload(client, "quota", bob, os.urandom(2000))).status == 201  # room: 5000
    await problem(await upload(client, "quota", carol, b"x"))
    listed = await client.get("/api/rooms/quota/files", headers=auth(carol))
    assert sum(f["size"] for f in (await listed.json())["files"]) == 5000
    # Other rooms have their own quota.
    assert (await upload(client, "other", make_token("other", "carol"), b"x")).status == 201
