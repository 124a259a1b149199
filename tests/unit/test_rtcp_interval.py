"""How often a transport sends its RTCP reports (issue 14): every ~5 s when it only sends
audio (libWebRTC's audio report interval, mediasoup's audio cap), every ~1 s when it sends
video or receives anything (receiver reports and REMB for publishers)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sfu import transport as transport_module
from sfu.transport import WebRtcTransport


def _reports_in(transport: WebRtcTransport, seconds: float, monkeypatch: pytest.MonkeyPatch) -> int:
    sent: list[float] = []
    monkeypatch.setattr(transport, "_send_reports", lambda: sent.append(1.0))
    transport._next_rtcp_at = 0.0
    now = 0.0
    while now < seconds:  # the RTCP ticker's 0.25 s steps, on a simulated clock
        assert transport._rtcp_step(now)
        now += 0.25
    return len(sent)


async def test_audio_only_subscriber_reports_every_five_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    transport = WebRtcTransport(ice_servers=[])
    try:
        transport.consumers = {"a": SimpleNamespace(kind="audio")}  # type: ignore[dict-item]
        count = _reports_in(transport, 300, monkeypatch)
        mean = transport_module.RTCP_AUDIO_INTERVAL_S
        assert 300 / (1.5 * mean) - 2 <= count <= 300 / (0.5 * mean) + 2
        assert count <= 300 / (1.5 * transport_module.RTCP_INTERVAL_S) / 2
    finally:
        transport.consumers = {}
        await transport.close()


async def test_video_or_publishing_transport_reports_every_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for consumers, producers in (
        ({"a": SimpleNamespace(kind="audio"), "v": SimpleNamespace(kind="video")}, {}),
        ({}, {"0": object()}),
    ):
        transport = WebRtcTransport(ice_servers=[])
        try:
            transport.consumers = consumers  # type: ignore[assignment]
            transport.producers = producers  # type: ignore[assignment]
            count = _reports_in(transport, 60, monkeypatch)
            assert 60 / 1.5 - 2 <= count <= 60 / 0.5 + 2
        finally:
            transport.producers = {}
            transport.consumers = {}
            await transport.close()
