"""Router: the media plane of one room (mediasoup's meaning of the word).

The router owns the maps of producers and consumers and the close cascade: closing the
router closes its transports, which close their producers and consumers. It decides nothing
about who subscribes to what; that is the :class:`sfu.room.Room`'s policy.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from sfu.consumer import Consumer
from sfu.errors import InvalidStateError, NotFoundError
from sfu.producer import Producer
from sfu.stats import Totals
from sfu.transport import WebRtcTransport
from sfu.udp_mux import UdpMux

if TYPE_CHECKING:
    from sfu.pipe import PipeTransport


class Router:
    """Producers, consumers and transports of one room.

    Args:
        ice_servers: STUN/TURN URLs for every transport (explicit, possibly empty).
        keyframe_min_interval_ms: per-producer keyframe request throttle (ms).
        nack_buffer_packets: per video consumer retransmission buffer (packets).
        max_publish_bitrate_bps: cap of the REMB sent to each video publisher (bits/s).
        dynacast: pause simulcast layers no subscriber uses at the publisher (sfu.dynacast).
        ice_connect_timeout_s: a transport not connected this many seconds after its creation
            fails (s); None never times out.
        max_producers_per_participant: most producers one participant may have at once; it
            bounds the m-lines one publisher adds to every subscriber's SDP.
        media_timeout_s: a connected transport whose peer is silent this long (s) fails (the
            liveness watchdog of :class:`WebRtcTransport`); None disables it.
        audio_loss_proxying: report subscribers' audio loss to Opus publishers (in-band FEC,
            :mod:`sfu.rtp.loss_proxy`).
        totals: where closed objects' counters accumulate (shared by the whole server).
        udp_mux: the process's shared UDP port (``SFU_RTC_PORT``) for every transport, or
            None for per-transport ephemeral ports.
    """

    def __init__(
        self,
        *,
        ice_servers: list[str],
        keyframe_min_interval_ms: int = 500,
        nack_buffer_packets: int = 512,
        max_publish_bitrate_bps: int = 3_000_000,
        dynacast: bool = True,
        ice_connect_timeout_s: float | None = 30.0,
        max_producers_per_participant: int = 8,
        totals: Totals | None = None,
        media_timeout_s: float | None = None,
        audio_loss_proxying: bool = True,
        udp_mux: UdpMux | None = None,
    ) -> None:
        self.udp_mux = udp_mux
        self.ice_servers = list(ice_servers)
        self.max_producers_per_participant = max_producers_per_participant
        self.max_publish_bitrate_bps = max_publish_bitrate_bps
        self.dynacast = dynacast
        self.totals = totals if totals is not None else Totals()
        self.keyframe_min_interval_ms = keyframe_min_interval_ms
        self.nack_buffer_packets = nack_buffer_packets
        self.ice_connect_timeout_s = ice_connect_timeout_s
        self.media_timeout_s = media_timeout_s
        self.audio_loss_proxying = audio_loss_proxying
        self.id = "RT_" + secrets.token_urlsafe(9)
        self.transports: set[WebRtcTransport] = set()
        self.producers: dict[str, Producer] = {}
        self.pipe_transports: set[PipeTransport] = set()
        self._pipe_pairs: dict[str, tuple[PipeTransport, PipeTransport]] = {}
        self.closed = False

    def create_webrtc_transport(
        self, on_failed: Callable[[WebRtcTransport], None] | None = None
    ) -> WebRtcTransport:
        """A new :class:`WebRtcTransport` owned by this router.

        Raises:
            InvalidStateError: when the router is closed.
        """
        if self.closed:
            raise InvalidStateError("router is closed")
        transport = WebRtcTransport(
            ice_servers=self.ice_servers,
            nack_buffer_packets=self.nack_buffer_packets,
            on_failed=on_failed,
            totals=self.totals,
            connect_timeout_s=self.ice_connect_timeout_s,
            media_timeout_s=self.media_timeout_s,
            audio_loss_proxying=self.audio_loss_proxying,
            udp_mux=self.udp_mux,
        )
        self.transports.add(transport)
        return transport

    def create_producer(
        self,
        transport: WebRtcTransport,
        *,
        participant_sid: str,
        mid: str,
        kind: str,
        source: str = "unknown",
        name: str = "",
    ) -> Producer:
        """A producer for the m-line ``mid`` of ``transport``; media flows once negotiated."""
        if self.closed or transport not in self.transports:
            raise InvalidStateError("router or transport is closed")
        producer = Producer(
            transport=transport,
            participant_sid=participant_sid,
            mid=mid,
            kind=kind,
            source=source,
            name=name,
            keyframe_min_interval_ms=self.keyframe_min_interval_ms,
            max_bitrate_bps=self.max_publish_bitrate_bps,
            nack_buffer_packets=self.nack_buffer_packets,
        )
        transport.add_producer(producer)
        self.producers[producer.id] = producer
        producer.on_close(self._forget_producer)
        return producer

    def _forget_producer(self, producer: Producer) -> None:
        if self.producers.get(producer.id) is producer:
            del self.producers[producer.id]

    def get_producer(self, producer_id: str) -> Producer:
        """The producer with this id.

        Raises:
            NotFoundError: when there is none.
        """
        producer = self.producers.get(producer_id)
        if producer is None:
            raise NotFoundError(f"no producer {producer_id}")
        return producer

    def consume(self, producer: Producer, transport: WebRtcTransport) -> Consumer:
        """A consumer of ``producer`` on the subscriber ``transport`` (adds an m-line; the
        caller renegotiates)."""
        if self.closed or producer.closed:
            raise InvalidStateError("router or producer is closed")
        return transport.add_consumer(producer)

    # -- pipes (sfu.pipe) ------------------------------------------------------------------

    async def create_pipe_transport(
        self, *, listen_ip: str = "127.0.0.1", enable_srtp: bool = False
    ) -> PipeTransport:
        """A new :class:`sfu.pipe.PipeTransport` of this router, bound to ``listen_ip`` on an
        ephemeral UDP port; SRTP AEAD_AES_128_GCM (RFC 7714) when ``enable_srtp``.

        Raises:
            InvalidStateError: when the router is closed.
            OSError: when the socket cannot be bound.
        """
        from sfu.pipe import PipeTransport

        if self.closed:
            raise InvalidStateError("router is closed")
        pipe = PipeTransport(
            self,
            listen_ip=listen_ip,
            enable_srtp=enable_srtp,
            nack_buffer_packets=self.nack_buffer_packets,
            totals=self.totals,
        )
        await pipe.start()
        self.pipe_transports.add(pipe)
        return pipe

    async def pipe_pair(
        self, target: Router, *, enable_srtp: bool = False
    ) -> tuple[PipeTransport, PipeTransport]:
        """The connected pair of pipe transports (ours, ``target``'s) between this router and
        ``target`` in this process, created on first use with each end's control calls going
        to the other end (mediasoup ``Router.pipeToRouter``)."""
        pair = self._pipe_pairs.get(target.id)
        if pair is not None and not pair[0].closed and not pair[1].closed:
            return pair
        local = await self.create_pipe_transport(enable_srtp=enable_srtp)
        try:
            remote = await target.create_pipe_transport(enable_srtp=enable_srtp)
        except BaseException:
            await local.close()
            raise
        local.connect(remote.local_parameters())
        remote.connect(local.local_parameters())
        local.on_control(remote.apply)
        remote.on_control(local.apply)
        self._pipe_pairs[target.id] = (local, remote)
        return local, remote

    async def pipe_to_router(
        self, producer_id: str, target: Router, *, enable_srtp: bool = False
    ) -> Producer:
        """Pipe our producer ``producer_id`` to ``target`` (see :func:`sfu.pipe.pipe_to_router`)."""
        from sfu.pipe import pipe_to_router

        return await pipe_to_router(producer_id, self, target, enable_srtp=enable_srtp)

    def add_piped_producer(self, producer: Producer) -> None:
        """Register a producer piped from another router (:meth:`PipeTransport.produce`)."""
        self.producers[producer.id] = producer
        producer.on_close(self._forget_producer)

    def forget_pipe_transport(self, pipe: PipeTransport) -> None:
        """Called by a closing pipe transport."""
        self.pipe_transports.discard(pipe)
        for key, pair in list(self._pipe_pairs.items()):
            if pipe in pair:
                del self._pipe_pairs[key]

    async def close_transport(self, transport: WebRtcTransport) -> None:
        """Close one transport (and its producers and consumers)."""
        self.transports.discard(transport)
        await transport.close()

    async def close(self) -> None:
        """Close every transport. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        pipes = list(self.pipe_transports)
        await asyncio.gather(*(p.close() for p in pipes), return_exceptions=True)
        transports = list(self.transports)
        self.transports.clear()
        await asyncio.gather(*(t.close() for t in transports), return_exceptions=True)
