"""parse_offer_media: which m-lines of a publish offer send (RFC 8866, RFC 8843 §6)."""

from __future__ import annotations

from pathlib import Path

from sfu.participant import parse_offer_media

DATA = Path(__file__).resolve().parent.parent / "data"


def test_recorded_webrtcbin_offer_bundle_only_audio_is_sending() -> None:
    """GStreamer webrtcbin (max-bundle) offers audio at port 0 with a=bundle-only: bundled,
    not rejected, so it sends."""
    offer = (DATA / "webrtcbin_whip_offer.sdp").read_text()
    assert parse_offer_media(offer) == [("video0", "video", True), ("audio1", "audio", True)]


def _offer(audio_port: int, extra: str, bundle: str = "a=group:BUNDLE v a") -> str:
    lines = [
        "v=0",
        "o=- 1 0 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        bundle,
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "c=IN IP4 0.0.0.0",
        "a=sendonly",
        "a=mid:v",
        "a=rtpmap:96 VP8/90000",
        f"m=audio {audio_port} UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 0.0.0.0",
        "a=sendonly",
        "a=mid:a",
        *([extra] if extra else []),
        "a=rtpmap:111 opus/48000/2",
        "",
    ]
    return "\r\n".join(lines)


def test_port_zero_without_bundle_only_is_disabled() -> None:
    assert parse_offer_media(_offer(0, "")) == [("v", "video", True), ("a", "audio", False)]


def test_port_zero_bundle_only_outside_the_bundle_group_is_disabled() -> None:
    offer = _offer(0, "a=bundle-only", bundle="a=group:BUNDLE v")
    assert parse_offer_media(offer) == [("v", "video", True), ("a", "audio", False)]


def test_port_zero_bundle_only_in_the_group_is_sending() -> None:
    offer = _offer(0, "a=bundle-only")
    assert parse_offer_media(offer) == [("v", "video", True), ("a", "audio", True)]
