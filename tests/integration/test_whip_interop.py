"""WHIP/WHEP peers we did not write, and codec mismatches.

GStreamer's webrtcbin (simple-whip-client's offer) offers ``a=setup:actpass`` with an RSA
certificate and, with max-bundle, puts every m-line but the first at port 0 with
``a=bundle-only`` (RFC 8843 §6). The server must answer ``a=setup:passive`` (it is then the
DTLS server, as Janus and LiveKit are) and treat the bundle-only audio m-line as sending.

A WHEP viewer that cannot decode the publisher's video codec gets ``a=inactive`` for it (and
a log line), not a ``sendonly`` m-line that never carries anything.
"""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import sys
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCRtpSender, RTCRtpTransceiver, RTCSessionDescription

from sfu import _aiortc_adapter as adapter
from signaling.client import RoomClient
from tests.integration.conftest import MakeToken
from tests.support.media import (
    ColorTrack,
    ToneTrack,
    collect_audio,
    dominant_frequency,
    mean_color,
)

DATA = Path(__file__).resolve().parent.parent / "data"
GST_CLIENT = Path(__file__).resolve().parent.parent / "support" / "gst_whip_client.py"
SYSTEM_PYTHON = "/usr/bin/python3"
SDP = {"Content-Type": "application/sdp"}


def _media_sections(sdp: str) -> list[str]:
    return ["m=" + part for part in sdp.split("\r\nm=")[1:]]


def _gstreamer_available() -> bool:
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstWebRTC', '1.0');"
        "gi.require_version('GstSdp', '1.0'); from gi.repository import Gst; Gst.init(None);"
        "import sys; sys.exit(0 if all(Gst.ElementFactory.find(e) for e in "
        "('webrtcbin', 'vp8enc', 'opusenc', 'videotestsrc', 'audiotestsrc', 'nicesrc')) else 1)"
    )
    if not Path(SYSTEM_PYTHON).exists():
        return False
    try:
        done = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


async def test_recorded_webrtcbin_offer_is_answered_passive_with_audio(
    sfu_url: str, make_token: MakeToken
) -> None:
    """A recorded webrtcbin offer (video, then audio at port 0 with a=bundle-only, actpass):
    the answer says setup:passive everywhere and both m-lines become producers."""
    offer = (DATA / "webrtcbin_whip_offer.sdp").read_text()
    assert "m=audio 0 " in offer and "a=bundle-only" in offer and "a=setup:actpass" in offer
    watcher = RoomClient(sfu_url, "gst-rec", "watcher", token=make_token("gst-rec", "watcher"))
    auth = {"Authorization": "Bearer " + make_token("gst-rec", "gst", subscribe=False), **SDP}
    async with aiohttp.ClientSession() as http:
        try:
            await watcher.connect()
            async with http.post(f"{sfu_url}/whip/gst-rec", data=offer, headers=auth) as resp:
                assert resp.status == 201, await resp.text()
                answer = await resp.text()
                location = resp.headers["Location"]
            sections = _media_sections(answer)
            assert [s.split(" ", 1)[0] for s in sections] == ["m=video", "m=audio"]
            for section in sections:
                assert "a=setup:passive" in section, section
                assert "a=recvonly" in section, section
            await watcher.wait_for(
                lambda: (
                    sorted(
                        e["track"]["kind"] for e in watcher.events if e["type"] == "track_published"
                    )
                    == ["audio", "video"]
                ),
                timeout=10,
            )
            bearer = {"Authorization": auth["Authorization"]}  # RFC 9725 §4.2
            async with http.delete(sfu_url + location, headers=bearer) as resp:
                assert resp.status == 200
        finally:
            await watcher.close()


@pytest.fixture
def gstreamer() -> None:
    """Skip unless the system python3 has PyGObject and GStreamer's webrtcbin (Debian
    ``python3-gi gir1.2-gst-plugins-bad-1.0 gstreamer1.0-nice`` and the plugins)."""
    if not _gstreamer_available():
        pytest.skip("GStreamer webrtcbin with PyGObject is not installed (see scripts/test.sh)")


async def test_webrtcbin_publisher_reaches_a_subscriber(
    sfu_url: str, make_token: MakeToken, tmp_path: Path, gstreamer: None
) -> None:
    """GStreamer's webrtcbin publishes over WHIP (DTLS with the server as DTLS server, the
    bundle-only audio m-line) and a room subscriber hears its tone and sees its colour."""
    watcher = RoomClient(sfu_url, "gst", "watcher", token=make_token("gst", "watcher"))
    answer_path = tmp_path / "answer.sdp"
    offer_path = tmp_path / "offer.sdp"
    proc: asyncio.subprocess.Process | None = None
    try:
        await watcher.connect()
        proc = await asyncio.create_subprocess_exec(
            SYSTEM_PYTHON,
            str(GST_CLIENT),
            "--url",
            f"{sfu_url}/whip/gst",
            "--token",
            make_token("gst", "gst", subscribe=False),
            "--local-address",
            "127.0.0.1",
            "--freq",
            "660",
            "--rgb",
            "e01010",
            "--seconds",
            "8",
            "--offer-out",
            str(offer_path),
            "--answer-out",
            str(answer_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        await watcher.wait_for(
            lambda: (
                (
                    len(watcher.received) == 2
                    and all(r.track is not None for r in watcher.received.values())
                )
                or (proc is not None and proc.returncode is not None)
            ),
            timeout=20,
        )
        assert len(watcher.received) == 2, "the webrtcbin publisher's tracks never arrived"
        offer = offer_path.read_text()
        assert re.search(r"m=audio 0 .*?a=bundle-only", offer, re.S), offer
        assert "a=setup:passive" in answer_path.read_text()
        tracks = {r.kind: r.track for r in watcher.received.values()}
        assert tracks["audio"] is not None and tracks["video"] is not None
        samples = await collect_audio(tracks["audio"], 1.0)
        got = dominant_frequency(samples[len(samples) // 2 :])
        assert abs(got - 660.0) < 15, f"heard {got:.0f} Hz from webrtcbin"
        color = await mean_color(tracks["video"], frames=5)
        assert np.abs(color - np.array([0xE0, 0x10, 0x10])).max() < 40, color
    finally:
        if proc is not None:
            if proc.returncode is None:
                proc.terminate()
            out, _ = await asyncio.wait_for(proc.communicate(), 20)
            sys.stderr.write(out.decode(errors="replace")[-4000:])
        await watcher.close()


def _codecs_only(transceiver: RTCRtpTransceiver, mime_type: str) -> None:
    kind = transceiver.kind
    codecs = RTCRtpSender.getCapabilities(kind).codecs
    transceiver.setCodecPreferences(
        [c for c in codecs if c.mimeType.lower() in (mime_type.lower(), f"{kind}/rtx")]
    )


async def test_whep_viewer_without_the_publishers_video_codec_gets_inactive_video(
    sfu_url: str, make_token: MakeToken, caplog: pytest.LogCaptureFixture
) -> None:
    """An H.264-only WHIP publisher watched by a VP8-only WHEP viewer: the video m-line is
    answered inactive (and the log says why) while the audio still plays."""
    publisher = RTCPeerConnection(adapter.make_configuration([]))
    viewer = RTCPeerConnection(adapter.make_configuration([]))
    pub_auth = {"Authorization": "Bearer " + make_token("h264", "cam", subscribe=False), **SDP}
    viewer_auth = {"Authorization": "Bearer " + make_token("h264", "v", publish=False), **SDP}
    caplog.set_level(logging.INFO, logger="sfu.participant")
    async with aiohttp.ClientSession() as http:
        try:
            publisher.addTransceiver(ToneTrack(587.0), direction="sendonly")
            video = publisher.addTransceiver(ColorTrack((20, 20, 220)), direction="sendonly")
            _codecs_only(video, "video/H264")
            await publisher.setLocalDescription(await publisher.createOffer())
            async with http.post(
                f"{sfu_url}/whip/h264", data=publisher.localDescription.sdp, headers=pub_auth
            ) as resp:
                assert resp.status == 201, await resp.text()
                await publisher.setRemoteDescription(
                    RTCSessionDescription(await resp.text(), "answer")
                )

            viewer.addTransceiver("audio", direction="recvonly")
            _codecs_only(viewer.addTransceiver("video", direction="recvonly"), "video/VP8")
            await viewer.setLocalDescription(await viewer.createOffer())
            async with http.post(
                f"{sfu_url}/whep/h264/cam", data=viewer.localDescription.sdp, headers=viewer_auth
            ) as resp:
                assert resp.status == 201, await resp.text()
                answer = await resp.text()
            sections = {s.split(" ", 1)[0]: s for s in answer.split("\r\nm=")[1:]}
            assert "a=inactive" in sections["video"], sections["video"]
            assert "a=sendonly" in sections["audio"], sections["audio"]
            assert any(
                "answered inactive" in r.getMessage() and "video/H264" in r.getMessage()
                for r in caplog.records
            ), [r.getMessage() for r in caplog.records]
            await viewer.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            audio = next(t for t in viewer.getTransceivers() if t.kind == "audio")
            samples = await collect_audio(audio.receiver.track, 1.0)
            assert abs(dominant_frequency(samples[len(samples) // 2 :]) - 587.0) < 15
        finally:
            await publisher.close()
            await viewer.close()
