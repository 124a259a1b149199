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
  ICE candidate pair.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aioice.ice
import aiortc
from aioice.ice import StunProtocol
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpTransceiver,
    clock,
)
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpReceiveParameters,
    RTCRtpSendParameters,
)

from sfu.tasks import spawn

logger = logging.getLogger(__name__)

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
    """

    def __init__(
        self,
        sink: RtpSink,
        configuration: RTCConfiguration,
        *,
        srtp_counter: Callable[[bytes], None] | None = None,
    ) -> None:
        self._sink = sink
        self._srtp_counter = srtp_counter
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
