"""The one module that reaches into aiortc and aioice internals.

aiortc is pinned to :data:`AIORTC_VERSION` in pyproject.toml; :func:`check_aiortc_version`
fails loudly on any other version and ``tests/unit/test_aiortc_adapter.py`` checks every private
attribute this module touches, so an aiortc upgrade breaks one test with a clear message instead
of silently breaking forwarding.

What we take from aiortc: SDP offer/answer, ICE (aioice), DTLS and the SRTP keys, and RTCP
packet classes. What we bypass: :class:`aiortc.RTCRtpReceiver` (jitter buffer, decoder thread,
NACK generator) and :class:`aiortc.RTCRtpSender` (encoder, its RTP/RTCP tasks). Instead:

* every DTLS transport of a :class:`ForwardingPeerConnection` hands decrypted RTP and RTCP
  datagrams (``bytes``) straight to a :class:`RtpSink`;
* every transceiver's ``receiver.receive()`` / ``sender.send()`` only reports the negotiated
  parameters to the sink (no thread, no task is started);
* :class:`RawRtpTransport` SRTP-protects and sends datagrams synchronously on the nominated
  ICE candidate pair;
* :class:`IceInputGuard` screens every datagram arriving on the transport's UDP sockets
  before aioice and aiortc see it (hostile network input, issue 10);
* with a :class:`sfu.udp_mux.UdpMux` (``SFU_RTC_PORT``, issue 14), every transport's host
  candidates live on the mux's shared sockets instead of sockets of their own
  (:func:`use_udp_mux`).

Where aiortc's receiver does decode (the RoomClient's subscriber in tests and load tests),
:func:`browser_like_recovery` gives its video receivers libwebrtc's loss recovery: NACKs
repeated, a given-up packet skipped with a PLI, complete frames decoded at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aioice.ice
import aioice.stun
import aiortc
import aiortc.codecs
import pylibsrtp
from aioice.candidate import Candidate as IceCandidate
from aioice.candidate import candidate_foundation, candidate_priority
from aioice.ice import CandidatePair as IceCandidatePair
from aioice.ice import Connection as IceConnection
from aioice.ice import StunProtocol
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpTransceiver,
    clock,
)
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpReceiveParameters,
    RTCRtpSendParameters,
)
from aiortc.rtcrtpreceiver import NackGenerator, RTCRtpReceiver
from aiortc.rtp import RtpPacket, is_rtcp
from aiortc.utils import uint16_add, uint16_gt

from sfu.consent import ConsentProber, binding_success, is_plain_check
from sfu.tasks import spawn
from sfu.udp_mux import UdpMux, UdpMuxSocket

logger = logging.getLogger(__name__)

IceCandidatePairState = IceCandidatePair.State

AIORTC_VERSION = "1.16.0"
"""The only aiortc version whose internals this module is written against."""

URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


def now_ms() -> int:
    """aiortc's clock in ms: the same clock as the ``arrival_ms`` given to :class:`RtpSink`."""
    value: int = clock.current_ms()
    return value


def check_aiortc_version() -> None:
    """Refuse to run against an aiortc whose internals we have not checked.

    Raises:
        RuntimeError: when the installed aiortc is not :data:`AIORTC_VERSION`.
    """
    installed = getattr(aiortc, "__version__", "unknown")
    if installed != AIORTC_VERSION:
        raise RuntimeError(
            f"sfu requires aiortc=={AIORTC_VERSION} (its internals are patched in "
            f"sfu/_aiortc_adapter.py) but aiortc {installed} is installed; re-check the adapter "
            f"and tests/unit/test_aiortc_adapter.py before changing the pin"
        )


_original_get_host_addresses = aioice.ice.get_host_addresses


def set_ice_host_addresses(hosts: Iterable[str]) -> None:
    """Gather ICE host candidates on exactly ``hosts`` (IPv4/IPv6 literals) in this process.

    aioice skips 127.0.0.1 when it enumerates interfaces; tests and benchmarks set
    ``["127.0.0.1"]`` here. An empty iterable restores aioice's own enumeration. This patches
    ``aioice.ice.get_host_addresses`` process-wide.
    """
    chosen = list(hosts)
    if not chosen:
        aioice.ice.get_host_addresses = _original_get_host_addresses
        return

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [h for h in chosen if (":" in h and use_ipv6) or (":" not in h and use_ipv4)]

    aioice.ice.get_host_addresses = get_host_addresses


def make_configuration(ice_servers: Iterable[str]) -> RTCConfiguration:
    """An ``RTCConfiguration`` with an explicit ICE server list (W3C ``RTCIceServer``).

    ``ice_servers`` are URLs such as ``stun:host:3478`` or ``turn:user:pass@host:3478``. The
    list is always explicit: given ``None`` aiortc would silently use a public STUN server.
    """
    servers: list[RTCIceServer] = []
    for url in ice_servers:
        if url.startswith(("turn:", "turns:")) and "@" in url:
            scheme, rest = url.split(":", 1)
            creds, host = rest.rsplit("@", 1)
            user, _, password = creds.partition(":")
            servers.append(
                RTCIceServer(urls=f"{scheme}:{host}", username=user, credential=password)
            )
        else:
            servers.append(RTCIceServer(urls=url))
    # aiortc defaults to BALANCED (one transport per media kind); an m-line added later to a
    # kind that already has a transport then stays off the BUNDLE transport. MAX_BUNDLE puts
    # every m-line on one transport (RFC 8843), which our RawRtpTransport relies on.
    return RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


OPUS_FMTP: dict[str, int] = {"minptime": 10, "useinbandfec": 1}
"""Opus fmtp parameters (RFC 7587 §6.1) in every SDP the server writes: in our answer to a
publisher ``useinbandfec=1`` lets its encoder add in-band FEC (RFC 6716 LBRR; libwebrtc only
does when the answer says so), the repair for audio lost on a subscriber's link (see
:mod:`sfu.rtp.loss_proxy`); ``minptime=10`` is what browsers offer. aiortc 1.16.0's Opus codec
has no parameters, so its answers and offers would carry no Opus fmtp at all."""


def enable_opus_inband_fec() -> None:
    """Give aiortc's Opus codec entry :data:`OPUS_FMTP` (idempotent, process-wide).

    aiortc writes a transceiver's codecs into both offers (``createOffer`` copies
    ``aiortc.codecs.CODECS``) and answers (``find_common_codecs`` deep-copies the matching
    local entry, not the remote one), so setting the parameters on that one entry covers the
    answer to a publisher and every subscribe offer; ``getCapabilities("audio")`` reports
    them too, so codec preferences built from it still match (``filter_preferred_codecs``
    compares parameters). Called when this module is imported.
    """
    for codec in aiortc.codecs.CODECS["audio"]:
        if codec.mimeType.lower() == "audio/opus":
            codec.parameters.update(OPUS_FMTP)


enable_opus_inband_fec()


@dataclass(slots=True)
class NegotiatedRtp:
    """RTP parameters negotiated for one transceiver (one m-line).

    Attributes:
        mid: the m-line's mid.
        kind: ``"audio"`` or ``"video"``.
        codecs: negotiated codecs, preferred first (aiortc ``RTCRtpCodecParameters``; RTX
            entries have ``mimeType`` ``video/rtx`` and an ``apt`` parameter).
        header_extensions: URI -> extension id (RFC 8285).
        ssrc: the media SSRC (remote for a receiver, local for a sender), or None when the
            remote side did not signal one.
        rtx_ssrc: the RTX SSRC (RFC 4588) or None.
        rtcp_ssrc: our own SSRC used as the sender SSRC of RTCP feedback for this m-line.
        cname: RTCP CNAME (RFC 3550 §6.5.1).
    """

    mid: str
    kind: str
    codecs: list[RTCRtpCodecParameters]
    header_extensions: dict[str, int]
    ssrc: int | None
    rtx_ssrc: int | None
    rtcp_ssrc: int
    cname: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class RtpSink(Protocol):
    """What a :class:`ForwardingPeerConnection` feeds. Implemented by ``sfu.transport``."""

    def on_rtp(self, data: bytes, arrival_ms: int) -> None:
        """One decrypted RTP packet (RFC 3550) arrived; ``arrival_ms`` is aiortc's clock."""

    def on_rtcp(self, data: bytes) -> None:
        """One decrypted (compound) RTCP packet arrived."""

    def on_receive_parameters(self, transceiver: RTCRtpTransceiver, rtp: NegotiatedRtp) -> None:
        """A receiving m-line is connected and negotiated."""

    def on_send_parameters(self, transceiver: RTCRtpTransceiver, rtp: NegotiatedRtp) -> None:
        """A sending m-line is connected and negotiated."""


class NullRtpSink:
    """An :class:`RtpSink` that ignores everything; subclass it and override what you need."""

    def on_rtp(self, data: bytes, arrival_ms: int) -> None:
        """Ignore RTP."""

    def on_rtcp(self, data: bytes) -> None:
        """Ignore RTCP."""

    def on_receive_parameters(self, transceiver: RTCRtpTransceiver, rtp: NegotiatedRtp) -> None:
        """Ignore a negotiated receiving m-line."""

    def on_send_parameters(self, transceiver: RTCRtpTransceiver, rtp: NegotiatedRtp) -> None:
        """Ignore a negotiated sending m-line."""


def _extension_ids(params: RTCRtpSendParameters | RTCRtpReceiveParameters) -> dict[str, int]:
    return {ext.uri: ext.id for ext in params.headerExtensions}


class ForwardingPeerConnection(RTCPeerConnection):
    """An ``RTCPeerConnection`` whose media bypasses aiortc's receivers and senders.

    Negotiation (createOffer/createAnswer, set*Description, ICE, DTLS) is aiortc's. Decrypted
    RTP/RTCP goes to ``sink``; no decoder thread, encoder or RTP task is ever started. Always
    use BUNDLE (aiortc's default ``max-bundle``) so one DTLS transport carries every m-line.
    With ``udp_mux`` its host candidates are on the mux's shared sockets (:func:`use_udp_mux`).
    """

    def __init__(
        self,
        sink: RtpSink,
        configuration: RTCConfiguration,
        *,
        srtp_counter: Callable[[bytes], None] | None = None,
        udp_mux: UdpMux | None = None,
    ) -> None:
        self._sink = sink
        self._srtp_counter = srtp_counter
        self._udp_mux = udp_mux
        super().__init__(configuration=configuration)

    # aiortc: RTCPeerConnection.__createDtlsTransport (name-mangled, private)
    def _RTCPeerConnection__createDtlsTransport(self) -> RTCDtlsTransport:
        dtls: RTCDtlsTransport = super()._RTCPeerConnection__createDtlsTransport()  # type: ignore[misc]
        raw = RawRtpTransport(dtls)
        sink = self._sink

        async def handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
            sink.on_rtp(data, arrival_time_ms)

        async def handle_rtcp_data(data: bytes) -> None:
            sink.on_rtcp(data)

        # RTCDtlsTransport._recv_next awaits these two after SRTP unprotect.
        dtls._handle_rtp_data = handle_rtp_data  # type: ignore[method-assign]
        dtls._handle_rtcp_data = handle_rtcp_data  # type: ignore[method-assign]
        dtls._sfu_raw = raw  # type: ignore[attr-defined]
        guard = IceInputGuard.install(dtls.transport._connection)
        guard.srtp_receiver = _direct_srtp(dtls, sink)
        if self._udp_mux is not None:
            use_udp_mux(dtls.transport._connection, self._udp_mux)
        if self._srtp_counter is not None:
            _count_srtp_before_decryption(dtls, self._srtp_counter)
        return dtls

    # aiortc: RTCPeerConnection.__createTransceiver (name-mangled, private)
    def _RTCPeerConnection__createTransceiver(
        self, direction: str, kind: str, sender_track: Any = None
    ) -> RTCRtpTransceiver:
        transceiver: RTCRtpTransceiver = super()._RTCPeerConnection__createTransceiver(  # type: ignore[misc]
            direction, kind, sender_track
        )
        sink = self._sink
        sender = transceiver.sender

        async def receive(parameters: RTCRtpReceiveParameters) -> None:
            sink.on_receive_parameters(transceiver, _receive_rtp(transceiver, parameters))

        async def send(parameters: RTCRtpSendParameters) -> None:
            sink.on_send_parameters(
                transceiver,
                NegotiatedRtp(
                    mid=parameters.muxId or transceiver.mid or "",
                    kind=kind,
                    codecs=list(parameters.codecs),
                    header_extensions=_extension_ids(parameters),
                    ssrc=sender._ssrc,
                    rtx_ssrc=sender._rtx_ssrc,
                    rtcp_ssrc=sender._ssrc,
                    cname=parameters.rtcp.cname,
                ),
            )

        transceiver.receiver.receive = receive  # type: ignore[method-assign]
        sender.send = send  # type: ignore[method-assign]
        return transceiver


def remote_receive_parameters(
    pc: ForwardingPeerConnection, transceiver: RTCRtpTransceiver
) -> NegotiatedRtp:
    """The receive parameters aiortc will use for ``transceiver`` once connected, available
    right after ``setRemoteDescription`` (codecs, header extension ids, signalled SSRCs)."""
    params: RTCRtpReceiveParameters = pc._RTCPeerConnection__remoteRtp(transceiver)  # type: ignore[attr-defined]
    return _receive_rtp(transceiver, params)


def _receive_rtp(transceiver: RTCRtpTransceiver, params: RTCRtpReceiveParameters) -> NegotiatedRtp:
    ssrc = rtx_ssrc = None
    for encoding in params.encodings:
        ssrc = encoding.ssrc
        if encoding.rtx is not None:
            rtx_ssrc = encoding.rtx.ssrc
        break
    return NegotiatedRtp(
        mid=params.muxId or transceiver.mid or "",
        kind=transceiver.kind,
        codecs=list(params.codecs),
        header_extensions=_extension_ids(params),
        ssrc=ssrc,
        rtx_ssrc=rtx_ssrc,
        rtcp_ssrc=transceiver.sender._ssrc,
        cname=params.rtcp.cname,
    )


def answer_as_dtls_server(pc: RTCPeerConnection) -> None:
    """Make our next answer say ``a=setup:passive`` to a remote ``a=setup:actpass`` offer.

    Call after ``setRemoteDescription(offer)`` and before ``createAnswer``. aiortc answers an
    ``actpass`` offer with ``active`` (it becomes the DTLS client and offers only ECDSA cipher
    suites, which an RSA-certificate DTLS server such as GStreamer's webrtcbin rejects with
    "no shared cipher"). As the DTLS server we pick the suite from the client's list instead,
    as Janus and LiveKit do. RFC 8842 §5.3 lets the answerer choose either role. Transports
    whose role is already fixed (an earlier negotiation, or an ``active`` offer) are left
    alone.
    """
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        # aiortc: RTCDtlsTransport._role ("auto" until negotiated) and _set_role (private)
        if dtls is not None and dtls._role == "auto" and dtls.state == "new":
            dtls._set_role("server")


def can_recycle(transceiver: RTCRtpTransceiver) -> bool:
    """True when a sending transceiver whose consumer closed may carry a new one: never
    offered yet (no mid), or its ``inactive`` direction has been negotiated (RFC 8829
    §5.2.2 allows reusing the m-line; the subscriber has seen the old stream end).

    aiortc never frees an m-line slot (a stopped transceiver keeps its m-line forever), so we
    reuse the transceiver itself: the same mid and SSRC, new codec preferences, direction
    back to ``sendonly``; aiortc re-derives the m-line's codecs from the preferences at every
    ``createOffer``.
    """
    if transceiver.stopped:
        return False
    return transceiver.mid is None or transceiver.currentDirection == "inactive"


def _direct_srtp(dtls: RTCDtlsTransport, sink: RtpSink) -> Callable[[bytes], bool]:
    """The SRTP/SRTCP branch of aiortc's ``RTCDtlsTransport._recv_next`` as a plain call
    (issue 14): the same counters, the same unprotect and the same sink, without a hop
    through the receive queue and the DTLS task (two event-loop wake-ups and a coroutine
    resumption per datagram). The returned function takes an SRTP/SRTCP datagram (first byte
    128-191, RFC 7983 §7) and returns False, leaving it to the queue, until the handshake has
    given the transport its SRTP keys. A datagram that fails authentication is dropped, as
    aiortc drops it; the sink's own errors are logged and never reach the socket's reader."""

    def receive(data: bytes) -> bool:
        rx_srtp = dtls._rx_srtp
        if rx_srtp is None:
            return False
        # aiortc: RTCDtlsTransport.__rx_bytes / __rx_packets (name-mangled; getStats reads them)
        dtls._RTCDtlsTransport__rx_bytes += len(data)  # type: ignore[attr-defined]
        dtls._RTCDtlsTransport__rx_packets += 1  # type: ignore[attr-defined]
        try:
            if is_rtcp(data):
                sink.on_rtcp(rx_srtp.unprotect_rtcp(data))
            else:
                arrival_time_ms = clock.current_ms()
                sink.on_rtp(rx_srtp.unprotect(data), arrival_time_ms)
        except pylibsrtp.Error:
            pass
        except Exception:  # one datagram's handling never stops the transport's input
            logger.exception("handling an SRTP datagram failed")
        return True

    return receive


def raw_transport(transceiver: RTCRtpTransceiver) -> RawRtpTransport:
    """The :class:`RawRtpTransport` that carries this transceiver's media (after BUNDLE)."""
    raw: RawRtpTransport = transceiver.sender.transport._sfu_raw  # type: ignore[attr-defined]
    return raw


def _count_srtp_before_decryption(dtls: RTCDtlsTransport, counter: Callable[[bytes], None]) -> None:
    """Hand every SRTP (not SRTCP) datagram to ``counter`` at the ICE layer and drop it there:
    no queue, no DTLS task, no decryption. For load-test listeners that only count packets;
    the SSRC and sequence number are in clear text in SRTP (RFC 3711 §3.1)."""
    connection = dtls.transport._connection
    deliver = connection.data_received

    def data_received(data: bytes, component: int) -> None:
        if len(data) >= 12 and 127 < data[0] < 192 and not 191 < data[1] < 224:
            counter(data)
            return
        deliver(data, component)

    connection.data_received = data_received  # type: ignore[method-assign]


def local_media_addresses(pc: RTCPeerConnection) -> list[tuple[str, int]]:
    """The (host, port) of every local ICE candidate of ``pc``'s transports: the UDP ports on
    which this peer connection receives media. Empty before ``setLocalDescription``."""
    out: list[tuple[str, int]] = []
    seen: set[int] = set()
    for transceiver in pc.getTransceivers():
        dtls = transceiver.sender.transport
        if dtls is None or id(dtls) in seen:
            continue
        seen.add(id(dtls))
        for candidate in dtls.transport.iceGatherer.getLocalCandidates():
            out.append((candidate.ip, candidate.port))
    return out


def sender_ssrcs(transceiver: RTCRtpTransceiver) -> tuple[int, int]:
    """The (media SSRC, RTX SSRC) aiortc will announce for this transceiver's sender."""
    return transceiver.sender._ssrc, transceiver.sender._rtx_ssrc


class RawRtpTransport:
    """Synchronous SRTP send on one aiortc DTLS transport's nominated ICE pair.

    ``send_rtp``/``send_rtcp`` take plaintext RTP/RTCP ``bytes`` (RFC 3550), protect them with
    the transport's SRTP session (RFC 3711, keys from DTLS-SRTP, RFC 5764) and hand them to the
    UDP socket without awaiting. Before DTLS is connected, or after close, packets are dropped
    and counted in ``dropped``.
    """

    __slots__ = (
        "_addr",
        "_connection",
        "_dtls",
        "_pair",
        "_sendto",
        "bytes_sent",
        "dropped",
        "packets_sent",
    )

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self._dtls = dtls
        self._connection = dtls.transport._connection  # aioice.Connection
        self._pair: Any = None
        self._sendto: Callable[[bytes, Any], None] | None = None
        self._addr: tuple[str, int] | None = None
        self.packets_sent = 0
        self.bytes_sent = 0
        self.dropped = 0

    @property
    def connected(self) -> bool:
        """True once DTLS is connected and SRTP keys exist."""
        return self._dtls._state is DtlsState.CONNECTED and self._dtls._tx_srtp is not None

    def _route(self) -> bool:
        pair = self._connection._nominated.get(1)
        if pair is None:
            return False
        if pair is not self._pair:
            self._pair = pair
            protocol = pair.protocol
            self._addr = pair.remote_addr
            sock = getattr(protocol.transport, "_sock", None)  # asyncio's socket (private)
            if type(protocol) is StunProtocol and sock is not None:
                # Straight to the non-blocking UDP socket: asyncio's DatagramTransport.sendto
                # adds checks and a write buffer we do not want (a full buffer drops, as UDP).
                self._sendto = sock.sendto
            else:  # relayed (TURN) candidate: its protocol wraps data itself
                self._sendto = None
        return True

    def _send(self, data: bytes) -> None:
        if self._pair is None or self._connection._nominated.get(1) is not self._pair:
            if not self._route():
                self.dropped += 1
                return
        sendto = self._sendto
        if sendto is not None:
            try:
                sendto(data, self._addr)
            except OSError:  # BlockingIOError (buffer full), unreachable...: drop
                self.dropped += 1
                return
        else:
            pair = self._pair
            spawn(pair.protocol.send_data(data, self._addr))
        self.packets_sent += 1
        self.bytes_sent += len(data)

    def send_target(self) -> tuple[int, tuple[str, int]] | None:
        """Where this transport's media goes: ``(fd, (host, port))``, the file descriptor of
        the UDP socket of the selected ICE candidate pair (with ``SFU_RTC_PORT`` the process's
        shared socket, see :mod:`sfu.udp_mux`) and the remote address, for a caller that sends
        SRTP itself (a compiled fan-out, ``sendto``/``sendmmsg``). None while no pair is
        selected, after close, or when the pair is relayed through TURN (its protocol wraps the
        data, so there is no plain socket to write to). The pair can change (aioice may nominate
        another one): call again on each control event."""
        if not self._route() or self._sendto is None:
            return None
        sock = getattr(self._pair.protocol.transport, "_sock", None)
        if sock is None or self._addr is None:
            return None
        fd: int = sock.fileno()
        if fd < 0:  # closed
            return None
        return fd, self._addr

    def send_rtp(self, data: bytes) -> None:
        """Protect and send one plaintext RTP packet. Never raises for transport state."""
        dtls = self._dtls
        if dtls._state is not DtlsState.CONNECTED:
            self.dropped += 1
            return
        try:
            protected = dtls._tx_srtp.protect(data)
        except Exception:  # pylibsrtp.Error: e.g. a repeated index without RTX
            self.dropped += 1
            return
        self._send(protected)

    def send_rtcp(self, data: bytes) -> None:
        """Protect and send one plaintext (compound) RTCP packet (SRTCP, RFC 3711 §3.4)."""
        dtls = self._dtls
        if dtls._state is not DtlsState.CONNECTED:
            self.dropped += 1
            return
        try:
            protected = dtls._tx_srtp.protect_rtcp(data)
        except Exception:
            self.dropped += 1
            return
        self._send(protected)


# -- hostile network input (issue 10) ----------------------------------------------------------
#
# Upstream bugs, aiortc 1.16.0 / aioice 0.13.0 (to report; the guard below works around them):
#
# * RTCDtlsTransport._recv_next reads ``data[0]`` of every datagram aioice hands it. An empty
#   UDP datagram, from any address, raises IndexError there; RTCDtlsTransport.__run lets it
#   escape, the DTLS transport goes to "closed" and the RTCPeerConnection closes. One zero-byte
#   datagram to a media port therefore ends a call.
# * aioice StunProtocol.datagram_received passes every datagram that does not parse as STUN to
#   Connection.data_received, whatever its source address, and Connection._queue is an
#   unbounded asyncio.Queue that nobody reads until DTLS starts (forever for a connection that
#   never completes ICE).
# * aioice classifies by trying to parse STUN first instead of by the first byte (RFC 7983), so
#   an SRTP packet whose bytes happen to form a valid STUN header would be taken for STUN; and
#   a STUN attribute too short for its type raises struct.error (not ValueError) out of
#   datagram_received.
# * aioice Connection.add_remote_candidate accepts any number of remote candidates and sends
#   connectivity checks (STUN requests) to each address.

ICE_QUEUE_MAX_DATAGRAMS = 256
"""Most datagrams queued between aioice and the DTLS transport of one connection. The DTLS
task drains the queue as fast as the event loop reads the socket; it only fills while nothing
reads (ICE not yet complete), so a legitimate peer never comes near this."""

ICE_QUEUE_MAX_BYTES = 256 * 1024
"""Most bytes queued between aioice and the DTLS transport of one connection."""

MAX_REMOTE_CANDIDATES = 20
"""Most remote ICE candidates (signalled and peer-reflexive) per connection; the rest are
dropped, so a client cannot make the server send connectivity checks to many addresses."""

# aioice's own method, even if this module is imported again after patching it.
_original_datagram_received = getattr(
    StunProtocol.datagram_received, "__wrapped__", StunProtocol.datagram_received
)


@dataclass(slots=True)
class IceInputDrops:
    """Counts of datagrams and candidates an :class:`IceInputGuard` dropped.

    Attributes:
        empty: zero-byte datagrams.
        unclassified: first byte outside the STUN (0-3), DTLS (20-63) and RTP/RTCP (128-191)
            ranges of RFC 7983, or data in the STUN range that is not STUN.
        malformed_stun: STUN-range datagrams on which aioice raised (e.g. struct.error for an
            attribute too short for its type); STUN-range data that does not parse as STUN at
            all counts as ``unclassified``.
        foreign: DTLS or SRTP/SRTCP from an address that is no candidate pair of the
            connection (selected or on the check list) and sent no authenticated check.
        queue_full: datagrams dropped because the receive queue held
            :data:`ICE_QUEUE_MAX_DATAGRAMS` datagrams or :data:`ICE_QUEUE_MAX_BYTES` bytes.
        after_close: datagrams that arrived after the connection started closing.
        candidates: remote candidates beyond :data:`MAX_REMOTE_CANDIDATES`.
    """

    empty: int = 0
    unclassified: int = 0
    malformed_stun: int = 0
    foreign: int = 0
    queue_full: int = 0
    after_close: int = 0
    candidates: int = 0

    def total_datagrams(self) -> int:
        """Every dropped datagram (not counting candidates)."""
        return (
            self.empty
            + self.unclassified
            + self.malformed_stun
            + self.foreign
            + self.queue_full
            + self.after_close
        )


class _DatagramQueue(asyncio.Queue[tuple[bytes, int] | None]):
    """aioice's receive queue, also counting the datagrams and bytes it holds (aioice's
    ``None`` end-of-connection marker not included), through the ``_init``/``_put``/``_get``
    hooks asyncio.Queue offers to subclasses."""

    queued_datagrams: int
    queued_bytes: int

    def _init(self, maxsize: int) -> None:
        super()._init(maxsize)
        self.queued_datagrams = 0
        self.queued_bytes = 0

    def _put(self, item: tuple[bytes, int] | None) -> None:
        if item is not None:
            self.queued_datagrams += 1
            self.queued_bytes += len(item[0])
        super()._put(item)

    def _get(self) -> tuple[bytes, int] | None:
        item = super()._get()
        if item is not None:
            self.queued_datagrams -= 1
            self.queued_bytes -= len(item[0])
        return item

    def release(self) -> None:
        """Drop every queued datagram, keeping one end-of-connection marker (aioice's
        ``recv`` then raises ConnectionError instead of waiting)."""
        while not self.empty():
            self.get_nowait()
        self.put_nowait(None)


def _is_dtls_or_rtp(first_byte: int) -> bool:
    # RFC 7983 §7: 20..63 DTLS, 128..191 RTP/RTCP.
    return 19 < first_byte < 64 or 127 < first_byte < 192


class IceInputGuard:
    """Screens the datagrams of one aioice ``Connection`` (one WebRtcTransport's UDP sockets).

    No datagram from anywhere may take a transport down (issue 10). Every datagram goes
    through :meth:`datagram_received` before aioice sees it:

    * empty datagrams are dropped (aiortc's DTLS loop dies on them, see the note above);
    * the first byte classifies it (RFC 7983 §7): STUN (0-3) goes to aioice, whose parser
      errors are contained; DTLS (20-63) and SRTP/SRTCP (128-191) are accepted only from a
      candidate pair of this connection: the selected pair, another pair on the check list
      (the peer may send on the pair it selected before we select one, or on a different one
      since aioice nominates aggressively), or an address whose authenticated check awaits
      connect(); anything else is dropped;
    * the receive queue in front of the DTLS transport is bounded by
      :data:`ICE_QUEUE_MAX_DATAGRAMS` and :data:`ICE_QUEUE_MAX_BYTES`;
    * at most :data:`MAX_REMOTE_CANDIDATES` remote candidates are kept, so the server never
      sends connectivity checks to more addresses than that.

    Install with :meth:`install`; ``drops`` counts what was dropped.
    """

    __slots__ = (
        "_addr",
        "_check_credentials",
        "_connection",
        "_pair",
        "_queue",
        "_request_received",
        "checks_answered",
        "drops",
        "prober",
        "received",
        "srtp_receiver",
    )

    def __init__(self, connection: IceConnection) -> None:
        self._connection = connection
        self._pair: Any = None
        self._addr: tuple[str, int] | None = None
        self.drops = IceInputDrops()
        self.received = 0  # DTLS/SRTP datagrams accepted from the peer (liveness watchdog)
        self._queue = _DatagramQueue()
        self._request_received = connection.request_received
        # The liveness watchdog's consent checks (consent_prober): their answers stop here.
        self.prober: ConsentProber | None = None
        # SRTP/SRTCP straight to the DTLS transport's SRTP branch (_direct_srtp): True when
        # taken, False before the DTLS handshake gave SRTP keys (then it is queued).
        self.srtp_receiver: Callable[[bytes], bool] | None = None
        # (USERNAME, key) of the peer's checks once both ufrags are known (_answer_check).
        self._check_credentials: tuple[bytes, bytes] | None = None
        self.checks_answered = 0  # the peer's checks answered by _answer_check

    @classmethod
    def install(cls, connection: IceConnection) -> IceInputGuard:
        """Guard ``connection`` (before it gathers candidates). Idempotent.

        Raises:
            RuntimeError: when datagrams were already queued (too late to replace the queue).
        """
        existing: IceInputGuard | None = getattr(connection, "_sfu_guard", None)
        if existing is not None:
            return existing
        if not connection._queue.empty():
            raise RuntimeError("IceInputGuard must be installed before any datagram arrives")
        guard = cls(connection)
        connection._queue = guard._queue
        connection.data_received = guard.data_received  # type: ignore[method-assign]
        connection.request_received = guard.request_received  # type: ignore[method-assign]
        add_remote_candidate = connection.add_remote_candidate

        async def add_remote_candidate_capped(candidate: IceCandidate | None) -> None:
            if candidate is not None and guard._candidates_full():
                guard.drops.candidates += 1
                if guard.drops.candidates == 1:  # once per connection: a client may send many
                    logger.info(
                        "more than %d remote ICE candidates: dropping %s:%s and any later ones",
                        MAX_REMOTE_CANDIDATES,
                        candidate.host,
                        candidate.port,
                    )
                return
            await add_remote_candidate(candidate)

        connection.add_remote_candidate = add_remote_candidate_capped  # type: ignore[method-assign,assignment]
        close = connection.close

        async def close_and_release() -> None:
            await close()
            guard._queue.release()

        connection.close = close_and_release  # type: ignore[method-assign]
        connection._sfu_guard = guard  # type: ignore[attr-defined]
        _install_datagram_hook()
        return guard

    def queued(self) -> tuple[int, int]:
        """(datagrams, bytes) waiting between aioice and the DTLS transport."""
        return self._queue.queued_datagrams, self._queue.queued_bytes

    def remote_candidate_count(self) -> int:
        """Remote candidates the connection holds (signalled and peer-reflexive)."""
        return len(self._connection._remote_candidates)

    def _candidates_full(self) -> bool:
        connection = self._connection
        held = len(connection._remote_candidates) + connection._remote_candidates_resolving
        return held >= MAX_REMOTE_CANDIDATES

    def _from_peer(self, protocol: StunProtocol, addr: tuple[str, int]) -> bool:
        connection = self._connection
        pair = connection._nominated.get(protocol.local_candidate.component)
        if pair is not None:  # the selected pair: the fast path
            if pair is not self._pair:
                self._pair = pair
                self._addr = pair.remote_addr
            if pair.protocol is protocol and addr == self._addr:
                return True
        # Any other pair on the check list: its remote address was signalled by the peer or
        # proved by an authenticated check. aioice nominates aggressively when controlling
        # (USE-CANDIDATE on every check), so the two agents can select different pairs and the
        # peer may send on one that is not our selected pair.
        for pair in connection._check_list:
            if pair.protocol is protocol and pair.remote_addr == addr:
                return True
        # Authenticated checks that arrived before connect() (the offerer has not yet got the
        # answer with the peer's password): a browser answering our offer starts DTLS then.
        for _message, early_addr, early_protocol in connection._early_checks:
            if early_protocol is protocol and early_addr == addr:
                return True
        return False

    def datagram_received(self, protocol: StunProtocol, data: bytes, addr: tuple[Any, ...]) -> None:
        """Screen one datagram that arrived on ``protocol``'s socket from ``addr``."""
        if not data:
            self.drops.empty += 1
            return
        first = data[0]
        if first < 4:  # STUN (RFC 7983 §7)
            prober = self.prober
            if first == 1 and prober is not None and prober.response_received(data):
                return  # the answer to a liveness check (a STUN response class, 0x01xx)
            if first == 0 and self._answer_check(protocol, data, addr):
                return
            try:
                _original_datagram_received(protocol, data, addr)
            except Exception:  # struct.error and friends from aioice's STUN parser
                self.drops.malformed_stun += 1
            return
        if not _is_dtls_or_rtp(first):
            self.drops.unclassified += 1
            return
        if not self._from_peer(protocol, (addr[0], addr[1])):
            self.drops.foreign += 1
            return
        self.received += 1
        # Through the connection's attribute: a load-test counter may wrap data_received.
        self._connection.data_received(data, protocol.local_candidate.component)

    def _answer_check(self, protocol: StunProtocol, data: bytes, addr: tuple[Any, ...]) -> bool:
        """Answer the peer's steady-state check (its consent freshness, RFC 7675 §5.2) on the
        selected pair without aioice (issue 14): what aioice's ``request_received`` would send
        for it, and its ``check_incoming`` would do nothing for a check on a succeeded,
        selected pair without USE-CANDIDATE. False (aioice handles it) for any other request:
        another pair or address, nomination, a role conflict, unknown credentials."""
        connection = self._connection
        pair = connection._nominated.get(protocol.local_candidate.component)
        if (
            pair is None
            or pair.protocol is not protocol
            or pair.state != IceCandidatePairState.SUCCEEDED
            or connection._closing
        ):
            return False
        remote = (addr[0], addr[1])
        if remote != pair.remote_addr:
            return False
        credentials = self._check_credentials
        if credentials is None:
            if connection.remote_username is None:
                return False
            credentials = self._check_credentials = (
                f"{connection.local_username}:{connection.remote_username}".encode(),
                connection.local_password.encode("utf8"),
            )
        username, key = credentials
        if not is_plain_check(data, username, key, connection.ice_controlling):
            return False
        transport = protocol.transport
        if transport is None:
            return False
        transport.sendto(binding_success(bytes(data[8:20]), remote, key), remote)
        self.checks_answered += 1
        return True

    def data_received(self, data: bytes, component: int) -> None:
        """Replaces ``Connection.data_received``: queue DTLS/SRTP for the DTLS transport,
        within the bounds; drop anything else (aioice hands over STUN-range data that failed
        to parse as STUN)."""
        if not data or not _is_dtls_or_rtp(data[0]):
            self.drops.unclassified += 1
            return
        if self._connection._closing:
            self.drops.after_close += 1
            return
        queue = self._queue
        receiver = self.srtp_receiver
        if receiver is not None and data[0] > 127 and queue.empty() and receiver(data):
            return
        if (
            queue.queued_datagrams >= ICE_QUEUE_MAX_DATAGRAMS
            or queue.queued_bytes + len(data) > ICE_QUEUE_MAX_BYTES
        ):
            self.drops.queue_full += 1
            return
        queue.put_nowait((data, component))

    def request_received(self, message: Any, addr: tuple[str, int], protocol: StunProtocol) -> None:
        """Replaces ``Connection.request_received``: a STUN request from an address that is
        no remote candidate yet would become a peer-reflexive one (RFC 8445 §7.3.1.3); once
        :data:`MAX_REMOTE_CANDIDATES` are held it is dropped unanswered."""
        if self._candidates_full() and not any(
            c._network_host == addr[0] and c.port == addr[1]
            for c in self._connection._remote_candidates
        ):
            self.drops.candidates += 1
            return
        self._request_received(message, addr, protocol)


def _guarded_datagram_received(
    self: StunProtocol, data: bytes | str, addr: tuple[Any, ...]
) -> None:
    guard: IceInputGuard | None = getattr(self.receiver, "_sfu_guard", None)
    if guard is None:  # a connection we do not guard (e.g. an aiortc client in a test)
        _original_datagram_received(self, data, addr)
        return
    guard.datagram_received(self, data, addr)  # type: ignore[arg-type]


_guarded_datagram_received.__wrapped__ = _original_datagram_received  # type: ignore[attr-defined]


def _install_datagram_hook() -> None:
    """Route every aioice StunProtocol's datagrams through its connection's guard (a
    process-wide patch of ``StunProtocol.datagram_received``; unguarded connections keep
    aioice's behaviour). Every socket is covered from its creation, host and relayed alike."""
    if StunProtocol.datagram_received is not _guarded_datagram_received:
        StunProtocol.datagram_received = _guarded_datagram_received  # type: ignore[method-assign]


def consent_prober(pc: RTCPeerConnection, take_over: bool = False) -> ConsentProber | None:
    """The :class:`sfu.consent.ConsentProber` of ``pc``'s selected ICE candidate pair (made on
    first use, kept on the transport's :class:`IceInputGuard`, which hands it the answers
    before aioice parses them): STUN consent checks (RFC 7675 §5.1) with aioice's own
    credentials, role, tie-breaker and PRIORITY (those of ``Connection.build_request``), sent
    on the selected pair's socket. Any live ICE agent answers at once, whether or not it sends
    media.

    ``take_over``: the caller keeps consent freshness from now on (checks every ~5 s, expiry
    after 30 s), so aioice's own periodic consent task (``Connection.query_consent``: an
    asyncio transaction every 5 s) is cancelled.

    Returns None while there is no selected pair or remote password (not connected).
    """
    guard = ice_input_guard(pc)
    if guard is None:
        return None
    connection = guard._connection
    if take_over:
        # aioice: Connection._query_consent_task (private), started by connect(); close()
        # copes with a cancelled one.
        task = connection._query_consent_task
        if task is not None and not task.done():
            task.cancel()
    if guard.prober is not None:
        return guard.prober
    if connection.remote_password is None or connection._nominated.get(1) is None:
        return None
    nominated = connection._nominated

    def send(data: bytes) -> bool:
        pair = nominated.get(1)
        if pair is None:
            return False
        transport = pair.protocol.transport
        if transport is None or transport.is_closing():
            return False
        try:
            transport.sendto(data, pair.remote_addr)
        except OSError:  # a full send buffer: as a lost datagram
            pass
        return True

    guard.prober = ConsentProber(
        username=f"{connection.remote_username}:{connection.local_username}",
        password=connection.remote_password,
        priority=candidate_priority(1, "prflx"),
        controlling=connection.ice_controlling,
        tie_breaker=connection._tie_breaker,
        send=send,
    )
    return guard.prober


def ice_input_guard(pc: RTCPeerConnection) -> IceInputGuard | None:
    """The :class:`IceInputGuard` of ``pc``'s (bundled) transport, or None before one exists."""
    for transceiver in pc.getTransceivers():
        dtls = transceiver.sender.transport
        if dtls is not None:
            guard: IceInputGuard | None = getattr(dtls.transport._connection, "_sfu_guard", None)
            return guard
    return None


# -- one UDP port per process (issue 14) -------------------------------------------------------


def open_udp_mux(port: int, announced_host: str | None = None) -> UdpMux:
    """Bind a :class:`sfu.udp_mux.UdpMux` on ``port`` for every ICE host address (those of
    :func:`set_ice_host_addresses`, else aioice's own enumeration of the interfaces); the
    candidates name ``announced_host`` instead when given.

    Raises:
        ValueError: when there is no host address to bind.
        OSError: when an address cannot be bound on ``port`` (e.g. the port is in use).
    """
    hosts = aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True)
    mux = UdpMux(list(hosts), port, announced_host)
    logger.info(
        "WebRTC media on one UDP port: %s",
        ", ".join(f"{s.address[0]}:{s.address[1]}" for s in mux.sockets.values())
        + (f" (candidates name {announced_host})" if announced_host else ""),
    )
    return mux


class _MuxTransport:
    """The ``asyncio.DatagramTransport`` of one aioice ``StunProtocol`` whose socket is a
    shared :class:`sfu.udp_mux.UdpMuxSocket`: sends go through the mux (which learns the
    STUN transactions and the addresses this connection answered), the mux delivers this
    connection's datagrams to :meth:`datagram_received`. ``_sock`` is the shared socket, as
    on asyncio's own transports, so :class:`RawRtpTransport` sends SRTP on it directly."""

    __slots__ = ("_closed", "_guard", "_mux_socket", "_protocol", "_sock")

    def __init__(self, mux_socket: UdpMuxSocket, protocol: StunProtocol) -> None:
        self._mux_socket = mux_socket
        self._protocol = protocol
        self._sock = mux_socket.socket
        self._closed = False
        self._guard: IceInputGuard | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        """A datagram the mux routed to this connection: to the connection's
        :class:`IceInputGuard` (what the patched ``StunProtocol.datagram_received`` does,
        one call shorter)."""
        guard = self._guard
        if guard is None:
            guard = self._guard = getattr(self._protocol.receiver, "_sfu_guard", None)
            if guard is None:
                self._protocol.datagram_received(data, addr)
                return
        guard.datagram_received(self._protocol, data, addr)

    def sendto(self, data: bytes, addr: tuple[str, int] | None = None) -> None:
        """Send on the shared socket (dropped once closed)."""
        if self._closed or addr is None:
            return
        try:
            self._mux_socket.send(self, data, addr)
        except OSError:  # a full socket buffer drops, as UDP would
            pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``sockname`` is the shared socket's address; no ``socket`` is exposed (nobody may
        change options of the socket every transport shares)."""
        if name == "sockname":
            return self._mux_socket.address
        return default

    def is_closing(self) -> bool:
        """True once closed."""
        return self._closed

    def close(self) -> None:
        """Leave the mux (ufrag, addresses, transactions) and report the protocol lost."""
        if self._closed:
            return
        self._closed = True
        self._mux_socket.unregister(self)
        asyncio.get_running_loop().call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        """Same as :meth:`close`."""
        self.close()


def use_udp_mux(connection: IceConnection, mux: UdpMux) -> None:
    """Make ``connection`` (before it gathers) take its host candidates on ``mux``'s shared
    sockets instead of binding sockets of its own: a fresh ICE ufrag unique on the mux, one
    aioice ``StunProtocol`` per host address whose transport is a :class:`_MuxTransport`.
    Server-reflexive (STUN server) candidates are gathered on the shared sockets too;
    relayed (TURN) candidates keep their own sockets, as aioice makes them."""
    # aioice: Connection._local_username (private); aiortc reads local_username when it
    # writes the SDP, after this.
    connection._local_username = mux.allocate_ufrag()
    original = connection.get_component_candidates

    async def get_component_candidates(
        component: int, addresses: list[str], timeout: int = 5
    ) -> list[IceCandidate]:
        await mux.start()
        candidates: list[IceCandidate] = []
        host_protocols: list[StunProtocol] = []
        for address in addresses:
            mux_socket = mux.socket_for(address)
            if mux_socket is None:
                logger.warning("ICE host %s has no socket on the shared port %d", address, mux.port)
                continue
            protocol = StunProtocol(connection)
            transport = _MuxTransport(mux_socket, protocol)
            mux_socket.register(connection.local_username, transport)
            protocol.connection_made(transport)  # type: ignore[arg-type]
            host, port = mux_socket.announced
            protocol.local_candidate = IceCandidate(
                foundation=candidate_foundation("host", "udp", host),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "host"),
                host=host,
                port=port,
                type="host",
            )
            candidates.append(protocol.local_candidate)
            host_protocols.append(protocol)
        # aioice: Connection._protocols (private): the sockets close() closes, pairs form on.
        connection._protocols += host_protocols
        if connection.stun_server is not None:
            tasks = [
                asyncio.ensure_future(
                    aioice.ice.server_reflexive_candidate(protocol, connection.stun_server)
                )
                for protocol in host_protocols
                if ":" not in protocol.local_candidate.host
            ]
            if tasks:
                done, pending = await asyncio.wait(tasks, timeout=timeout)
                candidates += [t.result()[0] for t in done if t.exception() is None]
                for task in pending:
                    task.cancel()
        # aioice's own gathering with no host address: only a TURN relay, if configured.
        if connection.turn_server is not None:
            candidates += await original(component=component, addresses=[], timeout=timeout)
        return candidates

    connection.get_component_candidates = get_component_candidates  # type: ignore[method-assign]


# -- compiled forwarding path (issue 14) -------------------------------------------------------


def srtp_tx_key(raw: RawRtpTransport) -> tuple[int, bytes] | None:
    """The outbound SRTP master key of ``raw``'s DTLS transport, for a second SRTP context
    (``sfu._fastpath.SrtpSender``) that protects the RTP our consumers send.

    Derived again exactly as aiortc's ``RTCDtlsTransport._setup_srtp`` does (RFC 5764 §4.2:
    the ``EXTRACTOR-dtls_srtp`` exporter, client key first); the DTLS connection keeps
    exporting the same material after the handshake.

    Returns:
        (libsrtp profile number, master key || master salt bytes), or None before DTLS is
        connected (or when the transport is closed).
    """
    dtls = raw._dtls
    if dtls._state is not DtlsState.CONNECTED or dtls._tx_srtp is None or dtls._ssl is None:
        return None
    openssl_profile = dtls._ssl.get_selected_srtp_profile()
    for profile in dtls._srtp_profiles:
        if profile.openssl_profile == openssl_profile:
            break
    else:
        return None
    view = dtls._ssl.export_keying_material(
        b"EXTRACTOR-dtls_srtp", 2 * (profile.key_length + profile.salt_length)
    )
    key: bytes = profile.get_key_and_salt(view, 1 if dtls._role == "server" else 0)
    return int(profile.libsrtp_profile), key


def media_route(raw: RawRtpTransport) -> tuple[int, tuple[str, int]] | None:
    """Where ``raw`` sends media: (UDP socket fd, remote (host, port)) of the nominated ICE
    pair when it is a host/server-reflexive candidate with its own socket (or the process's
    shared socket with ``SFU_RTC_PORT``); None when there is no nominated pair yet or it is
    relayed (TURN: :meth:`RawRtpTransport.send_protected` sends those). The same as
    :meth:`RawRtpTransport.send_target`."""
    return raw.send_target()


def send_protected(raw: RawRtpTransport, data: bytes) -> None:
    """Send one already SRTP-protected datagram on ``raw``'s nominated pair (relayed
    candidates included); counted in ``raw.packets_sent``/``dropped``."""
    raw._send(data)


def native_sender(raw: RawRtpTransport) -> Any:
    """The compiled SRTP sender attached to ``raw``'s DTLS transport (:func:`set_native_sender`),
    or None. It lives as long as the DTLS transport: one SRTP context per SSRC for the whole
    life of the transport, whatever consumers come and go on it."""
    return getattr(raw._dtls, "_sfu_native", None)


def set_native_sender(raw: RawRtpTransport, sender: Any) -> None:
    """Attach ``sender`` to ``raw``'s DTLS transport (see :func:`native_sender`)."""
    raw._dtls._sfu_native = sender  # type: ignore[attr-defined]


# -- decoding receivers (RoomClient): browser-like loss recovery --------------------------------

NACK_RETRY_INTERVAL_MS = 100
"""How long a decoding receiver waits for a NACKed packet before it NACKs it again (ms).
libwebrtc's NackRequester re-sends each missing sequence number every RTT, 100 ms before an RTT
is known; aiortc 1.16.0 NACKs a packet again only when a new gap happens to appear."""

NACK_MAX_RETRIES = 10
"""NACKs sent for one sequence number before it is given up (libwebrtc ``kMaxNackRetries``)."""

NACK_MAX_PACKETS = 1000
"""Missing sequence numbers tracked at once (libwebrtc ``kMaxNackPackets``); beyond it the
oldest are given up. aiortc keeps only those within 128 of the highest one received."""


class RetryingNackGenerator(NackGenerator):
    """aiortc's ``NackGenerator`` with libwebrtc's retry rules (RFC 4585 §6.2.1 generic NACK).

    aiortc's receiver calls :meth:`add` for every RTP packet (RTX already unwrapped) and, when it
    returns True, sends one generic NACK listing ``sorted(self.missing)``. Here ``missing`` is
    the set due in that NACK: packets newly found missing, and packets still missing whose last
    NACK is at least :data:`NACK_RETRY_INTERVAL_MS` old. A sequence number is given up after
    :data:`NACK_MAX_RETRIES` NACKs, or when more than :data:`NACK_MAX_PACKETS` are missing (the
    oldest); ``on_give_up(media_ssrc, seqs)`` is then called once per :meth:`add` with the
    16-bit sequence numbers given up in it.

    Without retries a lost retransmission is never asked for again: the video jitter buffer
    then waits on that one packet until 512 newer ones have arrived (about 34 s at 15 packets/s).
    """

    def __init__(
        self,
        on_give_up: Callable[[int, list[int]], None],
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        """``clock_ms`` returns a monotonic time in ms (aiortc's clock by default)."""
        super().__init__()
        self._on_give_up = on_give_up
        self._clock_ms = clock_ms
        self._pending: dict[int, list[int]] = {}  # seq -> [last NACK ms, NACKs sent]

    @property
    def pending(self) -> list[int]:
        """Sequence numbers still missing and not given up, oldest first."""
        return list(self._pending)

    def add(self, packet: RtpPacket) -> bool:
        """Record ``packet`` (its ``sequence_number`` and ``ssrc``); True when a NACK is due,
        for the sequence numbers then in :attr:`missing`."""
        seq = packet.sequence_number
        self.missing = set()
        if self.max_seq is None:
            self.max_seq = seq
            return False
        now = self._clock_ms()
        given_up: list[int] = []
        if uint16_gt(seq, self.max_seq):
            # The newly lost, oldest first; the overflow below gives up what exceeds the
            # window. A jump enters at most two windows' worth: what lies beyond is neither
            # tracked nor reported (the newest given up suffice to unblock a jitter buffer,
            # which is smaller than the window).
            lost = uint16_add(seq, -self.max_seq) - 1
            for i in range(min(lost, 2 * NACK_MAX_PACKETS), 0, -1):
                self._pending[uint16_add(seq, -i)] = [now - NACK_RETRY_INTERVAL_MS, 0]
            self.max_seq = seq
        else:
            self._pending.pop(seq, None)
        while len(self._pending) > NACK_MAX_PACKETS:
            oldest = next(iter(self._pending))
            del self._pending[oldest]
            given_up.append(oldest)
        for s, entry in list(self._pending.items()):
            if now - entry[0] < NACK_RETRY_INTERVAL_MS:
                continue
            if entry[1] >= NACK_MAX_RETRIES:
                del self._pending[s]
                given_up.append(s)
                continue
            entry[0] = now
            entry[1] += 1
            self.missing.add(s)
        if given_up:
            self._on_give_up(packet.ssrc, given_up)
        return bool(self.missing)

    def truncate(self) -> None:
        """No-op: :meth:`add` bounds the tracked set itself (aiortc's own rule drops packets
        128 behind the newest, which is what stalled video)."""


def skip_lost_packets(jitter_buffer: JitterBuffer, seqs: Iterable[int]) -> int:
    """Make ``jitter_buffer`` (aiortc's, 16-bit sequence numbers) stop waiting for ``seqs``.

    Drops every packet up to and including the newest of ``seqs`` that lies in the buffer's
    window, then the rest of that packet's frame (packets after it that share the timestamp of
    the packet before it, when that one did not end its frame with the RTP marker bit), so the
    next complete frame can be decoded. Returns the number of slots dropped (0 when none of
    ``seqs`` was still awaited).
    """
    origin = jitter_buffer._origin
    if origin is None:
        return 0
    capacity = jitter_buffer.capacity
    deltas = [uint16_add(s, -origin) for s in seqs]
    inside = [d for d in deltas if d < capacity]
    if not inside:
        return 0
    count = max(inside) + 1
    before = jitter_buffer._packets[(origin + count - 2) % capacity] if count >= 2 else None
    while before is not None and not before.marker and count < capacity:
        after = jitter_buffer._packets[(origin + count) % capacity]
        if after is None or after.timestamp != before.timestamp:
            break
        count += 1
    jitter_buffer.remove(count)
    return count


def browser_like_recovery(receiver: RTCRtpReceiver) -> bool:
    """Give aiortc's decoding video ``receiver`` a browser's loss recovery (libwebrtc's
    NackRequester and frame buffer), in place:

    * NACKs repeated by :class:`RetryingNackGenerator` (RFC 4585 §6.2.1);
    * for packets it gives up: a jitter-buffer skip (:func:`skip_lost_packets`) and a PLI
      (RFC 4585 §6.3.1), as libwebrtc asks for a keyframe when a frame cannot be completed;
    * every complete frame goes to the decoder as soon as it is complete. aiortc takes at most
      one frame per RTP packet received, so frames completed together (a late retransmission
      completes every frame queued behind it) would otherwise stay a permanent delay.

    Idempotent; keeps the generator's state. Returns False for receivers without a NACK
    generator (audio), which are left alone.
    """
    current = receiver._RTCRtpReceiver__nack_generator  # type: ignore[attr-defined]
    if current is None:
        return False
    if isinstance(current, RetryingNackGenerator):
        return True
    jitter_buffer: JitterBuffer = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]

    def give_up(media_ssrc: int, seqs: list[int]) -> None:
        if skip_lost_packets(jitter_buffer, seqs):
            spawn(receiver._send_rtcp_pli(media_ssrc))

    generator = RetryingNackGenerator(give_up)
    generator.max_seq = current.max_seq
    for seq in sorted(current.missing, key=lambda s: uint16_add(s, -(current.max_seq or 0))):
        generator._pending[seq] = [now_ms(), 1]
    receiver._RTCRtpReceiver__nack_generator = generator  # type: ignore[attr-defined]

    handle_rtp_packet = receiver._handle_rtp_packet

    async def handle_and_drain(packet: RtpPacket, arrival_time_ms: int) -> None:
        await handle_rtp_packet(packet, arrival_time_ms)
        if receiver._RTCRtpReceiver__decoder_thread is not None:  # type: ignore[attr-defined]
            drain_complete_frames(receiver)

    receiver._handle_rtp_packet = handle_and_drain  # type: ignore[method-assign]
    return True


def drain_complete_frames(receiver: RTCRtpReceiver) -> int:
    """Queue every complete frame left in ``receiver``'s jitter buffer for its decoder thread,
    as aiortc queues one (RTP timestamp mapped by the receiver's ``TimestampMapper``, codec by
    the first packet's payload type). Returns the number of frames queued."""
    jitter_buffer: JitterBuffer = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
    codecs: dict[int, RTCRtpCodecParameters] = receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined]
    queued = 0
    while jitter_buffer._origin is not None:
        first = jitter_buffer._packets[jitter_buffer._origin % jitter_buffer.capacity]
        codec = codecs.get(first.payload_type) if first is not None else None
        if first is None or codec is None:
            break
        frame = jitter_buffer._remove_frame(first.sequence_number)
        if frame is None:
            break
        frame.timestamp = receiver._RTCRtpReceiver__timestamp_mapper.map(frame.timestamp)  # type: ignore[attr-defined]
        receiver._RTCRtpReceiver__decoder_queue.put((codec, frame))  # type: ignore[attr-defined]
        queued += 1
    return queued
