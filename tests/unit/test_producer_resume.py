"""A producer that survives its publish transport (issue 11): suspended, then resumed on a new
transport with new SSRCs, sequence numbers and timestamps, while each consumer's outgoing
stream goes on (same SSRC, the next sequence number, timestamps advanced by the whole gap)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

import pytest

from sfu import _aiortc_adapter as adapter
from sfu._aiortc_adapter import ForwardingPeerConnection, NegotiatedRtp
from sfu.producer import Producer
from sfu.transport import WebRtcTransport
from tests.support.fakes import FakeClock, FakeTransport
from tests.unit.test_forwarding_paths import (
    AUDIO_TICKS,
    PUB_CODECS,
    PUB_EXT,
    PUB_SSRC,
    add_consumer,
    make_producer,
    negotiate,
    parse,
    pub_rtp,
    seq_add,
    ts_sub,
)

NEW_SSRC = 0x0BADCAFE


@pytest.fixture
async def pcs() -> AsyncIterator[list[ForwardingPeerConnection]]:
    """Peer connections created by a test, closed at teardown."""
    created: list[ForwardingPeerConnection] = []
    yield created
    for pc in created:
        await pc.close()


class AdoptingTransport(FakeTransport):
    """A new publish transport: remembers the producers it adopts."""

    def __init__(self) -> None:
        super().__init__()
        self.adopted: list[Producer] = []

    def adopt_producer(self, producer: Producer) -> None:
        self.adopted.append(producer)


def _negotiated(kind: str, ssrc: int) -> NegotiatedRtp:
    return NegotiatedRtp(
        mid="3",
        kind=kind,
        codecs=list(PUB_CODECS[kind]),
        header_extensions=dict(PUB_EXT[kind]),
        ssrc=ssrc,
        rtx_ssrc=None,
        rtcp_ssrc=1,
    )


async def test_resumed_producer_continues_every_consumer_stream(
    pcs: list[ForwardingPeerConnection], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(adapter, "now_ms", clock)
    producer = make_producer("audio", FakeTransport())
    consumer = add_consumer(producer, pcs)
    raw = negotiate(consumer)
    for i in range(3):
        producer.receive_rtp(
            pub_rtp("audio", 100 + i, AUDIO_TICKS * i, bytes([i])), PUB_SSRC, clock.ms
        )
    last = parse("audio", raw.sent[-1])

    clock.advance(3000)  # the failure is found 3 s after the last packet
    producer.suspend()
    assert producer.ssrc is None and not producer.closed
    new_transport = AdoptingTransport()
    producer.resume(cast("WebRtcTransport", new_transport), "3", _negotiated("audio", NEW_SSRC))
    assert new_transport.adopted == [producer]
    assert (producer.mid, producer.ssrc) == ("3", NEW_SSRC)

    # The new connection numbers its packets from elsewhere.
    for i in range(2):
        producer.receive_rtp(
            pub_rtp("audio", 40_000 + i, 7_000_000 + AUDIO_TICKS * i, b"n%d" % i, ssrc=NEW_SSRC),
            NEW_SSRC,
            clock.ms,
        )
    out = [parse("audio", data) for data in raw.sent[3:]]
    assert [p.payload for p in out] == [b"n0", b"n1"]
    assert {p.ssrc for p in out} == {last.ssrc}
    assert [p.sequence_number for p in out] == [
        seq_add(last.sequence_number, 1),
        seq_add(last.sequence_number, 2),
    ]
    # Timestamps advance by the whole gap (3 s at 48 kHz), not only by the time since the
    # failure was found.
    assert ts_sub(out[0].timestamp, last.timestamp) >= 3 * 48000
    assert ts_sub(out[1].timestamp, out[0].timestamp) == AUDIO_TICKS


async def test_resume_refuses_another_codec(pcs: list[ForwardingPeerConnection]) -> None:
    producer = make_producer("audio", FakeTransport())
    add_consumer(producer, pcs)
    producer.suspend()
    video = _negotiated("video", NEW_SSRC)
    with pytest.raises(ValueError, match="codec changed"):
        producer.resume(cast("WebRtcTransport", AdoptingTransport()), "3", video)


async def test_resumed_video_asks_for_a_keyframe_once_connected() -> None:
    producer = make_producer("video", FakeTransport())
    producer.suspend()
    producer.resume(cast("WebRtcTransport", AdoptingTransport()), "3", _negotiated("video", 7))
    assert producer.keyframe_on_connect
