"""SDP bounds: one participant cannot push another's subscribe SDP past a limit.

* a publish offer with more sending m-lines than ``max_producers_per_participant`` is refused
  with a typed error (WebSocket ``too_large``, WHIP 400) and changes nothing;
* a closed consumer's m-line is reused for the next consumer, so a subscriber that sees 100
  produce/close cycles still gets small subscribe offers, and media from the newest producer.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

import aiohttp
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription

from sfu import _aiortc_adapter as adapter
from signaling.client import RoomClient, SignalingError
from signaling.protocol import MAX_SDP_CHARS
from tests.integration.conftest import MakeToken
from tests.support.media import ColorTrack, ToneTrack, mean_color

SDP = {"Content-Type": "application/sdp"}


async def _offer_with_audio_lines(count: int) -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection(adapter.make_configuration([]))
    for _ in range(count):
        pc.addTransceiver("audio", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


async def test_publish_offer_over_the_producer_limit_is_refused(
    room_client: Callable[..., RoomClient], sfu_url: str, make_token: MakeToken
) -> None:
    publisher = room_client("cap", "greedy")
    watcher = room_client("cap", "watcher")
    pcs: list[RTCPeerConnection] = []
    try:
        await watcher.connect()
        await publisher.connect()
        pc, nine = await _offer_with_audio_lines(9)
        pcs.append(pc)
        with pytest.raises(SignalingError) as refused:
            await publisher.publish_sdp(nine, [])
        assert refused.value.code == "too_large"
        assert "at most 8" in refused.value.message
        # Nothing was published: the watcher saw no track, and eight tracks are still fine.
        pc, eight = await _offer_with_audio_lines(8)
        pcs.append(pc)
        reply = await publisher.publish_sdp(eight, [])
        assert len(reply["tracks"]) == 8
        await watcher.wait_for(
            lambda: sum(e["type"] == "track_published" for e in watcher.events) == 8, timeout=10
        )
        assert sum(e["type"] == "track_published" for e in watcher.events) == 8

        # WHIP: one publisher offering 100 m-lines gets a problem document, not a session.
        pc, hundred = await _offer_with_audio_lines(100)
        pcs.append(pc)
        auth = {"Authorization": "Bearer " + make_token("cap", "obs", subscribe=False), **SDP}
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{sfu_url}/whip/cap", data=hundred, headers=auth) as resp,
        ):
            assert resp.status == 400
            assert resp.content_type == "application/problem+json"
            assert "at most 8" in (await resp.json())["detail"]
        async with aiohttp.ClientSession() as http, http.get(f"{sfu_url}/healthz") as resp:
            assert resp.status == 200
        assert sum(e["type"] == "track_published" for e in watcher.events) == 8
    finally:
        for pc in pcs:
            await pc.close()
        await asyncio.gather(publisher.close(), watcher.close())


async def _renegotiate(client: RoomClient) -> None:
    assert client.pub is not None
    await client.pub.setLocalDescription(await client.pub.createOffer())
    reply = await client.request({"type": "offer", "sdp": client.pub.localDescription.sdp})
    await client.pub.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
    client.published = dict(reply["tracks"])


def _mlines(sdp: str) -> int:
    return sum(1 for line in sdp.splitlines() if line.startswith("m="))


CYCLES = 100
CYCLE_MIN_S = 0.05
NEWEST = (30, 40, 230)


async def test_subscriber_sdp_stays_bounded_over_many_produce_close_cycles(
    room_client: Callable[..., RoomClient],
) -> None:
    """A publisher stops and restarts its camera 100 times (each time a new producer); the
    subscriber's offer keeps one video m-line, and it sees the newest producer's picture."""
    publisher = room_client("cycles", "flaky")
    subscriber = room_client("cycles", "sub")
    try:
        await subscriber.connect()
        await publisher.connect()
        camera = ColorTrack((200, 200, 200), fps=10)
        await publisher.publish([camera])
        assert publisher.pub is not None
        transceiver: RTCRtpTransceiver = publisher.pub.getTransceivers()[0]
        sizes: list[int] = []
        deadline = time.monotonic() + 90
        for cycle in range(CYCLES):
            # Two publish offers per cycle, paced under the server's per-socket request rate
            # (50/s sustained) so that the rate limit never answers instead.
            paced = asyncio.sleep(CYCLE_MIN_S)
            transceiver.direction = "inactive"
            await _renegotiate(publisher)
            assert publisher.published == {}
            if cycle == CYCLES - 1:
                camera.set_color(NEWEST)
            transceiver.direction = "sendonly"
            await _renegotiate(publisher)
            (track_sid,) = publisher.published.values()
            await subscriber.wait_for(
                lambda sid=track_sid: (
                    set(subscriber.received) == {sid}
                    and subscriber.sub is not None
                    and subscriber.sub.signalingState == "stable"
                ),
                timeout=max(1.0, deadline - time.monotonic()),
            )
            assert subscriber.sub is not None and subscriber.sub.remoteDescription is not None
            sizes.append(len(subscriber.sub.remoteDescription.sdp))
            assert _mlines(subscriber.sub.remoteDescription.sdp) <= 2, f"cycle {cycle}"
            await paced
        assert not subscriber.errors, subscriber.errors
        assert max(sizes) < MAX_SDP_CHARS // 8, f"subscribe offers grew to {max(sizes)} chars"
        (received,) = subscriber.received.values()
        assert received.track_sid == track_sid and received.track is not None
        # Frames decoded while nobody read them are queued: read on (bounded) to the newest.
        for _ in range(30):
            color = await mean_color(received.track, frames=10)
            if np.abs(color - np.array(NEWEST)).max() < 30:
                break
        assert np.abs(color - np.array(NEWEST)).max() < 30, color
    finally:
        await asyncio.gather(publisher.close(), subscriber.close())


async def test_reused_mline_continues_the_ssrc_and_sequence_numbers(
    room_client: Callable[..., RoomClient],
) -> None:
    """Three microphones in a row on one reused m-line reach the subscriber as one RTP stream:
    the same SSRC, sequence numbers without a jump (RFC 3550 §5.1), so its jitter buffer does
    not see a new or reset stream."""
    publisher = room_client("seqs", "talker")
    subscriber = room_client("seqs", "counter", count_only=True)
    subscriber.counter.keep_seqs = True
    try:
        await subscriber.connect()
        await publisher.connect()
        await publisher.publish([ToneTrack(440.0)])
        assert publisher.pub is not None
        transceiver = publisher.pub.getTransceivers()[0]
        counted = 0
        for cycle in range(3):
            if cycle:
                transceiver.direction = "inactive"
                await _renegotiate(publisher)
                await subscriber.wait_for(lambda: not subscriber.received, timeout=10)
                transceiver.direction = "sendonly"
                await _renegotiate(publisher)
            (track_sid,) = publisher.published.values()
            await subscriber.wait_for(lambda sid=track_sid: sid in subscriber.received)
            target = counted + 25  # 0.5 s of 20 ms packets from this producer
            await subscriber.wait_for(
                lambda t=target: sum(subscriber.counter.packets.values()) >= t, timeout=10
            )
            counted = sum(subscriber.counter.packets.values())
        assert len(subscriber.counter.seqs) == 1, list(subscriber.counter.seqs)
        (seqs,) = subscriber.counter.seqs.values()
        steps = [(b - a) & 0xFFFF for a, b in itertools.pairwise(seqs)]
        assert all(1 <= step <= 3 for step in steps), sorted(set(steps))
    finally:
        await asyncio.gather(publisher.close(), subscriber.close())


async def test_fast_churn_of_eight_tracks_keeps_the_subscriber_sdp_bounded(
    room_client: Callable[..., RoomClient],
) -> None:
    """A publisher at the limit (8 tracks) restarts all of them 20 times without waiting for
    anyone: the subscriber's offers stay within a few times 8 m-lines (closed m-lines are
    reused once their inactive direction is negotiated) and its answers within the limit."""
    publisher = room_client("churn", "churner")
    subscriber = room_client("churn", "sub")
    pc = RTCPeerConnection(adapter.make_configuration([]))
    try:
        await subscriber.connect()
        await publisher.connect()
        transceivers = [pc.addTransceiver("audio", direction="sendonly") for _ in range(8)]
        publisher.pub = pc
        await _renegotiate(publisher)
        for _ in range(20):
            for direction in ("inactive", "sendonly"):
                for transceiver in transceivers:
                    transceiver.direction = direction
                await _renegotiate(publisher)
            await asyncio.sleep(CYCLE_MIN_S)  # under the per-socket request rate
        newest = set(publisher.published.values())
        assert len(newest) == 8
        await subscriber.wait_for(
            lambda: (
                set(subscriber.received) == newest
                and subscriber.sub is not None
                and subscriber.sub.signalingState == "stable"
            ),
            timeout=30,
        )
        assert not subscriber.errors, subscriber.errors
        assert subscriber.sub is not None and subscriber.sub.localDescription is not None
        offer = subscriber.sub.remoteDescription.sdp
        assert _mlines(offer) <= 3 * 8, _mlines(offer)
        assert len(subscriber.sub.localDescription.sdp) < MAX_SDP_CHARS
    finally:
        await asyncio.gather(publisher.close(), subscriber.close())
