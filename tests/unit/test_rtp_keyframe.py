import fractions
import struct

import av
import numpy as np
import pytest
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from sfu.rtp.keyframe import KeyframeRequestThrottle, is_keyframe

# --- throttle -------------------------------------------------------------------


def test_throttle_allows_once_per_interval() -> None:
    t = KeyframeRequestThrottle(min_interval_ms=500)
    assert t.should_request(1000) is True
    assert t.should_request(1100) is False
    assert t.should_request(1499) is False
    assert t.should_request(1500) is True
    assert t.should_request(1501) is False


def test_throttle_pending_fires_once_when_due() -> None:
    t = KeyframeRequestThrottle(min_interval_ms=500)
    assert t.pending_due(0) is False
    assert t.should_request(0)
    assert not t.should_request(100)  # throttled -> pending
    assert t.pending_due(200) is False  # not yet allowed
    assert t.pending_due(500) is True
    assert t.pending_due(501) is False  # only once
    # the late send counts as a request for throttling
    assert t.should_request(700) is False
    assert t.should_request(1000) is True
    assert t.pending_due(5000) is False  # direct send cleared pending


def test_throttle_keyframe_clears_pending() -> None:
    t = KeyframeRequestThrottle(min_interval_ms=500)
    assert t.should_request(0)
    assert not t.should_request(10)
    t.on_keyframe()
    assert t.pending_due(10_000) is False


# --- hand-built VP8 (RFC 7741) ----------------------------------------------------


def _vp8(
    *,
    s: bool = True,
    pid: int = 0,
    picture_id: int | None = None,
    m16: bool = False,
    tl0: bool = False,
    tk: bool = False,
    p_bit: int = 0,
) -> bytes:
    ext = picture_id is not None or tl0 or tk
    b0 = (0x80 if ext else 0) | (0x10 if s else 0) | pid
    out = bytes([b0])
    if ext:
        x = (0x80 if picture_id is not None else 0) | (0x40 if tl0 else 0) | (0x30 if tk else 0)
        out += bytes([x])
        if picture_id is not None:
            out += struct.pack("!H", 0x8000 | picture_id) if m16 else bytes([picture_id & 0x7F])
        if tl0:
            out += b"\x05"
        if tk:
            out += b"\xe1"
    # VP8 payload header: first byte bit0 = P (inverse keyframe)
    return out + bytes([0x10 | p_bit, 0x02, 0x00, 0x9D, 0x01, 0x2A])


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"picture_id": 5},
        {"picture_id": 0x1234, "m16": True},
        {"picture_id": 0x1234, "m16": True, "tl0": True, "tk": True},
        {"tl0": True},
        {"tk": True},
    ],
)
def test_vp8_keyframe_variants(kwargs: dict[str, object]) -> None:
    assert is_keyframe("VP8", _vp8(**kwargs))  # type: ignore[arg-type]
    assert not is_keyframe("vp8", _vp8(p_bit=1, **kwargs))  # type: ignore[arg-type]
    assert not is_keyframe("VP8", _vp8(s=False, **kwargs))  # type: ignore[arg-type]
    assert not is_keyframe("VP8", _vp8(pid=1, **kwargs))  # type: ignore[arg-type]


def test_vp8_picture_id_bytes_not_mistaken_for_header() -> None:
    # 16-bit picture id whose low byte has bit0 == 1, payload header P=0
    data = _vp8(picture_id=0x0101, m16=True)
    assert is_keyframe("VP8", data)
    # if the M bit were ignored, the parser would read 0x01 (P=1) instead
    data_p1 = _vp8(picture_id=0x0100, m16=True, p_bit=1)
    assert not is_keyframe("VP8", data_p1)


def test_vp8_truncated() -> None:
    assert not is_keyframe("VP8", b"")
    assert not is_keyframe("VP8", b"\x10")
    assert not is_keyframe("VP8", b"\x90")
    assert not is_keyframe("VP8", b"\x90\x80")
    assert not is_keyframe("VP8", b"\x90\x80\x81")


# --- hand-built H.264 (RFC 6184) --------------------------------------------------


def test_h264_single_nal() -> None:
    assert is_keyframe("H264", b"\x65\x88\x84")  # IDR (type 5)
    assert is_keyframe("h264", b"\x67\x42\xc0")  # SPS (type 7)
    assert not is_keyframe("H264", b"\x41\x9a")  # non-IDR slice (type 1)
    assert not is_keyframe("H264", b"\x68\xce")  # PPS (type 8)
    assert not is_keyframe("H264", b"")


def test_h264_stap_a() -> None:
    def stap(*nals: bytes) -> bytes:
        return b"\x78" + b"".join(struct.pack("!H", len(n)) + n for n in nals)

    assert is_keyframe("H264", stap(b"\x09\xf0", b"\x67\x42\x00\x1f", b"\x68\xce"))
    assert is_keyframe("H264", stap(b"\x06\x05\x05", b"\x65\x88"))
    assert not is_keyframe("H264", stap(b"\x09\xf0", b"\x41\x9a\x00"))
    assert not is_keyframe("H264", b"\x78\x00")  # truncated


def test_h264_fu_a() -> None:
    assert is_keyframe("H264", b"\x7c\x85\x00")  # start, IDR
    assert not is_keyframe("H264", b"\x7c\x05\x00")  # middle of IDR
    assert not is_keyframe("H264", b"\x7c\x45\x00")  # end of IDR
    assert not is_keyframe("H264", b"\x7c\x81\x00")  # start, non-IDR
    assert not is_keyframe("H264", b"\x7c")


def test_unknown_codec() -> None:
    assert not is_keyframe("opus", b"\x65")
    assert is_keyframe("video/H264", b"\x65")


# --- real encoder output ------------------------------------------------------------


def _frame(i: int) -> av.VideoFrame:
    y, x = np.mgrid[0:240, 0:320]
    arr = np.stack([(x + 4 * i) % 256, (y + 2 * i) % 256, (x + y) % 256], axis=2).astype(np.uint8)
    frame = av.VideoFrame.from_ndarray(arr, format="rgb24").reformat(format="yuv420p")
    frame.pts = i * 3000
    frame.time_base = fractions.Fraction(1, 90000)
    return frame


@pytest.mark.parametrize("codec", ["VP8", "H264"])
def test_real_encoder_output(codec: str) -> None:
    encoder = get_encoder(
        RTCRtpCodecParameters(mimeType=f"video/{codec}", clockRate=90000, payloadType=96)
    )
    key_payloads, _ = encoder.encode(_frame(0), force_keyframe=True)
    assert key_payloads
    assert is_keyframe(codec, key_payloads[0])
    # later packets of the keyframe are continuation packets
    if len(key_payloads) > 1:
        assert not is_keyframe(codec, key_payloads[-1])
    for i in range(1, 4):
        delta_payloads, _ = encoder.encode(_frame(i), force_keyframe=False)
        assert delta_payloads
        assert not is_keyframe(codec, delta_payloads[0])
    again, _ = encoder.encode(_frame(4), force_keyframe=True)
    assert is_keyframe(codec, again[0])
