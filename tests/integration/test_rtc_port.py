"""One UDP port for every WebRtcTransport of the process (``SFU_RTC_PORT``, issue 14).

The server's answers and offers carry only the shared port, the server process has no other
UDP socket, media still arrives from the right publisher, a transport's close leaves the
others alone and removes its ufrag and addresses from the port's tables.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest

from sfu import _aiortc_adapter as adapter
from sfu.server import MediaServer
from sfu.udp_mux import UdpMux
from signaling.auth.tokens import VideoGrant, create_access_token
from signaling.client import RoomClient
from signaling.serverproc import start_server, stop_server, wait_healthy
from signaling.settings import Settings
from tests.integration.conftest import MakeToken
from tests.support.media import (
    ColorTrack,
    ToneTrack,
    collect_audio,
    dominant_frequency,
    mean_color,
)
from tests.support.udp import free_udp_port, running_server, transports

CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ (\S+)", re.MULTILINE)


def candidates(sdp: str) -> list[tuple[str, int, str]]:
    """(address, port, type) of every UDP ICE candidate in ``sdp`` (RFC 8839 §5.1)."""
    return [(host, int(port), kind) for host, port, kind in CANDIDATE.findall(sdp)]


def udp_ports_of(pid: int) -> list[int]:
    """The local port of every UDP socket process ``pid`` holds open, from
    ``/proc/<pid>/fd`` (socket inodes) and ``/proc/<pid>/net/udp{,6}`` (Linux)."""
    inodes: set[str] = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports: list[int] = []
    for table in ("udp", "udp6"):
        with open(f"/proc/{pid}/net/{table}") as lines:
            next(lines)  # header
            for line in lines:
                fields = line.split()
                if fields[9] in inodes:
                    ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.fixture(scope="module")
def one_port_server(
    mongo_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, int, int]]:
    """``(url, secret, rtc_port, pid)`` of a ``sfu serve`` subprocess with SFU_RTC_PORT."""
    secret = secrets.token_urlsafe(48)
    port = free_udp_port()
    env = {
        "SFU_JWT_SECRET": secret,
        "MONGO_URL": mongo_url,
        "SFU_MONGO_DB": f"rtcport_{uuid.uuid4().hex[:12]}",
        "SFU_RTC_PORT": str(port),
    }
    proc, url = start_server(tmp_path_factory.mktemp("sfu-rtc-port"), env=env)
    adapter.set_ice_host_addresses(["127.0.0.1"])  # the test's own peers gather on loopback
    try:
        wait_healthy(url, proc, timeout_s=30)
        yield url, secret, port, proc.pid
    finally:
        adapter.set_ice_host_addresses([])
        stop_server(proc)


def _client(url: str, secret: str, room: str, identity: str, *, publish: bool) -> RoomClient:
    token, _claims = create_access_token(
        secret,
        identity=identity,
        name=identity,
        ttl_s=600,
        video=VideoGrant(room=room, roomJoin=True, canPublish=publish, canSubscribe=not publish),
    )
    return RoomClient(url, room, identity, token=token)


PUBLISHERS = {"alice": (440.0, (220, 30, 30)), "bob": (880.0, (30, 200, 40))}


async def test_two_publishers_two_subscribers_share_one_port(
    one_port_server: tuple[str, str, int, int],
) -> None:
    """Two publishers and two subscribers: every candidate the server signals is on the one
    port, the server process has no other UDP socket, and each subscriber decodes each
    publisher's tone and colour."""
    url, secret, port, pid = one_port_server
    publishers = {n: _client(url, secret, "one", n, publish=True) for n in PUBLISHERS}
    subscribers = [_client(url, secret, "one", f"viewer{i}", publish=False) for i in (1, 2)]
    try:
        for name, (freq, rgb) in PUBLISHERS.items():
            await publishers[name].connect()
            await publishers[name].publish([ToneTrack(freq), ColorTrack(rgb)])
        for viewer in subscribers:
            await viewer.connect()
        for viewer in subscribers:
            await viewer.wait_for(
                lambda v=viewer: (
                    len(v.received) == 4 and all(r.track is not None for r in v.received.values())
                ),
                timeout=20,
            )
        sdps = [p.pub.remoteDescription.sdp for p in publishers.values() if p.pub is not None]
        sdps += [v.sub.remoteDescription.sdp for v in subscribers if v.sub is not None]
        assert len(sdps) == 4
        for sdp in sdps:  # the server's answers (publish) and offers (subscribe)
            assert set(candidates(sdp)) == {("127.0.0.1", port, "host")}
        assert udp_ports_of(pid) == [port]

        sids = {n: p.joined["participant"]["sid"] for n, p in publishers.items()}
        for viewer in subscribers:
            for name, (freq, rgb) in PUBLISHERS.items():
                tracks = {
                    r.kind: r.track for r in viewer.received.values() if r.participant == sids[name]
                }
                assert set(tracks) == {"audio", "video"}
                samples = await collect_audio(tracks["audio"], 0.6)  # type: ignore[arg-type]
                got = dominant_frequency(samples[len(samples) // 2 :])
                assert abs(got - freq) < 15, f"{viewer.identity} heard {got:.0f} Hz from {name}"
                color = await mean_color(tracks["video"], frames=3)  # type: ignore[arg-type]
                assert np.abs(color - np.array(rgb)).max() < 30
    finally:
        await asyncio.gather(*(c.close() for c in [*subscribers, *publishers.values()]))


# -- in-process server: the port's tables ---------------------------------------------------------


@pytest.fixture
async def one_port(sfu_settings: Settings) -> AsyncIterator[tuple[str, MediaServer, UdpMux]]:
    settings = sfu_settings.model_copy(update={"rtc_port": free_udp_port()})
    async with running_server(settings) as (url, media):
        assert media.udp_mux is not None
        yield url, media, media.udp_mux


def _remote_address(media: MediaServer, identity: str) -> tuple[str, int]:
    """The remote address of ``identity``'s (only) server transport's selected pair."""
    (room,) = media.rooms.values()
    (participant,) = [p for p in room.participants.values() if p.identity == identity]
    transport = participant.subscribe_transport or participant.publish_transport
    assert transport is not None
    target = adapter.raw_transport(transport.pc.getTransceivers()[0]).send_target()
    assert target is not None
    return target[1]


async def test_closing_a_transport_disturbs_nobody(
    one_port: tuple[str, MediaServer, UdpMux], make_token: MakeToken
) -> None:
    """A viewer leaves: its transport's ufrag and address leave the port's tables, datagrams
    from that address are dropped there, and the other viewer keeps receiving."""
    url, media, mux = one_port

    def client(identity: str, publish: bool) -> RoomClient:
        token = make_token("close", identity, publish=publish)
        return RoomClient(url, "close", identity, token=token, count_only=not publish)

    publisher, leaving, staying = client("pub", True), client("v1", False), client("v2", False)
    try:
        await publisher.connect()
        await publisher.publish([ToneTrack(440.0)])
        for viewer in (leaving, staying):
            await viewer.connect()
            await viewer.wait_for(lambda v=viewer: sum(v.counter.packets.values()) > 10)
        (mux_socket,) = mux.sockets.values()
        assert mux.endpoint_count() == 3  # the publish and the two subscribe transports
        gone = _remote_address(media, "v1")
        target = adapter.raw_transport(
            next(t for t in transports(media) if t.consumers).pc.getTransceivers()[0]
        ).send_target()
        assert target is not None and target[0] == mux_socket.socket.fileno()
        assert mux_socket.owner(gone) is not None

        await leaving.close()
        await staying.wait_for(lambda: mux.endpoint_count() == 2, timeout=10)
        assert mux_socket.owner(gone) is None
        unknown = mux.drops.unknown_address
        mux_socket.datagram_received(b"\x80\x6f" + bytes(30), gone)  # as if it came late
        assert mux.drops.unknown_address == unknown + 1
        before = sum(staying.counter.packets.values())
        await staying.wait_for(lambda: sum(staying.counter.packets.values()) > before + 20)
        assert all(t.connection_state == "connected" for t in transports(media))
    finally:
        for c in (staying, leaving, publisher):
            await c.close()
    assert mux.drops.address_taken == 0


async def test_transport_that_never_connects_leaves_the_port(
    sfu_settings: Settings, make_token: MakeToken
) -> None:
    """The shared-port form of issue 10's connect timeout: a publish transport whose peer
    never answers a check is closed after SFU_ICE_CONNECT_TIMEOUT_S and its ufrag leaves the
    port's tables (there is no socket of its own to close); the address the server checked
    never became its own."""
    from aiortc import RTCPeerConnection

    from tests.integration.test_ice_hardening import naming, udp_sockets, wait_until

    settings = sfu_settings.model_copy(
        update={
            "rtc_port": free_udp_port(),
            "ice_connect_timeout_s": 1.0,
            "media_restart_grace_s": 1.0,
        }
    )
    pc = RTCPeerConnection(adapter.make_configuration([]))
    pc.addTransceiver("audio", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    offer = str(pc.localDescription.sdp)
    await pc.close()  # nobody answers the server's checks
    (silent,) = udp_sockets(1)
    async with running_server(settings) as (url, media):
        assert media.udp_mux is not None
        (mux_socket,) = media.udp_mux.sockets.values()
        idle = RoomClient(url, "idle", "idle", identity="idle", token=make_token("idle", "idle"))
        try:
            await idle.connect()
            await idle.publish_sdp(
                naming(offer, [silent.getsockname()]),
                [{"mid": "0", "kind": "audio", "source": "microphone"}],
            )
            (participant,) = media.rooms["idle"].participants.values()
            transport = participant.publish_transport
            assert transport is not None
            ufrag = re.search(r"a=ice-ufrag:(\S+)", transport.pc.localDescription.sdp)
            assert ufrag is not None and mux_socket.has_ufrag(ufrag[1])
            assert adapter.local_media_addresses(transport.pc) == [mux_socket.address]
            assert await wait_until(lambda: transport.closed, 5.0)
            assert await wait_until(lambda: not mux_socket.has_ufrag(ufrag[1]), 5.0)
            assert mux_socket.owner(silent.getsockname()) is None
            assert media.udp_mux.endpoint_count() == 0
        finally:
            await idle.close()
            silent.close()


def _free_udp_port_pair() -> int:
    """A UDP port ``p`` on 127.0.0.1 with ``p + 1`` free too (bounded tries)."""
    for _ in range(50):
        port = free_udp_port()
        if port >= 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two consecutive free UDP ports")


async def test_workers_bind_rtc_port_plus_index(mongo_url: str, tmp_path: Path) -> None:
    """``sfu serve --workers 2`` with SFU_RTC_PORT: worker k binds SFU_RTC_PORT + k. The
    publisher (worker 0) is answered on the port, the listener (worker 1, the room spreads at
    once) is offered port + 1, and the tone and colour cross the pipe between them."""
    secret = secrets.token_urlsafe(48)
    port = _free_udp_port_pair()
    env = {
        "SFU_JWT_SECRET": secret,
        "MONGO_URL": mongo_url,
        "SFU_MONGO_DB": f"rtcport_{uuid.uuid4().hex[:12]}",
        "SFU_RTC_PORT": str(port),
        "SFU_WORKERS": "2",
        "SFU_WORKER_ROOM_SPREAD_AT": "1",
    }
    proc, url = start_server(tmp_path, env=env)
    adapter.set_ice_host_addresses(["127.0.0.1"])
    publisher = _client(url, secret, "workers", "alice", publish=True)
    listener = _client(url, secret, "workers", "viewer", publish=False)
    try:
        wait_healthy(url, proc, timeout_s=30)
        await publisher.connect()
        await publisher.publish([ToneTrack(660.0), ColorTrack((30, 30, 220))])
        await listener.connect()
        await listener.wait_for(
            lambda: (
                len(listener.received) == 2
                and all(r.track is not None for r in listener.received.values())
            ),
            timeout=20,
        )
        assert publisher.pub is not None and listener.sub is not None
        assert set(candidates(publisher.pub.remoteDescription.sdp)) == {("127.0.0.1", port, "host")}
        assert set(candidates(listener.sub.remoteDescription.sdp)) == {
            ("127.0.0.1", port + 1, "host")
        }
        tracks = {r.kind: r.track for r in listener.received.values()}
        samples = await collect_audio(tracks["audio"], 0.6)  # type: ignore[arg-type]
        assert abs(dominant_frequency(samples[len(samples) // 2 :]) - 660.0) < 15
        color = await mean_color(tracks["video"], frames=3)  # type: ignore[arg-type]
        assert np.abs(color - np.array((30, 30, 220))).max() < 30
    finally:
        await asyncio.gather(publisher.close(), listener.close())
        adapter.set_ice_host_addresses([])
        stop_server(proc)
