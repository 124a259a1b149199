"""Deterministic tests of the forwarding hot path and the RTCP feedback paths.

A real :class:`~sfu.producer.Producer` and real :class:`~sfu.consumer.Consumer` objects are
wired to in-memory fakes (``tests/support/fakes.py``): the publisher's packets are handed to
``Producer.receive_rtp`` as plaintext bytes, the subscriber's packets are collected from a fake
raw transport and parsed with aiortc's own ``RtpPacket``/``RtcpPacket`` (an implementation
independent of ``sfu.rtp.header``). No ICE, DTLS, sockets or wall-clock sleeps: the aiortc
clock used for NACK/PLI timing is replaced by a :class:`FakeClock`, and the only waits are
``asyncio.sleep(0)`` to let a ``loop.call_later(0, ...)`` timer run.

The aiortc ``ForwardingPeerConnection`` is only used to get a real sending transceiver (and
its SSRCs) for each Consumer; it never gathers candidates.
"""

from __future__ import annotations

import asyncio
import fractions
import functools
import random
import struct
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, cast

import av
import numpy as np
import pytest
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
)
from aiortc.rtp import (
    HeaderExtensionsMap,
    RtcpPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpSrPacket,
    RtpPacket,
)

import sfu.consumer as consumer_module
import sfu.producer as producer_module
from sfu import _aiortc_adapter as adapter
from sfu._aiortc_adapter import (
    URI_ABS_SEND_TIME,
    URI_AUDIO_LEVEL,
    URI_MID,
    ForwardingPeerConnection,
    NegotiatedRtp,
    make_configuration,
)
from sfu.consumer import Consumer
from sfu.producer import Producer
from sfu.rtp.header import parse_extensions, parse_rtp
from sfu.rtp.keyframe import is_keyframe
from sfu.transport import WebRtcTransport as WebRtcTransportImpl
from tests.support.fakes import FakeClock, FakeRawRtp, FakeTransport, NullSink

if TYPE_CHECKING:
    from sfu.transport import WebRtcTransport

# --- negotiated parameters ---------------------------------------------------------------------

PUB_SSRC = 1111
PUB_RTX_SSRC = 2222
PUB_RTCP_SSRC = 9

OPUS_PUB = RTCRtpCodecParameters(
    mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111
)
OPUS_SUB = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=96)
VP8_PUB = [
    RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96),
    RTCRtpCodecParameters(
        mimeType="video/rtx", clockRate=90000, payloadType=97, parameters={"apt": 96}
    ),
]
VP8_SUB = [
    RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=100),
    RTCRtpCodecParameters(
        mimeType="video/rtx", clockRate=90000, payloadType=101, parameters={"apt": 100}
    ),
]
PUB_CODECS = {"audio": [OPUS_PUB], "video": VP8_PUB}
SUB_CODECS = {"audio": [OPUS_SUB], "video": VP8_SUB}
PUB_PT = {"audio": 111, "video": 96}
SUB_PT = {"audio": 96, "video": 100}
PUB_RTX_PT = 97
SUB_RTX_PT = 101

PUB_EXT = {
    "audio": {URI_MID: 4, URI_AUDIO_LEVEL: 1},
    "video": {URI_MID: 4, URI_ABS_SEND_TIME: 2},
}
SUB_EXT = {
    "audio": {URI_MID: 1, URI_AUDIO_LEVEL: 2},
    "video": {URI_MID: 1, URI_ABS_SEND_TIME: 3},
}
SUB_MID = "3"

AUDIO_TICKS = 960  # 20 ms of Opus at 48 kHz
VIDEO_TICKS = 3000  # one frame at 30 fps, 90 kHz


def _extensions_map(exts: dict[str, int]) -> HeaderExtensionsMap:
    ext_map = HeaderExtensionsMap()
    ext_map.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=ext_id, uri=uri) for uri, ext_id in exts.items()
            ]
        )
    )
    return ext_map


PUB_MAP = {kind: _extensions_map(exts) for kind, exts in PUB_EXT.items()}
SUB_MAP = {kind: _extensions_map(exts) for kind, exts in SUB_EXT.items()}


# --- real VP8 payloads -------------------------------------------------------------------------


def _frame(i: int) -> av.VideoFrame:
    y, x = np.mgrid[0:120, 0:160]
    arr = np.stack([(x + 4 * i) % 256, (y + 2 * i) % 256, (x + y) % 256], axis=2).astype(np.uint8)
    frame = av.VideoFrame.from_ndarray(arr, format="rgb24").reformat(format="yuv420p")
    frame.pts = i * VIDEO_TICKS
    frame.time_base = fractions.Fraction(1, 90000)
    return frame


@functools.lru_cache(maxsize=1)
def _vp8() -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """(first RTP payloads of keyframes, first RTP payloads of delta frames) from aiortc's
    libvpx encoder, i.e. what a browser would send."""
    encoder = get_encoder(VP8_PUB[0])
    keys: list[bytes] = []
    deltas: list[bytes] = []
    for i in range(12):
        payloads, _ts = encoder.encode(_frame(i), force_keyframe=i in (0, 6))
        (keys if i in (0, 6) else deltas).append(payloads[0])
    assert all(is_keyframe("VP8", p) for p in keys)
    assert not any(is_keyframe("VP8", p) for p in deltas)
    assert len(set(deltas)) == len(deltas)
    return tuple(keys), tuple(deltas)


def key(i: int = 0) -> bytes:
    """The first packet of a real VP8 keyframe."""
    return _vp8()[0][i]


def delta(i: int) -> bytes:
    """The first packet of the ``i``-th real VP8 delta frame (0..9)."""
    return _vp8()[1][i]


# --- packet builders / parsers --------------------------------------------------------------


def pub_rtp(
    kind: str,
    seq: int,
    ts: int,
    payload: bytes,
    *,
    marker: bool = True,
    level: tuple[bool, int] | None = None,
    ssrc: int = PUB_SSRC,
    pt: int | None = None,
    padding: int = 0,
) -> bytes:
    """A publisher packet as a browser sends it (mid + audio level / abs-send-time)."""
    packet = RtpPacket(
        payload_type=PUB_PT[kind] if pt is None else pt,
        marker=int(marker),
        sequence_number=seq & 0xFFFF,
        timestamp=ts & 0xFFFFFFFF,
        ssrc=ssrc,
        payload=payload,
    )
    packet.extensions.mid = "0"
    if kind == "audio":
        packet.extensions.audio_level = level if level is not None else (True, 40)
    else:
        packet.extensions.abs_send_time = (seq * 4096) & 0xFFFFFF
    packet.padding_size = padding
    data: bytes = packet.serialize(PUB_MAP[kind])
    return data


def pub_rtx(rtx_seq: int, osn: int, ts: int, payload: bytes, *, pt: int = PUB_RTX_PT) -> bytes:
    """An RFC 4588 retransmission of publisher packet ``osn``."""
    return pub_rtp(
        "video",
        rtx_seq,
        ts,
        struct.pack("!H", osn) + payload,
        ssrc=PUB_RTX_SSRC,
        pt=pt,
    )


def parse(kind: str, data: bytes) -> RtpPacket:
    """Parse a packet sent to the subscriber with the subscriber's extension ids."""
    packet: RtpPacket = RtpPacket.parse(data, SUB_MAP[kind])
    return packet


def raw_extensions(data: bytes) -> dict[int, bytes]:
    """The RFC 8285 one-byte extension elements of ``data`` as ``{id: value}``."""
    fields = parse_rtp(data)
    assert fields[5] == 0xBEDE, f"expected one-byte extension profile, got {fields[5]:#x}"
    return parse_extensions(data, fields[6], fields[7], two_byte=False)


def seq_add(a: int, n: int) -> int:
    return (a + n) & 0xFFFF


def ts_sub(a: int, b: int) -> int:
    return (a - b) & 0xFFFFFFFF


# --- rig ---------------------------------------------------------------------------------------


@pytest.fixture
async def pcs() -> AsyncIterator[list[ForwardingPeerConnection]]:
    """Peer connections created by a test, closed at teardown."""
    created: list[ForwardingPeerConnection] = []
    yield created
    for pc in created:
        await pc.close()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Replace aiortc's ms clock as seen by the producer (NACK timing, PLI throttling)."""
    fake = FakeClock()
    monkeypatch.setattr(adapter, "now_ms", fake)
    return fake


def make_producer(kind: str, transport: FakeTransport) -> Producer:
    producer = Producer(
        transport=cast("WebRtcTransport", transport),
        participant_sid="PA_publisher",
        mid="0",
        kind=kind,
    )
    producer.on_negotiated(
        NegotiatedRtp(
            mid="0",
            kind=kind,
            codecs=list(PUB_CODECS[kind]),
            header_extensions=dict(PUB_EXT[kind]),
            ssrc=PUB_SSRC,
            rtx_ssrc=PUB_RTX_SSRC if kind == "video" else None,
            rtcp_ssrc=PUB_RTCP_SSRC,
        )
    )
    return producer


def add_consumer(producer: Producer, pcs: list[ForwardingPeerConnection]) -> Consumer:
    """A consumer on a real (never connected) sendonly transceiver, attached to ``producer``
    as ``WebRtcTransport.attach_consumer`` does."""
    pc = ForwardingPeerConnection(NullSink(), make_configuration([]))
    pcs.append(pc)
    transceiver = pc.addTransceiver(producer.kind, direction="sendonly")
    consumer = Consumer(producer, cast("WebRtcTransport", FakeTransport()), transceiver)
    producer.consumers.append(consumer)
    return consumer


def negotiate(consumer: Consumer, raw: FakeRawRtp | None = None) -> FakeRawRtp:
    raw = raw if raw is not None else FakeRawRtp()
    kind = consumer.kind
    consumer.on_negotiated(
        NegotiatedRtp(
            mid=SUB_MID,
            kind=kind,
            codecs=list(SUB_CODECS[kind]),
            header_extensions=dict(SUB_EXT[kind]),
            ssrc=consumer.ssrc,
            rtx_ssrc=consumer.rtx_ssrc,
            rtcp_ssrc=consumer.ssrc,
        ),
        cast("adapter.RawRtpTransport", raw),
    )
    return raw


async def spin_until(predicate: Callable[[], bool], rounds: int = 20) -> None:
    """Run the event loop a few iterations (no real-time wait) until ``predicate()``."""
    for _ in range(rounds):
        if predicate():
            return
        await asyncio.sleep(0)


def assert_sent_by(consumer: Consumer, kind: str, packet: RtpPacket) -> None:
    assert packet.ssrc == consumer.ssrc
    assert packet.payload_type == SUB_PT[kind]
    assert packet.extensions.mid == SUB_MID


# --- 1. audio forwarding -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first_seq", "first_ts"),
    [(1000, 160_000), (65534, 0xFFFFFFFF - 1500)],  # the second wraps both seq and ts
)
async def test_audio_forwarding_rewrites_header(
    pcs: list[ForwardingPeerConnection], first_seq: int, first_ts: int
) -> None:
    transport = FakeTransport()
    producer = make_producer("audio", transport)
    consumer = add_consumer(producer, pcs)
    rng = random.Random(first_seq)

    # Before the consumer is negotiated nothing is sent (and nothing is queued for later).
    early = pub_rtp("audio", first_seq - 5, first_ts - 5 * AUDIO_TICKS, rng.randbytes(40))
    producer.receive_rtp(early, PUB_SSRC, 0)
    assert consumer.packets_sent == 0
    assert not consumer.active
    raw = negotiate(consumer)
    assert raw.sent == []
    assert consumer.active

    seq_steps = [0, 1, 2, 4]  # a gap of 2 between the third and fourth packet
    markers = [True, False, False, True]
    levels = [(True, 30), (False, 127), (True, 0), (False, 55)]
    payloads = [rng.randbytes(20 + 13 * i) for i in range(4)]
    for i, step in enumerate(seq_steps):
        data = pub_rtp(
            "audio",
            first_seq + step,
            first_ts + step * AUDIO_TICKS,
            payloads[i],
            marker=markers[i],
            level=levels[i],
        )
        producer.receive_rtp(data, PUB_SSRC, 100 + 20 * step)

    assert len(raw.sent) == 4
    out = [parse("audio", data) for data in raw.sent]
    for i, packet in enumerate(out):
        assert_sent_by(consumer, "audio", packet)
        assert packet.payload == payloads[i]
        assert packet.marker == int(markers[i])
        assert packet.extensions.audio_level == levels[i]
        # the subscriber's ids: mid 1, audio level 2 (and nothing of the publisher's 4)
        vad, level = levels[i]
        assert raw_extensions(raw.sent[i]) == {
            1: SUB_MID.encode(),
            2: bytes([(0x80 if vad else 0) | level]),
        }
    base = out[0]
    for i, packet in enumerate(out):
        assert packet.sequence_number == seq_add(base.sequence_number, seq_steps[i])
        assert ts_sub(packet.timestamp, base.timestamp) == seq_steps[i] * AUDIO_TICKS
    assert consumer.packets_sent == 4
    assert consumer.bytes_sent == sum(len(p) for p in payloads)
    assert producer.packets_dropped == 0
    assert producer.audio_level == 55


async def test_padding_is_stripped_and_padding_only_packets_are_not_forwarded(
    pcs: list[ForwardingPeerConnection],
) -> None:
    producer = make_producer("video", FakeTransport())
    consumer = add_consumer(producer, pcs)
    raw = negotiate(consumer)
    producer.receive_rtp(pub_rtp("video", 10, 0, key(), padding=7), PUB_SSRC, 0)
    producer.receive_rtp(pub_rtp("video", 11, 0, b"", padding=200), PUB_SSRC, 1)  # probe
    producer.receive_rtp(pub_rtp("video", 12, 3000, delta(0)), PUB_SSRC, 2)
    out = [parse("video", data) for data in raw.sent]
    assert [p.payload for p in out] == [key(), delta(0)]
    assert all(p.padding_size == 0 for p in out)
    assert not raw.sent[0][0] & 0x20  # P bit cleared
    producer.close()


# --- 2. video waits for a keyframe -------------------------------------------------------------


async def test_video_consumer_waits_for_keyframe(
    pcs: list[ForwardingPeerConnection], clock: FakeClock
) -> None:
    transport = FakeTransport()
    producer = make_producer("video", transport)
    consumer = add_consumer(producer, pcs)
    assert transport.plis == []
    raw = negotiate(consumer)
    # negotiating a video consumer asks the publisher for a keyframe, once
    assert transport.plis == [producer]
    assert consumer.wait_keyframe

    producer.receive_rtp(pub_rtp("video", 100, 0, delta(0)), PUB_SSRC, 0)
    producer.receive_rtp(pub_rtp("video", 101, 3000, delta(1)), PUB_SSRC, 33)
    assert raw.sent == []
    assert consumer.packets_sent == 0

    producer.receive_rtp(pub_rtp("video", 102, 6000, key(), marker=False), PUB_SSRC, 66)
    producer.receive_rtp(pub_rtp("video", 103, 6000, delta(2)), PUB_SSRC, 67)
    producer.receive_rtp(pub_rtp("video", 104, 9000, delta(3)), PUB_SSRC, 99)
    assert producer.keyframes_received == 1
    out = [parse("video", data) for data in raw.sent]
    assert [p.payload for p in out] == [key(), delta(2), delta(3)]
    assert [p.marker for p in out] == [0, 1, 1]
    assert [ts_sub(p.timestamp, out[0].timestamp) for p in out] == [0, 0, 3000]
    assert [p.sequence_number for p in out] == [
        seq_add(out[0].sequence_number, i) for i in range(3)
    ]
    for data, packet in zip(raw.sent, out, strict=True):
        assert_sent_by(consumer, "video", packet)
        assert packet.extensions.abs_send_time is not None
        exts = raw_extensions(data)
        assert set(exts) == {1, 3}
        assert exts[1] == SUB_MID.encode()
        assert len(exts[3]) == 3
    assert transport.plis == [producer]  # no further request once flowing
    producer.close()


# --- 3. publisher loss -> NACK -> RTX recovery --------------------------------------------------


async def test_publisher_loss_is_nacked_and_rtx_recovered(
    pcs: list[ForwardingPeerConnection], clock: FakeClock
) -> None:
    transport = FakeTransport()
    producer = make_producer("video", transport)
    consumer = add_consumer(producer, pcs)
    raw = negotiate(consumer)
    frames = {10: (0, key()), 11: (3000, delta(0)), 12: (6000, delta(1))}
    frames |= {13: (9000, delta(2)), 14: (12000, delta(3))}
    for seq in (10, 11, 13, 14):
        ts, payload = frames[seq]
        producer.receive_rtp(pub_rtp("video", seq, ts, payload), PUB_SSRC, seq)

    await spin_until(lambda: bool(transport.nacks))
    assert transport.nacks == [(producer, [12])]
    assert producer.nacks_sent == 1
    assert len(raw.sent) == 4
    out = {seq: parse("video", data) for seq, data in zip((10, 11, 13, 14), raw.sent, strict=True)}
    assert out[13].sequence_number == seq_add(out[11].sequence_number, 2)
    assert out[14].sequence_number == seq_add(out[11].sequence_number, 3)

    # the publisher answers with RTX: ssrc 2222, PT 97, payload = OSN + original payload
    ts12, payload12 = frames[12]
    producer.receive_rtp(pub_rtx(500, 12, ts12, payload12), PUB_RTX_SSRC, 40)
    assert producer.rtx_received == 1
    assert len(raw.sent) == 5
    recovered = parse("video", raw.sent[-1])
    assert_sent_by(consumer, "video", recovered)
    assert recovered.sequence_number == seq_add(out[11].sequence_number, 1)
    assert recovered.timestamp == (out[11].timestamp + 3000) & 0xFFFFFFFF
    assert recovered.payload == payload12
    assert producer.nack is not None and producer.nack.pending == 0

    # a second RTX copy of the same packet is not forwarded again
    producer.receive_rtp(pub_rtx(501, 12, ts12, payload12), PUB_RTX_SSRC, 41)
    assert producer.rtx_received == 2
    assert len(raw.sent) == 5
    assert len({parse("video", d).sequence_number for d in raw.sent}) == 5
    assert transport.nacks == [(producer, [12])]
    producer.close()


# --- 4. subscriber NACK -> retransmission -------------------------------------------------------


async def test_consumer_retransmits_as_rtx(pcs: list[ForwardingPeerConnection]) -> None:
    producer = make_producer("video", FakeTransport())
    consumer = add_consumer(producer, pcs)
    raw = negotiate(consumer)
    payloads = [key(), delta(0), delta(1), delta(2)]
    for i, payload in enumerate(payloads):
        producer.receive_rtp(
            pub_rtp("video", 10 + i, 3000 * i, payload, marker=i != 1), PUB_SSRC, i
        )
    out = [parse("video", data) for data in raw.sent]
    assert len(out) == 4

    x = out[1].sequence_number
    assert consumer.retransmit([x]) == 1
    assert len(raw.sent) == 5
    rtx = parse("video", raw.sent[-1])
    assert rtx.ssrc == consumer.rtx_ssrc
    assert rtx.payload_type == SUB_RTX_PT
    assert struct.unpack("!H", rtx.payload[:2])[0] == x  # OSN
    assert rtx.payload[2:] == payloads[1]
    assert rtx.timestamp == out[1].timestamp
    assert rtx.marker == out[1].marker == 0
    assert rtx.extensions.mid == SUB_MID

    unknown = seq_add(x, 200)
    assert consumer.retransmit([unknown]) == 0
    assert len(raw.sent) == 5

    assert consumer.retransmit([out[0].sequence_number, unknown, out[3].sequence_number]) == 2
    assert len(raw.sent) == 7
    rtx0, rtx3 = parse("video", raw.sent[5]), parse("video", raw.sent[6])
    assert [struct.unpack("!H", p.payload[:2])[0] for p in (rtx0, rtx3)] == [
        out[0].sequence_number,
        out[3].sequence_number,
    ]
    assert rtx0.payload[2:] == payloads[0] and rtx3.payload[2:] == payloads[3]
    # the RTX stream has its own contiguous sequence numbers
    assert rtx0.sequence_number == seq_add(rtx.sequence_number, 1)
    assert rtx3.sequence_number == seq_add(rtx.sequence_number, 2)
    assert consumer.retransmissions == 3
    producer.close()


async def test_audio_consumer_does_not_retransmit(pcs: list[ForwardingPeerConnection]) -> None:
    producer = make_producer("audio", FakeTransport())
    consumer = add_consumer(producer, pcs)
    raw = negotiate(consumer)
    producer.receive_rtp(pub_rtp("audio", 1, 0, b"opus"), PUB_SSRC, 0)
    seq = parse("audio", raw.sent[0]).sequence_number
    assert consumer.retransmit([seq]) == 0
    assert len(raw.sent) == 1


# --- 5. PLI throttle ---------------------------------------------------------------------------


async def test_keyframe_requests_are_throttled(
    pcs: list[ForwardingPeerConnection], clock: FakeClock
) -> None:
    transport = FakeTransport()
    producer = make_producer("video", transport)
    consumer = add_consumer(producer, pcs)
    interval = producer.keyframes.min_interval_ms
    for _ in range(10):
        consumer.request_keyframe()
    assert transport.plis == [producer]
    assert producer.plis_sent == 1
    assert consumer.keyframe_requests == 10

    producer.poll_keyframe_request(clock.ms + interval // 2)
    assert len(transport.plis) == 1
    clock.advance(interval)
    producer.poll_keyframe_request(clock.ms)  # the deferred request, once
    assert transport.plis == [producer, producer]
    producer.poll_keyframe_request(clock.ms)
    producer.poll_keyframe_request(clock.ms + 10 * interval)
    assert len(transport.plis) == 2
    assert producer.plis_sent == 2


async def test_keyframe_cancels_deferred_request(
    pcs: list[ForwardingPeerConnection], clock: FakeClock
) -> None:
    transport = FakeTransport()
    producer = make_producer("video", transport)
    consumer = add_consumer(producer, pcs)
    raw = negotiate(consumer)  # first request: sent
    consumer.request_keyframe()  # throttled: deferred
    assert len(transport.plis) == 1
    producer.receive_rtp(pub_rtp("video", 1, 0, key()), PUB_SSRC, 0)
    assert len(raw.sent) == 1
    clock.advance(10_000)
    producer.poll_keyframe_request(clock.ms)
    assert len(transport.plis) == 1
    producer.close()


async def test_audio_never_sends_pli(pcs: list[ForwardingPeerConnection]) -> None:
    transport = FakeTransport()
    producer = make_producer("audio", transport)
    consumer = add_consumer(producer, pcs)
    negotiate(consumer)
    consumer.request_keyframe()
    producer.poll_keyframe_request(10**9)
    assert transport.plis == []


# --- 6. mute / resume --------------------------------------------------------------------------


async def test_audio_mute_resume_keeps_sequence_contiguous(
    pcs: list[ForwardingPeerConnection],
) -> None:
    producer = make_producer("audio", FakeTransport())
    consumer = add_consumer(producer, pcs)
    raw = negotiate(consumer)
    for i in range(3):
        producer.receive_rtp(pub_rtp("audio", 100 + i, AUDIO_TICKS * i, bytes([i])), PUB_SSRC, i)
    assert len(raw.sent) == 3
    last = parse("audio", raw.sent[-1])

    producer.set_paused(True)
    assert producer.info().muted
    assert not consumer.active
    forwarded = producer.packets_forwarded
    for i in range(3, 6):
        producer.receive_rtp(pub_rtp("audio", 100 + i, AUDIO_TICKS * i, bytes([i])), PUB_SSRC, i)
    assert len(raw.sent) == 3
    assert producer.packets_forwarded == forwarded

    producer.set_paused(False)
    assert consumer.active
    # the publisher restarted its numbering far away
    producer.receive_rtp(pub_rtp("audio", 40_000, 7_000_000, b"r0"), PUB_SSRC, 10)
    producer.receive_rtp(pub_rtp("audio", 40_001, 7_000_960, b"r1"), PUB_SSRC, 11)
    out = [parse("audio", data) for data in raw.sent[3:]]
    assert [p.payload for p in out] == [b"r0", b"r1"]
    assert [p.sequence_number for p in out] == [
        seq_add(last.sequence_number, 1),
        seq_add(last.sequence_number, 2),
    ]
    gap = ts_sub(out[0].timestamp, last.timestamp)
    assert 0 < gap < 0x80000000  # moves forward
    assert ts_sub(out[1].timestamp, out[0].timestamp) == AUDIO_TICKS


async def test_video_mute_resume_restarts_on_keyframe(
    pcs: list[ForwardingPeerConnection], clock: FakeClock
) -> None:
    transport = FakeTransport()
    producer = make_producer("video", transport)
    consumer = add_consumer(producer, pcs)
    raw = negotiate(consumer)
    producer.receive_rtp(pub_rtp("video", 1, 0, key()), PUB_SSRC, 0)
    producer.receive_rtp(pub_rtp("video", 2, 3000, delta(0)), PUB_SSRC, 1)
    assert len(raw.sent) == 2
    last = parse("video", raw.sent[-1])

    producer.set_paused(True)
    producer.receive_rtp(pub_rtp("video", 3, 6000, delta(1)), PUB_SSRC, 2)
    assert len(raw.sent) == 2
    plis = len(transport.plis)
    clock.advance(10_000)
    producer.set_paused(False)
    assert len(transport.plis) == plis + 1  # resume asks for a keyframe

    producer.receive_rtp(pub_rtp("video", 50, 900_000, delta(2)), PUB_SSRC, 3)
    assert len(raw.sent) == 2  # not a keyframe: still waiting
    producer.receive_rtp(pub_rtp("video", 51, 903_000, key(1)), PUB_SSRC, 4)
    producer.receive_rtp(pub_rtp("video", 52, 906_000, delta(3)), PUB_SSRC, 5)
    out = [parse("video", data) for data in raw.sent[2:]]
    assert [p.payload for p in out] == [key(1), delta(3)]
    assert [p.sequence_number for p in out] == [
        seq_add(last.sequence_number, 1),
        seq_add(last.sequence_number, 2),
    ]
    assert ts_sub(out[1].timestamp, out[0].timestamp) == 3000
    producer.close()


async def test_consumer_resume_requests_keyframe(
    pcs: list[ForwardingPeerConnection], clock: FakeClock
) -> None:
    transport = FakeTransport()
    producer = make_producer("video", transport)
    consumer = add_consumer(producer, pcs)
    raw = negotiate(consumer)
    producer.receive_rtp(pub_rtp("video", 1, 0, key()), PUB_SSRC, 0)
    consumer.set_paused(True)
    producer.receive_rtp(pub_rtp("video", 2, 3000, delta(0)), PUB_SSRC, 1)
    assert len(raw.sent) == 1
    clock.advance(10_000)
    plis = len(transport.plis)
    consumer.set_paused(False)
    assert consumer.wait_keyframe
    try:
        assert len(transport.plis) == plis + 1
    finally:
        producer.close()


# --- 7. sender report --------------------------------------------------------------------------


class FrozenTime:
    """Stands in for the ``time`` module inside sfu.producer / sfu.consumer."""

    def __init__(self) -> None:
        self.t = 5000.0

    def monotonic(self) -> float:
        return self.t

    def time(self) -> float:
        return 1_700_000_000.0 + self.t


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> FrozenTime:
    fake = FrozenTime()
    monkeypatch.setattr(producer_module, "time", fake)
    monkeypatch.setattr(consumer_module, "time", fake)
    return fake


NTP = (3_900_000_000 << 32) | (1 << 31)  # some NTP time, .5 s


async def test_sender_report_maps_publisher_clock(
    pcs: list[ForwardingPeerConnection], frozen: FrozenTime
) -> None:
    producer = make_producer("audio", FakeTransport())
    consumer = add_consumer(producer, pcs)
    raw = negotiate(consumer)
    assert consumer.sender_report() is None  # nothing sent, no SR
    payloads = [bytes(range(10 + i)) for i in range(4)]
    in_ts = [77_000 + AUDIO_TICKS * i for i in range(4)]
    for i in range(4):
        producer.receive_rtp(pub_rtp("audio", 300 + i, in_ts[i], payloads[i]), PUB_SSRC, i)
    assert consumer.sender_report() is None  # no SR from the publisher yet
    out = [parse("audio", data) for data in raw.sent]
    ts_offset = ts_sub(out[0].timestamp, in_ts[0])

    sr_rtp = in_ts[-1] + 480
    producer.on_sender_report(NTP, sr_rtp)
    frozen.t += 0.25  # the SR is forwarded 250 ms after it arrived
    data = consumer.sender_report()
    assert data is not None
    packets = RtcpPacket.parse(data)
    assert len(packets) == 1
    sr = packets[0]
    assert isinstance(sr, RtcpSrPacket)
    assert sr.ssrc == consumer.ssrc
    assert sr.sender_info.packet_count == 4 == consumer.packets_sent
    assert sr.sender_info.octet_count == sum(len(p) for p in payloads)
    expected_rtp = (sr_rtp + ts_offset + 48000 // 4) & 0xFFFFFFFF
    assert abs(((sr.sender_info.rtp_timestamp - expected_rtp + 2**31) % 2**32) - 2**31) <= 48
    assert sr.sender_info.ntp_timestamp == NTP + (1 << 30)  # + 0.25 s


async def test_sender_report_after_reordered_packet(
    pcs: list[ForwardingPeerConnection], frozen: FrozenTime
) -> None:
    producer = make_producer("audio", FakeTransport())
    consumer = add_consumer(producer, pcs)
    raw = negotiate(consumer)
    for seq in (1, 2, 4, 3):  # packet 3 arrives late
        producer.receive_rtp(pub_rtp("audio", seq, AUDIO_TICKS * seq, bytes([seq])), PUB_SSRC, 0)
    assert len(raw.sent) == 4
    first = parse("audio", raw.sent[0])
    ts_offset = ts_sub(first.timestamp, AUDIO_TICKS)
    producer.on_sender_report(NTP, 5 * AUDIO_TICKS)
    data = consumer.sender_report()
    assert data is not None
    sr = RtcpPacket.parse(data)[0]
    assert isinstance(sr, RtcpSrPacket)
    assert sr.sender_info.rtp_timestamp == (5 * AUDIO_TICKS + ts_offset) & 0xFFFFFFFF


# --- 8. malformed packets ----------------------------------------------------------------------


def _malformed() -> dict[str, bytes]:
    good = pub_rtp("audio", 7, 700, b"\x01\x02\x03\x04")
    plain = struct.pack("!BBHII", 0x80, 111, 7, 700, PUB_SSRC) + b"\x01\x02\x03\x04"
    return {
        "empty": b"",
        "3 bytes": good[:3],
        "11 bytes": good[:11],
        "version 1": bytes([0x40 | (good[0] & 0x3F)]) + good[1:],
        "version 0": bytes([good[0] & 0x3F]) + good[1:],
        "csrc overrun": bytes([0x8F]) + plain[1:],
        "extension header overrun": bytes([0x90]) + plain[1:12] + b"\xbe",
        "extension overrun": bytes([0x90]) + plain[1:12] + b"\xbe\xde\x00\x09" + b"\x10\x30",
        "padding zero": bytes([0xA0]) + plain[1:-1] + b"\x00",
        "padding too long": bytes([0xA0]) + plain[1:-1] + b"\x40",
    }


async def test_malformed_packets_are_dropped(pcs: list[ForwardingPeerConnection]) -> None:
    producer = make_producer("audio", FakeTransport())
    consumer = add_consumer(producer, pcs)
    raw = negotiate(consumer)
    cases = _malformed()
    for n, (name, data) in enumerate(cases.items(), start=1):
        producer.receive_rtp(data, PUB_SSRC, n)
        assert producer.packets_dropped == n, name
    assert producer.packets_received == 0
    assert raw.sent == []

    # a well-formed packet with a payload type that was not negotiated
    producer.receive_rtp(pub_rtp("audio", 8, 800, b"x", pt=0), PUB_SSRC, 20)
    assert producer.packets_dropped == len(cases) + 1
    assert raw.sent == []
    assert consumer.packets_sent == 0

    # forwarding still works afterwards
    producer.receive_rtp(pub_rtp("audio", 9, 900, b"ok"), PUB_SSRC, 21)
    assert producer.packets_dropped == len(cases) + 1
    assert [parse("audio", d).payload for d in raw.sent] == [b"ok"]


async def test_bad_rtx_packets_are_dropped(
    pcs: list[ForwardingPeerConnection], clock: FakeClock
) -> None:
    producer = make_producer("video", FakeTransport())
    consumer = add_consumer(producer, pcs)
    raw = negotiate(consumer)
    producer.receive_rtp(pub_rtp("video", 1, 0, key()), PUB_SSRC, 0)
    producer.receive_rtp(pub_rtp("video", 3, 6000, delta(1)), PUB_SSRC, 2)  # 2 is missing
    assert len(raw.sent) == 2
    # RTX with the media PT instead of the RTX PT, and one too short to hold an OSN
    producer.receive_rtp(pub_rtx(90, 2, 3000, delta(0), pt=96), PUB_RTX_SSRC, 3)
    producer.receive_rtp(pub_rtp("video", 91, 3000, b"\x00", ssrc=PUB_RTX_SSRC, pt=97), 2222, 3)
    assert producer.packets_dropped == 2
    assert producer.rtx_received == 0
    assert len(raw.sent) == 2
    # a media packet on the media SSRC with the RTX PT is dropped too
    producer.receive_rtp(pub_rtp("video", 4, 9000, delta(2), pt=97), PUB_SSRC, 4)
    assert producer.packets_dropped == 3
    assert len(raw.sent) == 2
    producer.close()


@pytest.mark.parametrize("kind", ["audio", "video"])
async def test_malformed_extension_element_never_escapes(
    pcs: list[ForwardingPeerConnection], clock: FakeClock, kind: str
) -> None:
    producer = make_producer(kind, FakeTransport())
    consumer = add_consumer(producer, pcs)
    raw = negotiate(consumer)
    # one 32-bit word of one-byte extensions: mid id 4 claims 16 bytes, only 3 follow
    data = (
        struct.pack("!BBHII", 0x90, PUB_PT[kind], 5, 500, PUB_SSRC)
        + b"\xbe\xde\x00\x01"
        + b"\x4f\x30\x00\x00"
        + (key() if kind == "video" else b"opus")
    )
    try:
        producer.receive_rtp(data, PUB_SSRC, 0)  # must not raise
        if kind == "audio":  # the audio level is read from the block: the packet is dropped
            assert producer.packets_dropped == 1
            assert raw.sent == []
        else:  # video extensions are never read; the consumer writes its own, well-formed
            (sent,) = raw.sent
            assert parse("video", sent).sequence_number is not None
            assert sent[12:14] == b"\xbe\xde"
    finally:
        producer.close()


# --- 9. close ----------------------------------------------------------------------------------


async def test_consumer_close_detaches(pcs: list[ForwardingPeerConnection]) -> None:
    producer = make_producer("video", FakeTransport())
    consumer = add_consumer(producer, pcs)
    other = add_consumer(producer, pcs)
    raw, other_raw = negotiate(consumer), negotiate(other)
    closed: list[Consumer] = []
    consumer.on_close(closed.append)
    producer.receive_rtp(pub_rtp("video", 1, 0, key()), PUB_SSRC, 0)
    assert len(raw.sent) == len(other_raw.sent) == 1
    seq = parse("video", raw.sent[0]).sequence_number

    consumer.close()
    consumer.close()  # idempotent
    assert consumer.closed and not consumer.active
    assert closed == [consumer]
    assert producer.consumers == [other]
    producer.receive_rtp(pub_rtp("video", 2, 3000, delta(0)), PUB_SSRC, 1)
    assert len(raw.sent) == 1
    assert len(other_raw.sent) == 2
    consumer.forward(True, 3, 6000, b"direct", None, True)  # even if called directly
    assert consumer.retransmit([seq]) == 0
    assert len(raw.sent) == 1
    producer.close()


async def test_producer_close_closes_consumers(pcs: list[ForwardingPeerConnection]) -> None:
    producer = make_producer("audio", FakeTransport())
    consumers = [add_consumer(producer, pcs) for _ in range(3)]
    raws = [negotiate(c) for c in consumers]
    closed: list[object] = []
    producer.on_close(closed.append)
    for c in consumers:
        c.on_close(closed.append)
    producer.receive_rtp(pub_rtp("audio", 1, 0, b"a"), PUB_SSRC, 0)
    assert [len(r.sent) for r in raws] == [1, 1, 1]

    producer.close()
    producer.close()  # idempotent
    assert producer.closed
    assert all(c.closed for c in consumers)
    assert producer.consumers == []
    assert closed == [*consumers, producer]
    producer.receive_rtp(pub_rtp("audio", 2, 960, b"b"), PUB_SSRC, 1)
    assert [len(r.sent) for r in raws] == [1, 1, 1]
    assert producer.packets_received == 1


# --- 10. NACK amplification (issue 10, item 8) -------------------------------------------------


def _nack(media_ssrc: int, entries: list[tuple[int, int]]) -> bytes:
    """A Generic NACK (RFC 4585 §6.2.1) with the given raw (PID, BLP) FCI entries, repeats
    allowed (aiortc's serializer would merge them)."""
    fci = b"".join(struct.pack("!HH", pid, blp) for pid, blp in entries)
    header = struct.pack("!BBHII", 0x81, 205, (8 + len(fci)) // 4, 0x5EED, media_ssrc)
    return header + fci


def _receiver_report(media_ssrc: int, lsr: int, dlsr: int) -> bytes:
    block = RtcpReceiverInfo(
        ssrc=media_ssrc,
        fraction_lost=0,
        packets_lost=0,
        highest_sequence=0,
        jitter=0,
        lsr=lsr,
        dlsr=dlsr,
    )
    return bytes(RtcpRrPacket(ssrc=0x5EED, reports=[block]))


async def _video_subscriber(
    packets: int,
) -> tuple[Producer, WebRtcTransportImpl, Consumer, FakeRawRtp]:
    """A real subscribe-side WebRtcTransport (never connected) with one negotiated video
    consumer that has forwarded ``packets`` publisher packets."""
    producer = make_producer("video", FakeTransport())
    transport = WebRtcTransportImpl(ice_servers=[])
    transceiver = transport.pc.addTransceiver("video", direction="sendonly")
    consumer = transport.attach_consumer(producer, transceiver)
    raw = negotiate(consumer)
    producer.receive_rtp(pub_rtp("video", 100, 0, key()), PUB_SSRC, 0)
    for i in range(1, packets):
        producer.receive_rtp(pub_rtp("video", 100 + i, 3000 * i, delta(i % 10)), PUB_SSRC, i)
    assert consumer.packets_sent == packets
    return producer, transport, consumer, raw


async def test_nack_flood_of_repeated_seqs_is_not_amplified(clock: FakeClock) -> None:
    """The issue's reproduction: 20 NACKs, each with 300 FCI entries naming the same 17
    packets (PID + a full BLP). Before: 20 x 300 x 17 = 102,000 retransmissions."""
    producer, transport, consumer, raw = await _video_subscriber(40)
    try:
        first = parse("video", raw.sent[0]).sequence_number
        flood = _nack(consumer.ssrc, [(first, 0xFFFF)] * 300)
        for _ in range(20):
            transport.on_rtcp(flood)
        assert transport.nacks_received == 20
        resent = raw.sent[40:]
        assert consumer.retransmissions == len(resent) == 17  # each lost packet exactly once
        osns = [struct.unpack("!H", parse("video", d).payload[:2])[0] for d in resent]
        assert osns == [seq_add(first, i) for i in range(17)]
    finally:
        await transport.close()
        producer.close()


async def test_nack_seqs_per_packet_are_capped(clock: FakeClock) -> None:
    producer, transport, consumer, raw = await _video_subscriber(400)
    try:
        first = parse("video", raw.sent[0]).sequence_number
        entries = [(seq_add(first, 17 * i), 0xFFFF) for i in range(23)]  # 391 distinct seqs
        transport.on_rtcp(_nack(consumer.ssrc, entries))
        assert consumer.retransmissions == consumer_module.MAX_NACK_SEQS
    finally:
        await transport.close()
        producer.close()


async def test_nacked_packet_is_resent_once_per_rtt_measured_from_reports(
    clock: FakeClock,
) -> None:
    producer, transport, consumer, raw = await _video_subscriber(10)
    try:
        lost = parse("video", raw.sent[3]).sequence_number
        nack = _nack(consumer.ssrc, [(lost, 0)])
        transport.on_rtcp(nack)
        assert consumer.retransmissions == 1  # a genuine loss is repaired at once
        transport.on_rtcp(nack)
        assert consumer.retransmissions == 1  # not again within the default 100 ms RTT
        clock.advance(100)
        transport.on_rtcp(nack)
        assert consumer.retransmissions == 2  # the retransmission itself may have been lost

        # RTT from our SR and the subscriber's RR (RFC 3550 §6.4.1): 40 ms after we sent the
        # SR the report arrives, saying it held the SR for 10 ms: RTT = 30 ms.
        producer.on_sender_report(0x0123456789ABCDEF, 1000)
        sr = consumer.sender_report()
        assert sr is not None
        (parsed,) = RtcpPacket.parse(sr)
        assert isinstance(parsed, RtcpSrPacket)
        lsr = (parsed.sender_info.ntp_timestamp >> 16) & 0xFFFFFFFF
        clock.advance(40)
        transport.on_rtcp(_receiver_report(consumer.ssrc, lsr, 10 * 65536 // 1000))
        assert consumer.rtt.rtt_ms == 30
        transport.on_rtcp(nack)
        assert consumer.retransmissions == 3  # 40 ms since the last resend > 30 ms RTT
        clock.advance(20)
        transport.on_rtcp(nack)
        assert consumer.retransmissions == 3  # 20 ms < RTT
        clock.advance(15)
        transport.on_rtcp(nack)
        assert consumer.retransmissions == 4  # 35 ms > RTT (the default 100 ms would refuse)
        # a report naming an SR we never sent does not change the estimate
        transport.on_rtcp(_receiver_report(consumer.ssrc, lsr ^ 1, 0))
        assert consumer.rtt.rtt_ms == 30
    finally:
        await transport.close()
        producer.close()


async def test_retransmissions_stay_within_the_budget(clock: FakeClock) -> None:
    """A subscriber NACKing every buffered packet every RTT gets at most the burst plus half
    of the packets sent, however long it keeps going."""
    producer, transport, consumer, raw = await _video_subscriber(300)
    try:
        first = parse("video", raw.sent[0]).sequence_number
        entries = [(seq_add(first, 17 * i), 0xFFFF) for i in range(18)]
        budget = consumer.rtx_budget
        for round_ in range(50):
            for start in range(0, len(entries), 7):  # 7 entries = 119 seqs < MAX_NACK_SEQS
                transport.on_rtcp(_nack(consumer.ssrc, entries[start : start + 7]))
            clock.advance(150)
            bound = budget.burst + budget.ratio * consumer.packets_sent
            assert consumer.retransmissions <= bound, round_
        # the bucket was full (what the 300 packets earned beyond the burst is not kept), so
        # 50 rounds x 306 requested packets got exactly one burst of retransmissions
        assert consumer.retransmissions == budget.burst
        # new media earns new budget: a genuine loss after that is repaired again
        for i in range(300, 310):
            producer.receive_rtp(pub_rtp("video", 100 + i, 3000 * i, delta(i % 10)), PUB_SSRC, i)
        before = consumer.retransmissions
        lost = parse("video", raw.sent[-1]).sequence_number
        transport.on_rtcp(_nack(consumer.ssrc, [(lost, 0)]))
        assert consumer.retransmissions == before + 1
    finally:
        await transport.close()
        producer.close()
