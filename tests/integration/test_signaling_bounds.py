"""The WebSocket edge under hostile or broken clients (issue 10, items 5, 6 and 16).

Malformed frames get ``bad_request`` without a logged traceback; a participant whose transport
fails is told so and leaves every hub; a client that never reads is closed once its outbox is
full; requests are rate limited per socket; a socket must join in time; each client address
has a connection cap.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from aiohttp.web import Application

from signaling import keys
from signaling.app import create_app
from signaling.chat import CHAT
from signaling.client import RoomClient
from signaling.settings import Settings
from signaling.stage import STAGES
from signaling.whiteboard import BOARD
from tests.integration.conftest import MakeToken
from tests.support.media import ToneTrack


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
    served: tuple[Application, str], make_token: MakeToken
) -> None:
    app, url = served
    room = "fails"
    alice = RoomClient(url, room, "alice", token=make_token(room, "alice"))
    bob = RoomClient(url, room, "bob", token=make_token(room, "bob"))
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

        media_room = app[keys.MEDIA].rooms[room]
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
    finally:
        await bob.close()
        await alice.close()
