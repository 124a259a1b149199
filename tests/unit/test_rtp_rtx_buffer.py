import struct

import pytest
from aiortc.rtp import RtpPacket, unwrap_rtx, wrap_rtx

from sfu.rtp.header import parse_rtp
from sfu.rtp.rtx_buffer import RetransmissionBuffer, rtx_wrap


def test_store_get_and_identity() -> None:
    buf: RetransmissionBuffer[bytes] = RetransmissionBuffer(8)
    assert len(buf) == 8
    pkt = b"\x80" * 100
    buf.store(5, pkt)
    assert buf.get(5) is pkt  # no copy
    assert buf.get(6) is None
    assert buf.get(5 + 8) is None  # same slot, different seq


def test_overwrite_evicts_stale_slot() -> None:
    buf: RetransmissionBuffer[int] = RetransmissionBuffer(4)
    for s in range(10):
        buf.store(s, s * 10)
    assert [buf.get(s) for s in range(10)] == [None] * 6 + [60, 70, 80, 90]


def test_wraparound_seq() -> None:
    buf: RetransmissionBuffer[str] = RetransmissionBuffer(16)
    for s in (65534, 65535, 0, 1):
        buf.store(s, f"p{s}")
    assert buf.get(65535) == "p65535"
    assert buf.get(0) == "p0"
    assert buf.get(1) == "p1"
    assert buf.get(65534) == "p65534"


def test_clear() -> None:
    buf: RetransmissionBuffer[int] = RetransmissionBuffer(4)
    buf.store(0, 1)
    buf.clear()
    assert buf.get(0) is None
    buf.store(0, 2)
    assert buf.get(0) == 2


@pytest.mark.parametrize("size", [0, 3, 100, 65536])
def test_bad_size(size: int) -> None:
    with pytest.raises(ValueError):
        RetransmissionBuffer(size)


def test_rtx_wrap_matches_aiortc_bytes() -> None:
    orig = RtpPacket(
        payload_type=96, marker=1, sequence_number=4321, timestamp=0xDEADBEEF, ssrc=0x1111
    )
    orig.payload = bytes(range(50))
    data = orig.serialize()
    ours = rtx_wrap(data, rtx_ssrc=0x2222, rtx_seq=77, rtx_pt=97)
    theirs = wrap_rtx(orig, payload_type=97, sequence_number=77, ssrc=0x2222).serialize()
    assert ours == theirs
    back = unwrap_rtx(RtpPacket.parse(ours), payload_type=96, ssrc=0x1111)
    assert back.sequence_number == 4321
    assert back.timestamp == 0xDEADBEEF
    assert back.marker == 1
    assert back.payload == orig.payload
    assert back.serialize() == data


def test_rtx_wrap_keeps_csrc_and_extension_drops_padding() -> None:
    ext = b"\xbe\xde\x00\x01\x10\xaa\x00\x00"  # one-byte ext id 1, value 0xaa
    payload = b"hello world"
    pad = b"\x00\x00\x03"
    hdr = struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 2, 96, 65535, 1234, 0xABCD)
    csrcs = struct.pack("!II", 7, 8)
    data = hdr + csrcs + ext + payload + pad
    out = rtx_wrap(data, rtx_ssrc=0x5555, rtx_seq=1, rtx_pt=100)
    m, pt, seq, ts, ssrc, prof, es, ee, ps, pe = parse_rtp(out)
    assert (m, pt, seq, ts, ssrc) == (False, 100, 1, 1234, 0x5555)
    assert out[0] & 0x20 == 0  # padding removed
    assert out[0] & 0x1F == 0x10 | 2  # X and CC kept
    assert out[12:20] == csrcs
    assert prof == 0xBEDE and out[es:ee] == ext[4:]
    assert out[ps:pe] == b"\xff\xff" + payload  # OSN prefix
    assert pe == len(out)
    rtx = RtpPacket.parse(out)
    back = unwrap_rtx(rtx, payload_type=96, ssrc=0xABCD)
    assert back.sequence_number == 65535
    assert back.payload == payload
    assert back.csrc == [7, 8]


def test_rtx_wrap_marker_preserved_and_malformed() -> None:
    data = struct.pack("!BBHII", 0x80, 0x80 | 111, 9, 1, 2) + b"x"
    out = rtx_wrap(data, 3, 4, 5)
    assert out[1] == 0x80 | 5
    with pytest.raises(ValueError):
        rtx_wrap(b"\x80\x00", 1, 1, 1)


def test_take_for_resend_once_per_interval() -> None:
    buf: RetransmissionBuffer[str] = RetransmissionBuffer(4)
    buf.store(7, "p7")
    assert buf.take_for_resend(7, now_ms=1000, min_interval_ms=100) == "p7"
    assert buf.take_for_resend(7, now_ms=1099, min_interval_ms=100) is None
    assert buf.take_for_resend(7, now_ms=1100, min_interval_ms=100) == "p7"
    assert buf.take_for_resend(8, now_ms=1100, min_interval_ms=100) is None  # never stored
    buf.store(11, "p11")  # same slot: a new packet may be resent at once
    assert buf.take_for_resend(11, now_ms=1101, min_interval_ms=100) == "p11"
    assert buf.take_for_resend(7, now_ms=5000, min_interval_ms=100) is None  # evicted
