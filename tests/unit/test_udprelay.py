"""The impairing UDP relay itself: loss rate, order under jitter, reordering, the rate cap."""

from __future__ import annotations

import asyncio
import time
from typing import cast

from tests.support.udprelay import Impairment, RelaySet, UdpRelay

LOOPBACK = "127.0.0.1"


class _Sink(asyncio.DatagramProtocol):
    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.got: list[tuple[float, bytes]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.append((time.monotonic(), data))
        if self.echo:
            assert self.transport is not None
            self.transport.sendto(data, addr)


async def _endpoint(echo: bool = False) -> tuple[_Sink, int]:
    loop = asyncio.get_running_loop()
    _, sink = await loop.create_datagram_endpoint(lambda: _Sink(echo), local_addr=(LOOPBACK, 0))
    assert sink.transport is not None
    return sink, sink.transport.get_extra_info("sockname")[1]


async def _send(client: _Sink, port: int, payloads: list[bytes], gap_s: float = 0.0) -> None:
    assert client.transport is not None
    for i, payload in enumerate(payloads):
        client.transport.sendto(payload, (LOOPBACK, port))
        if gap_s:
            await asyncio.sleep(gap_s)
        elif i % 20 == 19:
            await asyncio.sleep(0.001)  # let the relay read: never overflow a socket buffer


async def _settle(sink: _Sink, count: int, timeout: float = 5.0) -> None:
    """Wait until ``count`` datagrams arrived, or none for 0.3 s (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    seen, quiet_since = -1, time.monotonic()
    while len(sink.got) < count and time.monotonic() < deadline:
        if len(sink.got) != seen:
            seen, quiet_since = len(sink.got), time.monotonic()
        elif time.monotonic() - quiet_since > 0.3:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)


def _seqs(sink: _Sink) -> list[int]:
    return [int(data.split(b":")[1]) for _, data in sink.got]


async def test_loss_drops_the_configured_share_and_the_reply_path_works() -> None:
    server, server_port = await _endpoint()
    client, _ = await _endpoint()
    relay = UdpRelay((LOOPBACK, server_port), Impairment(loss=0.2), Impairment(), seed=7)
    port = await relay.start()
    try:
        await _send(client, port, [f"x:{i}".encode() for i in range(2000)])
        await _settle(server, 1600)
        assert 1500 < len(server.got) < 1700  # 20% of 2000 lost, seeded draws
        assert relay.up.stats.lost == 2000 - len(server.got)
        relay.up.impairment.clear()
        server.echo = True
        await _send(client, port, [b"echo:1"])
        await _settle(client, 1)
        assert [d for _, d in client.got] == [b"echo:1"]  # the server's reply comes back
    finally:
        relay.close()
        for ep in (server, client):
            assert ep.transport is not None
            ep.transport.close()


async def test_jitter_keeps_order_and_reorder_breaks_it() -> None:
    server, server_port = await _endpoint()
    client, _ = await _endpoint()
    up = Impairment(delay_ms=10, jitter_ms=30)
    relay = UdpRelay((LOOPBACK, server_port), up, Impairment(), seed=3)
    port = await relay.start()
    try:
        await _send(client, port, [f"x:{i}".encode() for i in range(200)], gap_s=0.001)
        await _settle(server, 200)
        assert _seqs(server) == list(range(200))
        server.got.clear()
        up.set(jitter_ms=0, reorder=0.2, reorder_ms=15)
        await _send(client, port, [f"x:{i}".encode() for i in range(200)], gap_s=0.001)
        await _settle(server, 200)
        seqs = _seqs(server)
        assert sorted(seqs) == list(range(200))
        assert seqs != list(range(200))
        assert relay.up.stats.reordered > 10
    finally:
        relay.close()
        for ep in (server, client):
            assert ep.transport is not None
            ep.transport.close()


async def test_rate_cap_paces_and_drops_beyond_the_queue() -> None:
    server, server_port = await _endpoint()
    client, _ = await _endpoint()
    up = Impairment(rate_bps=400_000, queue_bytes=20_000)
    relay = UdpRelay((LOOPBACK, server_port), up, Impairment())
    port = await relay.start()
    try:
        start = time.monotonic()
        await _send(client, port, [b"x:%d:" % i + bytes(995) for i in range(100)], gap_s=0.0005)
        offered_s = time.monotonic() - start
        await _settle(server, 100 - relay.up.stats.overflow)
        # 100 kB offered in ``offered_s`` into a 20 kB queue drained at 50 kB/s: what the
        # link could not take overflowed, and nothing arrived faster than the rate.
        delivered = len(server.got)
        assert relay.up.stats.overflow == 100 - delivered > 0
        assert delivered * 1000 <= 20_000 + 50_000 * offered_s + 1000
        span = server.got[-1][0] - server.got[0][0]
        assert span >= (delivered - 1) * 1000 * 8 / 400_000 * 0.9
    finally:
        relay.close()
        for ep in (server, client):
            assert ep.transport is not None
            ep.transport.close()


async def test_relay_set_rewrites_loopback_candidates() -> None:
    sdp = (
        "v=0\r\nm=audio 50001 UDP/TLS/RTP/SAVPF 111\r\n"
        "a=candidate:1 1 udp 2130706431 127.0.0.1 50001 typ host\r\n"
        "a=candidate:2 1 udp 2130706431 127.0.0.1 50002 typ host\r\n"
        "a=candidate:3 1 udp 2130706431 10.1.2.3 50003 typ host\r\n"
    )
    relays = RelaySet()
    try:
        out = await relays.rewrite(sdp)
        assert set(relays.relays) == {50001, 50002}
        for port, relay in relays.relays.items():
            assert f"127.0.0.1 {port} typ" not in out
            assert f"127.0.0.1 {relay.port} typ host" in out
        assert "10.1.2.3 50003 typ host" in out
        again = await relays.rewrite(sdp)
        assert again == out and len(relays.relays) == 2
    finally:
        relays.close()


async def test_relay_set_hides_the_clients_own_candidates() -> None:
    sdp = (
        "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 50001 UDP/TLS/RTP/SAVPF 111\r\n"
        "a=candidate:1 1 udp 2130706431 127.0.0.1 50001 typ host\r\n"
    )
    out = await RelaySet.hide(sdp)
    assert "a=candidate:1 1 udp 2130706431 127.0.0.2 50001 typ host\r\n" in out
    assert "c=IN IP4 127.0.0.1\r\n" in out  # only candidates move
