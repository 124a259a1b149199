import struct

import pytest
from aiortc.rtp import RtcpPacket, RtcpRtpfbPacket

from sfu.rtp.nack import MAX_MISSING, NackGenerator, pack_nack_fci, unpack_nack_fci


def _feed(gen: NackGenerator, seqs: list[int], now_ms: int = 0) -> list[bool]:
    return [gen.on_packet(s, now_ms) for s in seqs]


def test_no_loss_nothing_missing() -> None:
    g = NackGenerator()
    _feed(g, list(range(100, 200)))
    assert g.missing(0) == []
    assert g.pending == 0


def test_gap_detected_and_filled() -> None:
    g = NackGenerator()
    assert _feed(g, [1, 2, 5, 6]) == [False, False, False, False]
    assert g.missing(0) == [3, 4]
    assert g.on_packet(4, 10) is True  # retransmission fills the gap
    assert g.on_packet(4, 11) is False  # duplicate
    assert g.on_packet(6, 12) is False  # duplicate of highest
    assert g.pending == 1
    assert g.missing(200) == [3]


def test_gap_across_wraparound() -> None:
    g = NackGenerator()
    _feed(g, [65533, 2])
    assert g.missing(0) == [65534, 65535, 0, 1]


def test_rtt_pacing_and_max_retries() -> None:
    g = NackGenerator(max_retries=3, rtt_ms=100)
    _feed(g, [10, 12])
    assert g.missing(1000) == [11]
    assert g.missing(1050) == []  # within one RTT
    assert g.missing(1099) == []
    assert g.missing(1100) == [11]
    g.set_rtt(20)
    assert g.missing(1110) == []
    assert g.missing(1120) == [11]  # third (last) request
    assert g.missing(2000) == []  # given up
    assert g.pending == 0
    assert g.on_packet(11, 2001) is False  # too late, not tracked anymore


def test_new_losses_requested_independently_of_old_ones() -> None:
    g = NackGenerator(rtt_ms=100)
    _feed(g, [1, 3])
    assert g.missing(0) == [2]
    _feed(g, [5])
    assert g.missing(10) == [4]
    assert g.missing(100) == [2]
    assert g.missing(110) == [4]


def test_old_missing_aged_out() -> None:
    g = NackGenerator(max_age=100)
    _feed(g, [0, 2])
    for s in range(3, 101):
        g.on_packet(s, 0)
    assert g.missing(0) == [1]
    g.on_packet(101, 0)  # 1 is now 100 behind: still allowed
    assert g.pending == 1
    g.on_packet(102, 0)  # 1 is now 101 behind: dropped
    assert 1 not in g.missing(10_000)
    assert g.pending == 0


def test_huge_gap_resets() -> None:
    g = NackGenerator(max_age=1000)
    _feed(g, [0, 2])
    assert g.pending == 1
    g.on_packet(5000, 0)
    assert g.pending == 0
    assert g.missing(0) == []
    g.on_packet(5002, 0)
    assert g.missing(0) == [5001]


def test_missing_set_bounded() -> None:
    g = NackGenerator(max_age=1000)
    g.on_packet(0, 0)
    g.on_packet(900, 0)
    assert g.pending == MAX_MISSING
    lst = g.missing(0)
    assert lst == list(range(900 - MAX_MISSING, 900))
    for k in range(0, 20):
        g.on_packet(902 + 2 * k, 0)
    assert g.pending == MAX_MISSING
    assert max(g.missing(1000)) == 939
    assert g.missing(2000)[0] == 900 - MAX_MISSING + 20  # 20 oldest dropped


@pytest.mark.parametrize(
    "lost",
    [
        [1],
        [1, 2, 3],
        [100, 101, 116, 117, 118, 200],
        [5, 21],
        [5, 22],
        list(range(1000, 1100, 3)),
        [65000, 65010, 65535],
    ],
)
def test_pack_matches_aiortc(lost: list[int]) -> None:
    pkt = RtcpRtpfbPacket(fmt=1, ssrc=1, media_ssrc=2)
    pkt.lost = lost
    data = bytes(pkt)
    assert data[12:] == pack_nack_fci(lost)
    assert unpack_nack_fci(pack_nack_fci(lost)) == lost
    # a packet built with our FCI parses back in aiortc
    header = struct.pack("!BBHII", 0x80 | 1, 205, (8 + len(pack_nack_fci(lost))) // 4, 1, 2)
    (parsed,) = RtcpPacket.parse(header + pack_nack_fci(lost))
    assert isinstance(parsed, RtcpRtpfbPacket)
    assert parsed.fmt == 1 and parsed.media_ssrc == 2
    assert parsed.lost == lost


def test_pack_wraparound() -> None:
    lost = [65533, 65535, 0, 3, 12]
    fci = pack_nack_fci(lost)
    assert len(fci) == 4  # one PID + BLP spanning the wrap
    assert struct.unpack("!HH", fci) == (65533, (1 << 1) | (1 << 2) | (1 << 5) | (1 << 14))
    assert unpack_nack_fci(fci) == lost
    # aiortc's parser reads the same bits (it just does not reduce mod 2**16)
    header = struct.pack("!BBHII", 0x81, 205, 3, 1, 2)
    (parsed,) = RtcpPacket.parse(header + fci)
    assert isinstance(parsed, RtcpRtpfbPacket)
    assert [x & 0xFFFF for x in parsed.lost] == lost


def test_pack_duplicates_and_empty() -> None:
    assert pack_nack_fci([]) == b""
    assert unpack_nack_fci(b"") == []
    assert pack_nack_fci([7, 7, 8]) == struct.pack("!HH", 7, 1)


def test_unpack_bad_length() -> None:
    with pytest.raises(ValueError):
        unpack_nack_fci(b"\x00\x01\x00")


def test_generator_output_round_trips_fci() -> None:
    g = NackGenerator()
    ext = [s for s in range(65500, 65600) if s % 7 and s % 11]
    _feed(g, [s & 0xFFFF for s in ext])
    lost = g.missing(0)
    expected = [s & 0xFFFF for s in range(ext[0], ext[-1]) if s not in ext]
    assert lost == expected
    assert any(s > 65000 for s in lost) and any(s < 100 for s in lost)  # spans wrap
    assert unpack_nack_fci(pack_nack_fci(lost)) == lost
