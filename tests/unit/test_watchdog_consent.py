"""The liveness watchdog keeps RFC 7675 consent freshness itself (issue 14): aioice's own
consent task is cancelled, the watchdog's checks are answered by a live peer, and a peer that
keeps sending media but never answers a check loses consent and the transport fails."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtp import RtpPacket

from sfu import _aiortc_adapter as adapter
from sfu import transport as transport_module
from sfu.transport import WebRtcTransport


async def _until(condition: Callable[[], bool], timeout: float) -> bool:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


@pytest.fixture
async def connected(
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[WebRtcTransport, RTCPeerConnection]]:
    """A WebRtcTransport connected to an aiortc peer, its consent checks every ~0.3 s."""
    monkeypatch.setattr(transport_module, "CONSENT_INTERVAL_S", 0.3)
    adapter.set_ice_host_addresses(["127.0.0.1"])
    server = WebRtcTransport(ice_servers=[], media_timeout_s=2.0)
    client = RTCPeerConnection(adapter.make_configuration([]))
    try:
        client.addTransceiver("audio", direction="sendrecv")
        await client.setLocalDescription(await client.createOffer())
        await server.set_remote_offer(client.localDescription.sdp)
        answer = await server.create_answer()
        await client.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        assert await _until(lambda: server.connection_state == "connected", 10)
        yield server, client
    finally:
        await client.close()
        await server.close()
        adapter.set_ice_host_addresses([])


async def test_watchdog_replaces_aioices_consent_task(
    connected: tuple[WebRtcTransport, RTCPeerConnection],
) -> None:
    server, _client = connected
    guard = adapter.ice_input_guard(server.pc)
    assert guard is not None
    task = guard._connection._query_consent_task
    assert await _until(lambda: guard.prober is not None, 3)
    assert task is not None and await _until(task.done, 2) and task.cancelled()
    prober = guard.prober
    assert prober is not None
    # The watchdog's own periodic checks go out and the live peer answers them.
    assert await _until(lambda: prober.answered >= 3, 5)
    assert server.connection_state == "connected"


async def test_peer_that_never_answers_a_check_loses_consent(
    connected: tuple[WebRtcTransport, RTCPeerConnection], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The peer keeps sending SRTP (so the transport is never quiet) but ignores every STUN
    check: consent expires after CONSENT_EXPIRY_S and the transport fails."""
    monkeypatch.setattr(transport_module, "CONSENT_EXPIRY_S", 1.5)
    server, client = connected
    dtls = client.getTransceivers()[0].sender.transport
    connection = dtls.transport._connection
    connection.request_received = lambda *args: None  # deaf to checks, still sending
    failed = asyncio.Event()
    server.pc.on("connectionstatechange", lambda: failed.set())
    for seq in range(100):
        if server.connection_state != "connected":
            break
        packet = RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960)
        packet.ssrc = 4321
        packet.payload = bytes(20)
        await dtls._send_rtp(packet.serialize())
        await asyncio.sleep(0.05)
    assert server.connection_state != "connected"
    assert server.media_timed_out
