"""The RoomClient's decoding video receiver recovers from a lost retransmission as a browser does.

aiortc 1.16.0 NACKs a missing packet once, again only when a new gap happens to appear, and
forgets it 128 packets later; its jitter buffer meanwhile waits on that packet until 512 newer
ones have arrived. A retransmission lost on a bad link therefore froze the subscriber's video
for ~34 s (the lossy-link test's failure "video did not come back"). These tests drive a real
aiortc ``RTCRtpReceiver`` and ``JitterBuffer`` with RTP packets and read the RTCP it sends.
"""

from __future__ import annotations

import asyncio
import queue
from typing import Any

from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import NackGenerator
from aiortc.rtp import (
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
)

from sfu import _aiortc_adapter as adapter

MEDIA_SSRC = 0x1234
VP8_PT = 96


class _Clock:
    """A settable ms clock."""

    def __init__(self) -> None:
        self.ms = 1_000

    def __call__(self) -> int:
        return self.ms


class _FakeDtls:
    """What ``RTCRtpReceiver`` needs of its DTLS transport: a state and ``_send_rtp``."""

    state = "connected"

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def _send_rtp(self, data: bytes) -> None:
        self.sent.extend(RtcpPacket.parse(data))

    def nacked(self) -> list[list[int]]:
        return [
            p.lost for p in self.sent if isinstance(p, RtcpRtpfbPacket) and p.fmt == RTCP_RTPFB_NACK
        ]

    def plis(self) -> int:
        return sum(1 for p in self.sent if isinstance(p, RtcpPsfbPacket) and p.fmt == RTCP_PSFB_PLI)


def _vp8(seq: int, frame: int, *, marker: bool = True) -> RtpPacket:
    """One VP8 packet (payload descriptor with S=1) of frame ``frame`` (3000 ticks apart)."""
    return RtpPacket(
        payload_type=VP8_PT,
        sequence_number=seq & 0xFFFF,
        timestamp=(frame * 3000) & 0xFFFFFFFF,
        ssrc=MEDIA_SSRC,
        marker=int(marker),
        payload=b"\x10" + bytes([frame & 0xFF]) * 20,
    )


def _video_receiver() -> tuple[RTCRtpReceiver, _FakeDtls]:
    dtls = _FakeDtls()
    receiver = RTCRtpReceiver("video", dtls)  # type: ignore[arg-type]
    receiver._RTCRtpReceiver__codecs = {  # type: ignore[attr-defined]
        VP8_PT: RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=VP8_PT)
    }
    receiver._set_rtcp_ssrc(0x9999)
    return receiver, dtls


async def _feed(receiver: RTCRtpReceiver, clock: _Clock, seqs: range, lost: set[int]) -> None:
    """One single-packet frame per sequence number, 66 ms apart (15 fps)."""
    for seq in seqs:
        clock.ms += 66
        if seq not in lost:
            await receiver._handle_rtp_packet(_vp8(seq, seq), clock.ms)
    await asyncio.sleep(0)  # let a spawned PLI go out


def test_aiortcs_own_generator_nacks_a_packet_only_once() -> None:
    """The behaviour the adapter replaces (fails when aiortc starts retrying by itself)."""
    generator = NackGenerator()
    due = [generator.add(_vp8(seq, seq)) for seq in (1, 3, 4, 5, 6, 7)]
    assert due == [False, True, False, False, False, False]
    for seq in range(8, 8 + 130):
        generator.add(_vp8(seq, seq))
    assert 2 not in generator.missing, "aiortc still forgets missing packets 128 behind"


def test_retrying_generator_renacks_every_interval_then_gives_up() -> None:
    clock = _Clock()
    given_up: list[tuple[int, list[int]]] = []
    generator = adapter.RetryingNackGenerator(lambda s, q: given_up.append((s, q)), clock)
    assert generator.add(_vp8(10, 10)) is False
    assert generator.add(_vp8(13, 13)) is True and generator.missing == {11, 12}
    clock.ms += adapter.NACK_RETRY_INTERVAL_MS - 1
    assert generator.add(_vp8(14, 14)) is False, "re-NACKed before the interval"
    clock.ms += 1
    assert generator.add(_vp8(15, 15)) is True and generator.missing == {11, 12}
    assert generator.add(_vp8(11, 11)) is False and generator.pending == [12]  # recovered
    nacks = 2
    seq = 16
    while not given_up:
        clock.ms += adapter.NACK_RETRY_INTERVAL_MS
        if generator.add(_vp8(seq, seq)):
            assert generator.missing == {12}
            nacks += 1
        seq += 1
    assert nacks == adapter.NACK_MAX_RETRIES
    assert given_up == [(MEDIA_SSRC, [12])]
    assert generator.pending == []


def test_retrying_generator_bounds_what_it_tracks_across_the_16_bit_wrap() -> None:
    clock = _Clock()
    given_up: list[list[int]] = []
    generator = adapter.RetryingNackGenerator(lambda _s, q: given_up.append(q), clock)
    generator.add(_vp8(65530, 0))
    assert generator.add(_vp8(3, 1)) is True
    assert sorted(generator.missing) == [0, 1, 2, 65531, 65532, 65533, 65534, 65535]
    jump = adapter.NACK_MAX_PACKETS + 50
    generator.add(_vp8(3 + jump + 1, 2))
    pending = generator.pending
    assert len(pending) == adapter.NACK_MAX_PACKETS
    assert pending[-1] == 3 + jump and pending[0] == 3 + jump - adapter.NACK_MAX_PACKETS + 1
    # Given up in that one call: the 50 lost beyond the window, then the 8 oldest tracked.
    beyond = {4 + i for i in range(jump - adapter.NACK_MAX_PACKETS)}
    assert given_up == [given_up[0]] and set(given_up[0]) == beyond | {
        65531,
        65532,
        65533,
        65534,
        65535,
        0,
        1,
        2,
    }


def test_skip_lost_packets_unblocks_the_jitter_buffer() -> None:
    buffer = JitterBuffer(capacity=512, is_video=True)
    frames = []
    for seq in (100, 101, 103, 104, 105):  # 102 lost: frames 103.. wait behind it
        packet = _vp8(seq, seq)
        packet._data = packet.payload  # type: ignore[attr-defined]
        frames.append(buffer.add(packet)[1])
    assert [f is not None for f in frames] == [False, True, False, False, False]
    assert adapter.skip_lost_packets(buffer, [7, 102]) == 2  # 101 (already whole) and 102
    packet = _vp8(106, 106)
    packet._data = packet.payload  # type: ignore[attr-defined]
    frame = buffer.add(packet)[1]
    assert frame is not None and frame.timestamp == 103 * 3000
    assert adapter.skip_lost_packets(buffer, [50]) == 0  # not awaited


def test_skip_lost_packets_drops_the_rest_of_a_broken_frame() -> None:
    buffer = JitterBuffer(capacity=512, is_video=True)
    # frame 1 = seqs 10,11,12 (12 marked); frame 2 = seq 13. Seq 11 is lost.
    for seq, frame, marker in ((10, 1, False), (12, 1, True), (13, 2, True), (14, 3, True)):
        packet = _vp8(seq, frame, marker=marker)
        packet._data = packet.payload  # type: ignore[attr-defined]
        assert buffer.add(packet)[1] is None
    assert adapter.skip_lost_packets(buffer, [11]) == 3  # 10, 11 and 12: all of frame 1
    packet = _vp8(15, 4)
    packet._data = packet.payload  # type: ignore[attr-defined]
    frame = buffer.add(packet)[1]
    assert frame is not None and frame.timestamp == 2 * 3000


async def test_aiortc_receiver_without_the_hook_stays_stuck_after_a_lost_retransmission() -> None:
    """The failure mode: one NACK for the packet, never another; the jitter buffer waits."""
    receiver, dtls = _video_receiver()
    clock = _Clock()
    await _feed(receiver, clock, range(1, 60), lost={20})
    assert [lost for lost in dtls.nacked() if 20 in lost] == [[20]]
    buffer: JitterBuffer = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
    assert buffer._origin == 19  # frame 19 waits for a packet after it: 20 never comes


async def test_hooked_receiver_renacks_then_skips_and_asks_for_a_keyframe() -> None:
    receiver, dtls = _video_receiver()
    assert adapter.browser_like_recovery(receiver) is True
    assert adapter.browser_like_recovery(receiver) is True  # idempotent
    generator = receiver._RTCRtpReceiver__nack_generator  # type: ignore[attr-defined]
    assert isinstance(generator, adapter.RetryingNackGenerator)
    clock = _Clock()
    generator._clock_ms = clock
    await _feed(receiver, clock, range(1, 25), lost={20})
    # 21..24 arrive 66 ms apart: the first NACK at once, a second after 100 ms.
    assert [lost for lost in dtls.nacked() if 20 in lost] == [[20], [20]]
    await _feed(receiver, clock, range(25, 80), lost=set())
    assert sum(20 in lost for lost in dtls.nacked()) == adapter.NACK_MAX_RETRIES
    assert dtls.plis() == 1, "giving a packet up must ask for a keyframe"
    buffer: JitterBuffer = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
    # Skipped past 20: frames 21.. come out again (one per packet received, aiortc's pace).
    assert buffer._origin is not None and 20 < buffer._origin < 80


async def test_hooked_receiver_recovers_a_packet_retransmitted_late() -> None:
    receiver, dtls = _video_receiver()
    adapter.browser_like_recovery(receiver)
    clock = _Clock()
    receiver._RTCRtpReceiver__nack_generator._clock_ms = clock  # type: ignore[attr-defined]
    await _feed(receiver, clock, range(1, 30), lost={20})
    await receiver._handle_rtp_packet(_vp8(20, 20), clock.ms)  # the third retransmission
    await _feed(receiver, clock, range(30, 40), lost=set())
    assert sum(20 in lost for lost in dtls.nacked()) >= 3
    assert dtls.plis() == 0
    generator = receiver._RTCRtpReceiver__nack_generator  # type: ignore[attr-defined]
    assert generator.pending == []


async def test_a_late_retransmission_releases_every_frame_queued_behind_it() -> None:
    """aiortc hands its decoder one frame per packet received; the hook hands over all that
    are complete, in order, so the delay a hole built up does not stay."""
    for hooked in (False, True):
        receiver, _dtls = _video_receiver()
        if hooked:
            adapter.browser_like_recovery(receiver)
        decoder: queue.Queue[Any] = queue.Queue()
        receiver._RTCRtpReceiver__decoder_queue = decoder  # type: ignore[attr-defined]
        receiver._RTCRtpReceiver__decoder_thread = object()  # type: ignore[attr-defined]
        clock = _Clock()
        await _feed(receiver, clock, range(1, 40), lost={20})
        decoded = [decoder.get_nowait()[1].timestamp for _ in range(decoder.qsize())]
        assert decoded == [(seq - 1) * 3000 for seq in range(1, 19)]  # 1..18 (mapped from 0)
        await receiver._handle_rtp_packet(_vp8(20, 20), clock.ms)  # the retransmission
        released = [decoder.get_nowait()[1].timestamp for _ in range(decoder.qsize())]
        if hooked:
            assert released == [(seq - 1) * 3000 for seq in range(19, 39)], "19..38, in order"
        else:
            assert len(released) == 1, "aiortc now drains by itself: drop the hook"


def test_audio_receivers_are_left_alone() -> None:
    receiver = RTCRtpReceiver("audio", _FakeDtls())  # type: ignore[arg-type]
    assert adapter.browser_like_recovery(receiver) is False
