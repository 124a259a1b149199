"""Helpers for hostile-network tests: an in-process server whose media plane the test can
reach, the UDP ports of its transports, and the process's resident memory."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.test_utils import TestServer

from sfu import _aiortc_adapter as adapter
from sfu.plane.local import LocalMediaPlane
from sfu.server import MediaServer
from sfu.transport import WebRtcTransport
from signaling import keys
from signaling.app import create_app
from signaling.settings import Settings


@contextlib.asynccontextmanager
async def running_server(settings: Settings) -> AsyncIterator[tuple[str, MediaServer]]:
    """``(base URL, MediaServer)`` of an aiohttp server on 127.0.0.1 in this process."""
    app = create_app(settings)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), local_media_server(app)
    finally:
        await server.close()


def local_media_server(app: web.Application) -> MediaServer:
    """The MediaServer behind ``app``'s media plane (a :class:`LocalMediaPlane`: media in
    this process), for tests that look at transports, producers and consumers."""
    plane = app[keys.MEDIA]
    assert isinstance(plane, LocalMediaPlane)
    return plane.server


def transports(media: MediaServer) -> list[WebRtcTransport]:
    """Every live WebRtcTransport of every room."""
    return [t for room in media.rooms.values() for t in room.router.transports]


def media_addresses(media: MediaServer) -> list[tuple[str, int]]:
    """(host, port) of every UDP socket on which the server receives media."""
    return [a for t in transports(media) for a in adapter.local_media_addresses(t.pc)]


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing is bound to right now (for ``SFU_RTC_PORT``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_bytes() -> int:
    """Resident set size of this process (bytes), from /proc/self/status (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")
