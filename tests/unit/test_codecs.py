"""Codec matching between producers and consumers (pure functions, no network)."""

from __future__ import annotations

import pytest
from aiortc import RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from sfu.codecs import codec_info, match_codec, preferences_for

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
VP8_RTX = RTCRtpCodecParameters(
    mimeType="video/rtx", clockRate=90000, payloadType=97, parameters={"apt": 96}
)
H264_CB = RTCRtpCodecParameters(
    mimeType="video/H264",
    clockRate=90000,
    payloadType=102,
    parameters={"packetization-mode": "1", "profile-level-id": "42e01f"},
)


def test_codec_info_picks_first_media_codec_and_its_rtx() -> None:
    info = codec_info([VP8_RTX, VP8, H264_CB])
    assert (info.name, info.payload_type, info.rtx_payload_type) == ("VP8", 96, 97)
    assert codec_info([OPUS]).rtx_payload_type is None
    with pytest.raises(ValueError):
        codec_info([VP8_RTX])


def test_match_codec_maps_payload_types_of_the_other_transport() -> None:
    producer = codec_info([VP8, VP8_RTX])
    theirs = [
        RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=120),
        RTCRtpCodecParameters(
            mimeType="video/rtx", clockRate=90000, payloadType=121, parameters={"apt": 120}
        ),
    ]
    matched = match_codec(theirs, producer)
    assert matched is not None
    assert (matched.payload_type, matched.rtx_payload_type) == (120, 121)
    assert match_codec([H264_CB], producer) is None


def test_h264_profiles_must_match() -> None:
    producer = codec_info([H264_CB])
    baseline = RTCRtpCodecParameters(
        mimeType="video/H264",
        clockRate=90000,
        payloadType=99,
        parameters={"packetization-mode": "1", "profile-level-id": "42001f"},
    )
    mode0 = RTCRtpCodecParameters(
        mimeType="video/H264",
        clockRate=90000,
        payloadType=98,
        parameters={"packetization-mode": "0", "profile-level-id": "42e01f"},
    )
    assert match_codec([mode0], producer) is None
    # 42001f and 42e01f differ in constraint flags, not profile_idc: same payload format.
    assert match_codec([baseline], producer) is not None


def test_preferences_offer_only_the_producer_codec() -> None:
    caps = RTCRtpSender.getCapabilities("video").codecs
    prefs = preferences_for(caps, codec_info([VP8, VP8_RTX]))
    assert [c.mimeType for c in prefs] == ["video/VP8", "video/rtx"]
    audio = preferences_for(RTCRtpSender.getCapabilities("audio").codecs, codec_info([OPUS]))
    assert [c.mimeType for c in audio] == ["audio/opus"]
    with pytest.raises(ValueError):
        preferences_for(caps, codec_info([OPUS]))
