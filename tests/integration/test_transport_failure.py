"""A participant whose media transport fails or closes is told and forgotten everywhere.

The server removes the participant from the room and tells its listener (``on_closed``): a
``/ws`` client gets ``error`` ``not_joined`` "removed from room: transport_failed" and its
socket closes (docs/protocol.md, *Errors*); the stage forgets it (the audience count drops).
"""

from __future__ import annotations

from collections.abc import Callable

from signaling.client import RoomClient
from tests.integration.test_stage import ROOM
from tests.support.media import ToneTrack, collect_audio, dominant_frequency


async def test_listener_whose_transport_closes_is_told_and_forgotten(
    room_client: Callable[..., RoomClient],
) -> None:
    def podcast(identity: str, role: str) -> RoomClient:
        return room_client(
            ROOM,
            identity,
            kind="podcast",
            role=role,
            admin=role == "host",
            publish=role != "listener",
        )

    host = podcast("host", "host")
    listener = podcast("fan", "listener")
    try:
        await host.connect()
        await host.publish([ToneTrack(440.0)])
        await listener.connect()
        await listener.wait_for(lambda: len(listener.received) == 1)
        received = next(iter(listener.received.values()))
        samples = await collect_audio(received.track, 0.5)  # type: ignore[arg-type]
        assert abs(dominant_frequency(samples) - 440.0) < 20
        page = await host.request({"type": "list_audience", "offset": 0, "limit": 10})
        assert page["total"] == 1

        # The listener's subscribe peer connection goes away (DTLS close_notify).
        assert listener.sub is not None
        await listener.sub.close()
        await listener.wait_for(
            lambda: any("transport_failed" in e["message"] for e in listener.errors)
        )
        assert listener.errors[-1]["code"] == "not_joined"
        await listener.wait_for(lambda: listener.ws is not None and listener.ws.closed)
        page = await host.request({"type": "list_audience", "offset": 0, "limit": 10})
        assert page["total"] == 0 and page["listeners"] == []
    finally:
        for client in (listener, host):
            await client.close()
