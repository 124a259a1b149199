"""Simulcast over the WebSocket protocol (issue 15): the answer to a simulcast publish offer
receives every layer, bad simulcast offers and ``track_settings`` get typed errors, and the
room goes on. Media itself is covered by tests/unit/test_simulcast.py and the Chromium test."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from signaling.client import RoomClient, SignalingError
from tests.support.media import ColorTrack

Factory = Callable[..., RoomClient]

RID_EXT = "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"


async def _simulcast_offer(
    rids: str = "q;h;f", rid_lines: tuple[str, ...] = ("q", "h", "f")
) -> str:
    """An aiortc video offer with Chromium's simulcast lines added to its m-line."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver(ColorTrack((0, 128, 255)), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp: str = pc.localDescription.sdp
    finally:
        await pc.close()
    extra = [RID_EXT, *(f"a=rid:{r} send" for r in rid_lines), f"a=simulcast:send {rids}"]
    head, video = sdp.split("m=video", 1)
    return head + "m=video" + video.rstrip("\r\n") + "\r\n" + "\r\n".join(extra) + "\r\n"


async def test_simulcast_offer_is_answered_and_bad_ones_get_typed_errors(
    room_client: Factory,
) -> None:
    alice = room_client("simulcast-sig", "alice")
    try:
        await alice.connect()
        with pytest.raises(SignalingError) as bad:
            await alice.publish_sdp(await _simulcast_offer("q;h;f;x"), [])
        assert bad.value.code == "invalid_sdp"
        with pytest.raises(SignalingError) as bad:
            await alice.publish_sdp(await _simulcast_offer("q;h;f", ("q", "h")), [])
        assert bad.value.code == "invalid_sdp"
        answer = await alice.publish_sdp(await _simulcast_offer(), [])
        video = answer["sdp"].split("m=video", 1)[1]
        assert "a=simulcast:recv q;h;f" in video
        assert all(f"a=rid:{r} recv" in video for r in "qhf")
        assert RID_EXT in video
        assert len(answer["tracks"]) == 1
        with pytest.raises(SignalingError) as bad:
            await alice.request({"type": "track_settings", "track": "TR_nope", "width": 320})
        assert bad.value.code == "not_found"
        with pytest.raises(SignalingError) as bad:
            await alice.request({"type": "track_settings", "track": "TR_x", "width": -1})
        assert bad.value.code == "bad_request"
        assert (await alice.request({"type": "ping"}))["type"] == "pong"
    finally:
        await alice.close()
