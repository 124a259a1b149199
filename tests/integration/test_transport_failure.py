"""A participant whose media transport fails or closes: replaced, or told and forgotten.

The server replaces the failed transport and tells the client ``media_restart`` (issue 11); a
client that renegotiates keeps listening. One that does not within ``media_restart_grace_s``
is removed from the room and its listener told (``on_closed``): a ``/ws`` client gets
``error`` ``not_joined`` "removed from room: transport_failed" and its socket closes
(docs/protocol.md, *Errors*); the stage forgets it (the audience count drops).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from signaling.client import RoomClient
from signaling.settings import Settings
from tests.support.media import ToneTrack, collect_audio, dominant_frequency


@pytest.fixture
def sfu_settings(sfu_settings: Settings) -> Settings:
    return sfu_settings.model_copy(update={"media_restart_grace_s": 1.0})


async def _never_restarts(side: str, *, tell_server: bool = True) -> None:
    return None


async def test_listener_whose_transport_closes_renegotiates_and_keeps_listening(
    podcast: Callable[..., RoomClient],
) -> None:
    host = podcast("host", "host")
    listener = podcast("fan", "listener")
    try:
        await host.connect()
        sids = await host.publish([ToneTrack(440.0)])
        await listener.connect()
        await listener.wait_for(lambda: len(listener.received) == 1)
        first = next(iter(listener.received.values()))
        samples = await collect_audio(first.track, 0.3)  # type: ignore[arg-type]
        assert abs(dominant_frequency(samples) - 440.0) < 20
        assert listener.sub is not None
        await listener.sub.close()  # DTLS close_notify: the server's transport closes
        await listener.wait_for(
            lambda: any(e["type"] == "media_restart" for e in listener.events), timeout=10
        )

        def new_track() -> bool:
            received = listener.received.get(first.track_sid)
            return received is not None and received.track not in (None, first.track)

        await listener.wait_for(new_track, timeout=10)
        track = listener.received[first.track_sid].track
        samples = await collect_audio(track, 0.5)  # type: ignore[arg-type]
        assert abs(dominant_frequency(samples) - 440.0) < 20
        assert set(listener.received) == set(sids.values())
        assert listener.errors == [] and listener.ws is not None and not listener.ws.closed
        page = await host.request({"type": "list_audience", "offset": 0, "limit": 10})
        assert page["total"] == 1
    finally:
        for client in (listener, host):
            await client.close()


async def test_listener_whose_transport_closes_is_told_and_forgotten(
    podcast: Callable[..., RoomClient],
) -> None:
    host = podcast("host", "host")
    listener = podcast("fan", "listener")
    listener.restart_media = _never_restarts  # type: ignore[method-assign]
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
