"""Hostile datagrams on the server's media UDP ports never take a transport down (issue 10).

A publisher and a count-only viewer are connected through an in-process server; a socket that
is no ICE candidate of anybody sends junk to every server media port. The viewer must keep
receiving and no transport may fail.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from sfu.server import MediaServer
from signaling.client import RoomClient
from signaling.settings import Settings
from tests.integration.conftest import MakeToken
from tests.support.media import ToneTrack
from tests.support.udp import media_addresses, running_server, transports


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


async def test_empty_datagram_does_not_drop_a_participant(call: Connected) -> None:
    """Issue 10 item 1: one empty datagram from any address used to raise IndexError in
    aiortc's DTLS receive loop (``data[0]``), closing the transport."""
    media, _publisher, viewer = call
    addresses = media_addresses(media)
    assert len(addresses) == 2  # the publisher's publish port and the viewer's subscribe port
    before = list(transports(media))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        for address in addresses:
            sock.sendto(b"", address)
    await asyncio.sleep(1.0)  # the broken transport used to fail at once
    assert transports(media) and set(transports(media)) == set(before)
    await assert_still_receiving(media, viewer)
