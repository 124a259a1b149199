"""WebRtcTransport: one participant's RTCPeerConnection, as a media-plane object.

A participant has a *publish* transport (the client offers, we answer; it carries Producers)
and a *subscribe* transport (we offer, the client answers; it carries Consumers), as LiveKit
does. A WHEP viewer has a subscribe transport negotiated the other way round.

The transport is the RTP sink of its :class:`sfu._aiortc_adapter.ForwardingPeerConnection`:

* RTP is demultiplexed by SSRC, then by the mid header extension (RFC 8843 §9.2) for
  unsignalled SSRCs, and handed to the Producer;
* RTCP (RFC 3550, RFC 4585) is parsed with aiortc's packet classes: SR from publishers feed
  the producers' clocks; PLI/FIR (RFC 5104) and NACK from subscribers reach the consumers;
* once a second it sends receiver reports and a loss-based REMB (``sfu.rtp.bwe``) to the
  publisher, and sender reports for every consumer to the subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiortc import RTCRtpSender, RTCRtpTransceiver, RTCSessionDescription
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpByePacket,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)
from aiortc.sdp import candidate_from_sdp

from sfu import _aiortc_adapter as adapter
from sfu import ticker
from sfu.allocation import BandwidthAllocator
from sfu.codecs import preferences_for
from sfu.consent import ConsentProber
from sfu.consumer import Consumer
from sfu.errors import InvalidSdpError, InvalidStateError
from sfu.rtp.header import find_extension, parse_rtp
from sfu.rtp.loss_proxy import proxied_fraction_lost
from sfu.rtp.rtcp import receiver_reports, remb_packet
from sfu.stats import Totals
from sfu.tasks import spawn
from sfu.udp_mux import UdpMux

if TYPE_CHECKING:
    from sfu.producer import Producer

logger = logging.getLogger(__name__)

RTCP_INTERVAL_S = 1.0
"""Mean interval between our RTCP reports (s); randomised by ±50% as RFC 3550 §6.2 asks."""

RTCP_AUDIO_INTERVAL_S = 5.0
"""Mean interval between our RTCP reports (s) on a transport that only sends audio (no
producer, no video consumer): sender reports for Opus every 5 s, as libWebRTC's audio
streams report (``kDefaultAudioReportIntervalMs``) and mediasoup caps audio
(``MaxAudioIntervalMs``); the first report still comes within :data:`RTCP_INTERVAL_S`."""

RTCP_PSFB_FIR = 4  # RFC 5104 §4.3.1

WATCH_INTERVAL_S = 0.25
"""How often the liveness watchdog looks at a connected transport (s)."""

QUIET_BEFORE_PROBE_S = 1.5
"""A connected transport that has heard nothing from its peer for this long (s) probes it
with a STUN consent check (:func:`sfu._aiortc_adapter.consent_prober`). With the three checks
:data:`PROBE_INTERVAL_S` apart and each given up after 1 s (:data:`sfu.consent.TIMEOUT_S`), a
dead path is found 3.0-3.25 s after its last datagram; a live peer that sends no RTCP (an
audio-only browser reports every ~5 s) answers about one check every 1.75 s."""

PROBE_INTERVAL_S = 0.25
"""While a connected transport stays quiet, a new consent check every this many seconds."""

CONSENT_INTERVAL_S = 5.0
"""Mean interval between consent freshness checks of a connected transport (s), randomised
by ±20% (RFC 7675 §5.1), answered or not by whatever the peer sends meanwhile."""

CONSENT_EXPIRY_S = 30.0
"""A connected transport whose consent checks have all gone unanswered for this long (s) has
lost consent to send and fails (RFC 7675 §5.1: 30 s)."""

UNANSWERED_PROBES_BEFORE_FAILURE = 3
"""Consent checks in a row that must go unanswered (each sent twice) before a quiet path is
declared dead: at 20% loss each way all three are lost about 0.2% of the time."""


class _IdleLine:
    """A sending m-line whose consumer closed, kept for the next consumer of its kind.

    It remembers the closed consumer's RTP munger and RTX sequence number, so the next
    consumer on this m-line (same SSRC) continues the outgoing sequence numbers, and its
    timestamps advance by the wall-clock time the line was idle (RFC 3550 §5.1; what
    :meth:`sfu.rtp.munger.RtpMunger.resync` is for). This is required, not cosmetic: the
    sender's SRTP context (libsrtp) refuses to protect an index it has already used on that
    SSRC (it would reuse key stream, RFC 3711 §9.1), so a fresh random sequence number base
    behind the old one would silence the reused m-line.
    """

    __slots__ = ("clock_rate", "closed_at", "kind", "mime_type", "munger", "rtx_seq", "transceiver")

    def __init__(self, consumer: Consumer) -> None:
        self.transceiver = consumer.transceiver
        self.kind = consumer.kind
        codec = consumer.codec
        self.mime_type = codec.mime_type.lower() if codec is not None else ""
        self.clock_rate = codec.clock_rate if codec is not None else 0
        self.munger = consumer.munger
        self.rtx_seq = consumer.rtx_seq
        self.closed_at = time.monotonic()

    def hand_over(self, consumer: Consumer) -> None:
        """Make ``consumer`` (new on this m-line) continue the closed consumer's stream."""
        if not self.munger.started:
            return
        rate = self.clock_rate or 90000
        self.munger.resync(ts_gap=max(1, int((time.monotonic() - self.closed_at) * rate)))
        consumer.munger = self.munger
        consumer.rtx_seq = self.rtx_seq


class WebRtcTransport:
    """One RTCPeerConnection carrying producers (publish) or consumers (subscribe).

    Args:
        ice_servers: STUN/TURN URLs (explicit, possibly empty).
        nack_buffer_packets: per video consumer retransmission buffer size (packets).
        on_failed: called once when ICE/DTLS fails or closes unexpectedly, or when the
            transport is not connected ``connect_timeout_s`` after its creation.
        connect_timeout_s: seconds to reach ``connected`` before the peer connection is closed
            as failed (frees its UDP port and queue; issue 10); None waits forever.
        media_timeout_s: liveness watchdog (issue 11): once connected, a transport that has
            heard nothing from its peer (no DTLS/SRTP datagram, no answer to a STUN consent
            check sent after :data:`QUIET_BEFORE_PROBE_S` of quiet) for this many seconds is
            closed as failed, long before aioice's own 30 s consent expiry (RFC 7675);
            None disables it.
        audio_loss_proxying: the receiver report sent to an Opus publisher carries the worst
            fraction lost its subscribers report, so its encoder turns on in-band FEC
            (:mod:`sfu.rtp.loss_proxy`).
        udp_mux: receive every datagram on this shared UDP port (:mod:`sfu.udp_mux`) instead
            of sockets of the transport's own.

    Attributes:
        pc: the :class:`ForwardingPeerConnection`.
        producers: mid -> Producer; consumers: consumer id -> Consumer.
        closed: True after :meth:`close`.
        connect_timed_out: True when the transport was closed for not connecting in time.
        media_timed_out: True when the liveness watchdog closed it (the media path died).
    """

    def __init__(
        self,
        *,
        ice_servers: list[str],
        nack_buffer_packets: int = 512,
        on_failed: Callable[[WebRtcTransport], None] | None = None,
        totals: Totals | None = None,
        connect_timeout_s: float | None = None,
        media_timeout_s: float | None = None,
        audio_loss_proxying: bool = True,
        udp_mux: UdpMux | None = None,
    ) -> None:
        self.pc = adapter.ForwardingPeerConnection(
            self, adapter.make_configuration(ice_servers), udp_mux=udp_mux
        )
        self.nack_buffer_packets = nack_buffer_packets
        self.producers: dict[str, Producer] = {}
        self._producers_by_ssrc: dict[int, Producer] = {}
        self._layer_ssrcs: dict[str, dict[int, tuple[str, bool]]] = {}  # mid -> ssrc -> rid
        self.consumers: dict[str, Consumer] = {}
        self._consumers_by_transceiver: dict[int, Consumer] = {}
        self._consumers_by_ssrc: dict[int, Consumer] = {}
        self._idle_lines: dict[int, _IdleLine] = {}
        self._raw: adapter.RawRtpTransport | None = None
        self._on_failed = on_failed
        self._totals = totals if totals is not None else Totals()
        self.closed = False
        self.unknown_packets = 0
        self.rtcp_received = 0
        self.nacks_received = 0
        self.plis_received = 0
        self.connect_timed_out = False
        self.media_timed_out = False
        self.media_timeout_s = media_timeout_s
        self.audio_loss_proxying = audio_loss_proxying
        self._watchdog: _Watchdog | None = None
        self._rtcp_key: int | None = None
        self._next_rtcp_at = 0.0
        self.allocator = BandwidthAllocator(
            lambda: list(self.consumers.values()), self._on_bandwidth_paused
        )
        self.on_bandwidth_paused: Callable[[Consumer, bool], None] | None = None
        self._on_connected: list[Callable[[WebRtcTransport], None]] = []
        self._connect_timer: asyncio.TimerHandle | None = None
        if connect_timeout_s is not None:
            self._connect_timer = asyncio.get_running_loop().call_later(
                connect_timeout_s, self._on_connect_timeout
            )

        @self.pc.on("connectionstatechange")
        def _on_state() -> None:
            state = self.pc.connectionState
            if state != "new" and state != "connecting":
                self._cancel_connect_timer()
            if state == "connected" and self._rtcp_key is None and not self.closed:
                self._start_periodic()
                callbacks, self._on_connected = self._on_connected, []
                for callback in callbacks:
                    callback(self)
            elif state in ("failed", "closed") and not self.closed and self._on_failed:
                self._on_failed(self)

    # -- negotiation ---------------------------------------------------------------------------

    @property
    def connection_state(self) -> str:
        """The W3C ``RTCPeerConnectionState`` of the underlying connection."""
        state: str = self.pc.connectionState
        return state

    @property
    def signaling_state(self) -> str:
        """The W3C ``RTCSignalingState`` (``stable``, ``have-local-offer`` ...)."""
        state: str = self.pc.signalingState
        return state

    def remote_sdp(self) -> str | None:
        """The SDP of the applied remote description (offer or answer), or None."""
        remote = self.pc.remoteDescription
        return str(remote.sdp) if remote is not None else None

    def transceivers(self) -> list[RTCRtpTransceiver]:
        """The connection's transceivers, in m-line order (W3C ``getTransceivers()``)."""
        return list(self.pc.getTransceivers())

    def remote_receive_parameters(self, transceiver: RTCRtpTransceiver) -> adapter.NegotiatedRtp:
        """What the remote side negotiated to send on ``transceiver``'s m-line (codecs,
        header extensions, as W3C ``RTCRtpReceiveParameters``), after a remote offer.

        Raises:
            ValueError: no codec was negotiated on that m-line.
        """
        return adapter.remote_receive_parameters(self.pc, transceiver)

    async def set_remote_offer(self, sdp: str) -> None:
        """Apply a remote offer (publish side, or a WHEP viewer's offer). Our answer to an
        ``a=setup:actpass`` offer will be ``a=setup:passive`` (we are the DTLS server).

        Raises:
            InvalidSdpError: when aiortc cannot parse or negotiate the SDP.
            InvalidStateError: when the transport is closed.
        """
        self._check_open()
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:  # aiortc raises ValueError, OperationError, InvalidStateError
            raise InvalidSdpError(f"cannot apply offer: {exc}") from exc
        adapter.answer_as_dtls_server(self.pc)

    async def create_answer(self) -> str:
        """Create and apply our answer; returns its SDP (with all our ICE candidates)."""
        self._check_open()
        try:
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:
            raise InvalidSdpError(f"cannot answer: {exc}") from exc
        return str(self.pc.localDescription.sdp)

    async def create_offer(self) -> str:
        """Create and apply our offer (subscribe side); returns its SDP."""
        self._check_open()
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def set_remote_answer(self, sdp: str) -> None:
        """Apply the subscriber's answer to our offer.

        Raises:
            InvalidStateError: no offer of ours is outstanding.
            InvalidSdpError: aiortc cannot parse or negotiate the answer.
        """
        self._check_open()
        if self.pc.signalingState != "have-local-offer":
            raise InvalidStateError("no subscribe offer is outstanding")
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except Exception as exc:
            raise InvalidSdpError(f"cannot apply answer: {exc}") from exc

    async def add_ice_candidate(
        self, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        """Add a trickled remote candidate (RFC 8838); ``None`` or empty ends gathering.

        Raises:
            InvalidSdpError: for a candidate line that cannot be parsed.
        """
        self._check_open()
        if not candidate:
            return  # aiortc needs no end-of-candidates signal
        text = candidate[10:] if candidate.startswith("candidate:") else candidate
        try:
            parsed = candidate_from_sdp(text)
        except Exception as exc:
            raise InvalidSdpError(f"bad ICE candidate: {exc}") from exc
        if parsed.ip.endswith(".local"):
            return  # mDNS candidates cannot be resolved here; the peer's own checks will do
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = sdp_mline_index
        if sdp_mid is None and sdp_mline_index is None:
            parsed.sdpMLineIndex = 0
        try:
            await self.pc.addIceCandidate(parsed)
        except Exception as exc:
            raise InvalidSdpError(f"cannot add ICE candidate: {exc}") from exc

    def _check_open(self) -> None:
        if self.closed:
            raise InvalidStateError("transport is closed")

    # -- connect timeout -----------------------------------------------------------------------

    def _cancel_connect_timer(self) -> None:
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None

    def _on_connect_timeout(self) -> None:
        # Not connected in time: close the peer connection. Its "closed" state reaches
        # _on_state above, and so on_failed, exactly as a failed ICE/DTLS transport does.
        self._connect_timer = None
        if self.closed or self.pc.connectionState == "connected":
            return
        self.connect_timed_out = True
        logger.info("transport not connected in time (%s): closing", self.pc.connectionState)
        spawn(self.pc.close())

    # -- liveness watchdog (issue 11) ---------------------------------------------------------

    def on_connected(self, callback: Callable[[WebRtcTransport], None]) -> None:
        """Run ``callback`` once, when ICE and DTLS first reach ``connected``."""
        self._on_connected.append(callback)

    def _start_periodic(self) -> None:
        """Connected: RTCP reports and the liveness watchdog start, both on the process's
        shared timers (:mod:`sfu.ticker`: no task per transport)."""
        loop = asyncio.get_running_loop()
        self._next_rtcp_at = loop.time() + RTCP_INTERVAL_S * (0.5 + random.random())
        self._rtcp_key = ticker.RTCP.add(self._rtcp_step)
        if self.media_timeout_s is not None:
            self._watchdog = _Watchdog(self, self.media_timeout_s, loop.time())
            self._watchdog.key = ticker.WATCHDOGS.add(self._watchdog.step)

    def _stop_periodic(self) -> None:
        if self._rtcp_key is not None:
            ticker.RTCP.remove(self._rtcp_key)
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            ticker.WATCHDOGS.remove(watchdog.key)
            watchdog.stop()

    # -- producers -----------------------------------------------------------------------------

    def add_producer(self, producer: Producer) -> None:
        """Attach a producer for its mid; media is routed to it once negotiated."""
        self.producers[producer.mid] = producer
        producer.on_close(self._forget_producer)
        producer.on_close(lambda p: self._totals.retire(p.counters()))

    def adopt_producer(self, producer: Producer) -> None:
        """Route ``producer``'s m-line (``producer.mid``) of this transport to it: a producer
        that survived the failure of its previous transport (media restart, issue 11)."""
        self.producers[producer.mid] = producer
        producer.on_close(self._forget_producer)

    def detach_producers(self) -> list[Producer]:
        """Stop routing media to every producer of this transport without closing them (they
        move to a new transport); returns them."""
        producers = list(self.producers.values())
        self.producers.clear()
        self._producers_by_ssrc.clear()
        return producers

    def _forget_producer(self, producer: Producer) -> None:
        if self.producers.get(producer.mid) is producer:
            del self.producers[producer.mid]
        for ssrc in [
            s for s, p in self._producers_by_ssrc.items() if p is producer or p.parent is producer
        ]:
            layer = self._producers_by_ssrc.pop(ssrc)
            if layer.rid is not None:
                # A sender reusing this m-line (replaceTrack on a stopped camera) keeps its
                # SSRCs and no longer names the rid in every packet (libwebrtc stops once our
                # receiver reports acknowledged the SSRC): remember which layer each one was.
                known = self._layer_ssrcs.setdefault(producer.mid, {})
                known[ssrc] = (layer.rid, ssrc == layer.rtx_ssrc)

    # -- consumers -----------------------------------------------------------------------------

    def add_consumer(self, producer: Producer) -> Consumer:
        """Add a sendonly m-line for ``producer`` and a :class:`Consumer` feeding it. The caller
        renegotiates (subscribe side).

        The m-line of a closed consumer of the same kind is reused once its ``inactive``
        direction has been negotiated (same codec preferred), so the subscribe SDP holds at
        most about as many m-lines as the subscriber ever had consumers at once, however many
        producers came and went (RFC 8829 §5.2.2). The reused m-line keeps its SSRC and its
        outgoing sequence numbers and timestamps continue (:class:`_IdleLine`).

        Raises:
            UnsupportedCodecError / ValueError: when the producer's codec cannot be offered.
        """
        self._check_open()
        if producer.codec is None:
            raise InvalidStateError("producer is not negotiated yet")
        preferences = preferences_for(
            RTCRtpSender.getCapabilities(producer.kind).codecs, producer.codec
        )
        idle = self._take_idle_line(producer)
        if idle is None:
            transceiver = self.pc.addTransceiver(producer.kind, direction="sendonly")
        else:
            transceiver = idle.transceiver
            transceiver.direction = "sendonly"
        transceiver.setCodecPreferences(preferences)
        consumer = self.attach_consumer(producer, transceiver)
        if idle is not None:
            idle.hand_over(consumer)
        return consumer

    def attach_consumer(self, producer: Producer, transceiver: RTCRtpTransceiver) -> Consumer:
        """Create a :class:`Consumer` of ``producer`` on an existing sending ``transceiver``."""
        consumer = Consumer(
            producer, self, transceiver, nack_buffer_packets=self.nack_buffer_packets
        )
        self.consumers[consumer.id] = consumer
        self._consumers_by_transceiver[id(transceiver)] = consumer
        self._consumers_by_ssrc[consumer.ssrc] = consumer
        producer.consumers.append(consumer)
        consumer.on_close(self._forget_consumer)
        consumer.on_close(lambda c: self._totals.retire(c.counters()))
        return consumer

    def _forget_consumer(self, consumer: Consumer) -> None:
        self.consumers.pop(consumer.id, None)
        self._consumers_by_transceiver.pop(id(consumer.transceiver), None)
        self._consumers_by_ssrc.pop(consumer.ssrc, None)
        if not self.closed and self.pc.connectionState != "closed":
            consumer.transceiver.direction = "inactive"
            self._idle_lines[id(consumer.transceiver)] = _IdleLine(consumer)

    def _take_idle_line(self, producer: Producer) -> _IdleLine | None:
        """An idle m-line of ``producer``'s kind that may carry it now (same codec first)."""
        ready = [
            line
            for line in self._idle_lines.values()
            if line.kind == producer.kind and adapter.can_recycle(line.transceiver)
        ]
        if not ready:
            return None
        wanted = producer.codec.mime_type.lower() if producer.codec is not None else ""
        line = next((x for x in ready if x.mime_type == wanted), ready[0])
        del self._idle_lines[id(line.transceiver)]
        return line

    @property
    def idle_lines(self) -> int:
        """How many m-lines wait for a new consumer (monitoring and tests)."""
        return len(self._idle_lines)

    # -- RtpSink (called by the adapter) -------------------------------------------------------

    def on_receive_parameters(
        self, transceiver: RTCRtpTransceiver, rtp: adapter.NegotiatedRtp
    ) -> None:
        """A receiving m-line is negotiated and connected (aiortc calls this repeatedly)."""
        producer = self.producers.get(rtp.mid)
        if producer is None or producer.closed:
            return
        producer.on_negotiated(rtp)
        if producer.ssrc is not None:
            self._producers_by_ssrc[producer.ssrc] = producer
        if producer.rtx_ssrc is not None:
            self._producers_by_ssrc[producer.rtx_ssrc] = producer
        if self._raw is None:
            self._raw = adapter.raw_transport(transceiver)
        if producer.keyframe_on_connect:  # resumed after a media restart: consumers wait
            producer.keyframe_on_connect = False
            producer.request_keyframe()

    def on_send_parameters(
        self, transceiver: RTCRtpTransceiver, rtp: adapter.NegotiatedRtp
    ) -> None:
        """A sending m-line is negotiated and connected: start its consumer."""
        if self._raw is None:
            self._raw = adapter.raw_transport(transceiver)
        consumer = self._consumers_by_transceiver.get(id(transceiver))
        if consumer is None or consumer.closed:
            return
        try:
            consumer.on_negotiated(rtp, self._raw)
        except Exception as exc:
            logger.warning("consumer %s not started: %s", consumer.id, exc)
            consumer.close()
            return
        if consumer.layers is not None:
            self.allocator.allocate()

    def on_rtp(self, data: bytes, arrival_ms: int) -> None:
        """Route one decrypted RTP packet to its producer (by SSRC, else by mid)."""
        if len(data) < 12:
            self.unknown_packets += 1
            return
        ssrc = int.from_bytes(data[8:12], "big")
        producer = self._producers_by_ssrc.get(ssrc)
        if producer is None:
            producer = self._route_unknown(data, ssrc)
            if producer is None:
                self.unknown_packets += 1
                return
        producer.receive_rtp(data, ssrc, arrival_ms)

    def _route_unknown(self, data: bytes, ssrc: int) -> Producer | None:
        # RFC 8843 §9.2: an unsignalled SSRC is bound to the m-line named by its mid extension.
        try:
            _m, pt, _s, _t, _ss, prof, start, end, _ps, _pe = parse_rtp(data)
        except ValueError:
            return None
        for producer in self.producers.values():
            if not producer.mid_id or not prof:
                continue
            if producer.layers:
                layer = _route_layer(producer, data, start, end, prof, pt)
                if layer is None:
                    layer = self._known_layer(producer, ssrc)
                if layer is None:
                    continue
                self._producers_by_ssrc[ssrc] = layer[0]
                if layer[1]:
                    layer[0].rtx_ssrc = ssrc
                else:
                    layer[0].ssrc = ssrc
                return layer[0]
            try:
                mid = find_extension(data, start, end, prof, producer.mid_id)
            except ValueError:
                return None
            if mid is None or mid.decode(errors="replace") != producer.mid:
                continue
            codec = producer.codec
            if codec is not None and pt == codec.rtx_payload_type:
                producer.rtx_ssrc = ssrc
            elif producer.ssrc is None or codec is None or pt == codec.payload_type:
                producer.ssrc = ssrc
            else:
                return None
            self._producers_by_ssrc[ssrc] = producer
            return producer
        return None

    def _known_layer(self, producer: Producer, ssrc: int) -> tuple[Producer, bool] | None:
        """The layer ``ssrc`` carried on ``producer``'s m-line before (see _forget_producer)."""
        known = self._layer_ssrcs.get(producer.mid, {}).get(ssrc)
        if known is None:
            return None
        layer = producer.layer_for_rid(known[0])
        return (layer, known[1]) if layer is not None else None

    def on_rtcp(self, data: bytes) -> None:
        """Handle one decrypted compound RTCP packet (RFC 3550 §6, RFC 4585 §6)."""
        self.rtcp_received += 1
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            return
        for packet in packets:
            if isinstance(packet, RtcpSrPacket):
                producer = self._producers_by_ssrc.get(packet.ssrc)
                if producer is not None:
                    producer.on_sender_report(
                        packet.sender_info.ntp_timestamp, packet.sender_info.rtp_timestamp
                    )
                self._on_report_blocks(packet.reports)
            elif isinstance(packet, RtcpRrPacket):
                self._on_report_blocks(packet.reports)
            elif isinstance(packet, RtcpPsfbPacket):
                if packet.fmt == RTCP_PSFB_APP and self.consumers:
                    with contextlib.suppress(ValueError):
                        self.allocator.on_remb(unpack_remb_fci(packet.fci)[0])
                elif packet.fmt == RTCP_PSFB_PLI:
                    consumer = self._consumers_by_ssrc.get(packet.media_ssrc)
                    if consumer is not None:
                        self.plis_received += 1
                        consumer.request_keyframe()
                elif packet.fmt == RTCP_PSFB_FIR:
                    # FIR FCI entries (RFC 5104 §4.3.1.1): SSRC(4) seq(1) reserved(3).
                    fci = packet.fci
                    for i in range(0, len(fci) - 7, 8):
                        target = int.from_bytes(fci[i : i + 4], "big")
                        consumer = self._consumers_by_ssrc.get(target)
                        if consumer is not None:
                            self.plis_received += 1
                            consumer.request_keyframe()
            elif isinstance(packet, RtcpRtpfbPacket):
                if packet.fmt == RTCP_RTPFB_NACK:
                    consumer = self._consumers_by_ssrc.get(packet.media_ssrc)
                    if consumer is not None:
                        self.nacks_received += 1
                        consumer.retransmit(packet.lost)
                        if consumer.kind == "video":
                            self.allocator.on_nack(len(packet.lost))
            elif isinstance(packet, RtcpByePacket):
                pass  # the signaling layer ends tracks; BYE alone does not

    def _on_report_blocks(self, reports: list[RtcpReceiverInfo]) -> None:
        # RFC 3550 §6.4.1: report blocks about our consumers' SSRCs carry LSR/DLSR (RTT).
        now = None
        worst_video = -1
        for report in reports:
            consumer = self._consumers_by_ssrc.get(report.ssrc)
            if consumer is not None:
                if now is None:
                    now = adapter.now_ms()
                consumer.on_report_block(report.lsr, report.dlsr, now, report.fraction_lost)
                if consumer.kind == "video" and consumer.packets_sent:
                    worst_video = max(worst_video, report.fraction_lost)
        if worst_video >= 0:
            self.allocator.on_loss(worst_video / 256)

    # -- RTCP we send --------------------------------------------------------------------------

    def _send_rtcp(self, data: bytes) -> None:
        if self._raw is not None:
            self._raw.send_rtcp(data)

    def send_pli(self, producer: Producer) -> None:
        """Send a Picture Loss Indication (RFC 4585 §6.3.1) to the publisher of ``producer``."""
        if producer.ssrc is None:
            return
        packet = RtcpPsfbPacket(
            fmt=RTCP_PSFB_PLI, ssrc=producer.rtcp_ssrc, media_ssrc=producer.ssrc
        )
        self._send_rtcp(bytes(packet))

    def send_nack(self, producer: Producer, lost: list[int]) -> None:
        """Send a Generic NACK (RFC 4585 §6.2.1) for ``lost`` 16-bit sequence numbers."""
        if producer.ssrc is None:
            return
        packet = RtcpRtpfbPacket(
            fmt=RTCP_RTPFB_NACK, ssrc=producer.rtcp_ssrc, media_ssrc=producer.ssrc
        )
        packet.lost = sorted(lost)
        self._send_rtcp(bytes(packet))

    def send_remb(self, producer: Producer, bitrate: int) -> None:
        """Send a REMB (draft-alvestrand-rmcat-remb) estimate in bits/s for ``producer``: the
        most the publisher should send (its own congestion controller may send less)."""
        if producer.ssrc is None:
            return
        self._send_rtcp(remb_packet(producer.rtcp_ssrc, bitrate, [producer.ssrc]))

    def _receiver_reports(self) -> bytes:
        blocks: list[RtcpReceiverInfo] = []
        sender_ssrc = 0
        now = time.monotonic()
        for producer in self._rtp_producers():
            block = producer.report_block(now)
            if block is None:
                continue
            sender_ssrc = producer.rtcp_ssrc
            estimate = producer.loss_estimate(block.fraction_lost, now)
            if estimate is not None:
                self.send_remb(producer, producer.capped_estimate(estimate, now))
            block.fraction_lost = self._proxied_fraction_lost(producer, block.fraction_lost)
            blocks.append(block)
        return b"".join(receiver_reports(sender_ssrc, blocks))

    def _rtp_producers(self) -> list[Producer]:
        """Every producer that receives RTP: one-layer producers and simulcast layers."""
        out: list[Producer] = []
        for producer in list(self.producers.values()):
            if producer.layers:
                out.extend(producer.layers)
            else:
                out.append(producer)
        return out

    def _simulcast_tick(self) -> None:
        # Subscribe side: re-share the bandwidth; publish side: REMB for every simulcast
        # producer (all its layers' SSRCs) and dynacast's delayed layer pauses.
        if any(consumer.layers is not None for consumer in self.consumers.values()):
            self.allocator.allocate()
        now = time.monotonic()
        for producer in list(self.producers.values()):
            if not producer.layers:
                continue
            if producer.dynacast is not None:
                producer.dynacast.update(now)
            self._send_simulcast_remb(producer, now)

    def _send_simulcast_remb(self, producer: Producer, now: float) -> None:
        """REMB for a simulcast producer: the loss-based estimate of its worst layer, listing
        every layer's SSRC (the publisher applies it to the whole track)."""
        ssrcs = [layer.ssrc for layer in producer.layers if layer.ssrc is not None]
        if not ssrcs:
            return
        worst = max(layer.last_fraction_lost for layer in producer.layers)
        bitrate = producer.loss_estimate(worst, now)
        if bitrate is not None:
            self._send_rtcp(remb_packet(producer.layers[0].rtcp_ssrc, bitrate, ssrcs))

    def _on_bandwidth_paused(self, consumer: Consumer, paused: bool) -> None:
        callback = self.on_bandwidth_paused
        if callback is not None:
            callback(consumer, paused)

    def _proxied_fraction_lost(self, producer: Producer, own: int) -> int:
        # Audio loss proxying (sfu/rtp/loss_proxy.py): only Opus producers, only fraction lost.
        codec = producer.codec
        if not self.audio_loss_proxying or codec is None or codec.name != "OPUS":
            return own
        downstream = [consumer.downstream_loss for consumer in producer.consumers]
        return proxied_fraction_lost(own, downstream, adapter.now_ms())

    def _sender_reports(self) -> list[bytes]:
        reports: list[bytes] = []
        for consumer in list(self.consumers.values()):
            sr = consumer.sender_report()
            if sr is not None:
                reports.append(sr)
        return reports

    def _rtcp_step(self, now: float) -> bool:
        """Called by :data:`sfu.ticker.RTCP`; sends the reports once they are due (every
        :meth:`_rtcp_interval` randomised by ±50%). False (stop) once closed."""
        if self.closed:
            return False
        if now < self._next_rtcp_at:
            return True
        self._next_rtcp_at = now + self._rtcp_interval() * (0.5 + random.random())
        try:
            self._send_reports()
        except Exception:  # never let RTCP kill the transport silently
            logger.exception("RTCP reports failed")
        return True

    def _rtcp_interval(self) -> float:
        """The mean interval to the next RTCP report (s): :data:`RTCP_INTERVAL_S` while the
        transport receives anything (its receiver reports and REMB reach publishers each
        second) or sends video, else :data:`RTCP_AUDIO_INTERVAL_S`."""
        if self.producers:
            return RTCP_INTERVAL_S
        for consumer in self.consumers.values():
            if consumer.kind != "audio":
                return RTCP_INTERVAL_S
        return RTCP_AUDIO_INTERVAL_S

    def _send_reports(self) -> None:
        now = adapter.now_ms()
        for producer in self._rtp_producers():
            producer.poll_keyframe_request(now)
        self._simulcast_tick()
        rr = self._receiver_reports()
        if rr:
            self._send_rtcp(rr)
        for sr in self._sender_reports():
            self._send_rtcp(sr)

    # -- close ---------------------------------------------------------------------------------

    async def close(self) -> None:
        """Close every producer and consumer, then the peer connection. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        self._cancel_connect_timer()
        for producer in list(self.producers.values()):
            producer.close()
        for consumer in list(self.consumers.values()):
            consumer.close()
        self._idle_lines.clear()
        self._on_connected.clear()
        self._stop_periodic()
        await self.pc.close()
        self._totals.retire(self.counters())

    def counters(self) -> dict[str, int]:
        """Monitoring counters of the transport itself (names from
        :data:`sfu.stats.COUNTER_NAMES`; its producers and consumers report their own)."""
        raw = self._raw
        # datagrams the compiled fan-out sent on this transport's DTLS (sfu.fastpath) count too
        native = adapter.native_sender(raw) if raw else None
        return {
            "packets_sent": (raw.packets_sent if raw else 0)
            + (int(native.packets_sent) if native is not None else 0),
            "bytes_sent": (raw.bytes_sent if raw else 0)
            + (int(native.bytes_sent) if native is not None else 0),
            "send_dropped": (raw.dropped if raw else 0)
            + (int(native.dropped) if native is not None else 0),
            "nacks_received": self.nacks_received,
            "plis_received": self.plis_received,
            "rtcp_received": self.rtcp_received,
            "packets_dropped": self.unknown_packets,
        }


def _route_layer(
    producer: Producer, data: bytes, start: int, end: int, prof: int, pt: int
) -> tuple[Producer, bool] | None:
    """The simulcast layer of ``producer`` a packet with an unsignalled SSRC belongs to, by its
    mid and ``rtp-stream-id`` (media) or ``repaired-rtp-stream-id`` (RTX) header extension
    (RFC 8852 §3, RFC 8853): (layer, is RTX), or None."""
    try:
        mid = find_extension(data, start, end, prof, producer.mid_id)
        if mid is None or mid.decode(errors="replace") != producer.mid:
            return None
        codec = producer.codec
        rtx = codec is not None and pt == codec.rtx_payload_type
        ext_id = producer.repaired_rid_ext_id if rtx else producer.rid_ext_id
        rid = find_extension(data, start, end, prof, ext_id) if ext_id else None
    except ValueError:
        return None
    if rid is None:
        return None
    layer = producer.layer_for_rid(rid.decode(errors="replace"))
    return (layer, rtx) if layer is not None else None


class _Watchdog:
    """The liveness watchdog of one connected transport (issue 11), called every
    :data:`WATCH_INTERVAL_S` by :data:`sfu.ticker.WATCHDOGS`.

    It closes the transport as failed when its peer has been silent for ``timeout_s``: at each
    step it compares the count of DTLS/SRTP datagrams from the peer. After
    :data:`QUIET_BEFORE_PROBE_S` of quiet it sends STUN consent checks (RFC 7675; answered at
    once by any live ICE agent, even one that sends no media), a new one every
    :data:`PROBE_INTERVAL_S` while the quiet lasts, each sent twice. The path is dead only when
    it has been quiet for ``timeout_s`` and :data:`UNANSWERED_PROBES_BEFORE_FAILURE` checks in
    a row went unanswered: a lossy but live link (20% loss each way loses one check 36% of the
    time) is not torn down. A dead one is closed, which reaches ``on_failed`` as any failure
    does. A peer that sends RTCP at least every 1.5 s (a video receiver) is seldom probed; an
    audio-only browser, which reports every ~5 s, answers a check about every 1.75 s.

    It also keeps RFC 7675's consent freshness in place of aioice's own task (issue 14): a
    check every :data:`CONSENT_INTERVAL_S` (±20%), and the transport fails when none was
    answered for :data:`CONSENT_EXPIRY_S`. The checks are :class:`sfu.consent.ConsentProber`'s:
    no timer or future per check; this step resends and expires them.
    """

    __slots__ = (
        "answers",
        "consent_at",
        "guard",
        "heard_at",
        "key",
        "last_probe_at",
        "misses",
        "next_consent_at",
        "prober",
        "seen",
        "timeout_s",
        "transport",
        "unanswered",
    )

    def __init__(self, transport: WebRtcTransport, timeout_s: float, now: float) -> None:
        self.transport = transport
        self.timeout_s = timeout_s
        self.key = 0
        self.heard_at = now
        self.guard = adapter.ice_input_guard(transport.pc)
        self.seen = self.guard.received if self.guard is not None else None
        self.prober: ConsentProber | None = None
        self.answers = 0  # the prober's answered count at the last step
        self.misses = 0  # the prober's unanswered count at the last step
        self.last_probe_at = now
        self.unanswered = 0
        self.consent_at = now
        self.next_consent_at = now + _consent_interval()

    def stop(self) -> None:
        """Forget the consent checks in flight."""
        if self.prober is not None:
            self.prober.cancel()

    def _fail(self, why: str) -> bool:
        self.transport.media_timed_out = True
        logger.info("%s: closing the transport as failed", why)
        self.stop()
        spawn(self.transport.pc.close())  # its "closed" state reaches on_failed
        return False

    def step(self, now: float) -> bool:
        """One look at the transport (``now``: the loop's clock, s); False once it is done
        (closed, no longer connected, or declared dead)."""
        transport = self.transport
        if transport.closed or transport.pc.connectionState != "connected":
            self.stop()
            return False
        prober = self.prober
        if prober is None:
            prober = self.prober = adapter.consent_prober(transport.pc, take_over=True)
            if prober is None:  # no selected pair yet: nothing to probe on
                return True
            self.answers, self.misses = prober.answered, prober.unanswered
        answered = False
        prober.step(now)
        if prober.answered != self.answers:
            self.answers = prober.answered
            self.consent_at = now
            self.next_consent_at = now + _consent_interval()  # a quiet probe's answer counts
            answered = True
        if prober.unanswered != self.misses:
            self.unanswered += prober.unanswered - self.misses
            self.misses = prober.unanswered
        if now - self.consent_at >= CONSENT_EXPIRY_S:
            return self._fail(f"no consent check answered for {now - self.consent_at:.0f} s")
        if now >= self.next_consent_at:
            self.next_consent_at = now + _consent_interval()
            prober.send(now)
        count = self.guard.received if self.guard is not None else None
        if count != self.seen or answered:
            self.seen, self.heard_at, self.unanswered = count, now, 0
            return True
        quiet = now - self.heard_at
        if quiet < QUIET_BEFORE_PROBE_S:
            return True
        if quiet >= self.timeout_s and self.unanswered >= UNANSWERED_PROBES_BEFORE_FAILURE:
            return self._fail(f"transport silent for {quiet:.1f} s")
        if now - self.last_probe_at >= PROBE_INTERVAL_S or not prober.pending:
            self.last_probe_at = now
            prober.send(now)
        return True


def _consent_interval() -> float:
    """The next consent check's delay (s): RFC 7675 §5.1's 5 s, randomised by ±20%."""
    return CONSENT_INTERVAL_S * (0.8 + 0.4 * random.random())
