"""Producer: one incoming track (RFC 3550 RTP stream) of one participant.

A Producer parses each decrypted RTP packet from its publisher once (``sfu.rtp.header``),
keeps receive statistics for RTCP receiver reports (RFC 3550 §6.4.2), generates NACKs for
missing video packets (RFC 4585 §6.2.1), keeps a loss-based bandwidth estimate that the
transport sends as REMB (``sfu.rtp.bwe``), recovers RTX
retransmissions (RFC 4588) and hands the payload to every Consumer, which only rewrites the
header. Keyframe requests from consumers reach the publisher as PLI (RFC 4585 §6.3.1),
throttled per producer (mediasoup ``KeyFrameRequestManager``).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from aiortc.rtp import RtcpReceiverInfo

from sfu import _aiortc_adapter as adapter
from sfu import fastpath
from sfu.codecs import CodecInfo, codec_info
from sfu.dynacast import Dynacast
from sfu.events import TrackInfo
from sfu.rtp.bitrate import BitrateMeter
from sfu.rtp.bwe import LossBasedEstimator
from sfu.rtp.header import abs_send_time_now, find_extension, parse_rtp
from sfu.rtp.keyframe import KeyframeRequestThrottle, is_keyframe
from sfu.rtp.layers import vp8_keyframe_size
from sfu.rtp.nack import NackGenerator
from sfu.rtp.stats import ReceiveStats

if TYPE_CHECKING:
    from sfu.consumer import Consumer

REMOTE_ESTIMATE_MAX_AGE_S = 5.0
"""A bandwidth estimate reported by another router over a pipe (:mod:`sfu.pipe`) caps this
producer's REMB for this long (s) after it arrived."""


class ProducerTransport(Protocol):
    """What a Producer needs from the transport its media arrives on: a
    :class:`sfu.transport.WebRtcTransport` (a publisher) or a :class:`sfu.pipe.PipeTransport`
    (a producer piped from another router)."""

    def send_pli(self, producer: Producer) -> None:
        """Send a PLI (RFC 4585 §6.3.1) upstream for ``producer``."""

    def send_nack(self, producer: Producer, lost: list[int]) -> None:
        """Send a Generic NACK (RFC 4585 §6.2.1) upstream for ``lost`` sequence numbers."""

    def adopt_producer(self, producer: Producer) -> None:
        """Route the media of the (resumed) ``producer`` to it."""


class Producer:
    """One published track.

    Attributes:
        id: track sid (``TR_...``), unique per server process.
        participant_sid: the publishing participant.
        kind: ``"audio"`` or ``"video"``; ``source``: microphone/camera/screen/...
        mid: the m-line of the publisher's publish transport.
        ssrc, rtx_ssrc: the publisher's SSRCs once known (signalled or learnt from the mid
            header extension), else None.
        codec: the negotiated :class:`CodecInfo` once the m-line is connected.
        consumers: the consumers currently fed by this producer.
        paused: True while muted (forwarding stops; consumers keep their state).
        packets_received, bytes_received, packets_forwarded: counters.
    """

    def __init__(
        self,
        *,
        transport: ProducerTransport,
        participant_sid: str,
        mid: str,
        kind: str,
        source: str = "unknown",
        name: str = "",
        keyframe_min_interval_ms: int = 500,
        max_bitrate_bps: int = 3_000_000,
        nack_buffer_packets: int = 512,
        producer_id: str | None = None,
    ) -> None:
        self.id = producer_id or "TR_" + secrets.token_urlsafe(9)
        self.transport = transport
        self.participant_sid = participant_sid
        self.mid = mid
        self.kind = kind
        self.source = source
        self.name = name
        self.ssrc: int | None = None
        self.rtx_ssrc: int | None = None
        self.codec: CodecInfo | None = None
        self.rtcp_ssrc = 0
        self.consumers: list[Consumer] = []
        # The compiled fan-out (sfu.fastpath) or None: its consumers are forwarded in one call.
        self.fanout: Any = fastpath.new_fanout(kind, nack_buffer_packets)
        self.paused = False
        self.closed = False
        self.stats: ReceiveStats | None = None
        self.nack: NackGenerator | None = None
        self.keyframes = KeyframeRequestThrottle(keyframe_min_interval_ms)
        self.bwe: LossBasedEstimator | None = None
        self.max_bitrate_bps = max_bitrate_bps
        self.last_bwe_update: float | None = None
        self.audio_level_id = 0
        self.mid_id = 0
        self.packets_received = 0
        self.bytes_received = 0
        self.packets_forwarded = 0
        self.packets_dropped = 0
        self.rtx_received = 0
        self.nacks_sent = 0
        self.plis_sent = 0
        self.keyframes_received = 0
        # Last sender report from the publisher: (ntp 64-bit, rtp ts, local monotonic s).
        self.last_sr: tuple[int, int, float] | None = None
        self.audio_level: int | None = None  # RFC 6464 level (-dBov, 0..127) of last packet
        # Sum and count of levels since the active speaker observer last looked.
        self.level_sum = 0
        self.level_count = 0
        self.last_arrival_ms = 0  # aiortc clock (ms) of the last packet from the publisher
        self.keyframe_on_connect = False  # ask for a keyframe once the m-line is connected
        # Bandwidth estimates (bits/s, monotonic s) reported by routers this producer is
        # piped to, keyed by pipe consumer id (sfu.pipe): they cap the REMB we send.
        self.remote_estimates: dict[str, tuple[int, float]] = {}
        self._on_unconsumed: list[Callable[[Producer], None]] = []
        self._nack_timer: asyncio.TimerHandle | None = None
        self._on_close: list[Callable[[Producer], None]] = []
        # Simulcast (RFC 8853): a parent has one child producer per layer, lowest first; a
        # child's ``consumers`` are layer taps (sfu.rtp.layers), its ``rid`` names it.
        self.layers: list[Producer] = []
        self.parent: Producer | None = None
        self.rid: str | None = None
        self.rid_ext_id = 0
        self.repaired_rid_ext_id = 0
        self.frame_width = 0  # from the last VP8 keyframe of this (layer) producer, pixels
        self.frame_height = 0
        self.bitrate = BitrateMeter()
        self.last_fraction_lost = 0  # of our last receiver report (1/256 units)
        self.dynacast: Dynacast | None = None
        # receive_rtp's cache of the consumers not on the compiled path (_python_consumers)
        self._py_key: tuple[int, list[Consumer]] | None = None
        self._py_consumers: list[Consumer] = []

    # -- negotiation ---------------------------------------------------------------------

    def on_negotiated(self, rtp: adapter.NegotiatedRtp) -> None:
        """Record the negotiated codec, SSRCs and header extension ids (idempotent)."""
        if self.codec is None:
            self.codec = codec_info(rtp.codecs)
            self.stats = ReceiveStats(self.codec.clock_rate)
            if self.kind == "video":
                self.nack = NackGenerator()
            if self.kind == "video" and self.rid is None:
                self.bwe = LossBasedEstimator(
                    start_bps=min(1_000_000, self.max_bitrate_bps),
                    min_bps=min(100_000, self.max_bitrate_bps),
                    max_bps=self.max_bitrate_bps,
                )
        if self.layers:
            for layer in self.layers:
                layer.on_negotiated(rtp)
            if self.bwe is not None and self.last_bwe_update is None:
                self.bwe.estimate_bps = float(self.bwe.max_bps)  # all layers from the start
        elif rtp.ssrc is not None and self.rid is None:
            self.ssrc = rtp.ssrc
        if rtp.rtx_ssrc is not None and not self.layers and self.rid is None:
            self.rtx_ssrc = rtp.rtx_ssrc
        self.rtcp_ssrc = rtp.rtcp_ssrc
        self.audio_level_id = rtp.header_extensions.get(adapter.URI_AUDIO_LEVEL, 0)
        self.mid_id = rtp.header_extensions.get(adapter.URI_MID, 0)

    def counters(self) -> dict[str, int]:
        """Monitoring counters (names from :data:`sfu.stats.COUNTER_NAMES`); a simulcast
        producer's are the sums over its layers."""
        if self.layers:
            total: dict[str, int] = {}
            for layer in self.layers:
                for name, value in layer.counters().items():
                    total[name] = total.get(name, 0) + value
            return total
        return {
            "packets_received": self.packets_received,
            "bytes_received": self.bytes_received,
            "packets_forwarded": self.packets_forwarded,
            "packets_dropped": self.packets_dropped,
            "rtx_received": self.rtx_received,
            "nacks_sent": self.nacks_sent,
            "plis_sent": self.plis_sent,
            "keyframes_received": self.keyframes_received,
        }

    def info(self) -> TrackInfo:
        """This track as other participants see it."""
        return TrackInfo(
            sid=self.id, kind=self.kind, source=self.source, name=self.name, muted=self.paused
        )

    # -- the hot path ---------------------------------------------------------------------

    def receive_rtp(self, data: bytes, ssrc: int, arrival_ms: int) -> None:
        """Handle one decrypted RTP packet from the publisher and forward it.

        ``data`` is the complete plaintext packet (RFC 3550 §5.1), ``arrival_ms`` aiortc's
        clock in ms. Malformed packets are counted in ``packets_dropped`` and ignored.
        """
        codec = self.codec
        if codec is None or self.closed:
            return
        try:
            marker, pt, seq, ts, _ssrc, prof, ext_start, ext_end, start, end = parse_rtp(data)
        except ValueError:
            self.packets_dropped += 1
            return
        self.packets_received += 1
        self.last_arrival_ms = arrival_ms
        self.bytes_received += len(data)
        extra: bytes | None = None
        if prof and self.audio_level_id:
            try:
                extra = find_extension(data, ext_start, ext_end, prof, self.audio_level_id)
            except ValueError:  # an element overruns its block: drop, never raise
                self.packets_dropped += 1
                return
            if extra is not None and len(extra) == 1:
                level = extra[0] & 0x7F
                self.audio_level = level
                self.level_sum += level
                self.level_count += 1
            else:
                extra = None
        if ssrc == self.rtx_ssrc:
            # RFC 4588 §4: the payload starts with the original sequence number.
            if end - start < 2 or pt != codec.rtx_payload_type:
                self.packets_dropped += 1
                return
            self.rtx_received += 1
            seq = (data[start] << 8) | data[start + 1]
            start += 2
            if end == start:  # padding-only RTX probe
                return
            nack = self.nack
            if nack is None or not nack.on_packet(seq, arrival_ms):
                return  # not missing: a duplicate
        elif pt != codec.payload_type:
            self.packets_dropped += 1
            return
        else:
            nack = self.nack
            if nack is not None:
                nack.on_packet(seq, arrival_ms)
                if self._nack_timer is None and nack.pending:
                    self._schedule_nack(0.0)
        stats = self.stats
        if stats is not None:
            stats.on_packet(seq, ts, arrival_ms)

        if end - start <= 0:
            return  # padding-only packet (bandwidth probe): nothing to forward
        keyframe = False
        payload: bytes | None = None
        if self.kind == "video":
            payload = data[start:end]
            keyframe = is_keyframe(codec.name, payload)
            if keyframe:
                self.keyframes_received += 1
                self.keyframes.on_keyframe()
                if self.rid is not None:
                    self._on_layer_keyframe(payload)
            extra = abs_send_time_now(time.time())
        if self.paused:
            return
        consumers = self.consumers
        count = len(consumers)
        fanout = self.fanout
        if fanout is not None:
            fanout.forward(data, start, end, marker, seq, ts, extra, keyframe)
            if len(fanout) == count:  # every consumer is on the compiled path
                self.packets_forwarded += count
                return
            consumers = self._python_consumers(len(fanout))
        if payload is None:
            payload = data[start:end]
        for consumer in consumers:
            consumer.forward(marker, seq, ts, payload, extra, keyframe)
        self.packets_forwarded += count

    def _python_consumers(self, native_count: int) -> list[Consumer]:
        # The consumers the compiled fan-out does not serve (a pipe consumer, a simulcast
        # consumer, a layer tap), so that one of them does not cost a Python call per packet
        # for every compiled consumer too. Recomputed when the consumer list or the number of
        # compiled consumers changes (a consumer joins or leaves the compiled path only by
        # attaching or detaching, which changes that number).
        if self._py_key is not None and self._py_key[0] == native_count:
            if self._py_key[1] == self.consumers:  # C-speed, identity first
                return self._py_consumers
        self._py_key = (native_count, list(self.consumers))
        self._py_consumers = [c for c in self.consumers if not getattr(c, "native", False)]
        return self._py_consumers

    # -- simulcast (RFC 8853) ---------------------------------------------------------------

    def enable_simulcast(self, rids: Iterable[str], rid_ext_id: int, repaired_ext_id: int) -> None:
        """Make this video producer a simulcast parent with one child producer per rid
        (lowest resolution first). Packets are bound to a layer by the ``rtp-stream-id`` (media)
        or ``repaired-rtp-stream-id`` (RTX) header extension with ids ``rid_ext_id`` /
        ``repaired_ext_id`` (RFC 8852). Idempotent for the same rids."""
        rids = list(rids)
        if [layer.rid for layer in self.layers] == rids:
            return
        self.rid_ext_id = rid_ext_id
        self.repaired_rid_ext_id = repaired_ext_id
        for rid in rids:
            child = Producer(
                transport=self.transport,
                participant_sid=self.participant_sid,
                mid=self.mid,
                kind=self.kind,
                source=self.source,
                name=self.name,
                keyframe_min_interval_ms=self.keyframes.min_interval_ms,
                max_bitrate_bps=self.max_bitrate_bps,
            )
            child.id = f"{self.id}:{rid}"
            child.rid = rid
            child.parent = self
            self.layers.append(child)
        if self.codec is not None:
            for child in self.layers:
                child.codec = self.codec
                child.stats = ReceiveStats(self.codec.clock_rate)
                child.nack = NackGenerator()
                child.rtcp_ssrc = self.rtcp_ssrc
                child.mid_id = self.mid_id
            if self.bwe is not None:
                self.bwe.estimate_bps = float(self.bwe.max_bps)
        self.dynacast = Dynacast(self)

    def layer_for_rid(self, rid: str) -> Producer | None:
        """The child producer of layer ``rid``, or None."""
        for layer in self.layers:
            if layer.rid == rid:
                return layer
        return None

    def _on_layer_keyframe(self, payload: bytes) -> None:
        codec = self.codec
        if codec is not None and codec.name == "VP8":
            size = vp8_keyframe_size(payload)
            if size is not None:
                self.frame_width, self.frame_height = size

    # -- feedback to the publisher ------------------------------------------------------------

    def _schedule_nack(self, delay_s: float) -> None:
        loop = asyncio.get_running_loop()
        self._nack_timer = loop.call_later(delay_s, self._send_nacks)

    def _send_nacks(self) -> None:
        self._nack_timer = None
        nack = self.nack
        if nack is None or self.closed or self.ssrc is None:
            return
        lost = nack.missing(adapter.now_ms())
        if lost:
            self.nacks_sent += 1
            self.transport.send_nack(self, lost)
        if nack.pending:
            self._schedule_nack(0.02)

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe (PLI), at most once per throttle interval; a
        request inside the interval is sent when the interval ends (unless a keyframe came).
        A simulcast parent asks every layer that is being sent."""
        if self.layers:
            for layer in self.layers:
                layer.request_keyframe()
            return
        if self.kind != "video" or self.closed or self.ssrc is None:
            return
        if self.keyframes.should_request(adapter.now_ms()):
            self.plis_sent += 1
            self.transport.send_pli(self)

    def poll_keyframe_request(self, now_ms: int) -> None:
        """Called periodically by the transport: send a deferred keyframe request if due."""
        if self.ssrc is not None and self.keyframes.pending_due(now_ms):
            self.plis_sent += 1
            self.transport.send_pli(self)

    def on_sender_report(self, ntp: int, rtp_ts: int) -> None:
        """Record the publisher's RTCP SR (RFC 3550 §6.4.1): NTP 64-bit and RTP timestamp."""
        self.last_sr = (ntp, rtp_ts, time.monotonic())

    def report_block(self, now_s: float) -> RtcpReceiverInfo | None:
        """This producer's RR report block (RFC 3550 §6.4.1) for the interval since the last
        one, or None before its first packet. ``fraction_lost`` (1/256 units) is also kept in
        :attr:`last_fraction_lost`; the caller feeds it to :meth:`loss_estimate`. LSR/DLSR
        come from the publisher's last SR, DLSR measured at ``now_s`` (monotonic s)."""
        stats = self.stats
        if stats is None or self.ssrc is None or not stats.packets:
            return None
        fraction, lost, highest, jitter = stats.report()
        self.last_fraction_lost = fraction
        lsr = dlsr = 0
        if self.last_sr is not None:
            ntp, _rtp, at = self.last_sr
            lsr = (ntp >> 16) & 0xFFFFFFFF
            dlsr = int((now_s - at) * 65536) & 0xFFFFFFFF
        return RtcpReceiverInfo(
            ssrc=self.ssrc,
            fraction_lost=fraction,
            packets_lost=lost,
            highest_sequence=highest & 0xFFFFFFFF,
            jitter=jitter,
            lsr=lsr,
            dlsr=dlsr,
        )

    def loss_estimate(self, fraction_lost: int, now_s: float) -> int | None:
        """Feed the loss-based estimator (:mod:`sfu.rtp.bwe`) one report's ``fraction_lost``
        (1/256 units) at ``now_s`` (monotonic s); returns its estimate in bits/s, or None for
        a producer without one (audio)."""
        if self.bwe is None:
            return None
        last = self.last_bwe_update
        self.last_bwe_update = now_s
        return self.bwe.update(fraction_lost / 256, now_s - last if last else 0.0, now_s)

    # -- media restart (issue 11) ------------------------------------------------------------

    def suspend(self) -> None:
        """The publish transport failed: keep this producer (its track sid, its consumers and
        their outgoing SSRC, sequence numbers and timestamps) until :meth:`resume` binds it to
        the m-line of a new transport. The publisher's old SSRCs are forgotten; every consumer
        marks a gap (its next packet continues its sequence numbers, with timestamps advanced
        by the time the gap lasted, and video waits for a keyframe)."""
        if self.closed:
            return
        if self._nack_timer is not None:
            self._nack_timer.cancel()
            self._nack_timer = None
        self.ssrc = None
        self.rtx_ssrc = None
        self.last_sr = None
        for layer in self.layers:
            layer.ssrc = layer.rtx_ssrc = layer.last_sr = None
        # The gap began with the last packet, not now (the failure is found seconds later):
        # the consumers' timestamps must advance by the whole gap, or the subscribers'
        # jitter buffers take the first packets after it for late ones.
        silent_s = 0.0
        if self.last_arrival_ms:
            silent_s = max(0.0, (adapter.now_ms() - self.last_arrival_ms) / 1000)
        if not self.paused:  # a muted producer's consumers are in a gap already
            for consumer in self.consumers:
                consumer.on_producer_gap(True, silent_s)

    def resume(self, transport: ProducerTransport, mid: str, rtp: adapter.NegotiatedRtp) -> None:
        """Bind this suspended producer to m-line ``mid`` of ``transport`` (the publisher's new
        RTCPeerConnection): the new SSRCs, payload types and header extension ids come from
        ``rtp``; receive statistics, NACK state and bandwidth estimate start afresh; consumers
        continue their own streams (:meth:`suspend`).

        Raises:
            ValueError: when the new m-line's codec is not the one consumers were negotiated
                for (different MIME type or clock rate): the caller publishes a new track.
        """
        codec = codec_info(rtp.codecs)
        old = self.codec
        if old is not None and (
            codec.mime_type.lower() != old.mime_type.lower() or codec.clock_rate != old.clock_rate
        ):
            raise ValueError(f"codec changed from {old.mime_type} to {codec.mime_type}")
        self.transport = transport
        self.mid = mid
        if self.fanout is not None:
            self.fanout.clear_buffer()  # the originals of the old SSRC's sequence numbers
        self.codec = None  # on_negotiated starts statistics, NACK and estimator afresh
        self.on_negotiated(rtp)
        self.keyframes = KeyframeRequestThrottle(self.keyframes.min_interval_ms)
        self.last_bwe_update = None
        self.keyframe_on_connect = self.kind == "video"  # consumers wait for one
        for layer in self.layers:
            layer.transport = transport
            layer.mid = mid
            layer.codec = self.codec
            layer.stats = ReceiveStats(self.codec.clock_rate) if self.codec else None
            layer.nack = NackGenerator()
            layer.keyframes = KeyframeRequestThrottle(self.keyframes.min_interval_ms)
        transport.adopt_producer(self)
        if not self.paused:  # else the gap ends when the producer is unmuted
            for consumer in self.consumers:
                consumer.on_producer_gap(False)

    # -- consumers and remote estimates (sfu.pipe) ------------------------------------------

    def remove_consumer(self, consumer: Consumer) -> None:
        """Detach ``consumer`` (it closed); when it was the last one, run the callbacks
        registered with :meth:`on_unconsumed`."""
        if consumer in self.consumers:
            self.consumers.remove(consumer)
            if not self.consumers and not self.closed:
                for callback in list(self._on_unconsumed):
                    callback(self)

    def on_unconsumed(self, callback: Callable[[Producer], None]) -> None:
        """Run ``callback`` each time the last consumer of this producer goes (a piped
        producer closes its pipe then, :mod:`sfu.pipe`)."""
        self._on_unconsumed.append(callback)

    def capped_estimate(self, bitrate_bps: int, now_s: float | None = None) -> int:
        """``bitrate_bps`` (our own estimate, bits/s) capped by every fresh estimate another
        router reported over a pipe (:data:`REMOTE_ESTIMATE_MAX_AGE_S`): the REMB the publisher
        gets then reflects subscribers on every router."""
        if not self.remote_estimates:
            return bitrate_bps
        now = time.monotonic() if now_s is None else now_s
        for bps, at in self.remote_estimates.values():
            if now - at <= REMOTE_ESTIMATE_MAX_AGE_S and bps < bitrate_bps:
                bitrate_bps = bps
        return bitrate_bps

    # -- mute and close ---------------------------------------------------------------------

    def set_paused(self, paused: bool) -> None:
        """Pause (mute) or resume forwarding; on resume every video consumer waits for a
        keyframe, which is requested."""
        if paused == self.paused:
            return
        self.paused = paused
        for consumer in self.consumers:
            consumer.on_producer_paused(paused)
        if not paused:
            self.request_keyframe()

    def on_close(self, callback: Callable[[Producer], None]) -> None:
        """Register a callback run once when the producer closes."""
        self._on_close.append(callback)

    def close(self) -> None:
        """Close the producer and every consumer of it. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        if self._nack_timer is not None:
            self._nack_timer.cancel()
            self._nack_timer = None
        for layer in self.layers:
            layer.consumers.clear()  # layer taps: the consumers close below
            layer.close()
        for consumer in list(self.consumers):
            consumer.close()
        self.consumers.clear()
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            callback(self)
