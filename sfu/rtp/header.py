"""Fast RTP fixed-header and header-extension parsing/building.

Sources: RFC 3550 §5.1 (fixed header, CSRC, padding), §5.3.1 (extension),
RFC 8285 (one-byte 0xBEDE and two-byte 0x100X extension elements),
RFC 6464 (client-to-mixer audio level) and the WebRTC abs-send-time extension
(http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time).

Everything works on offsets into the original ``bytes`` so the forwarding path
never materialises packet objects.
"""

from __future__ import annotations

import struct

__all__ = [
    "RTP_HEADER",
    "abs_send_time_now",
    "build_extension_block",
    "build_rtp_header",
    "find_extension",
    "parse_audio_level",
    "parse_extensions",
    "parse_rtp",
]

#: Precompiled RTP fixed header: V/P/X/CC, M/PT, seq, timestamp, SSRC (12 bytes).
RTP_HEADER = struct.Struct("!BBHII")
_EXT_HEADER = struct.Struct("!HH")
_unpack_hdr = RTP_HEADER.unpack_from
_pack_hdr = RTP_HEADER.pack
_unpack_ext = _EXT_HEADER.unpack_from

ONE_BYTE_PROFILE = 0xBEDE
TWO_BYTE_PROFILE = 0x1000

RtpFields = tuple[bool, int, int, int, int, int, int, int, int, int]


def parse_rtp(data: bytes) -> RtpFields:
    """Parse an RTP packet's header without copying (RFC 3550 §5.1, §5.3.1).

    ``data`` is one complete (decrypted) RTP packet.

    Returns the 10-tuple ``(marker, payload_type, seq, timestamp, ssrc,
    ext_profile, ext_start, ext_end, payload_start, payload_end)``:

    * marker: M bit; payload_type: 0..127; seq: 16-bit; timestamp: 32-bit RTP
      clock ticks; ssrc: 32-bit.
    * ext_profile: 16-bit "defined by profile" field (0xBEDE one-byte form,
      0x1000..0x100F two-byte form, anything else = opaque), 0 when X=0.
    * ext_start..ext_end: byte range of the extension *elements* (after the
      4-byte profile/length word), ``(0, 0)`` when there is no extension.
    * payload_start..payload_end: payload byte range; padding (P bit, count in
      the last byte) is excluded.

    Raises ValueError when shorter than 12 bytes, version != 2, or when the
    CSRC list, extension or padding overruns the packet.
    """
    n = len(data)
    if n < 12:
        raise ValueError(f"RTP packet too short: {n} bytes < 12")
    b0, b1, seq, ts, ssrc = _unpack_hdr(data, 0)
    if b0 >> 6 != 2:
        raise ValueError(f"RTP version {b0 >> 6} != 2")
    pos = 12 + ((b0 & 0x0F) << 2)
    if pos > n:
        raise ValueError(f"RTP CSRC list ({b0 & 0x0F} entries) overruns {n}-byte packet")
    if b0 & 0x10:
        if pos + 4 > n:
            raise ValueError("RTP extension header overruns packet")
        profile, words = _unpack_ext(data, pos)
        ext_start = pos + 4
        pos = ext_start + (words << 2)
        if pos > n:
            raise ValueError(f"RTP extension ({words} words) overruns {n}-byte packet")
        ext_end = pos
    else:
        profile = ext_start = ext_end = 0
    end = n
    if b0 & 0x20:
        pad = data[n - 1]
        if pad == 0 or pad > n - pos:
            raise ValueError(f"RTP padding length {pad} invalid for {n - pos}-byte remainder")
        end = n - pad
    return (b1 > 127, b1 & 0x7F, seq, ts, ssrc, profile, ext_start, ext_end, pos, end)


def parse_extensions(data: bytes, start: int, end: int, two_byte: bool) -> dict[int, bytes]:
    """Decode RFC 8285 extension elements in ``data[start:end]`` into ``{id: value}``.

    ``two_byte`` selects the 0x100X form (1-byte id, 1-byte length, 0..255-byte
    values) instead of the 0xBEDE one-byte form (4-bit id 1..14, 4-bit
    length-1, 1..16-byte values). Zero padding bytes are skipped; in the
    one-byte form id 15 stops parsing (RFC 8285 §4.2). A later duplicate id
    overwrites an earlier one. Raises ValueError if an element overruns ``end``.
    """
    out: dict[int, bytes] = {}
    pos = start
    if two_byte:
        while pos < end:
            x_id = data[pos]
            if x_id == 0:
                pos += 1
                continue
            if pos + 2 > end:
                raise ValueError("RTP two-byte extension element header truncated")
            length = data[pos + 1]
            pos += 2
            if pos + length > end:
                raise ValueError(f"RTP two-byte extension id {x_id} value truncated")
            out[x_id] = data[pos : pos + length]
            pos += length
    else:
        while pos < end:
            b = data[pos]
            if b == 0:
                pos += 1
                continue
            x_id = b >> 4
            if x_id == 15:
                break
            length = (b & 0x0F) + 1
            pos += 1
            if pos + length > end:
                raise ValueError(f"RTP one-byte extension id {x_id} value truncated")
            out[x_id] = data[pos : pos + length]
            pos += length
    return out


def find_extension(
    data: bytes, start: int, end: int, ext_profile: int, ext_id: int
) -> bytes | None:
    """Return the value of extension element ``ext_id`` or None (RFC 8285).

    ``start``, ``end`` and ``ext_profile`` come from :func:`parse_rtp`. Scans
    without building a dict (hot path, e.g. audio level or mid lookup).
    Unknown profiles (not 0xBEDE / 0x100X) yield None. Raises ValueError if an
    element before the match overruns the extension block.
    """
    pos = start
    if ext_profile == ONE_BYTE_PROFILE:
        while pos < end:
            b = data[pos]
            if b == 0:
                pos += 1
                continue
            x_id = b >> 4
            if x_id == 15:
                return None
            length = (b & 0x0F) + 1
            pos += 1
            if pos + length > end:
                raise ValueError(f"RTP one-byte extension id {x_id} value truncated")
            if x_id == ext_id:
                return data[pos : pos + length]
            pos += length
        return None
    if ext_profile & 0xFFF0 == TWO_BYTE_PROFILE:
        while pos < end:
            x_id = data[pos]
            if x_id == 0:
                pos += 1
                continue
            if pos + 2 > end:
                raise ValueError("RTP two-byte extension element header truncated")
            length = data[pos + 1]
            pos += 2
            if pos + length > end:
                raise ValueError(f"RTP two-byte extension id {x_id} value truncated")
            if x_id == ext_id:
                return data[pos : pos + length]
            pos += length
    return None


def build_extension_block(elements: list[tuple[int, bytes]]) -> bytes:
    """Build a complete RTP header-extension block (RFC 3550 §5.3.1, RFC 8285).

    ``elements`` is a list of ``(id, value)``. The result is the 4-byte
    profile/length word + elements + zero padding to a 32-bit boundary, ready
    to follow the fixed header (set X=1). One-byte form (0xBEDE) is used when
    every id is 1..14 and every value 1..16 bytes, else two-byte form (0x1000,
    id 1..255, value 0..255 bytes). Returns ``b""`` for an empty list.
    Raises ValueError for ids/lengths that fit neither form.
    """
    if not elements:
        return b""
    one_byte = True
    for x_id, value in elements:
        length = len(value)
        if not 1 <= x_id <= 255 or length > 255:
            raise ValueError(f"RTP extension id {x_id} / length {length} not encodable")
        if x_id > 14 or length == 0 or length > 16:
            one_byte = False
    parts: list[bytes] = []
    if one_byte:
        profile = ONE_BYTE_PROFILE
        for x_id, value in elements:
            parts.append(bytes(((x_id << 4) | (len(value) - 1),)))
            parts.append(value)
    else:
        profile = TWO_BYTE_PROFILE
        for x_id, value in elements:
            parts.append(bytes((x_id, len(value))))
            parts.append(value)
    body = b"".join(parts)
    pad = -len(body) & 3
    if pad:
        body += b"\x00" * pad
    return _EXT_HEADER.pack(profile, len(body) >> 2) + body


def build_rtp_header(
    marker: bool, payload_type: int, seq: int, ts: int, ssrc: int, has_extension: bool
) -> bytes:
    """Return the 12-byte RTP fixed header (RFC 3550 §5.1) with V=2, P=0, CC=0.

    ``payload_type`` 0..127, ``seq`` 16-bit, ``ts`` 32-bit RTP clock ticks,
    ``ssrc`` 32-bit; out-of-range values raise ``struct.error``. Set
    ``has_extension`` when a :func:`build_extension_block` block follows.
    """
    return _pack_hdr(
        0x90 if has_extension else 0x80,
        (0x80 | payload_type) if marker else payload_type,
        seq,
        ts,
        ssrc,
    )


def parse_audio_level(value: bytes) -> tuple[bool, int]:
    """Decode an RFC 6464 ssrc-audio-level value (1 byte, extra bytes ignored).

    Returns ``(voice_activity, level)`` where level is -dBov in 0..127
    (0 = loudest, 127 = silence). Raises ValueError on an empty value.
    """
    if not value:
        raise ValueError("empty audio level extension")
    b = value[0]
    return b > 127, b & 0x7F


def abs_send_time_now(now_s: float) -> bytes:
    """Encode ``now_s`` (seconds, any epoch) as a 3-byte abs-send-time value.

    24-bit unsigned 6.18 fixed point seconds (wraps every 64 s), rounded to the
    nearest 1/262144 s, as in libwebrtc ``AbsoluteSendTime::To24Bits``
    (webrtc.org/experiments/rtp-hdrext/abs-send-time).
    """
    return (int(now_s * 262144.0 + 0.5) & 0xFFFFFF).to_bytes(3, "big")
