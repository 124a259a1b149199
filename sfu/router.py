"""Router: the media plane of one room (mediasoup's meaning of the word).

The router owns the maps of producers and consumers and the close cascade: closing the
router closes its transports, which close their producers and consumers. It decides nothing
about who subscribes to what; that is the :class:`sfu.room.Room`'s policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sfu.consumer import Consumer
from sfu.errors import InvalidStateError, NotFoundError
from sfu.producer import Producer
from sfu.stats import Totals
from sfu.transport import WebRtcTransport


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
    ) -> None:
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
        self.transports: set[WebRtcTransport] = set()
        self.producers: dict[str, Producer] = {}
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
        )
        transport.add_producer(producer)
        self.producers[producer.id] = producer
        producer.on_close(self._forget_producer)
        return producer

    def _forget_producer(self, producer: Producer) -> None:
        self.producers.pop(producer.id, None)

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

    async def close_transport(self, transport: WebRtcTransport) -> None:
        """Close one transport (and its producers and consumers)."""
        self.transports.discard(transport)
        await transport.close()

    async def close(self) -> None:
        """Close every transport. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        transports = list(self.transports)
        self.transports.clear()
        await asyncio.gather(*(t.close() for t in transports), return_exceptions=True)
