"""One UDP port for every WebRtcTransport of a process (issue 14), as mediasoup's
WebRtcServer and LiveKit's single-port mode do.

A :class:`UdpMux` binds one UDP socket per ICE host address, all on the same port, and hands
each arriving datagram to the one transport endpoint it belongs to:

* STUN requests (RFC 8489; first byte 0-3, RFC 7983 §7) by the ICE username fragment: the
  USERNAME attribute of a connectivity check is ``"<our ufrag>:<their ufrag>"`` (RFC 8445
  §7.2.2), so the part before the colon names the transport;
* STUN responses and errors by transaction id: the id of a request an endpoint sent
  (connectivity checks, consent checks, STUN server queries);
* everything else (DTLS, SRTP/SRTCP) and STUN indications by remote address: an address
  belongs to the transport that answered an authenticated check from it (the endpoint sent a
  Binding success response there, which aioice does only after checking MESSAGE-INTEGRITY
  with the transport's password). An address belongs to at most one transport; a second
  transport's claim is refused and counted.

Datagrams that match nothing are dropped here and counted in :class:`UdpMuxDrops`, so a
hostile sender reaches no transport. An endpoint's close removes its ufrag, its addresses and
its transaction ids.

This module knows nothing of aioice: an endpoint is any object with
``datagram_received(data, addr)``; ``sfu._aiortc_adapter`` makes aioice connections use it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import string
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

logger = logging.getLogger(__name__)

Address = tuple[str, int]

STUN_MAGIC_COOKIE = b"\x21\x12\xa4\x42"
"""RFC 8489 §5."""

STUN_HEADER_BYTES = 20
STUN_USERNAME = 0x0006
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101

TRANSACTIONS_PER_ENDPOINT = 128
"""Most outstanding STUN transaction ids remembered per endpoint (oldest forgotten first).
An ICE agent has at most one transaction per candidate pair in flight plus a consent check;
a response to a forgotten one is dropped as unknown."""

UFRAG_LENGTH = 8
"""Characters of the ICE username fragments :meth:`UdpMux.allocate_ufrag` hands out
(RFC 8839 §5.4: 4 to 256 ice-chars): 62**8 values, so collisions between live transports are
negligible, and checked anyway."""

READ_BATCH_DATAGRAMS = 64
"""Most datagrams read from a shared socket per event-loop wake-up. asyncio's datagram
transport reads one per wake-up, which is fine for a socket per transport but would put one
event-loop iteration behind every datagram of the whole process on a shared one."""

RECEIVE_BYTES = 65536
"""Largest datagram read (bytes): any UDP datagram whole (WebRTC peers keep theirs under the
path MTU, but a truncated one would fail SRTP authentication silently)."""

SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
"""SO_RCVBUF / SO_SNDBUF asked for on each shared socket (the kernel caps it at
``net.core.rmem_max`` / ``wmem_max``): every transport of the process shares it."""


class MuxEndpoint(Protocol):
    """What a :class:`UdpMuxSocket` delivers to: one transport's receiver on that socket."""

    def datagram_received(self, data: bytes, addr: Address) -> None:
        """One datagram from ``addr`` that belongs to this endpoint."""


@dataclass(slots=True)
class UdpMuxDrops:
    """Datagrams a :class:`UdpMux` dropped before any transport saw them.

    Attributes:
        empty: zero-byte datagrams.
        malformed_stun: first byte 0-3 but no well-formed STUN header (RFC 8489 §5: 20 bytes,
            magic cookie, length matching the datagram) or attribute list.
        unknown_ufrag: STUN requests whose USERNAME names no transport (or that carry no
            USERNAME and come from an address no transport owns).
        unknown_transaction: STUN responses/errors to no request of any transport.
        unknown_address: DTLS, SRTP/SRTCP, other data or STUN indications from an address no
            transport owns.
        address_taken: claims of an address another transport already owns (refused).
    """

    empty: int = 0
    malformed_stun: int = 0
    unknown_ufrag: int = 0
    unknown_transaction: int = 0
    unknown_address: int = 0
    address_taken: int = 0

    def total_datagrams(self) -> int:
        """Every dropped datagram (``address_taken`` counts claims, not datagrams)."""
        return (
            self.empty
            + self.malformed_stun
            + self.unknown_ufrag
            + self.unknown_transaction
            + self.unknown_address
        )


def stun_username(data: bytes) -> str | None:
    """The USERNAME attribute (RFC 8489 §14.3) of a STUN message, or None when it has none.

    Raises:
        ValueError: when ``data`` is no well-formed STUN message (header, cookie, length, or an
            attribute running past the end) or the USERNAME is not UTF-8.
    """
    if len(data) < STUN_HEADER_BYTES or data[4:8] != STUN_MAGIC_COOKIE:
        raise ValueError("no STUN header")
    end = STUN_HEADER_BYTES + int.from_bytes(data[2:4], "big")
    if end != len(data):
        raise ValueError("STUN length does not match the datagram")
    pos = STUN_HEADER_BYTES
    while pos + 4 <= end:
        kind = int.from_bytes(data[pos : pos + 2], "big")
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        value_end = pos + 4 + length
        if value_end > end:
            raise ValueError("STUN attribute runs past the message")
        if kind == STUN_USERNAME:
            return data[pos + 4 : value_end].decode("utf-8")
        pos = value_end + (-length % 4)
    return None


class UdpMuxSocket:
    """One shared UDP socket (one ICE host address) and its demultiplexing tables. Read with
    the event loop's ``add_reader``, up to :data:`READ_BATCH_DATAGRAMS` per wake-up.

    Attributes:
        address: the (host, port) the socket is bound to.
        announced: the (host, port) to put in ICE host candidates: ``address``, or the
            announced address (behind a NAT or a container's published port) with its port.
        socket: the bound non-blocking ``socket.socket`` (senders may ``sendto`` on it).
        drops: shared with the owning :class:`UdpMux`.
    """

    def __init__(
        self, sock: socket.socket, drops: UdpMuxDrops, announced_host: str | None = None
    ) -> None:
        self.socket = sock
        host, port = sock.getsockname()[:2]
        self.address: Address = (host, port)
        self.announced: Address = (announced_host or host, port)
        self.drops = drops
        self.sendto: Callable[[bytes, Address], int] = sock.sendto
        self.read_errors = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._by_ufrag: dict[str, MuxEndpoint] = {}
        self._by_addr: dict[Address, MuxEndpoint] = {}
        self._by_txid: dict[bytes, MuxEndpoint] = {}
        self._ufrag_of: dict[MuxEndpoint, str] = {}
        self._addrs_of: dict[MuxEndpoint, set[Address]] = {}
        self._txids_of: dict[MuxEndpoint, deque[bytes]] = {}

    # -- registration ----------------------------------------------------------------------------

    def register(self, ufrag: str, endpoint: MuxEndpoint) -> None:
        """Deliver STUN requests for local ufrag ``ufrag`` to ``endpoint``.

        Raises:
            ValueError: when another endpoint has that ufrag, or ``endpoint`` is registered.
        """
        if ufrag in self._by_ufrag or endpoint in self._ufrag_of:
            raise ValueError(f"ICE ufrag {ufrag!r} is already on {self.address}")
        self._by_ufrag[ufrag] = endpoint
        self._ufrag_of[endpoint] = ufrag
        self._addrs_of[endpoint] = set()
        self._txids_of[endpoint] = deque()

    def unregister(self, endpoint: MuxEndpoint) -> None:
        """Forget ``endpoint``: its ufrag, its addresses, its transaction ids. Idempotent."""
        ufrag = self._ufrag_of.pop(endpoint, None)
        if ufrag is None:
            return
        del self._by_ufrag[ufrag]
        for addr in self._addrs_of.pop(endpoint):
            del self._by_addr[addr]
        for txid in self._txids_of.pop(endpoint):
            if self._by_txid.get(txid) is endpoint:
                del self._by_txid[txid]

    def has_ufrag(self, ufrag: str) -> bool:
        """True when an endpoint has local ufrag ``ufrag`` on this socket."""
        return ufrag in self._by_ufrag

    def owner(self, addr: Address) -> MuxEndpoint | None:
        """The endpoint that owns remote address ``addr``, if any."""
        return self._by_addr.get(addr)

    def addresses_of(self, endpoint: MuxEndpoint) -> set[Address]:
        """The remote addresses ``endpoint`` owns (a copy)."""
        return set(self._addrs_of.get(endpoint, ()))

    def endpoint_count(self) -> int:
        """Registered endpoints."""
        return len(self._ufrag_of)

    def claim(self, endpoint: MuxEndpoint, addr: Address) -> bool:
        """Make ``addr`` belong to ``endpoint`` (non-STUN datagrams from it go there).

        Returns False (and counts ``address_taken``) when another endpoint owns it, or when
        ``endpoint`` is not registered.
        """
        owner = self._by_addr.get(addr)
        if owner is endpoint:
            return True
        addrs = self._addrs_of.get(endpoint)
        if addrs is None:
            return False
        if owner is not None:
            self.drops.address_taken += 1
            return False
        self._by_addr[addr] = endpoint
        addrs.add(addr)
        return True

    # -- sending ---------------------------------------------------------------------------------

    def send(self, endpoint: MuxEndpoint, data: bytes, addr: Address) -> None:
        """Send ``data`` to ``addr`` for ``endpoint``. A STUN request's transaction id is
        remembered (its response comes back to ``endpoint``); a Binding success response
        claims ``addr`` for ``endpoint`` (it answered an authenticated check from there).
        Nothing is sent for an unregistered (closed) endpoint."""
        txids = self._txids_of.get(endpoint)
        if txids is None:
            return
        if len(data) >= STUN_HEADER_BYTES and data[0] < 4:
            message_type = int.from_bytes(data[0:2], "big")
            if message_type & 0x0110 == 0:  # a request (RFC 8489 §5 class bits)
                txid = bytes(data[8:20])
                if self._by_txid.get(txid) is not endpoint:
                    self._by_txid[txid] = endpoint
                    txids.append(txid)
                    if len(txids) > TRANSACTIONS_PER_ENDPOINT:
                        old = txids.popleft()
                        if self._by_txid.get(old) is endpoint:
                            del self._by_txid[old]
            elif message_type == BINDING_SUCCESS:
                self.claim(endpoint, (addr[0], addr[1]))
        try:
            self.sendto(data, addr)
        except OSError:  # a full send buffer (BlockingIOError), unreachable...: UDP drops
            pass

    # -- receiving -------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start reading on ``loop`` (idempotent)."""
        if self._loop is None:
            loop.add_reader(self.socket.fileno(), self._read_ready)
            self._loop = loop

    def _read_ready(self) -> None:
        recvfrom = self.socket.recvfrom
        for _ in range(READ_BATCH_DATAGRAMS):
            try:
                data, addr = recvfrom(RECEIVE_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error for an earlier send (port unreachable...)
                self.read_errors += 1
                continue
            try:
                self.datagram_received(data, addr)
            except Exception:  # one datagram never stops the port; endpoints guard their own
                self.read_errors += 1
                logger.exception("datagram from %s on the shared port failed", addr)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        """Route one datagram (see the module docstring) or drop and count it."""
        remote: Address = (addr[0], addr[1])  # type: ignore[assignment]
        if not data:
            self.drops.empty += 1
            return
        endpoint: MuxEndpoint | None
        if data[0] < 4:  # STUN (RFC 7983 §7)
            if len(data) < STUN_HEADER_BYTES or data[4:8] != STUN_MAGIC_COOKIE:
                self.drops.malformed_stun += 1
                return
            message_type = int.from_bytes(data[0:2], "big")
            message_class = message_type & 0x0110
            if message_class == 0x0000:  # request
                try:
                    username = stun_username(data)
                except ValueError:
                    self.drops.malformed_stun += 1
                    return
                if username is not None:
                    endpoint = self._by_ufrag.get(username.partition(":")[0])
                else:  # unauthenticated: its owner answers 400, a stranger gets nothing
                    endpoint = self._by_addr.get(remote)
                if endpoint is None:
                    self.drops.unknown_ufrag += 1
                    return
            elif message_class == 0x0010:  # indication
                endpoint = self._by_addr.get(remote)
                if endpoint is None:
                    self.drops.unknown_address += 1
                    return
            else:  # success or error response
                endpoint = self._by_txid.get(bytes(data[8:20]))
                if endpoint is None:
                    self.drops.unknown_transaction += 1
                    return
        else:
            endpoint = self._by_addr.get(remote)
            if endpoint is None:
                self.drops.unknown_address += 1
                return
        endpoint.datagram_received(data, remote)

    def close(self) -> None:
        """Stop reading and close the socket (after every endpoint is gone). Idempotent."""
        if self._loop is not None and self.socket.fileno() >= 0:
            self._loop.remove_reader(self.socket.fileno())
        self._loop = None
        self.socket.close()


class UdpMux:
    """Every WebRtcTransport's media on one UDP port: one :class:`UdpMuxSocket` per ICE
    host address, all bound to ``port``.

    Args:
        hosts: IPv4/IPv6 literals to bind (the ICE host addresses), at least one.
        port: the UDP port (1-65535); the process's worker k uses ``SFU_RTC_PORT + k``.
        announced_host: the address clients must send to when it is not the bound one (the
            public address of a NAT or of a container's host; mediasoup's
            ``announcedAddress``); it replaces every bound host in the ICE candidates.

    Raises:
        ValueError: when ``hosts`` is empty.
        OSError: when a host:port cannot be bound (in use, no such address).
    """

    def __init__(self, hosts: list[str], port: int, announced_host: str | None = None) -> None:
        if not hosts:
            raise ValueError("a UdpMux needs at least one host address")
        self.port = port
        self.drops = UdpMuxDrops()
        self.sockets: dict[str, UdpMuxSocket] = {}
        try:
            for host in hosts:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_DGRAM)
                try:
                    if family == socket.AF_INET6:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                        sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
                    sock.setblocking(False)
                    sock.bind((host, port))
                except OSError as exc:
                    sock.close()
                    raise OSError(
                        exc.errno,
                        f"cannot bind the WebRTC media port {host}:{port}: {exc.strerror}",
                    ) from exc
                self.sockets[host] = UdpMuxSocket(sock, self.drops, announced_host)
        except OSError:
            self.close()
            raise

    async def start(self) -> None:
        """Start reading the sockets on the running event loop (idempotent)."""
        loop = asyncio.get_running_loop()
        for mux_socket in self.sockets.values():
            mux_socket.start(loop)

    def socket_for(self, host: str) -> UdpMuxSocket | None:
        """The shared socket bound to ``host``, if any."""
        return self.sockets.get(host)

    def allocate_ufrag(self) -> str:
        """A fresh ICE username fragment no registered endpoint uses (RFC 8839 ice-chars)."""
        alphabet = string.ascii_letters + string.digits
        while True:
            ufrag = "".join(secrets.choice(alphabet) for _ in range(UFRAG_LENGTH))
            if not any(s.has_ufrag(ufrag) for s in self.sockets.values()):
                return ufrag

    def endpoint_count(self) -> int:
        """Registered endpoints on all sockets."""
        return sum(s.endpoint_count() for s in self.sockets.values())

    def close(self) -> None:
        """Close every socket."""
        for mux_socket in self.sockets.values():
            mux_socket.close()
        self.sockets.clear()
