"""Codec matching between a Producer and a Consumer's transport (pure functions).

Forwarding never transcodes, so a consumer can only be created with exactly the producer's
codec: same MIME type and clock rate, same channel count for audio, and for H.264 the same
``packetization-mode`` and ``profile_idc`` (RFC 6184 §8.1). Like mediasoup's
``ortc.ts`` these functions are tested without any network.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters


@dataclass(frozen=True, slots=True)
class CodecInfo:
    """A negotiated media codec.

    Attributes:
        mime_type: e.g. ``audio/opus``, ``video/VP8``, ``video/H264`` (case as negotiated).
        clock_rate: RTP clock rate (Hz): 48000 for Opus (RFC 7587), 90000 for video.
        channels: audio channels (2 for Opus in SDP) or None.
        parameters: fmtp parameters.
        payload_type: the RTP payload type on this transport.
        rtx_payload_type: the RTX payload type (RFC 4588) associated with it, or None.
    """

    mime_type: str
    clock_rate: int
    channels: int | None
    parameters: tuple[tuple[str, str], ...]
    payload_type: int
    rtx_payload_type: int | None = None

    @property
    def name(self) -> str:
        """The codec name without the kind, upper-case (``OPUS``, ``VP8``, ``H264``)."""
        return self.mime_type.split("/", 1)[1].upper()


def _h264_key(params: dict[str, object]) -> tuple[str, str]:
    # profile_idc (first byte of profile-level-id, RFC 6184 §8.1): 42 baseline, 4d main,
    # 64 high. Constraint flags and level do not change the payload format we forward.
    profile = str(params.get("profile-level-id", "42e01f")).lower()
    return str(params.get("packetization-mode", "0")), profile[:2]


def same_codec(a: RTCRtpCodecParameters | RTCRtpCodecCapability, b: CodecInfo) -> bool:
    """True when ``a`` can carry ``b``'s RTP payload unchanged."""
    if a.mimeType.lower() != b.mime_type.lower() or a.clockRate != b.clock_rate:
        return False
    if a.mimeType.lower().startswith("audio/") and (a.channels or 1) != (b.channels or 1):
        return False
    if b.name == "H264":
        return _h264_key(dict(a.parameters)) == _h264_key(dict(b.parameters))
    return True


def is_rtx(codec: RTCRtpCodecParameters | RTCRtpCodecCapability) -> bool:
    """True for an RTX (RFC 4588) codec entry."""
    return codec.mimeType.lower().endswith("/rtx")


def codec_info(codecs: list[RTCRtpCodecParameters], payload_type: int | None = None) -> CodecInfo:
    """The :class:`CodecInfo` for ``payload_type`` (default: the first media codec) and its RTX.

    Raises:
        ValueError: when ``codecs`` has no media codec (or none with that payload type).
    """
    chosen = None
    for codec in codecs:
        if is_rtx(codec):
            continue
        if payload_type is None or codec.payloadType == payload_type:
            chosen = codec
            break
    if chosen is None:
        raise ValueError("no media codec negotiated")
    return _info(chosen, codecs)


def _info(chosen: RTCRtpCodecParameters, codecs: list[RTCRtpCodecParameters]) -> CodecInfo:
    rtx_pt = None
    for codec in codecs:
        if is_rtx(codec) and codec.parameters.get("apt") == chosen.payloadType:
            rtx_pt = codec.payloadType
    assert chosen.payloadType is not None
    return CodecInfo(
        mime_type=chosen.mimeType,
        clock_rate=chosen.clockRate,
        channels=chosen.channels,
        parameters=tuple(sorted((k, str(v)) for k, v in chosen.parameters.items())),
        payload_type=chosen.payloadType,
        rtx_payload_type=rtx_pt,
    )


def match_codec(codecs: list[RTCRtpCodecParameters], wanted: CodecInfo) -> CodecInfo | None:
    """Among a transport's negotiated ``codecs``, the one that carries ``wanted``, with its
    payload types on that transport; None when there is none."""
    for codec in codecs:
        if not is_rtx(codec) and same_codec(codec, wanted):
            return _info(codec, codecs)
    return None


def preferences_for(
    capabilities: list[RTCRtpCodecCapability], wanted: CodecInfo
) -> list[RTCRtpCodecCapability]:
    """Codec preferences (W3C ``setCodecPreferences``) that offer only ``wanted`` (+ RTX).

    Raises:
        ValueError: when no capability matches (the codec cannot be forwarded).
    """
    chosen = [c for c in capabilities if not is_rtx(c) and same_codec(c, wanted)]
    if not chosen:
        raise ValueError(f"no local capability for {wanted.mime_type}")
    rtx = [c for c in capabilities if is_rtx(c)]
    return chosen[:1] + rtx[:1]
