"""The WebSocket edge under hostile or broken clients (issue 10, items 5, 6 and 16).

Malformed frames get ``bad_request`` without a logged traceback; a participant whose transport
fails is told so and leaves every hub; a client that never reads is closed once its outbox is
full; requests are rate limited per socket; a socket must join in time; each client address
has a connection cap.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from aiohttp.web import Application

from signaling import ws as ws_module
from signaling.app import create_app
from signaling.chat import CHAT
from signaling.client import RoomClient
from signaling.settings import Settings
from signaling.stage import STAGES
from signaling.whiteboard import BOARD
from signaling.wslimits import REASON_OUTBOX_OVERFLOW
from tests.integration.conftest import MakeToken
from tests.support.media import ToneTrack
from tests.support.udp import local_media_server


async def _start(settings: Settings) -> tuple[Application, TestServer, str]:
    app = create_app(settings)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return app, server, str(server.make_url("")).rstrip("/")


@pytest.fixture
async def served(sfu_settings: Settings) -> AsyncIterator[tuple[Application, str]]:
    """``(app, base URL)`` of an in-process server with the default settings."""
    app, server, url = await _start(sfu_settings)
    try:
        yield app, url
    finally:
        await server.close()


async def _reply(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    data: dict[str, Any] = json.loads(msg.data)
    return data


# -- item 6: malformed frames ------------------------------------------------------------------

MALFORMED = [
    '{"type": []}',
    '{"type": {}}',
    '{"type": [], "id": "r1"}',
    '{"type": 5}',
    "[" * 100_000,
    '{"type": "join", "room": ' + "[" * 100_000 + "}",
    "{" * 50_000,
]


async def test_malformed_type_and_deep_nesting_get_bad_request_quietly(
    served: tuple[Application, str], caplog: pytest.LogCaptureFixture
) -> None:
    _app, url = served
    caplog.set_level(logging.DEBUG)
    async with aiohttp.ClientSession() as http, http.ws_connect(url + "/ws") as ws:
        for raw in MALFORMED:
            await ws.send_str(raw)
            reply = await _reply(ws)
            assert reply["type"] == "error" and reply["code"] == "bad_request", (raw[:40], reply)
        assert (await _reply_to(ws, {"type": "ping", "id": "p"}))["type"] == "pong"
    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert noisy == [], [r.getMessage() for r in noisy]


async def _reply_to(ws: aiohttp.ClientWebSocketResponse, message: dict[str, Any]) -> dict[str, Any]:
    await ws.send_str(json.dumps(message))
    return await _reply(ws)


# -- item 16: a failed transport ---------------------------------------------------------------


async def test_failed_transport_tells_the_client_and_leaves_every_hub(
    sfu_settings: Settings, make_token: MakeToken
) -> None:
    # A failed transport is replaced (issue 11); a client that does not renegotiate within
    # the grace period is removed as before.
    app, server, url = await _start(sfu_settings.model_copy(update={"media_restart_grace_s": 1.0}))
    room = "fails"
    alice = RoomClient(url, room, "alice", token=make_token(room, "alice"))
    bob = RoomClient(url, room, "bob", token=make_token(room, "bob"))

    async def never_restarts(side: str, *, tell_server: bool = True) -> None:
        return None

    alice.restart_media = never_restarts  # type: ignore[method-assign]
    try:
        await alice.connect()
        await alice.publish([ToneTrack(440.0)])
        await bob.connect()
        await bob.wait_for(lambda: bool(bob.received))
        alice_sid = alice.joined["participant"]["sid"]
        stage = app[STAGES].rooms[room]
        assert alice_sid in stage.members
        assert len(app[CHAT].rooms[room]) == 2
        board = app[BOARD]._boards[room]
        assert len(board.members) == 2

        media_room = local_media_server(app).rooms[room]
        transport = media_room.participants[alice_sid].publish_transport
        assert transport is not None
        await bob.wait_for(lambda: transport.connection_state == "connected", timeout=10)
        # Alice's publish path dies without a word on the signaling channel (aiortc sends a
        # DTLS close_notify): the server's publish transport closes under the participant.
        assert alice.pub is not None
        await alice.pub.close()

        await alice.wait_for(lambda: bool(alice.errors), timeout=10)
        error = alice.errors[-1]
        assert error["code"] == "not_joined" and error["reason"] == "transport_failed", error
        assert error.get("ref") is None
        await bob.wait_for(
            lambda: any(
                e["type"] == "participant_left" and e["participant"] == alice_sid
                for e in bob.events
            ),
            timeout=10,
        )
        # The server closed Alice's socket (she may join again on a new one).
        await alice.wait_for(lambda: alice.ws is not None and alice.ws.closed, timeout=10)
        # Stage, chat and whiteboard forgot her session; Bob's goes on.
        assert alice_sid not in stage.members and len(stage.members) == 1
        assert len(app[CHAT].rooms[room]) == 1
        assert len(board.members) == 1
        assert list(media_room.participants) == [bob.joined["participant"]["sid"]]
        assert (await bob.request({"type": "chat", "text": "still here"}))["type"] == "ok"
        assert (await bob.request({"type": "ping"}))["type"] == "pong"
        assert any(e["type"] == "media_restart" for e in alice.events)  # told first
    finally:
        await bob.close()
        await alice.close()
        await server.close()


# -- item 5: outbox bound, request rate, pre-join rules, join timeout, per-address cap ------


class _RawWebSocket:
    """A WebSocket client on a bare non-blocking socket (RFC 6455): it reads only when told
    to, with a 4 KiB receive buffer, so the server's writes back up quickly."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()

    @classmethod
    async def connect(cls, url: str) -> _RawWebSocket:
        parts = urlsplit(url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, (parts.hostname, parts.port))
        key = base64.b64encode(os.urandom(16)).decode()
        await loop.sock_sendall(
            sock,
            (
                f"GET /ws HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode(),
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 1), 5)
            assert chunk, "server closed during the handshake"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(sock)

    @staticmethod
    def frame(text: str) -> bytes:
        """One masked text frame."""
        payload = text.encode()
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

    async def send(self, data: bytes) -> None:
        await self.loop.sock_sendall(self.sock, data)

    async def read_all(self, timeout: float = 10) -> tuple[list[str], int | None, bytes]:
        """Read until the server closes: (text frames, close code, close reason)."""
        buf = b""
        deadline = self.loop.time() + timeout
        with contextlib.suppress(ConnectionError):
            while True:
                chunk = await asyncio.wait_for(
                    self.loop.sock_recv(self.sock, 65536), deadline - self.loop.time()
                )
                if not chunk:
                    break
                buf += chunk
        texts: list[str] = []
        code: int | None = None
        reason = b""
        i = 0
        while i + 2 <= len(buf):
            opcode, n = buf[i] & 0x0F, buf[i + 1] & 0x7F
            i += 2
            if n == 126:
                (n,) = struct.unpack("!H", buf[i : i + 2])
                i += 2
            elif n == 127:
                (n,) = struct.unpack("!Q", buf[i : i + 8])
                i += 8
            payload = buf[i : i + n]
            i += n
            if opcode == 0x1:
                texts.append(payload.decode())
            elif opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                reason = payload[2:]
        return texts, code, reason

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[ws_module.Session]:
    """Every signaling Session the server creates during the test."""
    made: list[ws_module.Session] = []

    class Recorded(ws_module.Session):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(ws_module, "Session", Recorded)
    return made


async def test_a_client_that_never_reads_is_closed_at_the_outbox_bound(
    sfu_settings: Settings, make_token: MakeToken, sessions: list[ws_module.Session]
) -> None:
    bound = 64
    settings = sfu_settings.model_copy(
        update={"ws_outbox_max_messages": bound, "ws_outbox_max_bytes": 64 * 1024}
    )
    app, server, url = await _start(settings)
    room = "flood"
    bob = RoomClient(url, room, "bob", token=make_token(room, "bob"))
    raw: _RawWebSocket | None = None
    try:
        await bob.connect()
        raw = await _RawWebSocket.connect(url)
        await raw.send(
            raw.frame(json.dumps({"type": "join", "room": room, "token": make_token(room, "mal")}))
        )
        await bob.wait_for(lambda: any(e["type"] == "participant_joined" for e in bob.events))
        mallory = next(s for s in sessions if s.participant and s.participant.identity == "mal")
        mallory_sid = mallory.participant.sid if mallory.participant else ""

        def mallory_left() -> bool:
            return any(
                e["type"] == "participant_left" and e["participant"] == mallory_sid
                for e in bob.events
            )

        # Requests with a 64-character id, never reading a reply: a bounded flood (at most
        # 40000 pings, 15 s) that stops once the others see Mallory gone.
        ping = raw.frame(json.dumps({"type": "ping", "id": "p" * 64}))
        deadline = asyncio.get_running_loop().time() + 15
        sent = 0
        while not mallory_left() and sent < 40_000:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(raw.send(ping * 100), remaining)
                sent += 100
            await asyncio.sleep(0)
        await bob.wait_for(mallory_left, timeout=5)
        assert mallory.dropped == REASON_OUTBOX_OVERFLOW
        assert mallory.outbox_peak[0] <= bound and mallory.outbox_peak[1] <= 64 * 1024
        # Bob's own session goes on.
        media_room = local_media_server(app).rooms[room]
        assert [p.identity for p in media_room.participants.values()] == ["bob"]
        assert (await bob.request({"type": "ping"}))["type"] == "pong"
        assert (await bob.request({"type": "chat", "text": "calm"}))["type"] == "ok"
        # When Mallory finally reads: the replies the kernel held, then the close frame.
        texts, code, reason = await raw.read_all()
        assert code == 1008 and b"outbox overflow" in reason, (code, reason, len(texts))
        assert json.loads(texts[0])["type"] == "joined"
    finally:
        if raw is not None:
            raw.close()
        await bob.close()
        await server.close()


async def test_requests_beyond_the_token_bucket_get_rate_limited(
    sfu_settings: Settings, make_token: MakeToken
) -> None:
    rate, burst = 5.0, 10
    settings = sfu_settings.model_copy(update={"ws_request_rate": rate, "ws_request_burst": burst})
    _app, server, url = await _start(settings)
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(url + "/ws") as ws:
            join = {"type": "join", "id": "j", "room": "rate", "token": make_token("rate", "r")}
            started = asyncio.get_running_loop().time()  # before the join spends a token
            assert (await _reply_to(ws, join))["type"] == "joined"
            while (msg := await _reply(ws))["type"] != "chat_history":
                pass  # the join's follow-up events
            for i in range(30):
                await ws.send_str(json.dumps({"type": "ping", "id": f"p{i}"}))
            replies: dict[str, dict[str, Any]] = {}
            while len(replies) < 30:
                msg = await _reply(ws)
                if msg.get("ref", "").startswith("p"):
                    replies[msg["ref"]] = msg
            elapsed = asyncio.get_running_loop().time() - started
            kinds = [replies[f"p{i}"].get("code", replies[f"p{i}"]["type"]) for i in range(30)]
            assert set(kinds) == {"pong", "rate_limited"}, kinds
            # The join spent one token; the rest of the burst passes, then the refill only.
            assert burst - 1 <= kinds.count("pong") <= burst - 1 + rate * elapsed + 1, kinds
            assert kinds[: burst - 1] == ["pong"] * (burst - 1)
            # The socket and the room go on; after a pause the bucket has refilled.
            await asyncio.sleep(2 / rate)
            assert (await _reply_to(ws, {"type": "ping", "id": "later"}))["type"] == "pong"
    finally:
        await server.close()


async def test_only_join_and_ping_before_join(served: tuple[Application, str]) -> None:
    _app, url = served
    async with aiohttp.ClientSession() as http, http.ws_connect(url + "/ws") as ws:
        # Refused by type, before validation: an empty sdp would otherwise be bad_request.
        for request in (
            {"type": "offer", "id": "o", "sdp": ""},
            {"type": "chat", "id": "c", "text": "hi"},
            {"type": "leave", "id": "l"},
            {"type": "board_undo", "id": "b"},
        ):
            reply = await _reply_to(ws, request)
            assert reply["code"] == "not_joined" and reply["ref"] == request["id"], reply
        assert (await _reply_to(ws, {"type": "ping", "id": "p"}))["type"] == "pong"


async def test_a_socket_that_does_not_join_in_time_is_closed(
    sfu_settings: Settings, make_token: MakeToken
) -> None:
    settings = sfu_settings.model_copy(update={"ws_join_timeout_s": 0.5})
    _app, server, url = await _start(settings)
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(url + "/ws") as idle,
            http.ws_connect(url + "/ws") as joiner,
        ):
            assert (await _reply_to(idle, {"type": "ping", "id": "p"}))["type"] == "pong"
            join = {"type": "join", "id": "j", "room": "late", "token": make_token("late", "j")}
            assert (await _reply_to(joiner, join))["type"] == "joined"
            msg = await idle.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.CLOSE, msg
            assert idle.close_code == 1008 and msg.extra == "join timeout", (msg, idle.close_code)
            # Well past the deadline, the socket that joined is still served.
            await asyncio.sleep(0.5)
            await joiner.send_str(json.dumps({"type": "ping", "id": "still"}))
            while (reply := await _reply(joiner))["type"] != "pong":
                pass
            assert reply["ref"] == "still"
    finally:
        await server.close()


async def test_connections_per_address_are_capped(sfu_settings: Settings) -> None:
    settings = sfu_settings.model_copy(update={"ws_max_connections_per_address": 2})
    app, server, url = await _start(settings)
    slots = app[ws_module._SLOTS]
    try:
        async with aiohttp.ClientSession() as http:
            first = await http.ws_connect(url + "/ws")
            second = await http.ws_connect(url + "/ws")
            third = await http.ws_connect(url + "/ws")
            msg = await third.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.CLOSE and third.close_code == 1013, msg
            assert msg.extra == "too many connections from this address"
            for ws in (first, second):  # the two within the cap are served
                assert (await _reply_to(ws, {"type": "ping", "id": "p"}))["type"] == "pong"
            await first.close()
            for _ in range(100):  # the server's handler of `first` ends just after its close
                if slots.open.get("127.0.0.1") == 1:
                    break
                await asyncio.sleep(0.05)
            assert slots.open == {"127.0.0.1": 1}
            fourth = await http.ws_connect(url + "/ws")  # a slot came free
            assert (await _reply_to(fourth, {"type": "ping", "id": "p"}))["type"] == "pong"
            await fourth.close()
            await second.close()
    finally:
        await server.close()
