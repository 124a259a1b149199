"""ICE under hostile input (issue 10 items 2 and 3): a bounded receive queue, a cap on remote
candidates, and transports that never connect are closed (SFU_ICE_CONNECT_TIMEOUT_S).

The server side is a real :class:`ForwardingPeerConnection` on 127.0.0.1; the "client" is an
offer whose only ICE candidates are sockets the test owns, so the test decides who answers
connectivity checks (nobody) and who sends datagrams from a candidate address.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from aioice import stun
from aiortc import RTCIceCandidate, RTCPeerConnection, RTCSessionDescription

from sfu import _aiortc_adapter as adapter
from signaling.client import RoomClient
from signaling.settings import Settings
from tests.integration.conftest import MakeToken
from tests.support.udp import running_server

STUN_FIRST_BYTES = (0, 1)  # a STUN Binding request starts 0x00 0x01 (RFC 8489 §5)


@pytest.fixture(autouse=True)
def loopback_ice() -> Iterator[None]:
    adapter.set_ice_host_addresses(["127.0.0.1"])
    yield
    adapter.set_ice_host_addresses([])


@pytest.fixture
async def client_offer() -> str:
    """An aiortc offer (one sendonly audio m-line); its peer is closed at once, so nobody
    answers the checks sent to the candidates a test puts in it."""
    pc = RTCPeerConnection(adapter.make_configuration([]))
    pc.addTransceiver("audio", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    return sdp


def naming(sdp: str, addresses: list[tuple[str, int]]) -> str:
    """``sdp`` with its candidates replaced by host candidates at ``addresses`` and no
    end-of-candidates (so ICE keeps waiting instead of failing)."""
    out: list[str] = []
    for line in sdp.splitlines():
        if line.startswith(("a=candidate:", "a=end-of-candidates")):
            continue
        out.append(line)
        if line.startswith("a=ice-pwd:"):
            for i, (host, port) in enumerate(addresses):
                out.append(f"a=candidate:f{i} 1 udp {2130706431 - i} {host} {port} typ host")
    return "\r\n".join(out) + "\r\n"


def udp_sockets(count: int) -> list[socket.socket]:
    out = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        out.append(sock)
    return out


@contextlib.asynccontextmanager
async def answering(offer: str) -> AsyncIterator[adapter.ForwardingPeerConnection]:
    """A server-side peer connection that answered ``offer`` and is running ICE checks."""
    pc = adapter.ForwardingPeerConnection(adapter.NullRtpSink(), adapter.make_configuration([]))
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        yield pc
    finally:
        await pc.close()


def got_stun_check(sock: socket.socket) -> bool:
    """Drain ``sock``; True when a STUN Binding request arrived."""
    hit = False
    while True:
        try:
            data = sock.recv(2048)
        except BlockingIOError:
            return hit
        hit = hit or (len(data) >= 20 and (data[0], data[1]) == STUN_FIRST_BYTES)


async def wait_until(predicate: object, timeout_s: float) -> bool:
    """Poll ``predicate()`` every 20 ms for at most ``timeout_s``; its last value."""
    assert callable(predicate)
    for _ in range(int(timeout_s / 0.02)):
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return bool(predicate())


async def test_receive_queue_is_bounded_and_released(client_offer: str) -> None:
    """Issue 10 item 2: 40,000 datagrams of 1,200 B to a connection that never completes ICE
    used to stay queued in aioice (+51 MB, even after close). Now at most
    ICE_QUEUE_MAX_DATAGRAMS / ICE_QUEUE_MAX_BYTES wait, datagrams from addresses that are no
    candidate pair are dropped, and close releases the queue."""
    candidate, stranger = udp_sockets(2)
    try:
        async with answering(naming(client_offer, [candidate.getsockname()])) as pc:
            (server_addr,) = adapter.local_media_addresses(pc)
            guard = adapter.ice_input_guard(pc)
            assert guard is not None
            # The server checks our candidate: the pair is on its check list.
            assert await wait_until(lambda: got_stun_check(candidate), 5.0)

            sent = 40_000
            payload = bytearray(os.urandom(1200))
            payload[0] = 0x80  # RTP/SRTP range (RFC 7983)
            for i in range(sent // 100):
                for _ in range(100):
                    with contextlib.suppress(BlockingIOError):
                        candidate.sendto(payload, server_addr)
                with contextlib.suppress(BlockingIOError):
                    stranger.sendto(payload, server_addr)
                await asyncio.sleep(0.001 if i % 10 else 0.005)

            def arrived() -> int:
                return guard.queued()[0] + guard.drops.queue_full

            # Let the server read what the kernel still holds (bounded).
            for _ in range(50):
                before = arrived()
                await asyncio.sleep(0.05)
                if arrived() == before:
                    break
            datagrams, queued_bytes = guard.queued()
            assert arrived() > sent // 2, f"only {arrived()} of {sent} datagrams reached the guard"
            assert datagrams <= adapter.ICE_QUEUE_MAX_DATAGRAMS
            assert queued_bytes <= adapter.ICE_QUEUE_MAX_BYTES
            assert guard.drops.queue_full >= arrived() - adapter.ICE_QUEUE_MAX_DATAGRAMS
            assert guard.drops.foreign > 0  # the stranger is no candidate pair
        assert guard.queued() == (0, 0)  # close released what was queued
    finally:
        candidate.close()
        stranger.close()


async def test_dtls_after_an_authenticated_early_check_is_kept() -> None:
    """A browser answering our offer checks us and starts DTLS before we have its answer (so
    before aioice's connect()); seen with Chromium. That DTLS comes from an address whose
    STUN check carried our ice-pwd: it is kept. The same bytes from a stranger are dropped."""
    peer, stranger = udp_sockets(2)
    pc = adapter.ForwardingPeerConnection(adapter.NullRtpSink(), adapter.make_configuration([]))
    try:
        pc.addTransceiver("audio", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = str(pc.localDescription.sdp)
        ufrag = sdp.split("a=ice-ufrag:", 1)[1].split()[0]
        password = sdp.split("a=ice-pwd:", 1)[1].split()[0]
        (server_addr,) = adapter.local_media_addresses(pc)
        guard = adapter.ice_input_guard(pc)
        assert guard is not None

        request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        request.attributes["USERNAME"] = f"{ufrag}:peer"
        request.attributes["PRIORITY"] = 1853824767
        request.attributes["ICE-CONTROLLED"] = 1
        request.add_message_integrity(password.encode())
        request.add_fingerprint()
        peer.sendto(bytes(request), server_addr)

        def answered() -> bool:
            try:
                response = stun.parse_message(peer.recv(2048))
            except BlockingIOError:
                return False
            return response.message_class == stun.Class.RESPONSE

        assert await wait_until(answered, 5.0)
        client_hello = bytes([22, 0xFE, 0xFD]) + bytes(8) + (100).to_bytes(2, "big") + bytes(100)
        peer.sendto(client_hello, server_addr)
        stranger.sendto(client_hello, server_addr)
        assert await wait_until(lambda: guard.drops.foreign == 1, 5.0)
        assert await wait_until(lambda: guard.queued() == (1, len(client_hello)), 5.0)
    finally:
        await pc.close()
        peer.close()
        stranger.close()


class _Forwarder(asyncio.DatagramProtocol):
    def __init__(self, deliver: Callable[[bytes, tuple[str, int]], None]) -> None:
        self.deliver = deliver

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.deliver(data, addr)


async def test_peer_sending_on_a_pair_we_did_not_select_connects() -> None:
    """aioice nominates aggressively when controlling (USE-CANDIDATE on every check), so the
    two agents can select different pairs: here the client reaches our offer's candidate
    through a relay (as behind a NAT) while we also reach its own candidate directly. Its
    DTLS arrives from the relay's address, which is on our check list but need not be our
    selected pair: it must be accepted (a strict selected-pair filter never connected)."""
    loop = asyncio.get_running_loop()
    server = adapter.ForwardingPeerConnection(adapter.NullRtpSink(), adapter.make_configuration([]))
    client = RTCPeerConnection(adapter.make_configuration([]))
    client_addr: list[tuple[str, int]] = []
    front_t, _ = await loop.create_datagram_endpoint(
        lambda: _Forwarder(lambda d, a: (client_addr.append(a), back_t.sendto(d, server_addr))),
        local_addr=("127.0.0.1", 0),
    )
    back_t, _ = await loop.create_datagram_endpoint(
        lambda: _Forwarder(lambda d, a: front_t.sendto(d, client_addr[-1])),
        local_addr=("127.0.0.1", 0),
    )
    try:
        server.addTransceiver("audio", direction="sendonly")
        await server.setLocalDescription(await server.createOffer())
        (server_addr,) = adapter.local_media_addresses(server)
        relay_port = front_t.get_extra_info("sockname")[1]
        offer = str(server.localDescription.sdp).replace(
            f"127.0.0.1 {server_addr[1]} typ host", f"127.0.0.1 {relay_port} typ host"
        )
        assert str(relay_port) in offer
        await client.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await client.setLocalDescription(await client.createAnswer())
        await server.setRemoteDescription(client.localDescription)
        connected = await wait_until(
            lambda: server.connectionState == "connected" and client.connectionState == "connected",
            10.0,
        )
        assert connected, f"server {server.connectionState}, client {client.connectionState}"
        assert client_addr, "the client never used the relay"
        guard = adapter.ice_input_guard(server)
        assert guard is not None and guard.drops.foreign == 0
    finally:
        await client.close()
        await server.close()
        front_t.close()
        back_t.close()


async def test_remote_candidates_are_capped(client_offer: str) -> None:
    """Issue 10 item 3: the server used to send connectivity checks to every address a client
    named. Only MAX_REMOTE_CANDIDATES are kept; the rest get no STUN at all."""
    cap = adapter.MAX_REMOTE_CANDIDATES
    named = udp_sockets(cap + 10)
    trickled = udp_sockets(1)
    try:
        offer = naming(client_offer, [s.getsockname() for s in named])
        async with answering(offer) as pc:
            guard = adapter.ice_input_guard(pc)
            assert guard is not None
            host, port = trickled[0].getsockname()
            await pc.addIceCandidate(
                RTCIceCandidate(
                    component=1,
                    foundation="t",
                    ip=host,
                    port=port,
                    priority=1,
                    protocol="udp",
                    type="host",
                    sdpMLineIndex=0,
                )
            )
            checked: set[int] = set()

            def poll() -> bool:
                for i, sock in enumerate(named + trickled):
                    if got_stun_check(sock):
                        checked.add(i)
                return len(checked) >= cap

            assert await wait_until(poll, 5.0), f"only {len(checked)} candidates were checked"
            # aioice starts one check every 20 ms: 11 more would take 0.22 s.
            for _ in range(50):
                poll()
                await asyncio.sleep(0.02)
            assert len(checked) == cap, f"{len(checked)} addresses got STUN checks"
            assert checked == set(range(cap))  # the first named ones, in order
            assert guard.remote_candidate_count() == cap
            assert guard.drops.candidates == 11
    finally:
        for sock in named + trickled:
            sock.close()


def udp_port_open(port: int) -> bool:
    """Whether a UDP socket of this network namespace is bound to ``port`` (/proc/net/udp)."""
    with open("/proc/net/udp") as table:
        next(table)
        return any(int(line.split()[1].rsplit(":", 1)[1], 16) == port for line in table)


async def test_transport_that_never_connects_is_closed(
    sfu_settings: Settings, make_token: MakeToken, client_offer: str
) -> None:
    """Issue 10 item 2: a transport that never completed ICE used to keep its port and queue
    forever. After SFU_ICE_CONNECT_TIMEOUT_S it fails like any failed transport: its port is
    closed, the client is told ``media_restart`` (issue 11) and, as this one never offers
    again, the participant is removed after SFU_MEDIA_RESTART_GRACE_S (the room hears
    ``participant_left``)."""
    settings = sfu_settings.model_copy(
        update={"ice_connect_timeout_s": 1.0, "media_restart_grace_s": 1.0}
    )
    (silent,) = udp_sockets(1)  # the publisher's only candidate: it never answers a check
    async with running_server(settings) as (url, media):
        watcher = RoomClient(
            url, "idle", "watcher", identity="watcher", token=make_token("idle", "watcher")
        )
        idle = RoomClient(url, "idle", "idle", identity="idle", token=make_token("idle", "idle"))
        try:
            await watcher.connect()
            await idle.connect()
            await idle.publish_sdp(
                naming(client_offer, [silent.getsockname()]),
                [{"mid": "0", "kind": "audio", "source": "microphone"}],
            )
            room = media.rooms["idle"]
            (participant,) = [p for p in room.participants.values() if p.identity == "idle"]
            transport = participant.publish_transport
            assert transport is not None
            (address,) = adapter.local_media_addresses(transport.pc)
            assert udp_port_open(address[1])
            left = idle.joined["participant"]["sid"]
            await watcher.wait_for(
                lambda: any(
                    e.get("type") == "participant_left" and e.get("participant") == left
                    for e in watcher.events
                ),
                timeout=10,
            )
            assert transport.closed
            assert participant.sid not in room.participants
            assert await wait_until(lambda: not udp_port_open(address[1]), 5.0)
            assert {p.identity for p in room.participants.values()} == {"watcher"}
        finally:
            await idle.close()
            await watcher.close()
            silent.close()
