"""Consumer: one outgoing copy of a Producer to one subscriber (RFC 7667 §3.7 media-switching
mixer / SFU topology).

Per packet a Consumer only rewrites the 12-byte RTP header (SSRC, sequence number, timestamp,
payload type, RFC 3550 §5.1) and the header-extension block (the subscriber's negotiated ids
and its mid, RFC 8285 and RFC 8843), then hands the packet to its transport, which
SRTP-protects and sends it synchronously. There is no per-consumer task, queue or RtpPacket
object on this path. When the compiled fan-out is in use (:mod:`sfu.fastpath`) the producer's
``FanOut`` does the same for all its consumers in one call and :meth:`Consumer.forward` is
bypassed; the Consumer then only pushes its state to native memory on control events.
Sequence/timestamp continuity across pauses and producer restarts is the
:class:`sfu.rtp.munger.RtpMunger`'s job (mediasoup ``SeqManager``, LiveKit ``rtpmunger``).

Video consumers keep a retransmission buffer of the packets they sent and answer the
subscriber's NACKs from it, as RTX (RFC 4588) when negotiated. A NACK cannot amplify: its
sequence numbers are deduplicated and capped (:data:`MAX_NACK_SEQS`), a packet is resent at
most once per round-trip time (measured from the subscriber's receiver reports), and the
retransmissions share a budget proportional to the media sent (:mod:`sfu.rtp.rtx_budget`).
"""

from __future__ import annotations

import secrets
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiortc.rtp import RtcpSenderInfo, RtcpSrPacket

from sfu import _aiortc_adapter as adapter
from sfu import fastpath
from sfu.codecs import CodecInfo, match_codec
from sfu.errors import UnsupportedCodecError
from sfu.rtp.layers import LayerForwarder
from sfu.rtp.loss_proxy import DownstreamLoss
from sfu.rtp.munger import RtpMunger
from sfu.rtp.rtt import RttEstimator
from sfu.rtp.rtx_budget import RetransmissionBudget
from sfu.rtp.rtx_buffer import RetransmissionBuffer, rtx_wrap

if TYPE_CHECKING:
    from aiortc import RTCRtpTransceiver

    from sfu.producer import Producer
    from sfu.transport import WebRtcTransport

_HDR = struct.Struct("!BBHII")
_NTP_FRACTION = 1 << 32

MAX_NACK_SEQS = 128
"""Distinct sequence numbers honoured per NACK (RFC 4585 §6.2.1); the rest are ignored."""


def _one_byte_ext(mid_id: int, mid: bytes, extra_id: int, extra_len: int) -> tuple[bytes, bytes]:
    """(prefix, padding) of an RFC 8285 one-byte extension block holding the mid element and,
    when ``extra_id``, one more element of ``extra_len`` bytes placed between them."""
    body = 0
    prefix_elems = b""
    if mid_id and mid:
        prefix_elems = bytes([(mid_id << 4) | (len(mid) - 1)]) + mid
        body += len(prefix_elems)
    if extra_id:
        body += 1 + extra_len
    words = (body + 3) // 4
    pad = b"\x00" * (words * 4 - body)
    prefix = struct.pack("!HH", 0xBEDE, words) + prefix_elems
    if extra_id:
        prefix += bytes([(extra_id << 4) | (extra_len - 1)])
    return prefix, pad


class Consumer:
    """One producer forwarded to one subscriber transport.

    Attributes:
        id: consumer id (``CO_...``).
        producer: the :class:`Producer` it copies.
        transport: the subscriber's :class:`WebRtcTransport`.
        transceiver: the aiortc transceiver (our m-line) carrying it.
        ssrc, rtx_ssrc: our SSRCs on the subscriber's transport (announced in SDP).
        mid: the m-line's mid once negotiated.
        codec: the codec with the payload types negotiated on the subscriber's transport.
        paused: subscriber-side pause; ``active`` is True only when negotiated, connected and
            neither side is paused.
        packets_sent, bytes_sent (payload bytes), retransmissions, keyframe_requests: counters.
        downstream_loss: the subscriber's latest reported fraction lost for our SSRC.
    """

    __slots__ = (
        "_bytes_sent",
        "_extra_id",
        "_gap_started",
        "_native",
        "_on_close",
        "_packets_sent",
        "_plain_prefix",
        "_pt",
        "_raw",
        "_send_rtp",
        "_ts_offset",
        "_wait_keyframe",
        "_x_pad",
        "_x_prefix",
        "active",
        "closed",
        "codec",
        "downstream_loss",
        "id",
        "keyframe_requests",
        "kind",
        "layers",
        "mid",
        "munger",
        "paused",
        "producer",
        "retransmissions",
        "rtt",
        "rtx_budget",
        "rtx_buffer",
        "rtx_seq",
        "rtx_ssrc",
        "ssrc",
        "transceiver",
        "transport",
    )

    def __init__(
        self,
        producer: Producer,
        transport: WebRtcTransport,
        transceiver: RTCRtpTransceiver,
        *,
        nack_buffer_packets: int = 512,
    ) -> None:
        self.id = "CO_" + secrets.token_urlsafe(9)
        self.producer = producer
        self.transport = transport
        self.transceiver = transceiver
        self.kind = producer.kind
        self.ssrc, self.rtx_ssrc = adapter.sender_ssrcs(transceiver)
        self.mid: str | None = None
        self.codec: CodecInfo | None = None
        self.paused = False
        self.active = False
        self.closed = False
        self.munger: RtpMunger | Any = RtpMunger()  # a NativeConsumer on the compiled path
        self._native: Any = None  # sfu._fastpath.NativeConsumer once attached
        self._raw: adapter.RawRtpTransport | None = None
        self.rtx_buffer: RetransmissionBuffer[bytes] | None = (
            RetransmissionBuffer(nack_buffer_packets) if self.kind == "video" else None
        )
        self.rtx_seq = secrets.randbits(15)
        self.rtt = RttEstimator()
        self.downstream_loss = DownstreamLoss()
        self.rtx_budget = RetransmissionBudget()
        self._wait_keyframe = self.kind == "video"
        self._packets_sent = 0
        self._bytes_sent = 0
        self.retransmissions = 0
        self.keyframe_requests = 0
        self._pt = 0
        self._send_rtp: Callable[[bytes], None] | None = None
        self._plain_prefix: bytes | None = None
        self._x_prefix = b""
        self._x_pad = b""
        self._extra_id = 0
        self._ts_offset = 0  # out_ts - in_ts (mod 2^32), constant between resyncs
        self._gap_started: float | None = None
        self._on_close: list[Callable[[Consumer], None]] = []
        # Simulcast: the layer this subscriber gets (sfu.rtp.layers); None for one-layer tracks.
        self.layers: LayerForwarder | None = (
            LayerForwarder(self, producer) if producer.layers else None
        )

    @property
    def packets_sent(self) -> int:
        """RTP packets forwarded to the subscriber (retransmissions not counted)."""
        native = self._native
        return self._packets_sent if native is None else int(native.packets_sent)

    @property
    def bytes_sent(self) -> int:
        """RTP payload bytes forwarded to the subscriber."""
        native = self._native
        return self._bytes_sent if native is None else int(native.bytes_sent)

    @property
    def wait_keyframe(self) -> bool:
        """True while a video consumer drops packets until one that starts a keyframe."""
        native = self._native
        return self._wait_keyframe if native is None else bool(native.wait_keyframe)

    @wait_keyframe.setter
    def wait_keyframe(self, value: bool) -> None:
        self._wait_keyframe = value
        if self._native is not None:
            self._native.wait_keyframe = value

    @property
    def native(self) -> bool:
        """True when this consumer is forwarded by the compiled path (:mod:`sfu.fastpath`)."""
        return self._native is not None

    # -- negotiation ---------------------------------------------------------------------------

    def on_negotiated(self, rtp: adapter.NegotiatedRtp, raw: adapter.RawRtpTransport) -> None:
        """The m-line is negotiated and its transport connected: learn the payload types and
        header extension ids, then start forwarding (video waits for a keyframe, requested).

        Raises:
            UnsupportedCodecError: when the subscriber did not accept the producer's codec.
        """
        producer_codec = self.producer.codec
        if producer_codec is None:
            raise UnsupportedCodecError("producer has no codec yet")
        codec = match_codec(rtp.codecs, producer_codec)
        if codec is None:
            raise UnsupportedCodecError(
                f"subscriber did not accept {producer_codec.mime_type} for {self.producer.id}"
            )
        first = self.codec is None
        self.codec = codec
        self.mid = rtp.mid
        self._pt = codec.payload_type
        self._send_rtp = raw.send_rtp
        mid_id = rtp.header_extensions.get(adapter.URI_MID, 0)
        mid = rtp.mid.encode()
        if not 1 <= len(mid) <= 16:
            mid_id = 0
        if self.kind == "audio":
            extra_id, extra_len = rtp.header_extensions.get(adapter.URI_AUDIO_LEVEL, 0), 1
        else:
            extra_id, extra_len = rtp.header_extensions.get(adapter.URI_ABS_SEND_TIME, 0), 3
        self._extra_id = extra_id
        if mid_id or extra_id:
            self._plain_prefix, plain_pad = _one_byte_ext(mid_id, mid, 0, 0)
            self._plain_prefix += plain_pad
            if not mid_id:
                self._plain_prefix = None
            self._x_prefix, self._x_pad = _one_byte_ext(mid_id, mid, extra_id, extra_len)
        else:
            self._plain_prefix = None
        self._attach_native(raw)
        self._update_active()
        if first and self.kind == "video":
            self.request_keyframe()

    def _attach_native(self, raw: adapter.RawRtpTransport) -> None:
        # The compiled path (sfu.fastpath): the producer's FanOut forwards to this consumer
        # from now on, continuing this consumer's munger state; the per-consumer extension
        # block is (re)configured at every negotiation.
        fanout = self.producer.fanout
        if fanout is None or self.closed or self.layers is not None:
            # a simulcast consumer stays on the Python path: its LayerForwarder switches
            # layers on keyframes with the Python munger (sfu.rtp.layers)
            return
        native = self._native
        self._raw = raw
        if native is None:
            sender = fastpath.sender_for(raw)
            if sender is None:
                return  # not a real transport (tests) or not connected: the Python path
            native = fanout.add(sender, self.ssrc, 0, 0)
            native.load_state(self.munger.export_state())
            native.wait_keyframe = self._wait_keyframe
            self._native = native
            self.munger = native
        native.configure(
            self._pt,
            self._x_prefix,
            self._x_pad,
            self._plain_prefix,
            self._extra_id,
        )

    def _detach_native(self) -> None:
        native = self._native
        if native is None:
            return
        fanout = self.producer.fanout
        if fanout is not None:
            fanout.remove(native)
        native.active = False
        self._packets_sent = int(native.packets_sent)
        self._bytes_sent = int(native.bytes_sent)
        self._wait_keyframe = bool(native.wait_keyframe)
        self.munger = RtpMunger.from_state(native.export_state())
        self._ts_offset = int(native.ts_offset)
        self._native = None

    def _update_active(self) -> None:
        self.active = (
            self._send_rtp is not None
            and not self.closed
            and not self.paused
            and not self.producer.paused
        )
        if self._native is not None:
            self._native.active = self.active

    # -- the hot path --------------------------------------------------------------------------

    def forward(
        self,
        marker: bool,
        seq: int,
        ts: int,
        payload: bytes,
        extra: bytes | None,
        keyframe: bool,
    ) -> None:
        """Rewrite one producer packet for this subscriber and send it.

        ``seq`` (16-bit) and ``ts`` (32-bit, RTP clock ticks) are the producer's; ``payload`` the
        RTP payload without padding; ``extra`` the shared value of this packet's audio-level
        (1 byte, RFC 6464) or abs-send-time (3 bytes) element; ``keyframe`` True when this
        packet starts a video keyframe.
        """
        if not self.active or self._native is not None:
            return
        if self._wait_keyframe:
            if not keyframe:
                return
            self._wait_keyframe = False
        mapped = self.munger.munge(seq, ts)
        if mapped is None:
            return
        out_seq, out_ts = mapped
        self._ts_offset = (out_ts - ts) & 0xFFFFFFFF
        if extra is not None and self._extra_id:
            packet = b"".join(
                (
                    _HDR.pack(0x90, (0x80 if marker else 0) | self._pt, out_seq, out_ts, self.ssrc),
                    self._x_prefix,
                    extra,
                    self._x_pad,
                    payload,
                )
            )
        elif self._plain_prefix is not None:
            packet = b"".join(
                (
                    _HDR.pack(0x90, (0x80 if marker else 0) | self._pt, out_seq, out_ts, self.ssrc),
                    self._plain_prefix,
                    payload,
                )
            )
        else:
            packet = (
                _HDR.pack(0x80, (0x80 if marker else 0) | self._pt, out_seq, out_ts, self.ssrc)
                + payload
            )
        self._send_rtp(packet)  # type: ignore[misc]
        if self.rtx_buffer is not None:
            self.rtx_buffer.store(out_seq, packet)
        self._packets_sent += 1
        self._bytes_sent += len(payload)

    # -- feedback from the subscriber ----------------------------------------------------------

    def retransmit(self, lost: list[int], now_ms: int | None = None) -> int:
        """Answer a Generic NACK (RFC 4585 §6.2.1) for our outgoing sequence numbers ``lost``
        from the retransmission buffer: as RTX (RFC 4588) when negotiated, else the same packet
        again. Returns how many packets were resent.

        Repeated sequence numbers count once and at most :data:`MAX_NACK_SEQS` distinct ones
        are honoured; a packet already resent within the round-trip time (``self.rtt``) is not
        resent again, and nothing is resent once the retransmission budget (``self.rtx_budget``)
        is spent. ``now_ms`` is aiortc's millisecond clock (``adapter.now_ms()`` when None).
        """
        buffer = self.rtx_buffer
        send = self._send_rtp
        if buffer is None or send is None or self.closed:
            return 0
        if now_ms is None:
            now_ms = adapter.now_ms()
        rtx_pt = self.codec.rtx_payload_type if self.codec is not None else None
        budget = self.rtx_budget
        budget.refill(self.packets_sent)
        rtt_ms = self.rtt.rtt_ms
        native = self._native
        seen: set[int] = set()
        sent = 0
        for seq in lost:
            if seq in seen:
                continue
            if len(seen) >= MAX_NACK_SEQS:
                break
            seen.add(seq)
            if not budget.has_token():
                break
            if native is not None:
                # Compiled path: the producer keeps the originals once; rebuild this
                # consumer's packet from it (None when evicted or from before a resync).
                rebuilt = native.rebuild(seq)
                if rebuilt is None:
                    continue
                buffer.store(seq, rebuilt)
            packet = buffer.take_for_resend(seq, now_ms, rtt_ms)
            if packet is None:
                continue
            budget.spend()
            if rtx_pt is not None:
                self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
                send(rtx_wrap(packet, self.rtx_ssrc, self.rtx_seq, rtx_pt))
            elif native is not None:
                native.sender.send(packet)  # the media SSRC's one SRTP context
            else:
                send(packet)
            sent += 1
        self.retransmissions += sent
        return sent

    def on_report_block(
        self, lsr: int, dlsr: int, now_ms: int | None = None, fraction_lost: int = 0
    ) -> None:
        """The subscriber's receiver report block for our SSRC (RFC 3550 §6.4.1): ``lsr`` (the
        middle 32 bits of the NTP timestamp of our last SR it got) and ``dlsr`` (1/65536 s
        since) update our round-trip time estimate ``self.rtt``; ``fraction_lost`` (0..255,
        1/256 units) is kept in ``self.downstream_loss`` for audio loss proxying
        (:mod:`sfu.rtp.loss_proxy`)."""
        now = adapter.now_ms() if now_ms is None else now_ms
        if self._native is not None and self._raw is not None:
            # aioice may still switch its nominated pair after connecting: follow it.
            fastpath.refresh_route(self._raw, self._native.sender)
        self.rtt.on_report_block(lsr, dlsr, now)
        self.downstream_loss.on_report(fraction_lost, now)

    def request_keyframe(self) -> None:
        """The subscriber lost a picture (PLI/FIR) or just started: ask the producer."""
        self.keyframe_requests += 1
        if self.layers is not None:
            self.layers.request_keyframe()
        else:
            self.producer.request_keyframe()

    def sender_report(self) -> bytes | None:
        """An RTCP SR (RFC 3550 §6.4.1) for our SSRC, derived from the producer's last SR so
        that audio and video of one publisher stay in sync; None before any packet was sent or
        before the producer has sent an SR."""
        sr = (self.layers.source() if self.layers is not None else self.producer).last_sr
        codec = self.codec
        if sr is None or codec is None or not self.munger.started or self.packets_sent == 0:
            return None
        ntp, rtp_ts, at = sr
        elapsed = max(0.0, time.monotonic() - at)
        ntp_out = (ntp + int(elapsed * _NTP_FRACTION)) & 0xFFFFFFFFFFFFFFFF
        self.rtt.on_sender_report_sent(ntp_out, adapter.now_ms())
        ts_offset = self._ts_offset if self._native is None else int(self._native.ts_offset)
        rtp_out = (rtp_ts + int(elapsed * codec.clock_rate) + ts_offset) & 0xFFFFFFFF
        packet = RtcpSrPacket(
            ssrc=self.ssrc,
            sender_info=RtcpSenderInfo(
                ntp_timestamp=ntp_out,
                rtp_timestamp=rtp_out,
                packet_count=self.packets_sent & 0xFFFFFFFF,
                octet_count=self.bytes_sent & 0xFFFFFFFF,
            ),
        )
        return bytes(packet)

    # -- state ---------------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """Monitoring counters (names from :data:`sfu.stats.COUNTER_NAMES`)."""
        return {"retransmissions": self.retransmissions}

    def set_paused(self, paused: bool) -> None:
        """Pause or resume this subscription (the producer keeps flowing to others). A
        resumed video subscription waits for a keyframe, which it requests."""
        if paused == self.paused:
            return
        self.paused = paused
        self._on_gap(paused)
        self._update_active()
        if not paused and self.kind == "video" and self.active:
            self.request_keyframe()

    def on_producer_paused(self, paused: bool) -> None:
        """The producer was muted or unmuted (the producer requests the keyframe)."""
        self._on_gap(paused)
        self._update_active()

    def on_producer_gap(self, started: bool, since_s: float = 0.0) -> None:
        """The producer's publisher lost its media path ``since_s`` seconds ago (``started``)
        or came back on a new transport with new SSRCs and sequence numbers: this
        subscriber's stream keeps its SSRC, and its sequence numbers and timestamps continue
        across the gap, timestamps advanced by the whole gap (issue 11)."""
        began = self._gap_started
        self._on_gap(started)
        if started and began is None and self._gap_started is not None:
            self._gap_started -= since_s

    def _on_gap(self, pausing: bool) -> None:
        # A discontinuity: keep our sequence numbers contiguous, advance our timestamps by the
        # wall-clock time the gap lasted (so the subscriber's jitter buffer sees real time
        # pass) and, for video, restart on a keyframe.
        now = time.monotonic()
        if pausing:
            if self._gap_started is None:
                self._gap_started = now
        elif self.munger.started:
            rate = self.codec.clock_rate if self.codec is not None else 90000
            started = self._gap_started if self._gap_started is not None else now
            self.munger.resync(ts_gap=max(1, int((now - started) * rate)))
            self._gap_started = None
        if self.kind == "video":
            self.wait_keyframe = True

    def on_close(self, callback: Callable[[Consumer], None]) -> None:
        """Register a callback run once when the consumer closes."""
        self._on_close.append(callback)

    def close(self) -> None:
        """Stop forwarding and detach from the producer. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        self.active = False
        self._detach_native()
        self._raw = None
        self._send_rtp = None
        self.producer.remove_consumer(self)
        if self.layers is not None:
            self.layers.detach()
        if self.rtx_buffer is not None:
            self.rtx_buffer.clear()
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            callback(self)
