"""Events of the media plane reach the client after ``joined``, whatever the plane.

A media plane in a worker process delivers its notifications on a channel that may run ahead
of the ``join`` reply: the first subscribe offer (the room already has producers) can reach
the edge before ``MediaPlane.join`` has returned there. The session holds such events until
``joined`` is sent, so the client always sees ``joined`` first (docs/protocol.md).
"""

from __future__ import annotations

import json

import aiohttp
import pytest

from sfu import events
from sfu.plane.api import PlaneListener
from sfu.plane.local import LocalMediaPlane
from sfu.plane.types import JoinResult, ParticipantSpec
from signaling import protocol as p
from tests.integration.conftest import MakeToken

EARLY_SDP = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


async def test_an_event_delivered_before_join_returns_follows_joined(
    sfu_url: str, make_token: MakeToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    local_join = LocalMediaPlane.join

    async def racing_join(
        self: LocalMediaPlane, room: str, spec: ParticipantSpec, listener: PlaneListener
    ) -> JoinResult:
        result = await local_join(self, room, spec, listener)
        # what a worker's notification can do: arrive before the reply is consumed
        listener(events.SubscribeOffer(EARLY_SDP, ()))
        return result

    monkeypatch.setattr(LocalMediaPlane, "join", racing_join)
    ws_url = sfu_url.replace("http", "ws", 1) + "/ws"
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url) as ws:
        await ws.send_str(
            json.dumps(
                {
                    "type": "join",
                    "id": "j1",
                    "v": p.PROTOCOL_VERSION,
                    "room": "early",
                    "token": make_token("early", "ann"),
                }
            )
        )
        kinds = []
        for _ in range(10):  # bounded: joined and the offer come among the first messages
            message = json.loads((await ws.receive(timeout=5)).data)
            kinds.append(message["type"])
            if message["type"] == "offer":
                assert message["sdp"] == EARLY_SDP
                break
        assert "offer" in kinds and kinds.index("joined") < kinds.index("offer"), kinds
