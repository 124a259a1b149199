"""The media-plane API's pipe calls (``MediaPlane.pipe_*``, docs/media-plane.md): two
LocalMediaPlanes in one process stand for two nodes. A publisher on plane A, a listener on
plane B; the producer is piped A -> B over SRTP AEAD_AES_128_GCM with keys the calls
return, and the listener decodes the tone. The pipe then dies and is recreated
(``pipe_close(keep_producers=True)`` on B, a new pipe, ``pipe_produce`` of the same id): the
listener keeps its consumer (no new subscribe offer) and hears the tone again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from sfu import _aiortc_adapter as adapter
from sfu import events
from sfu.errors import NotFoundError
from sfu.plane.local import LocalMediaPlane, MediaSettings
from sfu.plane.types import ParticipantSpec, PipeControl, TrackSpec
from tests.support.media import ToneTrack, collect_audio, dominant_frequency

ROOM = "piped"
_TASKS: set[asyncio.Future[None]] = set()


def _spawn(coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


@pytest.fixture(autouse=True)
def loopback_ice() -> Iterator[None]:
    adapter.set_ice_host_addresses(["127.0.0.1"])
    yield
    adapter.set_ice_host_addresses([])


async def _pipe(
    a: LocalMediaPlane, b: LocalMediaPlane, track: str, controls: list[PipeControl]
) -> None:
    """Pipe ``track`` from A to B through the API only (what the cluster does over Redis)."""

    def to_b(control: PipeControl) -> None:
        controls.append(control)
        _spawn(b.pipe_control(ROOM, "pull:a", control))

    def to_a(control: PipeControl) -> None:
        _spawn(a.pipe_control(ROOM, "push:b", control))

    on_b = await b.pipe_open(ROOM, "pull:a", to_a, listen_ip="127.0.0.1")
    on_a = await a.pipe_open(ROOM, "push:b", to_b, listen_ip="127.0.0.1")
    assert on_a.srtp_key is not None and len(on_a.srtp_key) == 28 and on_a.srtp_key != on_b.srtp_key
    await a.pipe_connect(ROOM, "push:b", on_b)
    await b.pipe_connect(ROOM, "pull:a", on_a)
    params = await a.pipe_consume(ROOM, "push:b", track)
    await b.pipe_produce(ROOM, "pull:a", params)


async def test_a_producer_piped_between_two_planes_survives_a_new_pipe() -> None:
    settings = MediaSettings(ice_hosts=["127.0.0.1"])
    a, b = LocalMediaPlane(settings), LocalMediaPlane(settings)
    pcs: list[RTCPeerConnection] = []
    offers: asyncio.Queue[events.SubscribeOffer] = asyncio.Queue()

    def on_listener(event: events.ParticipantEvent) -> None:
        if isinstance(event, events.SubscribeOffer):
            offers.put_nowait(event)

    try:
        speaker = await a.join(ROOM, ParticipantSpec("speaker", "S"), lambda e: None)
        pub = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pcs.append(pub)
        pub.addTransceiver(ToneTrack(440.0), direction="sendonly")
        await pub.setLocalDescription(await pub.createOffer())
        answer = await a.publish_offer(
            speaker.participant.sid, pub.localDescription.sdp, [TrackSpec("0", "audio")]
        )
        await pub.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
        track = answer.tracks["0"]
        for _ in range(100):  # bounded: the codec is known once the answer is applied
            if (await a.participant(speaker.participant.sid)).info.tracks:
                break
            await asyncio.sleep(0.05)

        listener = await b.join(
            ROOM, ParticipantSpec("listener", "L", can_publish=False, hidden=True), on_listener
        )
        with pytest.raises(NotFoundError):  # typed error: no pipe of that peer
            await b.pipe_consume(ROOM, "nobody", track)
        controls: list[PipeControl] = []
        await _pipe(a, b, track, controls)

        offer = await asyncio.wait_for(offers.get(), 10)
        assert [(t.participant, t.track, t.kind) for t in offer.tracks] == [
            (speaker.participant.sid, track, "audio")
        ]
        sub = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pcs.append(sub)
        await sub.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
        await sub.setLocalDescription(await sub.createAnswer())
        await b.subscribe_answer(listener.participant.sid, sub.localDescription.sdp)
        remote: MediaStreamTrack = sub.getTransceivers()[0].receiver.track
        samples = await collect_audio(remote, 1.0)
        assert abs(dominant_frequency(samples[len(samples) // 2 :]) - 440.0) < 20

        # A mute travels as a control to B
        await a.set_track_muted(speaker.participant.sid, track, True)
        await a.set_track_muted(speaker.participant.sid, track, False)
        assert [c.action for c in controls] == ["pause", "resume"]

        # the pipe dies (the other node is gone); B keeps the piped producer suspended
        assert await b.pipe_close(ROOM, "pull:a", keep_producers=True) == [track]
        await a.pipe_close(ROOM, "push:b")
        assert [t.sid for t in (await b.participant(listener.participant.sid)).info.tracks] == []
        await _pipe(a, b, track, controls)  # a new pipe, the same producer id: resumed
        samples = await collect_audio(remote, 1.0)
        assert abs(dominant_frequency(samples[len(samples) // 2 :]) - 440.0) < 20
        assert offers.empty()  # the listener's consumer (its m-line, its SSRC) stayed

        await b.pipe_drop(ROOM, [track])  # its publisher gone for good: the consumer goes
        renegotiated = await asyncio.wait_for(offers.get(), 10)
        assert all(t.track != track for t in renegotiated.tracks)
    finally:
        for pc in pcs:
            await pc.close()
        await a.close()
        await b.close()
