import struct

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.rtp.header import (
    abs_send_time_now,
    build_extension_block,
    build_rtp_header,
    find_extension,
    parse_audio_level,
    parse_extensions,
    parse_rtp,
)

MID_ID = 1
AUDIO_LEVEL_ID = 10
ABS_SEND_TIME_ID = 3


def _ext_map(mid_id: int = MID_ID) -> HeaderExtensionsMap:
    m = HeaderExtensionsMap()
    m.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(
                    id=mid_id, uri="urn:ietf:params:rtp-hdrext:sdes:mid"
                ),
                RTCRtpHeaderExtensionParameters(
                    id=AUDIO_LEVEL_ID, uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level"
                ),
                RTCRtpHeaderExtensionParameters(
                    id=ABS_SEND_TIME_ID,
                    uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
                ),
            ]
        )
    )
    return m


def _aiortc_packet(mid: str = "0", padding: int = 0, csrc: list[int] | None = None) -> RtpPacket:
    p = RtpPacket(
        payload_type=111, marker=1, sequence_number=65535, timestamp=0xFFFFFFF0, ssrc=0xCAFEBABE
    )
    p.payload = b"\x01\x02\x03opus-payload"
    p.extensions.mid = mid
    p.extensions.audio_level = (True, 42)
    p.extensions.abs_send_time = 0x123456
    p.padding_size = padding
    p.csrc = csrc or []
    return p


@pytest.mark.parametrize("padding", [0, 1, 7])
@pytest.mark.parametrize("csrc", [[], [1, 2, 3]])
def test_parse_aiortc_one_byte(padding: int, csrc: list[int]) -> None:
    pkt = _aiortc_packet(padding=padding, csrc=csrc)
    data = pkt.serialize(_ext_map())
    marker, pt, seq, ts, ssrc, prof, es, ee, ps, pe = parse_rtp(data)
    assert (marker, pt, seq, ts, ssrc) == (True, 111, 65535, 0xFFFFFFF0, 0xCAFEBABE)
    assert prof == 0xBEDE
    assert es == 12 + 4 * len(csrc) + 4
    assert data[ps:pe] == pkt.payload
    assert len(data) - pe == padding
    assert find_extension(data, es, ee, prof, MID_ID) == b"0"
    level = find_extension(data, es, ee, prof, AUDIO_LEVEL_ID)
    assert level is not None and parse_audio_level(level) == (True, 42)
    assert find_extension(data, es, ee, prof, ABS_SEND_TIME_ID) == b"\x12\x34\x56"
    assert find_extension(data, es, ee, prof, 5) is None
    exts = parse_extensions(data, es, ee, two_byte=False)
    assert exts == {MID_ID: b"0", AUDIO_LEVEL_ID: bytes([0x80 | 42]), ABS_SEND_TIME_ID: b"\x124V"}


def test_parse_aiortc_two_byte() -> None:
    long_mid = "a-very-long-mid-value-over-16"
    pkt = _aiortc_packet(mid=long_mid)
    data = pkt.serialize(_ext_map())
    *_, prof, es, ee, ps, pe = parse_rtp(data)
    assert prof == 0x1000
    assert find_extension(data, es, ee, prof, MID_ID) == long_mid.encode()
    level = find_extension(data, es, ee, prof, AUDIO_LEVEL_ID)
    assert level is not None and parse_audio_level(level) == (True, 42)
    assert parse_extensions(data, es, ee, two_byte=True)[MID_ID] == long_mid.encode()
    assert data[ps:pe] == pkt.payload


def test_no_extension() -> None:
    data = RtpPacket(payload_type=96, sequence_number=7, payload=b"xyz").serialize()
    assert parse_rtp(data) == (False, 96, 7, 0, 0, 0, 0, 0, 12, 15)


@pytest.mark.parametrize("mid", ["0", "audio", "a-very-long-mid-value-over-16"])
def test_build_round_trips_through_aiortc(mid: str) -> None:
    elements = [
        (MID_ID, mid.encode()),
        (AUDIO_LEVEL_ID, bytes([0x80 | 99])),
        (ABS_SEND_TIME_ID, abs_send_time_now(12.5)),
    ]
    ext = build_extension_block(elements)
    assert len(ext) % 4 == 0
    payload = b"\xde\xad\xbe\xef" * 10
    data = build_rtp_header(True, 100, 65000, 0xFFFFFFFF, 0x01020304, True) + ext + payload
    pkt = RtpPacket.parse(data, _ext_map())
    assert (pkt.marker, pkt.payload_type, pkt.sequence_number) == (1, 100, 65000)
    assert (pkt.timestamp, pkt.ssrc) == (0xFFFFFFFF, 0x01020304)
    assert pkt.extensions.mid == mid
    assert pkt.extensions.audio_level == (True, 99)
    assert pkt.extensions.abs_send_time == int(12.5 * (1 << 18)) & 0xFFFFFF
    assert pkt.payload == payload
    # and our own parser agrees
    *_, prof, es, ee, ps, pe = parse_rtp(data)
    assert parse_extensions(data, es, ee, prof != 0xBEDE) == dict(elements)
    assert data[ps:pe] == payload


def test_build_extension_block_forms() -> None:
    assert build_extension_block([]) == b""
    assert build_extension_block([(1, b"\xaa")]) == b"\xbe\xde\x00\x01\x10\xaa\x00\x00"
    # id 15 forces two-byte form
    assert build_extension_block([(15, b"\xaa")]) == b"\x10\x00\x00\x01\x0f\x01\xaa\x00"
    # zero-length value forces two-byte form
    assert build_extension_block([(2, b"")]) == b"\x10\x00\x00\x01\x02\x00\x00\x00"
    # 16-byte value still fits one-byte form, 17 does not
    assert build_extension_block([(2, b"x" * 16)])[:2] == b"\xbe\xde"
    assert build_extension_block([(2, b"x" * 17)])[:2] == b"\x10\x00"
    with pytest.raises(ValueError):
        build_extension_block([(0, b"x")])
    with pytest.raises(ValueError):
        build_extension_block([(1, b"x" * 256)])


def test_build_rtp_header_bits() -> None:
    h = build_rtp_header(False, 0, 1, 2, 3, False)
    assert h == b"\x80\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x03"
    h = build_rtp_header(True, 127, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, True)
    assert h[:2] == b"\x90\xff"
    assert parse_rtp(h + b"\xbe\xde\x00\x00")[:9] == (
        True,
        127,
        0xFFFF,
        0xFFFFFFFF,
        0xFFFFFFFF,
        0xBEDE,
        16,
        16,
        16,
    )


def test_parse_extensions_padding_and_id15() -> None:
    # padding between elements, then id 15 terminates one-byte parsing
    body = b"\x10\xaa\x00\x00\x21\xbb\xcc\xf0\x30\xdd"
    assert parse_extensions(body, 0, len(body), False) == {1: b"\xaa", 2: b"\xbb\xcc"}
    assert find_extension(body, 0, len(body), 0xBEDE, 3) is None
    assert find_extension(body, 0, len(body), 0xBEDE, 2) == b"\xbb\xcc"
    two = b"\x00\x05\x02\x01\x02\x00\x07\x00"
    assert parse_extensions(two, 0, len(two), True) == {5: b"\x01\x02", 7: b""}
    assert find_extension(two, 0, len(two), 0x1003, 7) == b""
    assert find_extension(two, 0, len(two), 0x1234, 5) is None  # unknown profile


def test_extension_element_overrun() -> None:
    with pytest.raises(ValueError):
        parse_extensions(b"\x13\xaa", 0, 2, False)  # claims 4 bytes
    with pytest.raises(ValueError):
        parse_extensions(b"\x05\x09\xaa", 0, 3, True)
    with pytest.raises(ValueError):
        find_extension(b"\x13\xaa", 0, 2, 0xBEDE, 9)


def test_audio_level_and_abs_send_time() -> None:
    assert parse_audio_level(b"\x7f") == (False, 127)
    assert parse_audio_level(b"\x80") == (True, 0)
    with pytest.raises(ValueError):
        parse_audio_level(b"")
    assert abs_send_time_now(0.0) == b"\x00\x00\x00"
    assert abs_send_time_now(1.0) == b"\x04\x00\x00"  # 1 s == 1 << 18
    assert abs_send_time_now(64.0) == b"\x00\x00\x00"  # wraps every 64 s
    assert abs_send_time_now(63.999999) == b"\x00\x00\x00"  # rounds to nearest
    assert abs_send_time_now(0.5 / 262144 * 3) == b"\x00\x00\x02"


_HDR = struct.Struct("!BBHII")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\x00\x00",
        b"\x80" * 11,
        _HDR.pack(0x40, 0, 0, 0, 0),  # version 1
        _HDR.pack(0xC0, 0, 0, 0, 0),  # version 3
        _HDR.pack(0x83, 0, 0, 0, 0) + b"\x00" * 8,  # 3 CSRCs, only 2 present
        _HDR.pack(0x90, 0, 0, 0, 0) + b"\xbe\xde",  # truncated extension header
        _HDR.pack(0x90, 0, 0, 0, 0) + b"\xbe\xde\x00\x02" + b"\x00" * 4,  # ext overrun
        _HDR.pack(0xA0, 0, 0, 0, 0) + b"ab\x00",  # zero padding count
        _HDR.pack(0xA0, 0, 0, 0, 0) + b"ab\x04",  # padding larger than remainder
        _HDR.pack(0xA0, 0, 0, 0, 0),  # padding bit but no room at all
    ],
)
def test_malformed_raises_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_rtp(data)


def test_padding_filling_remainder_is_valid() -> None:
    # padding equal to the full remainder is valid (empty payload) for both
    data = _HDR.pack(0xA0, 0, 0, 0, 0) + b"ab\x03"
    assert parse_rtp(data)[8:] == (12, 12)
    assert RtpPacket.parse(data).payload == b""


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_parse_rtp_fuzz(data: bytes) -> None:
    try:
        fields = parse_rtp(data)
    except ValueError:
        return
    _, _, _, _, _, prof, es, ee, ps, pe = fields
    assert 12 <= ps <= pe <= len(data)
    assert es <= ee <= ps
    if prof or es:
        try:
            parse_extensions(data, es, ee, prof & 0xFFF0 == 0x1000)
        except ValueError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=12, max_size=80))
def test_parse_rtp_fuzz_version2(data: bytes) -> None:
    # V=2, X=0 (aiortc also decodes extension elements, which parse_rtp leaves lazy)
    data = bytes([0x80 | (data[0] & 0x2F)]) + data[1:]
    try:
        ours = parse_rtp(data)
    except ValueError:
        with pytest.raises(ValueError):
            RtpPacket.parse(data)
        return
    pkt = RtpPacket.parse(data)
    assert (ours[0], ours[1], ours[2], ours[3], ours[4]) == (
        bool(pkt.marker),
        pkt.payload_type,
        pkt.sequence_number,
        pkt.timestamp,
        pkt.ssrc,
    )
    assert data[ours[8] : ours[9]] == pkt.payload
