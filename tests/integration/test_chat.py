"""Room chat (stored in MongoDB, history on join, rate limits) and batched reactions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from signaling.app import create_app
from signaling.client import RoomClient, SignalingError
from signaling.settings import Settings
from tests.integration.conftest import MakeToken

Factory = Callable[..., RoomClient]


def chats(client: RoomClient) -> list[dict[str, Any]]:
    return [e["message"] for e in client.events if e["type"] == "chat"]


async def test_chat_reaches_everyone_as_text_and_is_rate_limited(room_client: Factory) -> None:
    alice = room_client("chatty", "alice", subscribe=False)
    bob = room_client("chatty", "bob", subscribe=False)
    try:
        await alice.connect()
        await bob.connect()
        hostile = 'hi <img src=x onerror="alert(1)"> & bye'
        await alice.request({"type": "chat", "text": hostile})
        for client in (alice, bob):
            await client.wait_for(lambda c=client: len(chats(c)) == 1, timeout=5)
            (message,) = chats(client)
            assert message["text"] == hostile  # stored and sent verbatim, as text
            assert message["identity"] == "alice"
            assert message["participant"] == alice.joined["participant"]["sid"]
        with pytest.raises(SignalingError) as excinfo:
            await bob.request({"type": "chat", "text": "é" * 1025})  # 2050 bytes
        assert excinfo.value.code == "bad_request"
        with pytest.raises(SignalingError) as excinfo:
            await bob.request({"type": "chat", "text": "   "})
        assert excinfo.value.code == "bad_request"
        for i in range(4):
            await alice.request({"type": "chat", "text": f"m{i}"})
        with pytest.raises(SignalingError) as excinfo:  # the 6th message within 5 s
            await alice.request({"type": "chat", "text": "too fast"})
        assert excinfo.value.code == "rate_limited"
        await bob.wait_for(lambda: len(chats(bob)) == 5, timeout=5)
        assert [m["text"] for m in chats(bob)][1:] == ["m0", "m1", "m2", "m3"]
    finally:
        await alice.close()
        await bob.close()


async def test_history_on_join_survives_a_restart(
    sfu_settings: Settings, make_token: MakeToken
) -> None:
    async def serve() -> tuple[TestServer, str]:
        server = TestServer(create_app(sfu_settings), host="127.0.0.1")
        await server.start_server()
        return server, str(server.make_url("")).rstrip("/")

    server, url = await serve()
    writer = RoomClient(url, "log", "w", token=make_token("log", "writer"), subscribe=False)
    try:
        await writer.connect()
        for i in range(3):
            await writer.request({"type": "chat", "text": f"line {i}"})
    finally:
        await writer.close()
        await server.close()
    server, url = await serve()  # a new server process state, the same MongoDB
    reader = RoomClient(url, "log", "r", token=make_token("log", "reader"), subscribe=False)
    try:
        await reader.connect()
        await reader.wait_for(lambda: "chat_history" in reader.message_types, timeout=5)
        (history,) = [e for e in reader.events if e["type"] == "chat_history"]
        assert [m["text"] for m in history["messages"]] == ["line 0", "line 1", "line 2"]
        assert reader.message_types.index("joined") < reader.message_types.index("chat_history")
    finally:
        await reader.close()
        await server.close()


async def test_reactions_are_batched_and_grants_enforced(room_client: Factory) -> None:
    fan = room_client("claps", "fan", subscribe=False)
    host = room_client("claps", "host", subscribe=False)
    mute = room_client("claps", "quiet", subscribe=False, data=False)
    try:
        await host.connect()
        await fan.connect()
        await mute.connect()
        for _ in range(3):
            await fan.request({"type": "reaction", "emoji": "👏"})
        await fan.request({"type": "reaction", "emoji": "🔥"})
        await host.wait_for(lambda: any(e["type"] == "reactions" for e in host.events), timeout=5)
        await asyncio.sleep(0.5)
        batches = [e["reactions"] for e in host.events if e["type"] == "reactions"]
        assert len(batches) == 1, batches  # one batch, not four messages
        fan_sid = fan.joined["participant"]["sid"]
        assert batches[0] == [
            {"participant": fan_sid, "emoji": "👏", "count": 3},
            {"participant": fan_sid, "emoji": "🔥", "count": 1},
        ]
        with pytest.raises(SignalingError) as excinfo:
            await fan.request({"type": "reaction", "emoji": "a\nb"})
        assert excinfo.value.code == "bad_request"
        for kind, body in (("chat", {"text": "hi"}), ("reaction", {"emoji": "👍"})):
            with pytest.raises(SignalingError) as excinfo:
                await mute.request({"type": kind, **body})
            assert excinfo.value.code == "forbidden"
    finally:
        for client in (fan, host, mute):
            await client.close()
