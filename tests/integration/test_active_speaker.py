"""Active speakers from real aiortc publishers' RFC 6464 audio levels."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from signaling.client import RoomClient
from tests.support.media import ToneTrack


@pytest.mark.parametrize("media_workers", [0, 2])
async def test_loud_speaker_is_active_quiet_one_is_not(
    room_client: Callable[..., RoomClient],
    media_workers: int,
) -> None:
    loud = room_client("voices", "loud")
    quiet = room_client("voices", "quiet")
    listener = room_client("voices", "listener", count_only=True)
    try:
        await loud.connect()
        await loud.publish([ToneTrack(440.0, amplitude=0.5)])  # about -9 dBov
        await quiet.connect()
        await quiet.publish([ToneTrack(660.0, amplitude=0.0005)])  # about -69 dBov
        await listener.connect()
        loud_sid = loud.joined["participant"]["sid"]

        def speaker_lists() -> list[list[str]]:
            return [
                [s["participant"] for s in e["speakers"]]
                for e in listener.events
                if e["type"] == "active_speakers"
            ]

        def loud_levels() -> list[int]:
            return [
                e["speakers"][0]["level"]
                for e in listener.events
                if e["type"] == "active_speakers" and e["speakers"]
            ]

        await listener.wait_for(lambda: [loud_sid] in speaker_lists(), timeout=10)
        # Smoothed from silence, the level settles near the tone's -9 dBov.
        await listener.wait_for(lambda: any(-20 <= lv <= 0 for lv in loud_levels()), timeout=10)
        assert all(quiet.joined["participant"]["sid"] not in s for s in speaker_lists())
        # The loud speaker mutes: the list empties.
        track = next(iter(loud.published.values()))
        await loud.request({"type": "mute", "track": track, "muted": True})
        await listener.wait_for(lambda: speaker_lists()[-1] == [], timeout=10)
    finally:
        for client in (listener, quiet, loud):
            await client.close()
