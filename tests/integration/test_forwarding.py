"""Media actually arrives, from the right producer: three publishers, each decodes the others."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from sfu import _aiortc_adapter as adapter
from signaling.client import RoomClient
from signaling.settings import Settings
from tests.support.forwarding import FORWARDING_PATHS, forwarding_path
from tests.support.media import (
    ColorTrack,
    ToneTrack,
    collect_audio,
    dominant_frequency,
    mean_color,
)

PEOPLE = {
    "alice": (440.0, (220, 30, 30)),
    "bob": (880.0, (30, 200, 40)),
    "carol": (1320.0, (40, 50, 220)),
}


@pytest.fixture(params=FORWARDING_PATHS, ids=["fast_path", "python_path"])
def sfu_settings(request: pytest.FixtureRequest, sfu_settings: Settings) -> Iterator[Settings]:
    """Every test here runs against both forwarding paths (issue 14)."""
    with forwarding_path(sfu_settings, request.param) as settings:
        yield settings


@pytest.mark.parametrize("media_workers", [0, 2])
async def test_three_participants_receive_each_other(
    room_client: Callable[..., RoomClient], media_workers: int
) -> None:
    clients: dict[str, RoomClient] = {}
    try:
        for name, (freq, rgb) in PEOPLE.items():
            client = room_client("trio", name)
            await client.connect()
            await client.publish([ToneTrack(freq), ColorTrack(rgb)])
            clients[name] = client
        sids = {name: c.joined["participant"]["sid"] for name, c in clients.items()}
        for client in clients.values():
            await client.wait_for(
                lambda c=client: (
                    len(c.received) == 4 and all(r.track is not None for r in c.received.values())
                ),
                timeout=20,
            )
        for name, client in clients.items():
            for other, (freq, rgb) in PEOPLE.items():
                if other == name:
                    continue
                tracks = {
                    r.kind: r.track
                    for r in client.received.values()
                    if r.participant == sids[other]
                }
                assert set(tracks) == {"audio", "video"}, f"{name} lacks {other}'s tracks"
                samples = await collect_audio(tracks["audio"], 1.0)
                got = dominant_frequency(samples[len(samples) // 2 :])
                assert abs(got - freq) < 15, f"{name} heard {got:.0f} Hz from {other}"
                assert np.abs(samples).max() > 1000, "received audio is silent"
                color = await mean_color(tracks["video"], frames=5)
                assert np.abs(color - np.array(rgb)).max() < 30, (
                    f"{name} saw {color.round()} from {other}, expected {rgb}"
                )
    finally:
        await asyncio.gather(*(c.close() for c in clients.values()))


@pytest.mark.parametrize("kind", ["audio"])
async def test_late_joiner_receives_existing_publisher(
    room_client: Callable[..., RoomClient], kind: str
) -> None:
    speaker = room_client("late", "speaker")
    listener = room_client("late", "listener")
    try:
        await speaker.connect()
        await speaker.publish([ToneTrack(660.0)])
        await asyncio.sleep(0.5)
        await listener.connect()
        assert [p["identity"] for p in listener.joined["participants"]] == ["speaker"]
        await listener.wait_for(
            lambda: any(r.track is not None for r in listener.received.values())
        )
        (received,) = listener.received.values()
        assert received.participant == speaker.joined["participant"]["sid"]
        # The joined reply comes before the subscribe offer for the existing producer.
        assert listener.message_types.index("joined") < listener.message_types.index("offer")
        samples = await collect_audio(received.track, 1.0)  # type: ignore[arg-type]
        assert abs(dominant_frequency(samples[len(samples) // 2 :]) - 660.0) < 15
    finally:
        await listener.close()
        await speaker.close()


async def test_h264_is_forwarded_when_the_publisher_prefers_it(
    room_client: Callable[..., RoomClient],
) -> None:
    """A publisher that offers only H.264 gets an H.264 producer; subscribers are offered
    exactly that codec and decode the right colour."""
    publisher = room_client("h264", "pub")
    viewer = room_client("h264", "viewer")
    try:
        await publisher.connect()
        # Restrict the publish transceiver to H.264 before the offer is made.
        publisher.pub = RTCPeerConnection(adapter.make_configuration([]))
        h264 = [
            c
            for c in RTCRtpSender.getCapabilities("video").codecs
            if c.mimeType in ("video/H264", "video/rtx")
        ]
        transceiver = publisher.pub.addTransceiver(ColorTrack((250, 120, 0)), direction="sendonly")
        transceiver.setCodecPreferences(h264)
        await publisher.pub.setLocalDescription(await publisher.pub.createOffer())
        reply = await publisher.publish_sdp(
            publisher.pub.localDescription.sdp,
            [{"mid": transceiver.mid, "kind": "video", "source": "camera"}],
        )
        await publisher.pub.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
        assert "H264" in reply["sdp"] and "VP8" not in reply["sdp"]
        await viewer.connect()
        await viewer.wait_for(lambda: any(r.track is not None for r in viewer.received.values()))
        (received,) = viewer.received.values()
        codecs = [
            t._codecs[0].mimeType  # aiortc's negotiated codec list
            for t in viewer.sub.getTransceivers()  # type: ignore[union-attr]
        ]
        assert codecs == ["video/H264"]
        color = await mean_color(received.track, frames=5)  # type: ignore[arg-type]
        assert np.abs(color - np.array([250, 120, 0])).max() < 30
    finally:
        await viewer.close()
        await publisher.close()
