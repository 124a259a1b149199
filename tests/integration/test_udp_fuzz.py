"""Hostile datagrams on the server's media UDP ports never take a transport down (issue 10).

A publisher and a count-only viewer are connected through an in-process server; a socket that
is no ICE candidate of anybody sends junk to every server media port. The viewer must keep
receiving and no transport may fail. Each test runs with per-transport ports and with every
transport on one shared port (``SFU_RTC_PORT``, issue 14).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
import struct
import time
from collections.abc import AsyncIterator

import pytest

from sfu import _aiortc_adapter as adapter
from sfu.server import MediaServer
from signaling.client import RoomClient
from signaling.settings import Settings
from tests.integration.conftest import MakeToken
from tests.support.media import ToneTrack
from tests.support.udp import media_addresses, rss_bytes, running_server, transports


@pytest.fixture
async def server(sfu_settings: Settings) -> AsyncIterator[tuple[str, MediaServer]]:
    async with running_server(sfu_settings) as url_media:
        yield url_media


Connected = tuple[MediaServer, RoomClient, RoomClient]


@pytest.fixture
async def call(server: tuple[str, MediaServer], make_token: MakeToken) -> AsyncIterator[Connected]:
    """A publisher (one Opus track) and a count-only viewer, both connected, media flowing."""
    url, media = server
    publisher = RoomClient(url, "fuzz", "pub", identity="pub", token=make_token("fuzz", "pub"))
    viewer = RoomClient(
        url,
        "fuzz",
        "viewer",
        identity="viewer",
        token=make_token("fuzz", "viewer", publish=False),
        count_only=True,
    )
    try:
        await publisher.connect()
        await publisher.publish([ToneTrack(440.0)])
        await viewer.connect()
        await viewer.wait_for(lambda: received(viewer) > 20, timeout=20)
        # The guard never drops a legitimate peer's datagrams.
        guards = [adapter.ice_input_guard(t.pc) for t in transports(media)]
        assert all(g is not None and g.drops == adapter.IceInputDrops() for g in guards)
        yield media, publisher, viewer
    finally:
        await viewer.close()
        await publisher.close()


def received(client: RoomClient) -> int:
    """RTP packets the count-only client has received so far."""
    return sum(client.counter.packets.values())


async def assert_still_receiving(media: MediaServer, viewer: RoomClient, more: int = 20) -> None:
    (room,) = media.rooms.values()
    assert {p.identity for p in room.participants.values()} == {"pub", "viewer"}
    assert all(not t.closed and t.connection_state == "connected" for t in transports(media))
    before = received(viewer)
    await viewer.wait_for(lambda: received(viewer) >= before + more, timeout=10)


PORTS = pytest.mark.parametrize("rtc_port", [None, "one-port"], indirect=True, ids=str)
"""Run a test against per-transport ports and against the one shared port (issue 14)."""


def server_ports(media: MediaServer) -> list[tuple[str, int]]:
    """The distinct (host, port) on which the server receives media: one per transport, or
    the one shared port."""
    addresses = sorted(set(media_addresses(media)))
    # the publisher's publish port and the viewer's subscribe port, or the shared port
    assert len(addresses) == (1 if media.udp_mux is not None else 2)
    return addresses


@PORTS
async def test_empty_datagram_does_not_drop_a_participant(call: Connected) -> None:
    """Issue 10 item 1: one empty datagram from any address used to raise IndexError in
    aiortc's DTLS receive loop (``data[0]``), closing the transport."""
    media, _publisher, viewer = call
    addresses = server_ports(media)
    before = list(transports(media))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        for address in addresses:
            sock.sendto(b"", address)
    await asyncio.sleep(1.0)  # the broken transport used to fail at once
    assert transports(media) and set(transports(media)) == set(before)
    await assert_still_receiving(media, viewer)


# -- fuzz (issue 10 item 4) ----------------------------------------------------------------------

FUZZ_DATAGRAMS_PER_PORT = 100_000
"""Datagrams sent to every server media port."""

FUZZ_DATAGRAMS_SHARED_PORT = 40_000
"""Datagrams sent to the one shared port (``SFU_RTC_PORT``): most stop at its demultiplexer."""

FUZZ_RSS_BOUND_BYTES = 8 * 1024 * 1024
"""Most the test process (server, publisher and viewer) may grow while it is fuzzed."""

STUN_COOKIE = 0x2112A442


def _stun(rng: random.Random) -> bytes:
    """A STUN-looking datagram (RFC 8489 §5/§14): random method/class, attributes of random
    type and length (USERNAME, XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT...), a length
    field that may lie, and sometimes truncated."""
    message_type = rng.choice([0x0001, 0x0101, 0x0111, 0x0011, rng.randrange(0x4000)])
    body = b""
    for _ in range(rng.randrange(5)):
        kind = rng.choice([0x0006, 0x0020, 0x0008, 0x8028, 0x0024, 0x8029, 0x0025, 0x0009])
        value = rng.randbytes(rng.choice([0, 1, 3, 4, 8, 20, rng.randrange(64)]))
        body += struct.pack("!HH", kind, len(value)) + value + b"\0" * (-len(value) % 4)
    length = len(body) if rng.random() < 0.7 else rng.randrange(65536)
    data = struct.pack("!HHI", message_type, length, STUN_COOKIE) + rng.randbytes(12) + body
    return data[: rng.randrange(1, len(data) + 1)] if rng.random() < 0.3 else data


def _stun_check(rng: random.Random, ufrag: str) -> bytes:
    """A Binding request whose USERNAME names ``ufrag`` (so the shared port routes it to that
    transport), with a MESSAGE-INTEGRITY that cannot be right."""
    username = f"{ufrag}:{rng.randrange(10**6)}".encode()
    body = struct.pack("!HH", 0x0006, len(username)) + username + b"\0" * (-len(username) % 4)
    body += struct.pack("!HH", 0x0008, 20) + rng.randbytes(20)
    return struct.pack("!HHI", 0x0001, len(body), STUN_COOKIE) + rng.randbytes(12) + body


def _dtls(rng: random.Random) -> bytes:
    """A DTLS record header (RFC 6347 §4.1; content type 20-63) with a random body,
    sometimes a ClientHello-looking handshake, sometimes truncated."""
    content = rng.choice([20, 21, 22, 23, 25, rng.randrange(20, 64)])
    version = rng.choice([b"\xfe\xfd", b"\xfe\xff", rng.randbytes(2)])
    body = rng.randbytes(rng.randrange(200))
    if content == 22 and rng.random() < 0.5:
        body = b"\x01" + len(body).to_bytes(3, "big") + rng.randbytes(8) + body
    data = bytes([content]) + version + rng.randbytes(8) + len(body).to_bytes(2, "big") + body
    return data[: rng.randrange(1, len(data) + 1)] if rng.random() < 0.3 else data


def _rtp(rng: random.Random) -> bytes:
    """An (S)RTP-looking packet: truncated headers (1-11 bytes) or a full header with CSRCs,
    extensions and payload of random length."""
    first = 0x80 | rng.randrange(0x40)
    header = bytes([first, rng.randrange(256)]) + rng.randbytes(10)
    if rng.random() < 0.4:
        return header[: rng.randrange(1, 12)]
    return header + rng.randbytes(rng.randrange(1200))


def _rtcp(rng: random.Random) -> bytes:
    """An (S)RTCP-looking packet (second byte 192-223: SR, RR, SDES, BYE, APP, RTPFB, PSFB)."""
    count = rng.randrange(32)
    packet_type = rng.choice([200, 201, 202, 203, 204, 205, 206, rng.randrange(192, 224)])
    body = rng.randbytes(rng.randrange(100))
    length = (len(body) + 4) // 4 - 1 if rng.random() < 0.6 else rng.randrange(65536)
    data = bytes([0x80 | count, packet_type]) + length.to_bytes(2, "big") + body
    return data[: rng.randrange(1, len(data) + 1)] if rng.random() < 0.3 else data


def fuzz_corpus(seed: int = 10) -> list[bytes]:
    """A fixed corpus: the empty datagram, every one-byte datagram, random bytes of random
    lengths (up to 1,500 B), and STUN, DTLS, RTP and RTCP look-alikes."""
    rng = random.Random(seed)
    corpus = [b""] + [bytes([b]) for b in range(256)]
    makers = [_stun, _dtls, _rtp, _rtcp]
    for i in range(6000):
        if i % 5 == 4:
            corpus.append(rng.randbytes(rng.randrange(2, 1501)))
        else:
            corpus.append(makers[i % 5 % 4](rng))
    rng.shuffle(corpus)
    return corpus


@PORTS
async def test_fuzz_every_media_port(call: Connected) -> None:
    """Issue 10 item 4: FUZZ_DATAGRAMS_PER_PORT junk datagrams to every server media port
    (FUZZ_DATAGRAMS_SHARED_PORT to the shared port) while a publisher and a viewer are
    connected. No transport fails, the viewer keeps receiving throughout, and the process
    grows by less than FUZZ_RSS_BOUND_BYTES."""
    media, _publisher, viewer = call
    addresses = server_ports(media)
    per_port = FUZZ_DATAGRAMS_PER_PORT if media.udp_mux is None else FUZZ_DATAGRAMS_SHARED_PORT
    before = set(transports(media))
    corpus = fuzz_corpus()
    if media.udp_mux is not None:
        # On the shared port, every 10th datagram is a check naming a live transport's ufrag
        # (it reaches that transport, whose aioice answers 401: no address changes hands).
        ufrags = [
            re.search(r"a=ice-ufrag:(\S+)", t.pc.localDescription.sdp)[1]  # type: ignore[index]
            for t in transports(media)
        ]
        rng = random.Random(14)
        for i in range(0, len(corpus), 10):
            corpus[i] = _stun_check(rng, ufrags[i % len(ufrags)])
    senders = []
    for _ in range(4):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # answers: let them drop
        senders.append(sock)
    sender_addresses = [sock.getsockname() for sock in senders]
    rss_before = rss_bytes()
    started = time.monotonic()
    sent = 0
    checkpoint_at, checkpoint_count, checkpoints = started + 1.0, received(viewer), 0
    try:
        burst = 64
        total = per_port * len(addresses)
        while sent < total:
            for address in addresses:
                for k in range(burst):
                    data = corpus[(sent + k) % len(corpus)]
                    with contextlib.suppress(BlockingIOError):
                        senders[k % len(senders)].sendto(data, address)
            sent += burst * len(addresses)
            await asyncio.sleep(0.002)  # let the server read the burst (same event loop)
            if time.monotonic() >= checkpoint_at:
                now_count = received(viewer)
                assert now_count > checkpoint_count, (
                    f"the viewer received nothing in the last second ({sent} datagrams sent)"
                )
                checkpoint_at, checkpoint_count = time.monotonic() + 1.0, now_count
                checkpoints += 1
        elapsed = time.monotonic() - started
    finally:
        for sock in senders:
            sock.close()
    await asyncio.sleep(0.5)  # the server reads what the kernel still holds
    growth = rss_bytes() - rss_before
    guards = [adapter.ice_input_guard(t.pc) for t in transports(media)]
    drops = [g.drops for g in guards if g is not None]
    dropped = sum(d.total_datagrams() for d in drops)
    if media.udp_mux is not None:  # most never reach a transport's guard
        dropped += media.udp_mux.drops.total_datagrams()
        assert media.udp_mux.drops.address_taken == 0
    print(
        f"fuzz: {sent} datagrams to {len(addresses)} ports in {elapsed:.1f} s "
        f"({sent / elapsed:,.0f}/s), {dropped} dropped by the guard {drops} and the shared "
        f"port {media.udp_mux.drops if media.udp_mux else None}, "
        f"RSS growth {growth / 1e6:.1f} MB, {checkpoints} one-second checkpoints"
    )
    assert set(transports(media)) == before
    if media.udp_mux is not None:
        (mux_socket,) = media.udp_mux.sockets.values()
        assert all(mux_socket.owner(address) is None for address in sender_addresses)
    assert growth < FUZZ_RSS_BOUND_BYTES, f"process grew {growth / 1e6:.1f} MB"
    assert dropped > sent // 4, f"only {dropped} of {sent} datagrams reached the guard"
    await assert_still_receiving(media, viewer)
