"""A count-only subscriber of ``signaling.client`` reports like a real receiver (aiortc's
``RTCRtpReceiver``, browsers): RTCP receiver reports (RFC 3550 §6.4.2) for every SSRC it
counted, so benchmarks measure the server with the RTCP real subscribers send."""

from __future__ import annotations

from aiortc.rtp import RtcpPacket, RtcpRrPacket

from signaling.client import PacketCounter, _CountingSink


def _srtp(ssrc: int, seq: int) -> bytes:
    # a clear SRTP header (RFC 3711 §3.1) and some ciphertext: counted, never decrypted
    return (
        bytes([0x80, 111]) + seq.to_bytes(2, "big") + bytes(4) + ssrc.to_bytes(4, "big") + bytes(30)
    )


def test_receiver_report_names_every_ssrc_with_its_highest_sequence() -> None:
    sink = _CountingSink(PacketCounter(), None)
    assert sink.receiver_report() is None  # nothing received yet: nothing to report
    sink.rtcp_ssrc = 0x5EED
    for seq in range(100, 110):
        sink.on_rtp_encrypted(_srtp(0xA0D10, seq))
    sink.on_rtp_encrypted(_srtp(0xB1DE0, 7))
    report = sink.receiver_report()
    assert report is not None
    (packet,) = RtcpPacket.parse(report)
    assert isinstance(packet, RtcpRrPacket)
    assert packet.ssrc == 0x5EED
    blocks = {block.ssrc: block for block in packet.reports}
    assert set(blocks) == {0xA0D10, 0xB1DE0}
    assert blocks[0xA0D10].highest_sequence == 109
    assert blocks[0xB1DE0].highest_sequence == 7
    assert all(block.fraction_lost == 0 and block.packets_lost == 0 for block in blocks.values())
