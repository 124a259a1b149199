"""Audio loss proxying (sfu/rtp/loss_proxy.py): the receiver report an Opus publisher gets
carries the worst fraction lost its subscribers reported, so its encoder adds in-band FEC.

Deterministic, like tests/unit/test_forwarding_paths.py: a real publish-side and a real
subscribe-side :class:`~sfu.transport.WebRtcTransport` (never connected), the subscriber's
receiver report handed to ``on_rtcp`` as bytes, the publisher-facing report built by the
transport's RTCP code and parsed with aiortc's ``RtcpPacket``; the ms clock is a FakeClock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiortc.rtp import RtcpPacket, RtcpReceiverInfo, RtcpRrPacket

from sfu.consumer import Consumer
from sfu.producer import Producer
from sfu.rtp.loss_proxy import DOWNSTREAM_LOSS_MAX_AGE_MS, DownstreamLoss, proxied_fraction_lost
from sfu.transport import WebRtcTransport
from tests.support.fakes import FakeClock
from tests.unit.test_forwarding_paths import (
    AUDIO_TICKS,
    PUB_SSRC,
    VIDEO_TICKS,
    clock,  # noqa: F401  (fixture)
    delta,
    key,
    make_producer,
    negotiate,
    pub_rtp,
)

TEN_PERCENT = 25  # fraction lost in 1/256 units (RFC 3550 §6.4.1): 25/256 = 9.8%


@dataclass
class Rig:
    producer: Producer
    publish: WebRtcTransport
    subscribe: WebRtcTransport
    consumer: Consumer
    seq: int = 1000

    def forward(self, packets: int) -> None:
        """The publisher sends ``packets`` more packets, none lost on its link."""
        kind = self.producer.kind
        ticks = AUDIO_TICKS if kind == "audio" else VIDEO_TICKS
        for _ in range(packets):
            payload = b"\xfc\x01\x02" if kind == "audio" else delta(self.seq % 10)
            if kind == "video" and self.seq == 1000:
                payload = key()
            self.producer.receive_rtp(
                pub_rtp(kind, self.seq, ticks * self.seq, payload), PUB_SSRC, self.seq
            )
            self.seq += 1

    def subscriber_reports(self, fraction_lost: int) -> None:
        """The subscriber's RR block for our consumer's SSRC says ``fraction_lost``."""
        block = RtcpReceiverInfo(
            ssrc=self.consumer.ssrc,
            fraction_lost=fraction_lost,
            packets_lost=3,
            highest_sequence=self.seq,
            jitter=0,
            lsr=0,
            dlsr=0,
        )
        self.subscribe.on_rtcp(bytes(RtcpRrPacket(ssrc=0x5EED, reports=[block])))

    def publisher_block(self) -> RtcpReceiverInfo:
        """The report block about the producer's SSRC in the RR we would send the publisher."""
        data = self.publish._receiver_reports()
        blocks = [
            block
            for packet in RtcpPacket.parse(data)
            if isinstance(packet, RtcpRrPacket)
            for block in packet.reports
            if block.ssrc == PUB_SSRC
        ]
        assert len(blocks) == 1
        return blocks[0]


async def _rig(kind: str, *, proxying: bool = True) -> Rig:
    publish = WebRtcTransport(ice_servers=[], audio_loss_proxying=proxying)
    producer = make_producer(kind, publish)  # type: ignore[arg-type]
    publish.add_producer(producer)
    subscribe = WebRtcTransport(ice_servers=[])
    transceiver = subscribe.pc.addTransceiver(kind, direction="sendonly")
    consumer = subscribe.attach_consumer(producer, transceiver)
    negotiate(consumer)
    rig = Rig(producer, publish, subscribe, consumer)
    rig.forward(50)
    assert consumer.packets_sent == 50
    return rig


@pytest.fixture
async def rigs() -> AsyncIterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for rig in made:
        await rig.subscribe.close()
        await rig.publish.close()
        rig.producer.close()


async def test_subscriber_audio_loss_reaches_the_publisher(
    clock: FakeClock,  # noqa: F811
    rigs: list[Rig],
) -> None:
    rig = await _rig("audio")
    rigs.append(rig)
    own = rig.publisher_block()
    assert own.fraction_lost == 0  # the publisher's own link is clean
    rig.forward(50)
    rig.subscriber_reports(TEN_PERCENT)
    block = rig.publisher_block()
    assert block.fraction_lost == TEN_PERCENT
    # only fraction lost is proxied: cumulative lost and highest seq stay our own
    assert block.packets_lost == 0
    assert block.highest_sequence == rig.seq - 1

    # the report is kept until it is older than the max age, then it no longer counts
    clock.advance(DOWNSTREAM_LOSS_MAX_AGE_MS)
    rig.forward(50)
    assert rig.publisher_block().fraction_lost == TEN_PERCENT
    clock.advance(1)
    rig.forward(50)
    assert rig.publisher_block().fraction_lost == 0

    # a subscriber reporting no loss lowers it again at once
    rig.subscriber_reports(TEN_PERCENT)
    assert rig.publisher_block().fraction_lost == TEN_PERCENT
    rig.subscriber_reports(0)
    assert rig.publisher_block().fraction_lost == 0


async def test_own_loss_wins_when_it_is_worse(
    clock: FakeClock,  # noqa: F811
    rigs: list[Rig],
) -> None:
    rig = await _rig("audio")
    rigs.append(rig)
    rig.publisher_block()
    rig.subscriber_reports(TEN_PERCENT)
    rig.seq += 50  # 50 packets lost on the publisher's link, then 50 arrive: 50%
    rig.forward(50)
    assert rig.publisher_block().fraction_lost == 128


async def test_video_and_disabled_setting_are_not_proxied(
    clock: FakeClock,  # noqa: F811
    rigs: list[Rig],
) -> None:
    video = await _rig("video")
    rigs.append(video)
    video.subscriber_reports(TEN_PERCENT)
    assert video.consumer.downstream_loss.fresh(clock.ms) == TEN_PERCENT  # it was received
    assert video.publisher_block().fraction_lost == 0  # video has NACK/RTX and REMB

    off = await _rig("audio", proxying=False)  # SFU_AUDIO_LOSS_PROXYING=false
    rigs.append(off)
    off.subscriber_reports(TEN_PERCENT)
    assert off.publisher_block().fraction_lost == 0


def test_proxied_fraction_lost_takes_the_worst_fresh_report() -> None:
    a, b, never = DownstreamLoss(), DownstreamLoss(), DownstreamLoss()
    a.on_report(10, now_ms=1_000)
    b.on_report(300, now_ms=2_000)  # clamped to 255
    assert proxied_fraction_lost(5, [a, b, never], now_ms=2_000) == 255
    assert proxied_fraction_lost(5, [a, never], now_ms=2_000) == 10
    assert proxied_fraction_lost(5, [a], now_ms=1_000 + DOWNSTREAM_LOSS_MAX_AGE_MS + 1) == 5
    assert proxied_fraction_lost(0, [], now_ms=0) == 0
