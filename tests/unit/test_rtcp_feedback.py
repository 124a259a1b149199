"""The RTCP feedback a router sends publishers, built once (sfu/rtp/rtcp.py, Producer
report_block/loss_estimate) for WebRtcTransports and PipeTransports: what a receiver parses
back out of it (RFC 3550 §6.4.2, draft-alvestrand-rmcat-remb-03)."""

from __future__ import annotations

from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    unpack_remb_fci,
)

from sfu.rtp.rtcp import MAX_REPORT_BLOCKS, receiver_reports, remb_packet
from tests.support.fakes import FakeTransport
from tests.unit.test_forwarding_paths import PUB_SSRC, make_producer, pub_rtp


def test_remb_names_the_ssrcs_and_the_bitrate() -> None:
    (packet,) = RtcpPacket.parse(remb_packet(0xABC, 1_234_567, [7, 8, 9]))
    assert isinstance(packet, RtcpPsfbPacket)
    assert (packet.fmt, packet.ssrc, packet.media_ssrc) == (RTCP_PSFB_APP, 0xABC, 0)
    bitrate, ssrcs = unpack_remb_fci(packet.fci)
    assert ssrcs == [7, 8, 9]
    assert 1_234_567 - 8 < bitrate <= 1_234_567  # an 18-bit mantissa: 3 low bits dropped


def test_receiver_reports_split_at_31_blocks() -> None:
    blocks = [
        RtcpReceiverInfo(
            ssrc=i, fraction_lost=0, packets_lost=0, highest_sequence=i, jitter=0, lsr=0, dlsr=0
        )
        for i in range(70)
    ]
    packets = receiver_reports(0x55, blocks)
    parsed = [p for raw in packets for p in RtcpPacket.parse(raw)]
    assert all(isinstance(p, RtcpRrPacket) and p.ssrc == 0x55 for p in parsed)
    assert [len(p.reports) for p in parsed] == [MAX_REPORT_BLOCKS, MAX_REPORT_BLOCKS, 8]
    assert [r.ssrc for p in parsed for r in p.reports] == list(range(70))
    assert receiver_reports(0x55, []) == []


async def test_report_block_counts_loss_and_echoes_the_last_sender_report() -> None:
    producer = make_producer("video", FakeTransport())
    assert producer.report_block(0.0) is None  # nothing received yet
    for seq in (100, 101, 103, 104):  # 102 lost
        producer.receive_rtp(pub_rtp("video", seq, seq * 3000, b"\x00" * 20), PUB_SSRC, seq)
    ntp = 0x0123_4567_89AB_CDEF
    producer.on_sender_report(ntp, 9000)
    assert producer.last_sr is not None
    at = producer.last_sr[2]
    block = producer.report_block(at + 0.5)
    assert block is not None
    assert (block.ssrc, block.packets_lost, block.highest_sequence) == (PUB_SSRC, 1, 104)
    assert block.fraction_lost == 256 // 5  # 1 of 5 expected
    assert producer.last_fraction_lost == block.fraction_lost
    assert block.lsr == 0x4567_89AB  # the middle 32 bits of the SR's NTP time
    assert block.dlsr == 32768  # 0.5 s in 1/65536 s


def test_loss_estimate_grows_without_loss_and_halves_on_heavy_loss() -> None:
    audio = make_producer("audio", FakeTransport())
    assert audio.loss_estimate(0, 1.0) is None  # no estimator for audio
    video = make_producer("video", FakeTransport())
    first = video.loss_estimate(0, 10.0)
    assert first is not None
    grown = video.loss_estimate(0, 11.0)  # 1 s without loss: +8%
    assert grown is not None and grown > first
    cut = video.loss_estimate(128, 12.0)  # 50% lost: -25%
    assert cut is not None and cut < grown * 0.8
    assert video.last_bwe_update == 12.0
