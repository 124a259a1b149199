"""A user-space UDP relay that impairs a link: loss, delay and jitter, reordering, a rate cap.

The kernel here has no ``netem``, so tests put this relay between a client and the server's
media ports. Each :class:`UdpRelay` forwards between one server port and whichever client
address last sent to it, applying an :class:`Impairment` per direction. :class:`RelaySet`
starts one relay per server ICE candidate and rewrites the server's SDP so the client sends
to the relays; the server sees the relay's address as a peer-reflexive candidate (RFC 8445
§7.3.1.3), exactly as behind a NAT.

The model (per direction, in the order netem applies it):

* ``loss``: each datagram is dropped with this probability (independent, seeded);
* ``rate_bps``: a token-bucket serializer; a datagram leaves when the link is free, and is
  dropped when more than ``queue_bytes`` wait (drop-tail, as a router's buffer);
* ``delay_ms`` + ``jitter_ms``: each datagram waits ``delay_ms`` plus a uniform draw in
  ``[0, jitter_ms]``, in order (first in, first out: jitter alone never reorders);
* ``reorder``: with this probability a datagram is held ``reorder_ms`` more, out of order.

Impairments are mutable: a test connects cleanly, then makes the link bad, then lifts it.
Everything is bound to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

LOOPBACK = "127.0.0.1"


@dataclass
class Impairment:
    """What one direction of a link does to datagrams (see the module docstring).

    Attributes:
        loss: drop probability, 0..1.
        delay_ms: fixed one-way delay (ms).
        jitter_ms: extra uniform delay in ``[0, jitter_ms]`` (ms), order kept.
        reorder: probability that a datagram is held back ``reorder_ms`` more (reordered).
        reorder_ms: the extra hold of a reordered datagram (ms).
        rate_bps: link rate (bits/s); None for no cap.
        queue_bytes: the most bytes waiting for the rate-capped link (drop-tail beyond).
    """

    loss: float = 0.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    reorder: float = 0.0
    reorder_ms: float = 20.0
    rate_bps: int | None = None
    queue_bytes: int = 64_000

    def set(self, **values: float | int | None) -> None:
        """Change several fields at once (unknown names raise ``AttributeError``)."""
        for name, value in values.items():
            if not hasattr(self, name):
                raise AttributeError(name)
            setattr(self, name, value)

    def clear(self) -> None:
        """A perfect link again."""
        self.set(loss=0.0, delay_ms=0.0, jitter_ms=0.0, reorder=0.0, rate_bps=None)


@dataclass
class DirectionStats:
    """Datagram counts of one direction."""

    received: int = 0
    sent: int = 0
    lost: int = 0  # dropped by ``loss``
    overflow: int = 0  # dropped by a full rate-cap queue
    reordered: int = 0
    bytes_sent: int = 0


class _Direction:
    """The scheduler of one direction: loss, rate cap, delay, reorder; then a send callback."""

    def __init__(self, impairment: Impairment, rng: random.Random) -> None:
        self.impairment = impairment
        self.rng = rng
        self.stats = DirectionStats()
        self._last_departure = 0.0  # loop time of the last in-order departure (s)
        self._link_free_at = 0.0  # loop time when the rate-capped link is free (s)
        self._queued_bytes = 0

    def schedule(
        self, data: bytes, send: Callable[[bytes], None], loop: asyncio.AbstractEventLoop
    ) -> None:
        imp = self.impairment
        self.stats.received += 1
        if imp.loss > 0 and self.rng.random() < imp.loss:
            self.stats.lost += 1
            return
        now = loop.time()
        ready = now
        size = len(data)
        if imp.rate_bps:
            if self._queued_bytes + size > imp.queue_bytes:
                self.stats.overflow += 1
                return
            start = max(now, self._link_free_at)
            self._link_free_at = start + size * 8 / imp.rate_bps
            ready = self._link_free_at
            self._queued_bytes += size
        delay = imp.delay_ms / 1000.0
        if imp.jitter_ms > 0:
            delay += self.rng.uniform(0.0, imp.jitter_ms / 1000.0)
        # Strictly after the previous departure: the event loop's timer heap does not keep
        # the order of callbacks due at the same instant.
        departure = max(ready + delay, self._last_departure + 1e-6)
        if imp.reorder > 0 and self.rng.random() < imp.reorder:
            self.stats.reordered += 1
            departure_out = departure + imp.reorder_ms / 1000.0
        else:
            self._last_departure = departure
            departure_out = departure
        queued = size if imp.rate_bps else 0

        def fire() -> None:
            self._queued_bytes -= queued
            self.stats.sent += 1
            self.stats.bytes_sent += size
            send(data)

        if departure_out <= now:
            fire()
        else:
            loop.call_at(departure_out, fire)


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, tuple[str, int]], None]) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_datagram(data, addr)


class UdpRelay:
    """Relays between a client (whoever last sent to :attr:`port`) and ``target``.

    Args:
        target: the server's ``(host, port)``.
        uplink: impairment of client -> server datagrams.
        downlink: impairment of server -> client datagrams.
        seed: the random seed of loss, jitter and reorder draws.
    """

    def __init__(
        self,
        target: tuple[str, int],
        uplink: Impairment | None = None,
        downlink: Impairment | None = None,
        seed: int = 1,
    ) -> None:
        self.target = target
        rng = random.Random(seed)
        self.up = _Direction(uplink or Impairment(), rng)
        self.down = _Direction(downlink or Impairment(), rng)
        self.port = 0
        self._client_addr: tuple[str, int] | None = None
        self._front: _Endpoint | None = None
        self._back: _Endpoint | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> int:
        """Bind both sockets on 127.0.0.1; returns the client-facing port."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        _, front = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self._from_client), local_addr=(LOOPBACK, 0)
        )
        _, back = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self._from_server), local_addr=(LOOPBACK, 0)
        )
        self._front, self._back = front, back
        assert front.transport is not None
        self.port = front.transport.get_extra_info("sockname")[1]
        return self.port

    def _from_client(self, data: bytes, addr: tuple[str, int]) -> None:
        self._client_addr = addr
        assert self._loop is not None
        self.up.schedule(data, self._to_server, self._loop)

    def _from_server(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr[1] != self.target[1] or self._client_addr is None:
            return
        assert self._loop is not None
        self.down.schedule(data, self._to_client, self._loop)

    def _to_server(self, data: bytes) -> None:
        if self._back is not None and self._back.transport is not None:
            self._back.transport.sendto(data, self.target)

    def _to_client(self, data: bytes) -> None:
        if self._front is not None and self._front.transport is not None and self._client_addr:
            self._front.transport.sendto(data, self._client_addr)

    def close(self) -> None:
        """Close both sockets; datagrams still scheduled are dropped."""
        for endpoint in (self._front, self._back):
            if endpoint is not None and endpoint.transport is not None:
                endpoint.transport.close()
        self._front = self._back = None


_CANDIDATE = re.compile(
    r"^(a=candidate:\S+ \d+ udp \d+ )(127\.0\.0\.1) (\d+)( typ .*)$", re.IGNORECASE | re.MULTILINE
)


@dataclass
class RelaySet:
    """One :class:`UdpRelay` per server media port, all sharing two impairments.

    Pass :meth:`rewrite` as a client's ``remote_sdp`` hook: every 127.0.0.1 UDP candidate of
    an SDP from the server is replaced by a relay in front of it (started on first sight); and
    :meth:`hide` as its ``local_sdp`` hook, so that every datagram of both directions crosses
    the relay.
    """

    uplink: Impairment = field(default_factory=Impairment)
    downlink: Impairment = field(default_factory=Impairment)
    seed: int = 1
    relays: dict[int, UdpRelay] = field(default_factory=dict)

    async def rewrite(self, sdp: str) -> str:
        """``sdp`` with each loopback UDP candidate's port replaced by its relay's port."""
        for port in {int(m.group(3)) for m in _CANDIDATE.finditer(sdp)}:
            if port not in self.relays:
                relay = UdpRelay(
                    (LOOPBACK, port), self.uplink, self.downlink, seed=self.seed + len(self.relays)
                )
                await relay.start()
                self.relays[port] = relay

        def swap(m: re.Match[str]) -> str:
            relay = self.relays[int(m.group(3))]
            return f"{m.group(1)}{m.group(2)} {relay.port}{m.group(4)}"

        return _CANDIDATE.sub(swap, sdp)

    @staticmethod
    async def hide(sdp: str) -> str:
        """Pass as the client's ``local_sdp`` hook: its candidates moved to 127.0.0.2, where
        nothing listens. The server then reaches the client only at the peer-reflexive address
        its checks came from (the relay). Without it the server's checks to the client's own
        candidates succeed, the client learns the server's real port from them and may send
        straight to it: the uplink impairment would then miss most of the client's packets."""
        return "".join(
            line.replace(" 127.0.0.1 ", " 127.0.0.2 ") if line.startswith("a=candidate:") else line
            for line in sdp.splitlines(keepends=True)
        )

    def stats(self) -> tuple[DirectionStats, DirectionStats]:
        """Summed (uplink, downlink) counts over every relay."""
        up, down = DirectionStats(), DirectionStats()
        for relay in self.relays.values():
            for total, part in ((up, relay.up.stats), (down, relay.down.stats)):
                for name in vars(total):
                    setattr(total, name, getattr(total, name) + getattr(part, name))
        return up, down

    def close(self) -> None:
        """Close every relay."""
        for relay in self.relays.values():
            relay.close()
        self.relays.clear()
