"""PipeTransport: plain RTP/RTCP over UDP between two Routers (mediasoup ``PipeTransport`` and
``Router.pipeToRouter``).

A producer of router A is *piped* to router B so that B's consumers consume it exactly like a
local :class:`sfu.producer.Producer`. The two routers may live in different worker processes
(issue 12) or on different machines (issue 13): everything the two ends exchange is a plain
dataclass (:class:`PipeTransportParameters`, :class:`PipeProducerParameters`,
:class:`PipeControl`) that a worker channel or Redis can carry.

Each end is one :class:`PipeTransport` (one UDP socket, no ICE, no DTLS):

* on A, :meth:`PipeTransport.consume` attaches a :class:`PipeConsumer` to the producer. It is
  fed like any consumer, keeps the payload unchanged, rewrites SSRC/sequence number/timestamp
  with its own :class:`sfu.rtp.munger.RtpMunger` (so the pipe stream stays continuous across
  the publisher's pauses and media restarts), carries the RFC 6464 audio level, keeps a
  retransmission buffer for NACKs from B and sends an RTCP SR (RFC 3550 §6.4.1) derived from the
  publisher's so B's subscribers keep lip sync;
* on B, :meth:`PipeTransport.produce` creates (or, for a pipe that is being recreated, resumes)
  a Producer with the *same id* in router B. Its NACK generator, receive statistics, loss-based
  bandwidth estimate and keyframe throttle are the ordinary Producer's; its PLI, NACK, receiver
  reports and REMB go back upstream over the pipe.

Upstream feedback on A: a PLI/FIR reaches ``producer.request_keyframe()`` (throttled by A's
keyframe throttle); a NACK is answered from the pipe consumer's buffer (packets A itself never
got are NACKed to the publisher by A's own producer, and reach the pipe when they arrive); the
REMB from B caps the REMB A sends the publisher (:meth:`Producer.capped_estimate`); receiver
report blocks feed the pipe consumer's RTT and the audio loss proxy (:mod:`sfu.rtp.loss_proxy`).

Control (pause, resume, media gaps, close) travels as :class:`PipeControl` values: an end emits
them through the callback given to :meth:`PipeTransport.on_control` and the other end applies
them with :meth:`PipeTransport.apply`. :func:`pipe_to_router` wires both ends in one process.

Optional SRTP (RFC 3711) with AEAD_AES_128_GCM (RFC 7714) through pylibsrtp: each end picks the
key of what it sends and gives it in its :class:`PipeTransportParameters`.

Only datagrams from the remote address given to :meth:`PipeTransport.connect` are accepted;
anything else (a stranger, a truncated or malformed packet, a failed SRTP authentication, an
unknown SSRC) is dropped and counted in ``pipe_dropped``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

import pylibsrtp
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    unpack_remb_fci,
)

from sfu import _aiortc_adapter as adapter
from sfu.errors import InvalidStateError
from sfu.producer import Producer
from sfu.rtp.layers import LayerForwarder
from sfu.rtp.loss_proxy import DownstreamLoss, proxied_fraction_lost
from sfu.rtp.munger import RtpMunger
from sfu.rtp.rtcp import receiver_reports, remb_packet
from sfu.rtp.rtt import RttEstimator
from sfu.rtp.rtx_buffer import RetransmissionBuffer, rtx_wrap
from sfu.stats import Totals

if TYPE_CHECKING:
    from sfu.consumer import Consumer
    from sfu.router import Router

logger = logging.getLogger(__name__)

LAYER_FLOWING_MS = 1000
"""A simulcast layer with a packet this recently (ms) is flowing (what a pipe carries)."""
SRTP_KEY_LENGTH = 28
"""Master key (16 bytes) + salt (12 bytes) of AEAD_AES_128_GCM (RFC 7714 §12)."""

PIPE_AUDIO_LEVEL_ID = 1
"""RFC 8285 one-byte header extension id of the audio level (RFC 6464) on a pipe."""

RTCP_INTERVAL_S = 1.0
"""Mean interval between a pipe's RTCP reports (s), randomised by ±50% (RFC 3550 §6.2)."""

MAX_NACK_SEQS = 128
"""Distinct sequence numbers honoured per NACK from the other end."""

RTCP_PSFB_FIR = 4  # RFC 5104 §4.3.1

_HDR = struct.Struct("!BBHII")
_NTP_FRACTION = 1 << 32

ControlAction = Literal["pause", "resume", "gap_start", "gap_end", "close"]


@dataclass(frozen=True, slots=True)
class PipeTransportParameters:
    """Where one end of a pipe listens, given to the other end's :meth:`PipeTransport.connect`.

    Attributes:
        ip: the address the end's UDP socket is bound to (``127.0.0.1`` between workers; the
            node's media host across machines).
        port: its UDP port.
        srtp_key: the AEAD_AES_128_GCM master key + salt (28 bytes) of what this end sends,
            or None for plain RTP.
    """

    ip: str
    port: int
    srtp_key: bytes | None = None


@dataclass(frozen=True, slots=True)
class PipeProducerParameters:
    """One piped producer, as :meth:`PipeTransport.consume` on A describes it to
    :meth:`PipeTransport.produce` on B.

    Attributes:
        producer_id: the producer's id on A; the piped producer on B gets the same id.
        participant_sid, kind, source, name: the producer's metadata (``kind`` is
            ``"audio"`` or ``"video"``).
        mime_type, clock_rate (Hz), channels, codec_parameters: the codec (never transcoded).
        payload_type: RTP payload type on the pipe; rtx_payload_type: its RTX (RFC 4588) or None.
        ssrc, rtx_ssrc: the SSRCs on the pipe (new for every pipe consumer).
        audio_level_id: RFC 8285 id of the RFC 6464 audio level on the pipe (0: none).
        paused: the producer is muted now.
    """

    producer_id: str
    participant_sid: str
    kind: str
    source: str
    name: str
    mime_type: str
    clock_rate: int
    channels: int | None
    codec_parameters: tuple[tuple[str, str], ...]
    payload_type: int
    rtx_payload_type: int | None
    ssrc: int
    rtx_ssrc: int | None
    audio_level_id: int = 0
    paused: bool = False

    def validate(self) -> None:
        """Check the values another process or node sent.

        Raises:
            ValueError: unknown kind, a payload type outside 0..127 (RFC 3550 §5.1), an SSRC
                outside 1..2^32-1, an RTX payload type without an RTX SSRC, an extension id
                outside 0..14 (RFC 8285 §4.2) or a clock rate that is not positive.
        """
        if self.kind not in ("audio", "video"):
            raise ValueError(f"unknown kind {self.kind!r}")
        for pt in (self.payload_type, self.rtx_payload_type):
            if pt is not None and not 0 <= pt <= 127:
                raise ValueError(f"payload type {pt} out of range")
        for ssrc in (self.ssrc, self.rtx_ssrc):
            if ssrc is not None and not 0 < ssrc <= 0xFFFFFFFF:
                raise ValueError(f"SSRC {ssrc} out of range")
        if (self.rtx_payload_type is None) != (self.rtx_ssrc is None):
            raise ValueError("RTX needs both a payload type and an SSRC")
        if not 0 <= self.audio_level_id <= 14:
            raise ValueError(f"header extension id {self.audio_level_id} out of range")
        if self.clock_rate <= 0 or not self.producer_id or "/" not in self.mime_type:
            raise ValueError("bad codec or producer id")


@dataclass(frozen=True, slots=True)
class PipeControl:
    """A control call about one piped producer, from one end of a pipe to the other.

    From A to B: ``pause``/``resume`` (the producer was muted/unmuted), ``gap_start``/
    ``gap_end`` (its publisher lost its media path / is back, issue 11; ``since_s`` is how long
    ago the gap began), ``close`` (the producer closed). From B to A: ``close`` (B no longer
    needs the producer: its last consumer went).
    """

    producer_id: str
    action: ControlAction
    since_s: float = 0.0


def _negotiated(params: PipeProducerParameters, rtcp_ssrc: int) -> adapter.NegotiatedRtp:
    codecs = [
        RTCRtpCodecParameters(
            mimeType=params.mime_type,
            clockRate=params.clock_rate,
            channels=params.channels,
            payloadType=params.payload_type,
            parameters=dict(params.codec_parameters),
        )
    ]
    if params.rtx_payload_type is not None:
        codecs.append(
            RTCRtpCodecParameters(
                mimeType=params.kind + "/rtx",
                clockRate=params.clock_rate,
                payloadType=params.rtx_payload_type,
                parameters={"apt": params.payload_type},
            )
        )
    extensions = {adapter.URI_AUDIO_LEVEL: params.audio_level_id} if params.audio_level_id else {}
    return adapter.NegotiatedRtp(
        mid="pipe",
        kind=params.kind,
        codecs=codecs,
        header_extensions=extensions,
        ssrc=params.ssrc,
        rtx_ssrc=params.rtx_ssrc,
        rtcp_ssrc=rtcp_ssrc,
    )


class PipeConsumer:
    """The sending half of a pipe (on router A): one producer copied onto the pipe.

    It sits in ``producer.consumers`` like a :class:`sfu.consumer.Consumer` and has the same
    ``forward`` / ``on_producer_paused`` / ``on_producer_gap`` / ``close`` calls.

    Attributes:
        id: ``PC_...``; producer: the producer it copies; pipe: its :class:`PipeTransport`.
        ssrc, rtx_ssrc: its SSRCs on the pipe (random, new per pipe consumer).
        downstream_loss: the other router's reported fraction lost (audio loss proxying).
        packets_sent, bytes_sent (payload bytes), retransmissions, keyframe_requests: counters.
        layers: for a simulcast producer (RFC 8853), a :class:`sfu.rtp.layers.LayerForwarder`:
            the pipe carries one layer, the highest one flowing (:meth:`follow_layers`;
            keyframe-aligned switches, VP8 picture ids continuous), and the other end's piped
            producer is a one-layer video; None otherwise. ``wanted_layer`` (the top index)
            is what dynacast keeps on for the pipe.
    """

    __slots__ = (
        "_gap_started",
        "_level_ext",
        "_seq_offset",
        "_ts_offset",
        "bytes_sent",
        "closed",
        "downstream_loss",
        "id",
        "keyframe_requests",
        "kind",
        "layers",
        "munger",
        "packets_sent",
        "pipe",
        "producer",
        "retransmissions",
        "rtt",
        "rtx_buffer",
        "rtx_seq",
        "rtx_ssrc",
        "ssrc",
        "wanted_layer",
    )

    def __init__(
        self, producer: Producer, pipe: PipeTransport, ssrc: int, rtx_ssrc: int | None
    ) -> None:
        self.id = "PC_" + secrets.token_urlsafe(9)
        self.producer = producer
        self.pipe = pipe
        self.kind = producer.kind
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.closed = False
        self.munger = RtpMunger()
        self.rtx_buffer: RetransmissionBuffer[bytes] | None = (
            RetransmissionBuffer(pipe.nack_buffer_packets) if self.kind == "video" else None
        )
        self.rtx_seq = secrets.randbits(15)
        self.rtt = RttEstimator()
        self.downstream_loss = DownstreamLoss()
        self.packets_sent = 0
        self.bytes_sent = 0
        self.retransmissions = 0
        self.keyframe_requests = 0
        self._ts_offset = 0
        self._seq_offset = 0
        self._gap_started: float | None = None
        self._level_ext = self.kind == "audio"
        self.layers: LayerForwarder | None = (
            LayerForwarder(cast("Consumer", self), producer) if producer.layers else None
        )
        self.wanted_layer: int | None = None
        if self.layers is not None:  # simulcast: the top layer, until follow_layers says
            self.wanted_layer = len(producer.layers) - 1
            self.layers.set_target(self.wanted_layer)

    def follow_layers(self, now_ms: int | None = None) -> None:
        """Simulcast: aim at the highest layer that got a packet in the last second (the
        publisher sends the higher ones only once its bandwidth allows, RFC 8853), else
        keep the current target. Called periodically by the producer's dynacast."""
        forwarder = self.layers
        if forwarder is None or self.closed:
            return
        now = adapter.now_ms() if now_ms is None else now_ms
        flowing = [
            index
            for index, layer in enumerate(self.producer.layers)
            if layer.packets_received and now - layer.last_arrival_ms <= LAYER_FLOWING_MS
        ]
        if flowing and flowing[-1] != forwarder.target:
            forwarder.set_target(flowing[-1])

    def parameters(self) -> PipeProducerParameters:
        """This pipe consumer as :meth:`PipeTransport.produce` on the other end needs it."""
        producer = self.producer
        codec = producer.codec
        assert codec is not None
        return PipeProducerParameters(
            producer_id=producer.id,
            participant_sid=producer.participant_sid,
            kind=producer.kind,
            source=producer.source,
            name=producer.name,
            mime_type=codec.mime_type,
            clock_rate=codec.clock_rate,
            channels=codec.channels,
            codec_parameters=codec.parameters,
            payload_type=codec.payload_type,
            rtx_payload_type=codec.rtx_payload_type if self.rtx_ssrc is not None else None,
            ssrc=self.ssrc,
            rtx_ssrc=self.rtx_ssrc,
            audio_level_id=PIPE_AUDIO_LEVEL_ID if self._level_ext else 0,
            paused=producer.paused,
        )

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
        """Send one producer packet over the pipe (same arguments as
        :meth:`sfu.consumer.Consumer.forward`)."""
        if self.closed:
            return
        mapped = self.munger.munge(seq, ts)
        if mapped is None:
            return
        out_seq, out_ts = mapped
        self._ts_offset = (out_ts - ts) & 0xFFFFFFFF
        self._seq_offset = (out_seq - seq) & 0xFFFF
        codec = self.producer.codec
        pt = (codec.payload_type if codec is not None else 0) | (0x80 if marker else 0)
        if self._level_ext and extra is not None:
            # RFC 8285 one-byte block: 0xBEDE, one word: id/len, level, 2 bytes padding.
            packet = b"".join(
                (
                    _HDR.pack(0x90, pt, out_seq, out_ts, self.ssrc),
                    b"\xbe\xde\x00\x01",
                    bytes((PIPE_AUDIO_LEVEL_ID << 4, extra[0], 0, 0)),
                    payload,
                )
            )
        else:
            packet = _HDR.pack(0x80, pt, out_seq, out_ts, self.ssrc) + payload
        self.pipe.send_rtp(packet)
        if self.rtx_buffer is not None:
            self.rtx_buffer.store(out_seq, packet)
        self.packets_sent += 1
        self.bytes_sent += len(payload)

    # -- feedback from the other end -----------------------------------------------------------

    def retransmit(self, lost: list[int], now_ms: int | None = None) -> int:
        """Answer a NACK from the other end (pipe sequence numbers ``lost``) from the
        retransmission buffer, as RTX (RFC 4588) when the pipe has an RTX SSRC. Returns how
        many packets were resent (each at most once per round-trip time)."""
        buffer = self.rtx_buffer
        if buffer is None or self.closed:
            return 0
        now = adapter.now_ms() if now_ms is None else now_ms
        codec = self.producer.codec
        rtx_pt = codec.rtx_payload_type if codec is not None else None
        if self.rtx_ssrc is None or rtx_pt is None:
            if self.pipe.srtp_enabled:
                return 0  # SRTP never protects the same index twice (RFC 3711 §9.1)
            rtx_pt = None
        seen: set[int] = set()
        sent = 0
        for seq in lost:
            if seq in seen:
                continue
            if len(seen) >= MAX_NACK_SEQS:
                break
            seen.add(seq)
            packet = buffer.take_for_resend(seq, now, self.rtt.rtt_ms)
            if packet is None:
                continue
            if rtx_pt is not None and self.rtx_ssrc is not None:
                self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
                self.pipe.send_rtp(rtx_wrap(packet, self.rtx_ssrc, self.rtx_seq, rtx_pt))
            else:
                self.pipe.send_rtp(packet)
            sent += 1
        self.retransmissions += sent
        return sent

    def request_keyframe(self) -> None:
        """The other end needs a keyframe (PLI/FIR): ask the producer (throttled there)."""
        self.keyframe_requests += 1
        if self.layers is not None:
            self.layers.request_keyframe()
        else:
            self.producer.request_keyframe()

    def on_report_block(self, lsr: int, dlsr: int, fraction_lost: int) -> None:
        """The other end's receiver report block for our SSRC (RFC 3550 §6.4.1)."""
        now = adapter.now_ms()
        self.rtt.on_report_block(lsr, dlsr, now)
        self.downstream_loss.on_report(fraction_lost, now)

    def on_remb(self, bitrate_bps: int) -> None:
        """The other end's estimate (bits/s) for this producer: it caps the publisher's REMB."""
        self.producer.remote_estimates[self.id] = (bitrate_bps, time.monotonic())

    def sender_report(self) -> bytes | None:
        """An RTCP SR for our SSRC derived from the producer's last SR (lip sync on the other
        end), or None before there is one."""
        sr = (self.layers.source() if self.layers is not None else self.producer).last_sr
        codec = self.producer.codec
        if sr is None or codec is None or not self.munger.started or self.packets_sent == 0:
            return None
        ntp, rtp_ts, at = sr
        elapsed = max(0.0, time.monotonic() - at)
        ntp_out = (ntp + int(elapsed * _NTP_FRACTION)) & 0xFFFFFFFFFFFFFFFF
        self.rtt.on_sender_report_sent(ntp_out, adapter.now_ms())
        rtp_out = (rtp_ts + int(elapsed * codec.clock_rate) + self._ts_offset) & 0xFFFFFFFF
        return bytes(
            RtcpSrPacket(
                ssrc=self.ssrc,
                sender_info=RtcpSenderInfo(
                    ntp_timestamp=ntp_out,
                    rtp_timestamp=rtp_out,
                    packet_count=self.packets_sent & 0xFFFFFFFF,
                    octet_count=self.bytes_sent & 0xFFFFFFFF,
                ),
            )
        )

    # -- state ---------------------------------------------------------------------------------

    def _on_gap(self, pausing: bool) -> None:
        # Keep the pipe stream continuous (as Consumer._on_gap does for a subscriber).
        now = time.monotonic()
        if pausing:
            if self._gap_started is None:
                self._gap_started = now
        elif self.munger.started:
            codec = self.producer.codec
            rate = codec.clock_rate if codec is not None else 90000
            started = self._gap_started if self._gap_started is not None else now
            self.munger.resync(ts_gap=max(1, int((now - started) * rate)))
            self._gap_started = None

    def on_producer_paused(self, paused: bool) -> None:
        """The producer was muted or unmuted: tell the other end."""
        self._on_gap(paused)
        self.pipe.emit(PipeControl(self.producer.id, "pause" if paused else "resume"))

    def on_producer_gap(self, started: bool, since_s: float = 0.0) -> None:
        """The producer's publisher lost its media path / came back (issue 11)."""
        self._on_gap(started)
        action: ControlAction = "gap_start" if started else "gap_end"
        self.pipe.emit(PipeControl(self.producer.id, action, since_s))

    def counters(self) -> dict[str, int]:
        """Monitoring counters (names from :data:`sfu.stats.COUNTER_NAMES`)."""
        return {"retransmissions": self.retransmissions}

    def close(self, notify: bool = True) -> None:
        """Stop piping and detach from the producer; tell the other end (``close``) unless
        ``notify`` is False. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        if self.layers is not None:
            self.layers.detach()
        self.producer.remove_consumer(self)  # type: ignore[arg-type]
        self.producer.remote_estimates.pop(self.id, None)
        if self.rtx_buffer is not None:
            self.rtx_buffer.clear()
        self.pipe.forget_consumer(self)
        if notify:
            self.pipe.emit(PipeControl(self.producer.id, "close"))


@dataclass
class PipeCounters:
    """Counters of one pipe end (names from :data:`sfu.stats.COUNTER_NAMES`)."""

    pipe_packets_sent: int = 0
    pipe_bytes_sent: int = 0
    pipe_packets_received: int = 0
    pipe_bytes_received: int = 0
    pipe_dropped: int = 0
    drop_reasons: dict[str, int] = field(default_factory=dict)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, pipe: PipeTransport) -> None:
        self.pipe = pipe

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            self.pipe.datagram_received(data, (str(addr[0]), int(addr[1])))
        except Exception:  # a hostile datagram must never kill the event loop's reader
            logger.exception("pipe datagram handling failed")
            self.pipe.drop("error")


class PipeTransport:
    """One end of a pipe between two routers: a UDP socket carrying plain RTP and RTCP
    (RFC 3550), optionally SRTP AEAD_AES_128_GCM (RFC 7714). Create it with
    :meth:`sfu.router.Router.create_pipe_transport`.

    Attributes:
        router: the owning router.
        consumers: pipe consumers (this end sends) by producer id.
        producers: piped producers (this end receives) by producer id.
        counters_: packets/bytes each way and drops (``pipe_dropped``, by reason in
            ``counters_.drop_reasons``).
        impairment: test/chaos hook: called with each outgoing plaintext RTP packet; returning
            True drops it (counted nowhere: it models loss on the wire).
    """

    def __init__(
        self,
        router: Router,
        *,
        listen_ip: str = "127.0.0.1",
        enable_srtp: bool = False,
        nack_buffer_packets: int = 512,
        totals: Totals | None = None,
    ) -> None:
        self.router = router
        self.listen_ip = listen_ip
        self.srtp_enabled = enable_srtp
        self.nack_buffer_packets = nack_buffer_packets
        self._totals = totals if totals is not None else Totals()
        self._send_key = os.urandom(SRTP_KEY_LENGTH) if enable_srtp else None
        self._srtp_tx: pylibsrtp.Session | None = None
        self._srtp_rx: pylibsrtp.Session | None = None
        self._socket: asyncio.DatagramTransport | None = None
        self.port = 0
        self.remote: tuple[str, int] | None = None
        self.rtcp_ssrc = random.randint(1, 0xFFFFFFFF)
        self.consumers: dict[str, PipeConsumer] = {}
        self._consumers_by_ssrc: dict[int, PipeConsumer] = {}
        self.producers: dict[str, Producer] = {}
        self._producers_by_ssrc: dict[int, Producer] = {}
        self.counters_ = PipeCounters()
        self.impairment: Callable[[bytes], bool] | None = None
        self._on_control: list[Callable[[PipeControl], None]] = []
        self._rtcp_task: asyncio.Task[None] | None = None
        self.closed = False

    async def start(self) -> None:
        """Bind the UDP socket on ``listen_ip`` and an ephemeral port."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self.listen_ip, 0)
        )
        self._socket = transport
        self.port = int(transport.get_extra_info("sockname")[1])

    # -- connection ----------------------------------------------------------------------------

    def local_parameters(self) -> PipeTransportParameters:
        """This end's address and send key, for the other end's :meth:`connect`."""
        return PipeTransportParameters(ip=self.listen_ip, port=self.port, srtp_key=self._send_key)

    def connect(self, remote: PipeTransportParameters) -> None:
        """Send to, and accept datagrams only from, ``remote`` (the other end's
        :meth:`local_parameters`). With SRTP on, ``remote.srtp_key`` decrypts what it sends.

        Raises:
            InvalidStateError: closed, already connected, or SRTP on one end only.
            ValueError: an SRTP key that is not 28 bytes, an address that is not an IP
                address, or a port outside 1..65535.
        """
        if self.closed or self._socket is None:
            raise InvalidStateError("pipe transport is closed or not started")
        ipaddress.ip_address(remote.ip)  # raises ValueError
        if not 0 < remote.port <= 0xFFFF:
            raise ValueError(f"port {remote.port} out of range")
        if self.remote is not None:
            raise InvalidStateError("pipe transport is already connected")
        if self.srtp_enabled != (remote.srtp_key is not None):
            raise InvalidStateError("SRTP must be enabled on both ends of a pipe or on neither")
        if remote.srtp_key is not None and self._send_key is not None:
            if len(remote.srtp_key) != SRTP_KEY_LENGTH:
                raise ValueError(f"SRTP key must be {SRTP_KEY_LENGTH} bytes")
            profile = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM
            self._srtp_tx = pylibsrtp.Session(
                policy=pylibsrtp.Policy(
                    key=self._send_key,
                    ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                    srtp_profile=profile,
                )
            )
            self._srtp_rx = pylibsrtp.Session(
                policy=pylibsrtp.Policy(
                    key=remote.srtp_key,
                    ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                    srtp_profile=profile,
                )
            )
        self.remote = (remote.ip, remote.port)
        self._rtcp_task = asyncio.ensure_future(self._run_rtcp())

    # -- control -------------------------------------------------------------------------------

    def on_control(self, callback: Callable[[PipeControl], None]) -> None:
        """Register where this end's :class:`PipeControl` calls go (to the other end's
        :meth:`apply`, directly or over a channel)."""
        self._on_control.append(callback)

    def emit(self, control: PipeControl) -> None:
        """Send ``control`` to the other end (through the :meth:`on_control` callbacks)."""
        for callback in list(self._on_control):
            try:
                callback(control)
            except Exception:
                logger.exception("pipe control callback failed")

    def apply(self, control: PipeControl) -> None:
        """Apply a control call from the other end; unknown producer ids are ignored."""
        producer = self.producers.get(control.producer_id)
        if producer is not None:
            if control.action == "pause":
                producer.set_paused(True)
            elif control.action == "resume":
                producer.set_paused(False)
            elif control.action == "gap_start":
                if not producer.paused:
                    for consumer in producer.consumers:
                        consumer.on_producer_gap(True, control.since_s)
            elif control.action == "gap_end":
                if not producer.paused:
                    for consumer in producer.consumers:
                        consumer.on_producer_gap(False)
            elif control.action == "close":
                self._close_producer(producer, notify=False)
        if control.action == "close":
            pipe_consumer = self.consumers.get(control.producer_id)
            if pipe_consumer is not None:
                pipe_consumer.close(notify=False)

    # -- the sending end (router A) ------------------------------------------------------------

    def consume(self, producer: Producer) -> PipeProducerParameters:
        """Pipe ``producer`` (of this router) to the other end; returns what the other end's
        :meth:`produce` needs. A producer already piped here returns its parameters again.

        Raises:
            InvalidStateError: the pipe or the producer is closed, or the producer has no
                codec yet.
        """
        if self.closed or producer.closed:
            raise InvalidStateError("pipe transport or producer is closed")
        if producer.codec is None:
            raise InvalidStateError("producer is not negotiated yet")
        existing = self.consumers.get(producer.id)
        if existing is not None:
            return existing.parameters()
        ssrc = self._new_ssrc()
        rtx_ssrc = None
        if producer.kind == "video" and producer.codec.rtx_payload_type is not None:
            rtx_ssrc = self._new_ssrc(ssrc)
        consumer = PipeConsumer(producer, self, ssrc, rtx_ssrc)
        self.consumers[producer.id] = consumer
        self._consumers_by_ssrc[ssrc] = consumer
        producer.consumers.append(consumer)  # type: ignore[arg-type]
        return consumer.parameters()

    def _new_ssrc(self, *avoid: int) -> int:
        while True:
            ssrc = random.randint(1, 0xFFFFFFFF)
            if ssrc not in self._consumers_by_ssrc and ssrc not in avoid:
                return ssrc

    def forget_consumer(self, consumer: PipeConsumer) -> None:
        """Called by a closing :class:`PipeConsumer`."""
        if self.consumers.get(consumer.producer.id) is consumer:
            del self.consumers[consumer.producer.id]
        self._consumers_by_ssrc.pop(consumer.ssrc, None)
        self._totals.retire(consumer.counters())

    def send_rtp(self, packet: bytes) -> None:
        """Send one plaintext RTP packet to the other end (SRTP-protected when enabled)."""
        if self.impairment is not None and self.impairment(packet):
            return
        self._send(packet, rtcp=False)

    def send_rtcp(self, packet: bytes) -> None:
        """Send one plaintext (compound) RTCP packet to the other end."""
        self._send(packet, rtcp=True)

    def _send(self, packet: bytes, *, rtcp: bool) -> None:
        sock, remote = self._socket, self.remote
        if sock is None or remote is None or self.closed:
            return
        srtp = self._srtp_tx
        if srtp is not None:
            try:
                packet = srtp.protect_rtcp(packet) if rtcp else srtp.protect(packet)
            except pylibsrtp.Error:
                self.drop("srtp_protect")
                return
        sock.sendto(packet, remote)
        counters = self.counters_
        counters.pipe_packets_sent += 1
        counters.pipe_bytes_sent += len(packet)

    # -- the receiving end (router B) ----------------------------------------------------------

    def produce(self, params: PipeProducerParameters) -> Producer:
        """The piped producer on this end's router, with id ``params.producer_id``: new, or a
        suspended one (its pipe was recreated) resumed with the new SSRCs, so its consumers
        keep their SSRC and continue their sequence numbers and timestamps.

        Raises:
            InvalidStateError: the pipe or the router is closed, or the router has a producer
                with that id that is not a piped one (or is piped by another live pipe).
            ValueError: invalid parameters (:meth:`PipeProducerParameters.validate`), or the
                codec is not the one the existing producer's consumers have.
        """
        if self.closed or self.router.closed:
            raise InvalidStateError("pipe transport or router is closed")
        params.validate()
        rtp = _negotiated(params, self.rtcp_ssrc)
        existing = self.router.producers.get(params.producer_id)
        if existing is not None:
            owner = existing.transport
            if not isinstance(owner, PipeTransport):
                raise InvalidStateError(f"producer {params.producer_id} is not a piped producer")
            if owner is self and not existing.closed and existing.ssrc == params.ssrc:
                return existing
            if existing.ssrc is not None and not owner.closed and owner is not self:
                raise InvalidStateError(f"producer {params.producer_id} is piped already")
            owner.detach_producer(existing)
            existing.suspend()
            existing.resume(self, "pipe", rtp)  # calls adopt_producer
            existing.keyframe_on_connect = False
            existing.set_paused(params.paused)
            existing.request_keyframe()
            return existing
        producer = Producer(
            transport=self,
            participant_sid=params.participant_sid,
            mid="pipe",
            kind=params.kind,
            source=params.source,
            name=params.name,
            keyframe_min_interval_ms=self.router.keyframe_min_interval_ms,
            max_bitrate_bps=self.router.max_publish_bitrate_bps,
        )
        producer.id = params.producer_id
        producer.on_negotiated(rtp)
        producer.paused = params.paused
        self.router.add_piped_producer(producer)
        producer.on_close(lambda p: self._totals.retire(p.counters()))
        producer.on_unconsumed(_close_unconsumed)
        self.adopt_producer(producer)
        return producer

    def adopt_producer(self, producer: Producer) -> None:
        """Route the pipe's RTP for ``producer``'s SSRCs to it (also on resume)."""
        self.producers[producer.id] = producer
        if producer.ssrc is not None:
            self._producers_by_ssrc[producer.ssrc] = producer
        if producer.rtx_ssrc is not None:
            self._producers_by_ssrc[producer.rtx_ssrc] = producer
        producer.on_close(self._forget_producer)

    def detach_producer(self, producer: Producer) -> None:
        """Stop routing this pipe's media to ``producer`` without closing it."""
        if self.producers.get(producer.id) is producer:
            del self.producers[producer.id]
        for ssrc in [s for s, p in self._producers_by_ssrc.items() if p is producer]:
            del self._producers_by_ssrc[ssrc]

    def _forget_producer(self, producer: Producer) -> None:
        self.detach_producer(producer)

    def _close_producer(self, producer: Producer, *, notify: bool) -> None:
        if producer.closed:
            return
        producer.close()
        if notify:
            self.emit(PipeControl(producer.id, "close"))

    def send_pli(self, producer: Producer) -> None:
        """Send a PLI (RFC 4585 §6.3.1) upstream for the piped ``producer``."""
        if producer.ssrc is None:
            return
        self.send_rtcp(
            bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=self.rtcp_ssrc, media_ssrc=producer.ssrc))
        )

    def send_nack(self, producer: Producer, lost: list[int]) -> None:
        """Send a Generic NACK (RFC 4585 §6.2.1) upstream for ``lost`` pipe sequence numbers."""
        if producer.ssrc is None:
            return
        packet = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=self.rtcp_ssrc, media_ssrc=producer.ssrc)
        packet.lost = sorted(lost)
        self.send_rtcp(bytes(packet))

    def send_remb(self, producer: Producer, bitrate_bps: int) -> None:
        """Send a REMB (bits/s) upstream: this router's estimate for ``producer``."""
        if producer.ssrc is None:
            return
        self.send_rtcp(remb_packet(self.rtcp_ssrc, bitrate_bps, [producer.ssrc]))

    # -- input ---------------------------------------------------------------------------------

    def drop(self, reason: str) -> None:
        """Count one dropped datagram (``pipe_dropped``) and why."""
        self.counters_.pipe_dropped += 1
        reasons = self.counters_.drop_reasons
        reasons[reason] = reasons.get(reason, 0) + 1

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        """Handle one datagram from the socket: only from the connected remote address, only
        well-formed RTP/RTCP (RFC 5761 §4 demultiplexing by payload type), decrypted when SRTP
        is on. Everything else is dropped and counted."""
        if self.closed or addr != self.remote:
            self.drop("stranger")
            return
        if len(data) < 8 or data[0] >> 6 != 2:
            self.drop("malformed")
            return
        counters = self.counters_
        counters.pipe_packets_received += 1
        counters.pipe_bytes_received += len(data)
        rtcp = 192 <= data[1] <= 223
        srtp = self._srtp_rx
        if srtp is not None:
            try:
                data = srtp.unprotect_rtcp(data) if rtcp else srtp.unprotect(data)
            except pylibsrtp.Error:
                self.drop("srtp")
                return
        if rtcp:
            self._on_rtcp(data)
            return
        if len(data) < 12:
            self.drop("malformed")
            return
        ssrc = int.from_bytes(data[8:12], "big")
        producer = self._producers_by_ssrc.get(ssrc)
        if producer is None:
            self.drop("unknown_ssrc")
            return
        before = producer.packets_dropped
        producer.receive_rtp(data, ssrc, adapter.now_ms())
        if producer.packets_dropped != before:
            self.drop("malformed")

    def _on_rtcp(self, data: bytes) -> None:
        try:
            packets = RtcpPacket.parse(data)
        except Exception:  # aiortc raises ValueError; stay safe on anything
            self.drop("malformed")
            return
        for packet in packets:
            if isinstance(packet, RtcpSrPacket):
                producer = self._producers_by_ssrc.get(packet.ssrc)
                if producer is not None:
                    info = packet.sender_info
                    producer.on_sender_report(info.ntp_timestamp, info.rtp_timestamp)
                self._on_report_blocks(packet.reports)
            elif isinstance(packet, RtcpRrPacket):
                self._on_report_blocks(packet.reports)
            elif isinstance(packet, RtcpPsfbPacket):
                if packet.fmt == RTCP_PSFB_PLI:
                    consumer = self._consumers_by_ssrc.get(packet.media_ssrc)
                    if consumer is not None:
                        consumer.request_keyframe()
                elif packet.fmt == RTCP_PSFB_FIR:
                    fci = packet.fci
                    for i in range(0, len(fci) - 7, 8):
                        target = self._consumers_by_ssrc.get(int.from_bytes(fci[i : i + 4], "big"))
                        if target is not None:
                            target.request_keyframe()
                elif packet.fmt == RTCP_PSFB_APP:
                    try:
                        bitrate, ssrcs = unpack_remb_fci(packet.fci)
                    except ValueError:
                        self.drop("malformed")
                        continue
                    for ssrc in ssrcs:
                        consumer = self._consumers_by_ssrc.get(ssrc)
                        if consumer is not None:
                            consumer.on_remb(bitrate)
            elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                consumer = self._consumers_by_ssrc.get(packet.media_ssrc)
                if consumer is not None:
                    consumer.retransmit(packet.lost)

    def _on_report_blocks(self, reports: list[RtcpReceiverInfo]) -> None:
        for report in reports:
            consumer = self._consumers_by_ssrc.get(report.ssrc)
            if consumer is not None:
                consumer.on_report_block(report.lsr, report.dlsr, report.fraction_lost)

    # -- RTCP we send --------------------------------------------------------------------------

    def send_reports(self) -> None:
        """Send this end's RTCP now: receiver reports and REMB for piped producers (with the
        audio loss proxy's fraction lost for Opus), sender reports for pipe consumers, and
        deferred keyframe requests. Called about once a second by the pipe's RTCP loop."""
        now_ms = adapter.now_ms()
        now = time.monotonic()
        blocks: list[RtcpReceiverInfo] = []
        for producer in list(self.producers.values()):
            producer.poll_keyframe_request(now_ms)
            block = producer.report_block(now)
            if block is None:
                continue
            estimate = producer.loss_estimate(block.fraction_lost, now)
            if estimate is not None:
                self.send_remb(producer, producer.capped_estimate(estimate, now))
            codec = producer.codec
            if self.router.audio_loss_proxying and codec is not None and codec.name == "OPUS":
                downstream = [c.downstream_loss for c in producer.consumers]
                block.fraction_lost = proxied_fraction_lost(block.fraction_lost, downstream, now_ms)
            blocks.append(block)
        for packet in receiver_reports(self.rtcp_ssrc, blocks):
            self.send_rtcp(packet)
        for consumer in list(self.consumers.values()):
            sr = consumer.sender_report()
            if sr is not None:
                self.send_rtcp(sr)

    async def _run_rtcp(self) -> None:
        try:
            while not self.closed:
                await asyncio.sleep(RTCP_INTERVAL_S * (0.5 + random.random()))
                self.send_reports()
        except asyncio.CancelledError:
            pass
        except Exception:
            logger.exception("pipe RTCP loop failed")

    # -- close ---------------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """Monitoring counters (``pipe_*`` names of :data:`sfu.stats.COUNTER_NAMES`)."""
        c = self.counters_
        return {
            "pipe_packets_sent": c.pipe_packets_sent,
            "pipe_bytes_sent": c.pipe_bytes_sent,
            "pipe_packets_received": c.pipe_packets_received,
            "pipe_bytes_received": c.pipe_bytes_received,
            "pipe_dropped": c.pipe_dropped,
        }

    async def close(self, *, keep_producers: bool = False) -> None:
        """Close the socket and every pipe consumer (telling the other end ``close``). Piped
        producers close too, unless ``keep_producers``: then they are suspended (their
        consumers keep their streams) until another pipe's :meth:`produce` resumes them with
        the same producer id, e.g. after the other end's worker restarted. Safe to call twice.
        """
        if self.closed:
            return
        for consumer in list(self.consumers.values()):
            consumer.close()
        for producer in list(self.producers.values()):
            if keep_producers:
                self.detach_producer(producer)
                producer.suspend()
            else:
                self._close_producer(producer, notify=True)
        self.closed = True
        self._on_control.clear()
        task, self._rtcp_task = self._rtcp_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._totals.retire(self.counters())
        self.router.forget_pipe_transport(self)


def _close_unconsumed(producer: Producer) -> None:
    # The last consumer of a piped producer on this router went: its pipe closes on both
    # ends (as edumeet/mediasoup apps do); a later subscriber pipes it again.
    pipe = producer.transport
    if isinstance(pipe, PipeTransport) and not producer.consumers:
        pipe._close_producer(producer, notify=True)


async def pipe_to_router(
    producer_id: str, source: Router, target: Router, *, enable_srtp: bool = False
) -> Producer:
    """Pipe the producer ``producer_id`` of ``source`` to ``target`` in this process (mediasoup
    ``Router.pipeToRouter``): one pair of pipe transports per router pair (created on first
    use, with their :class:`PipeControl` calls wired to each other), one pipe per producer.
    Returns the producer on ``target`` (the same id), consumed there like a local one; it
    closes when its last consumer on ``target`` goes.

    Raises:
        NotFoundError: no such producer on ``source``.
        InvalidStateError: a router is closed, the producer is not negotiated yet, or
            ``source`` is ``target``.
    """
    if source is target:
        raise InvalidStateError("cannot pipe a router to itself")
    producer = source.get_producer(producer_id)
    piped = target.producers.get(producer_id)
    if piped is not None and not piped.closed and piped.ssrc is not None:
        return piped
    local, remote = await source.pipe_pair(target, enable_srtp=enable_srtp)
    params = local.consume(producer)
    return remote.produce(params)
