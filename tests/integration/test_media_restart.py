"""Media path failure (issue 11): the server replaces a participant's failed transport, the
client renegotiates on a new RTCPeerConnection, and nobody else sees any churn.

Each client's media goes through a :class:`tests.support.udprelay.RelaySet` (the kernel has no
``netem``). Breaking a path drops every datagram of that relay set both ways, for good, and
later SDPs go through a fresh relay set: a network change. Nothing is said on the signaling
channel: the server finds the dead path itself (its liveness watchdog, ``SFU_MEDIA_TIMEOUT_S``),
tells the client ``media_restart`` and keeps the participant, its track sids and its
subscribers' consumers.

Each test logs its figures (``media restart ...``): the time from the break to the server's
``media_restart`` (detection) and from there to media arriving again (recovery).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable

import pytest
from aiortc import sdp as aiortc_sdp

from signaling.client import RoomClient, SignalingError
from tests.support.media import ColorTrack, ToneTrack, collect_audio, dominant_frequency
from tests.support.udprelay import RelaySet

logger = logging.getLogger(__name__)

CHURN = ("participant_joined", "participant_left", "track_published", "track_unpublished")


class Paths:
    """A client's network: SDPs from the server go through the current relay set; ``change``
    kills the current one for good (100% loss both ways) and starts a fresh one."""

    def __init__(self) -> None:
        self.sets = [RelaySet(seed=1)]

    async def rewrite(self, sdp: str) -> str:
        return await self.sets[-1].rewrite(sdp)

    hide = staticmethod(RelaySet.hide)

    def change(self) -> None:
        dead = self.sets[-1]
        dead.uplink.set(loss=1.0)
        dead.downlink.set(loss=1.0)
        self.sets.append(RelaySet(seed=len(self.sets) + 1))

    def close(self) -> None:
        for relays in self.sets:
            relays.close()


async def _until(predicate: Callable[[], bool], timeout: float, step: float = 0.01) -> float:
    """Poll ``predicate`` every ``step`` s; returns the monotonic time it first held.

    Raises:
        TimeoutError: when it does not hold within ``timeout`` s.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(step)
    return time.monotonic()


def _ssrc_by_kind(sdp: str) -> dict[str, int]:
    """kind -> the first media SSRC of each m-line of a subscribe offer."""
    out: dict[str, int] = {}
    for media in aiortc_sdp.SessionDescription.parse(sdp).media:
        if media.ssrc and media.kind not in out:
            out[media.kind] = media.ssrc[0].ssrc
    return out


def _largest_step(seqs: list[int]) -> int:
    """The largest forward step between consecutive 16-bit sequence numbers (mod 2**16)."""
    return max((((b - a) & 0xFFFF) for a, b in itertools.pairwise(seqs)), default=0)


async def test_publisher_path_fails_and_subscribers_see_no_churn(
    room_client: Callable[..., RoomClient],
) -> None:
    paths = Paths()
    publisher = room_client(
        "restart-pub", "speaker", remote_sdp=paths.rewrite, local_sdp=paths.hide
    )
    subscriber = room_client("restart-pub", "viewer", count_only=True)
    subscriber.counter.keep_seqs = True
    try:
        await publisher.connect()
        sids = await publisher.publish([ToneTrack(440.0), ColorTrack((40, 200, 40), fps=15)])
        await subscriber.connect()
        await subscriber.wait_for(
            lambda: len(subscriber.received) == 2 and subscriber.sub is not None
        )
        assert subscriber.sub is not None
        ssrcs = _ssrc_by_kind(subscriber.sub.remoteDescription.sdp)
        packets = subscriber.counter.packets
        await _until(lambda: all(packets.get(s, 0) > 20 for s in ssrcs.values()), timeout=15)
        assert paths.sets[0].relays, "the publisher's media does not go through the relay"
        received_before = set(subscriber.received)
        events_before = len(subscriber.events)

        broke = time.monotonic()
        paths.change()
        # The server notices the silent publish transport on its own and tells the client.
        detected = await _until(lambda: bool(publisher.media_restarts), timeout=15)
        assert publisher.media_restarts[0][0] == "publish"
        audio = ssrcs["audio"]
        at_detection = {s: packets.get(s, 0) for s in ssrcs.values()}
        back = await _until(lambda: packets.get(audio, 0) > at_detection[audio] + 5, timeout=15)
        video_back = await _until(
            lambda: packets.get(ssrcs["video"], 0) > at_detection[ssrcs["video"]] + 5, timeout=15
        )
        logger.warning(
            "media restart (publish side): detected %.2f s after the break, audio back %.2f s "
            "and video back %.2f s after detection (%.2f s / %.2f s after the break)",
            detected - broke,
            back - detected,
            video_back - detected,
            back - broke,
            video_back - broke,
        )
        assert paths.sets[1].relays, "the new publish connection does not use the new path"

        # Same track sids for the publisher; the subscriber's tracks, SSRCs and sequence
        # numbers go on as if nothing happened (the munger continues across the gap).
        assert set(publisher.published.values()) == set(sids.values())
        assert set(subscriber.received) == received_before
        assert [e for e in subscriber.events[events_before:] if e["type"] in CHURN] == []
        assert set(subscriber.counter.packets) <= set(ssrcs.values()) | _rtx_ssrcs(
            subscriber.sub.remoteDescription.sdp
        )
        assert _largest_step(subscriber.counter.seqs[audio]) == 1
        assert _largest_step(subscriber.counter.seqs[ssrcs["video"]]) <= 2
        assert subscriber.offers_answered == 1  # no renegotiation for the subscriber at all
    finally:
        for client in (subscriber, publisher):
            await client.close()
        paths.close()


def _rtx_ssrcs(sdp: str) -> set[int]:
    out: set[int] = set()
    for media in aiortc_sdp.SessionDescription.parse(sdp).media:
        for group in media.ssrc_group:
            if group.semantic == "FID":
                out.update(int(s) for s in group.items[1:])
    return out


@pytest.mark.parametrize("rtc_port", [None, "one-port"], indirect=True, ids=str)
async def test_subscriber_path_fails_and_gets_the_same_tracks_back(
    room_client: Callable[..., RoomClient], rtc_port: int | None
) -> None:
    """Also on the one shared port (``SFU_RTC_PORT``, issue 14): the new connection comes
    from a new address (a fresh relay), with a new ufrag, on the same server port."""
    paths = Paths()
    publisher = room_client("restart-sub", "speaker")
    subscriber = room_client(
        "restart-sub", "listener", publish=False, remote_sdp=paths.rewrite, local_sdp=paths.hide
    )
    try:
        await publisher.connect()
        await publisher.publish([ToneTrack(440.0)])
        await subscriber.connect()
        await subscriber.wait_for(
            lambda: (
                len(subscriber.received) == 1
                and next(iter(subscriber.received.values())).track is not None
            )
        )
        first = next(iter(subscriber.received.values()))
        assert first.track is not None
        samples = await collect_audio(first.track, 0.4)
        assert abs(dominant_frequency(samples) - 440.0) < 20
        events_before = len(publisher.events)

        broke = time.monotonic()
        paths.change()
        detected = await _until(lambda: bool(subscriber.media_restarts), timeout=15)
        assert subscriber.media_restarts[0][0] == "subscribe"

        def new_track() -> bool:
            received = subscriber.received.get(first.track_sid)
            return received is not None and received.track not in (None, first.track)

        await _until(new_track, timeout=15)
        track = subscriber.received[first.track_sid].track
        assert track is not None
        samples = await collect_audio(track, 0.2)
        back = time.monotonic() - 0.2  # the first of those samples arrived about then
        assert abs(dominant_frequency(samples) - 440.0) < 20
        logger.warning(
            "media restart (subscribe side): detected %.2f s after the break, audio back "
            "%.2f s after detection (%.2f s after the break)",
            detected - broke,
            back - detected,
            back - broke,
        )
        assert paths.sets[1].relays, "the new subscribe connection does not use the new path"
        assert set(subscriber.received) == {first.track_sid}
        if rtc_port is not None:  # both connections were offered the one port (the relays'
            # keys are the server ports the SDPs named)
            assert set(paths.sets[0].relays) == set(paths.sets[1].relays) == {rtc_port}
        assert [e for e in publisher.events[events_before:] if e["type"] in CHURN] == []
    finally:
        for client in (subscriber, publisher):
            await client.close()
        paths.close()


async def test_client_detected_failure_restarts_with_a_request(
    room_client: Callable[..., RoomClient],
) -> None:
    """A client that finds its path dead first (its RTCPeerConnection ``failed``) sends
    ``restart_media``; the server replaces its transport and the same track comes back."""
    publisher = room_client("restart-req", "speaker")
    subscriber = room_client("restart-req", "viewer", count_only=True)
    try:
        await publisher.connect()
        sids = await publisher.publish([ToneTrack(440.0)])
        await subscriber.connect()
        await subscriber.wait_for(lambda: len(subscriber.received) == 1)
        packets = subscriber.counter.packets
        await _until(lambda: sum(packets.values()) > 20, timeout=15)
        old_pub = publisher.pub
        assert old_pub is not None
        stale_offer = old_pub.localDescription.sdp
        await publisher.restart_media("publish", tell_server=True)
        assert publisher.pub is not old_pub and set(publisher.published.values()) == set(
            sids.values()
        )
        count = sum(packets.values())
        await _until(lambda: sum(packets.values()) > count + 20, timeout=15)
        # An offer of the replaced connection that was still in flight is refused (typed
        # error) and changes nothing: the new connection keeps the track.
        with pytest.raises(SignalingError) as refused:
            await publisher.request({"type": "offer", "sdp": stale_offer})
        assert refused.value.code == "out_of_order"
        count = sum(packets.values())
        await _until(lambda: sum(packets.values()) > count + 20, timeout=15)
        assert len(packets) == 1  # the same SSRC towards the subscriber
        assert not [e for e in subscriber.events if e["type"] in CHURN[1:]]
    finally:
        for client in (subscriber, publisher):
            await client.close()
