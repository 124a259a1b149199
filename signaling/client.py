"""A Python client of the signaling protocol, built on aiortc (tests, benchmarks, load tests).

:class:`RoomClient` joins a room over ``/ws``, publishes aiortc ``MediaStreamTrack`` objects on
its publish RTCPeerConnection and answers the server's subscribe offers. Received tracks are
available by producer (track sid). With ``count_only=True`` the subscribe side does not decode:
it counts RTP packets per SSRC through the SFU's own adapter (used by benchmarks that simulate
hundreds of listeners).

Staying connected (docs/protocol.md "Resume"): the client keeps the ``resume_token`` of
``joined`` and the ``seq`` of the last message it read. :meth:`RoomClient.reconnect` opens a
new socket and sends ``resume`` (the server replays what was missed; media is untouched);
when the server no longer holds the session (``resume_failed``, e.g. after a restart) it joins
again with the same token and publishes the same tracks. With ``auto_reconnect=True`` it does
so by itself when the socket drops, retrying with exponential backoff and full jitter.

Clusters (docs/cluster.md): a ``join`` answered with ``redirect`` (a full or draining node) is
sent again to the node it names, at most :data:`MAX_REDIRECTS` times; a ``redirect`` event
(the node drains) points the next reconnect at the named node (:attr:`RoomClient.url`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.exceptions import InvalidStateError
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket

from sfu import _aiortc_adapter as adapter
from sfu.rtp.header import parse_rtp
from sfu.tasks import spawn

MAX_REDIRECTS = 3
"""Most ``redirect`` replies one join follows (docs/cluster.md) before giving up."""


class SignalingError(Exception):
    """An ``error`` message from the server: ``code`` and ``message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class ReceivedTrack:
    """A subscribed producer: its ids and, unless count-only, the aiortc track."""

    mid: str
    participant: str
    track_sid: str
    kind: str
    track: MediaStreamTrack | None = None


@dataclass
class PacketCounter:
    """Per-SSRC RTP packet counts of a count-only subscriber.

    ``arrivals`` holds (monotonic arrival s, payload bytes) when ``keep_payloads`` is set
    (those listeners decrypt every packet; the others count SRTP datagrams without decrypting).
    """

    packets: dict[int, int] = field(default_factory=dict)
    last_seq: dict[int, int] = field(default_factory=dict)  # SSRC -> latest sequence number
    seqs: dict[int, list[int]] = field(default_factory=dict)
    arrivals: list[tuple[float, bytes]] = field(default_factory=list)
    keep_payloads: bool = False
    keep_seqs: bool = False


RECEIVER_REPORT_INTERVAL_S = 1.0
"""Mean interval (s) of a count-only subscriber's receiver reports while it receives video,
randomised by ±50% (RFC 3550 §6.2), as a browser's video receiver reports
(libWebRTC's ``kDefaultVideoReportIntervalMs``)."""

AUDIO_RECEIVER_REPORT_INTERVAL_S = 5.0
"""Mean interval (s) of its receiver reports while it receives audio only, randomised by
±50%: a browser's audio receiver reports every 5 s (libWebRTC's
``kDefaultAudioReportIntervalMs``), so a benchmark of listeners sees their real RTCP load."""


class _CountingSink(adapter.NullRtpSink):
    """An :class:`adapter.RtpSink` that counts packets and never decodes; it can build the
    receiver reports a real receiver sends (:meth:`receiver_report`)."""

    def __init__(self, counter: PacketCounter, on_packet: Callable[[], None] | None) -> None:
        self.counter = counter
        self.on_packet = on_packet
        self.raw: adapter.RawRtpTransport | None = None  # set once an m-line is negotiated
        self.rtcp_ssrc = 0

    def on_receive_parameters(
        self, transceiver: RTCRtpTransceiver, rtp: adapter.NegotiatedRtp
    ) -> None:
        """Remember the transport (and our RTCP SSRC) the receiver reports go out on."""
        if self.raw is None:
            self.raw = adapter.raw_transport(transceiver)
            self.rtcp_ssrc = rtp.rtcp_ssrc

    def receiver_report(self) -> bytes | None:
        """One RTCP RR (RFC 3550 §6.4.2) with a report block per SSRC received: the highest
        sequence number seen, no loss and no jitter claimed (packets are counted, not
        reordered), LSR/DLSR zero. None before anything arrived."""
        counter = self.counter
        blocks = [
            RtcpReceiverInfo(
                ssrc=ssrc,
                fraction_lost=0,
                packets_lost=0,
                highest_sequence=counter.last_seq.get(ssrc, 0),
                jitter=0,
                lsr=0,
                dlsr=0,
            )
            for ssrc in list(counter.packets)[:31]
        ]
        return bytes(RtcpRrPacket(ssrc=self.rtcp_ssrc, reports=blocks)) if blocks else None

    def on_rtp(self, data: bytes, arrival_ms: int) -> None:
        ssrc = int.from_bytes(data[8:12], "big")
        counter = self.counter
        counter.packets[ssrc] = counter.packets.get(ssrc, 0) + 1
        counter.last_seq[ssrc] = int.from_bytes(data[2:4], "big")
        if counter.keep_seqs:
            counter.seqs.setdefault(ssrc, []).append(int.from_bytes(data[2:4], "big"))
        if counter.keep_payloads:
            fields = parse_rtp(data)
            counter.arrivals.append((time.monotonic(), data[fields[8] : fields[9]]))

    def on_rtp_encrypted(self, data: bytes) -> None:
        """Count one SRTP packet by its clear-text SSRC, without decrypting it."""
        ssrc = int.from_bytes(data[8:12], "big")
        counter = self.counter
        counter.packets[ssrc] = counter.packets.get(ssrc, 0) + 1
        counter.last_seq[ssrc] = seq = int.from_bytes(data[2:4], "big")
        if counter.keep_seqs:
            counter.seqs.setdefault(ssrc, []).append(seq)


class RoomClient:
    """One simulated participant.

    Args:
        url: the server's base URL, e.g. ``http://127.0.0.1:8080``.
        room, name, identity, token: as in the ``join`` request.
        count_only: subscribe without decoding (see :class:`PacketCounter`); the subscriber
            still sends RTCP receiver reports as a browser does (every ~1 s with video, ~5 s
            for audio only; ``receiver_reports=False``: none, a receiver that has gone
            quiet). ``audio_report_interval_s``: the audio-only mean interval (s, ±50%).
        subscribe: whether to subscribe at all.
        remote_sdp: rewrites every SDP the server sends (publish answers, subscribe offers)
            before it is applied; tests use it to steer media through an impairing UDP relay.
        auto_reconnect: when the socket drops without ``leave``, call :meth:`reconnect`.
        local_sdp: rewrites every SDP this client sends (publish offers, subscribe answers);
            tests use it to hide the client's own candidates, so that the server can reach
            the client only through that relay.
    """

    def __init__(
        self,
        url: str,
        room: str,
        name: str = "",
        *,
        identity: str | None = None,
        token: str | None = None,
        count_only: bool = False,
        subscribe: bool = True,
        remote_sdp: Callable[[str], Awaitable[str]] | None = None,
        auto_reconnect: bool = False,
        local_sdp: Callable[[str], Awaitable[str]] | None = None,
        receiver_reports: bool = True,
        audio_report_interval_s: float = AUDIO_RECEIVER_REPORT_INTERVAL_S,
    ) -> None:
        self.url = url.rstrip("/")
        self.receiver_reports = receiver_reports
        self.audio_report_interval_s = audio_report_interval_s
        self._report_task: asyncio.Task[None] | None = None
        self._count_sink: _CountingSink | None = None  # the count-only subscriber's sink
        self.remote_sdp = remote_sdp
        self.local_sdp = local_sdp
        self.room = room
        self.name = name
        self.identity = identity
        self.token = token
        self.count_only = count_only
        self.subscribe = subscribe
        self.counter = PacketCounter()
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.joined: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self.message_types: list[str] = []  # every server message type, in arrival order
        self.signal_bytes = 0  # UTF-8 bytes of every server message received
        self.errors: list[dict[str, Any]] = []
        self.received: dict[str, ReceivedTrack] = {}  # track sid -> ReceivedTrack
        self.published: dict[str, str] = {}  # mid -> track sid
        self.pub: RTCPeerConnection | None = None
        self.sub: RTCPeerConnection | None = None
        self.offers_answered = 0
        self.media_restarts: list[tuple[str, float]] = []  # (side, monotonic s) restarts begun
        # what we publish: {track, sent (the track or its MediaRelay proxy), kind, source,
        # transceiver, sid}; a media restart and a rejoin publish it again
        self._sending: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._mids: dict[str, ReceivedTrack] = {}
        self._offer_lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._closing = False
        self.auto_reconnect = auto_reconnect
        # other nodes of a cluster to try, in turn, when ``url`` cannot be reached (what a
        # load balancer in front of the nodes does for a browser)
        self.alternates: list[str] = []
        self.resume_token: str | None = None
        self.last_seq = 0  # seq of the last numbered message read
        self.seqs: list[int] = []  # every seq read, in arrival order (tests check for gaps)
        self.reconnects: list[str] = []  # "resumed" or "rejoined", one per reconnect
        self.connected = asyncio.Event()  # set while the socket is open and the session live
        self._sent: dict[str, dict[str, Any]] = {}  # ref -> request not answered yet
        self._relay = MediaRelay()
        self._reconnecting: asyncio.Task[str] | None = None
        self.removed: str | None = None  # the server's reason when it removed us
        self.redirects: list[dict[str, Any]] = []  # every ``redirect`` received, in order

    # -- connection ---------------------------------------------------------------------------

    async def connect(self) -> dict[str, Any]:
        """Open the WebSocket and join; returns the ``joined`` message.

        Raises:
            SignalingError: when the server refuses the join.
        """
        self.session = aiohttp.ClientSession()
        await self._open_socket()
        return await self._join()

    async def _open_socket(self) -> None:
        assert self.session is not None
        self.ws = await self.session.ws_connect(self.url + "/ws", heartbeat=20)
        self._reader = asyncio.ensure_future(self._read_loop(self.ws))

    async def _join(self) -> dict[str, Any]:
        join: dict[str, Any] = {"type": "join", "room": self.room, "name": self.name}
        if self.identity:
            join["identity"] = self.identity
        if self.token:
            join["token"] = self.token
        join["subscribe"] = self.subscribe
        self.last_seq = 0
        self.joined = await self.request(join)
        for _ in range(MAX_REDIRECTS):  # a cluster node that is full or draining: go elsewhere
            if self.joined.get("type") != "redirect":
                break
            self.redirects.append(self.joined)
            self.url = str(self.joined["url"]).rstrip("/")
            old, self.ws = self.ws, None  # (its reader must not take this for a drop)
            if old is not None:
                await old.close()
            await self._open_socket()
            self.joined = await self.request(join)
        if self.joined.get("type") != "joined":
            raise SignalingError("unavailable", f"join not taken: {self.joined}")
        self.resume_token = self.joined.get("resume_token")
        self.connected.set()
        return self.joined

    # -- staying connected ---------------------------------------------------------------------

    async def drop_socket(self) -> None:
        """Tear the WebSocket's TCP connection down without a close frame or ``leave`` (what
        a network loss looks like to the server once it notices); media is left alone."""
        assert self.ws is not None
        self.connected.clear()
        sock = self.ws.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(2)  # SHUT_RDWR: FIN now, no WebSocket close frame
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(reader, 5)
        with contextlib.suppress(Exception):
            await self.ws.close()

    async def resume(self, timeout: float = 10) -> dict[str, Any]:
        """Open a new socket and resume the session: the missed messages are read (and
        handled) first, then the ``resumed`` reply is returned; requests that were never
        answered are sent again.

        Raises:
            SignalingError: ``resume_failed`` when the server no longer holds the session.
        """
        if self.resume_token is None:
            raise SignalingError("resume_failed", "no resume token")
        unanswered = dict(self._sent)
        await self._open_socket()
        reply = await self.request(
            {"type": "resume", "token": self.resume_token, "last_seq": self.last_seq}, timeout
        )
        self.connected.set()
        assert self.ws is not None
        for ref, message in unanswered.items():
            if ref in self._waiters:  # its reply was not among the replayed messages
                await self.ws.send_str(json.dumps(message))
        return reply

    async def rejoin(self) -> dict[str, Any]:
        """Join again with the same token (the server forgot the session): new peer
        connections, the same tracks published again."""
        if self.pub is not None:
            for transceiver in self.pub.getTransceivers():
                # W3C replaceTrack(null): aiortc stops a sender's track when the sender stops,
                # and the track is published again on the new connection.
                transceiver.sender.replaceTrack(None)
        sending, self._sending = self._sending, []
        for pc in (self.pub, self.sub):
            if pc is not None:
                await pc.close()
        self.pub = self.sub = None
        self._mids.clear()
        self.received = {}
        self.published = {}
        self._offer_lock = asyncio.Lock()
        if self.ws is None or self.ws.closed:
            await self._open_socket()
        self.removed = None
        joined = await self._join()
        if sending:
            for entry in sending:
                if entry["sent"] is not entry["track"]:
                    entry["sent"].stop()  # the proxy: publish() makes a new one
            await self.publish([e["track"] for e in sending], [e["source"] for e in sending])
        return joined

    async def reconnect(
        self, *, max_wait_s: float = 60, base_s: float = 0.25, cap_s: float = 2.0
    ) -> str:
        """Reconnect after a drop: ``resume``, else (``resume_failed``) :meth:`rejoin`;
        a server that cannot be reached is retried with exponential backoff and full jitter
        (delay = uniform(0, min(cap_s, base_s * 2**attempt)) s). Returns ``"resumed"`` or
        ``"rejoined"``.

        Raises:
            TimeoutError: still not connected after ``max_wait_s`` s.
            SignalingError: the server refused the rejoin (e.g. ``unauthorized``).
        """
        deadline = time.monotonic() + max_wait_s
        for attempt in itertools.count():
            if self._closing:
                raise ConnectionError("client closed")
            try:
                try:
                    await self.resume()
                    outcome = "resumed"
                except SignalingError as exc:
                    if exc.code != "resume_failed":
                        raise
                    outcome = "rejoined"
                    await self.rejoin()
                self.reconnects.append(outcome)
                return outcome
            except (aiohttp.ClientError, OSError, TimeoutError, ConnectionError):
                if self.ws is not None:
                    with contextlib.suppress(Exception):
                        await self.ws.close()
                if self.alternates:  # that node is gone: try the next one
                    self.alternates.append(self.url)
                    self.url = self.alternates.pop(0).rstrip("/")
                delay = random.uniform(0, min(cap_s, base_s * 2**attempt))
                if time.monotonic() + delay > deadline:
                    raise TimeoutError("could not reconnect in time") from None
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def _on_socket_lost(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        if ws is not self.ws:
            return
        self.connected.clear()
        if (
            self.auto_reconnect
            and not self._closing
            and self.removed is None
            and self._reconnecting is None
        ):
            self._reconnecting = asyncio.ensure_future(self._reconnect_once())

    async def _reconnect_once(self) -> str:
        try:
            return await self.reconnect()
        finally:
            self._reconnecting = None

    async def request(self, message: dict[str, Any], timeout: float = 20) -> dict[str, Any]:
        """Send a request with a fresh ``id`` and wait for its reply.

        Raises:
            SignalingError: for an ``error`` reply; TimeoutError after ``timeout`` s.
        """
        assert self.ws is not None
        ref = str(next(self._ids))
        message = dict(message, id=ref)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[ref] = future
        if message.get("type") not in ("join", "resume", "leave"):
            self._sent[ref] = message
        try:
            await self.ws.send_str(json.dumps(message))
            reply = await asyncio.wait_for(future, timeout)
        finally:
            self._waiters.pop(ref, None)
            self._sent.pop(ref, None)
        if reply.get("type") == "error":
            raise SignalingError(reply.get("code", ""), reply.get("message", ""))
        return reply

    async def send_raw(self, text: str) -> None:
        """Send a raw text frame (tests of malformed input)."""
        assert self.ws is not None
        await self.ws.send_str(text)

    async def _read_loop(self, ws: aiohttp.ClientWebSocketResponse | None = None) -> None:
        ws = ws or self.ws
        assert ws is not None
        try:
            await self._read_messages(ws)
        finally:
            self._on_socket_lost(ws)

    async def _read_messages(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            if ws is not self.ws:
                continue  # a socket replaced by a resume: its messages are replayed there
            self.signal_bytes += len(msg.data.encode("utf-8"))
            data = json.loads(msg.data)
            seq = data.pop("seq", None)  # transport metadata: kept in last_seq and seqs
            if isinstance(seq, int):
                if seq <= self.last_seq:
                    continue  # already read (never expected: the server replays after last_seq)
                self.last_seq = seq
                self.seqs.append(seq)
            self.message_types.append(str(data.get("type")))
            ref = data.get("ref")
            if ref is not None and ref in self._waiters:
                self._waiters[ref].set_result(data)
                continue
            if data.get("type") == "error":
                self.errors.append(data)
                if data.get("reason"):  # the server removed us: not a drop to reconnect from
                    self.removed = str(data["reason"])
            elif data.get("type") == "offer":
                spawn(self._answer(data))
            elif data.get("type") == "redirect":
                # A draining cluster node: the next reconnect goes to the node it names (the
                # session is not held there, so that reconnect is a rejoin).
                self.redirects.append(data)
                self.url = str(data["url"]).rstrip("/")
            elif data.get("type") == "media_restart":
                self.events.append(data)
                spawn(self.restart_media(str(data.get("side")), tell_server=False))
            else:
                self.events.append(data)
                if data.get("type") == "role_changed" and not data["permissions"]["canPublish"]:
                    spawn(self._drop_publisher())  # demoted: the server closed our producers
            self._changed.set()

    # -- publishing ----------------------------------------------------------------------------

    async def publish(
        self, tracks: list[MediaStreamTrack], sources: list[str] | None = None
    ) -> dict[str, str]:
        """Publish ``tracks`` (one sendonly m-line each); returns mid -> track sid.

        With ``auto_reconnect`` each track is sent through a ``MediaRelay`` proxy: aiortc
        stops a sender's track when its connection closes, and a rejoin sends the same
        source on a new connection."""
        pc = self._publisher()
        for i, track in enumerate(tracks):
            sent = self._relay.subscribe(track) if self.auto_reconnect else track
            transceiver = pc.addTransceiver(sent, direction="sendonly")
            source = (
                (sources or [])[i]
                if sources and i < len(sources)
                else ("microphone" if track.kind == "audio" else "camera")
            )
            self._sending.append(
                {
                    "track": track,
                    "sent": sent,
                    "kind": track.kind,
                    "source": source,
                    "transceiver": transceiver,
                }
            )
        return await self._publish_offer(pc)

    def _publisher(self) -> RTCPeerConnection:
        if self.pub is None:
            pc = RTCPeerConnection(adapter.make_configuration([]))
            self.pub = pc
            self._watch_failure(pc, "publish")
        return self.pub

    async def _publish_offer(self, pc: RTCPeerConnection) -> dict[str, str]:
        """Offer every track in ``_sending`` on ``pc``, naming each one's track sid once the
        server gave it one (the server keeps it across a media restart)."""
        await pc.setLocalDescription(await pc.createOffer())
        by_mid = {sid: mid for mid, sid in self.published.items()}
        descriptions = []
        for entry in self._sending:
            mid = entry["transceiver"].mid
            description = {"mid": mid, "kind": entry["kind"], "source": entry["source"]}
            if entry.get("sid") and entry["sid"] in by_mid:
                description["sid"] = entry["sid"]
            descriptions.append(description)
        reply = await self.request(
            {
                "type": "offer",
                "sdp": await self._local(pc.localDescription.sdp),
                "tracks": descriptions,
            }
        )
        await pc.setRemoteDescription(
            RTCSessionDescription(sdp=await self._remote(reply["sdp"]), type="answer")
        )
        self.published = dict(reply.get("tracks", {}))
        for entry in self._sending:
            entry["sid"] = self.published.get(entry["transceiver"].mid)
        return self.published

    # -- media restart (issue 11) --------------------------------------------------------------

    def _watch_failure(self, pc: RTCPeerConnection, side: str) -> None:
        """Restart ``side`` on our own when its RTCPeerConnection fails (aioice consent
        expiry, RFC 7675), telling the server with ``restart_media``."""

        @pc.on("connectionstatechange")
        def on_state() -> None:
            current = self.pub if side == "publish" else self.sub
            if pc.connectionState == "failed" and pc is current and not self._closing:
                spawn(self.restart_media(side, tell_server=True))

    async def restart_media(self, side: str, *, tell_server: bool = True) -> None:
        """Replace the ``side`` (``"publish"`` or ``"subscribe"``) RTCPeerConnection: on the
        server's ``media_restart`` event (``tell_server=False``) or on our own detection of a
        dead path (then ``restart_media`` is sent first). Publish: the same tracks are offered
        on a new connection with their track sids; subscribe: the next server offer is
        answered on a new connection."""
        if self._closing or side not in ("publish", "subscribe"):
            return
        self.media_restarts.append((side, time.monotonic()))
        if side == "subscribe":
            async with self._offer_lock:
                old, self.sub = self.sub, None
                self._mids = {}
                if tell_server:
                    with contextlib.suppress(SignalingError, TimeoutError, ConnectionError):
                        await self.request({"type": "restart_media", "side": "subscribe"})
            if old is not None:
                await old.close()
            return
        old = self.pub
        if old is None:
            return
        self.pub = None
        for entry in self._sending:  # aiortc stops a sender's track when the sender stops
            with contextlib.suppress(Exception):
                entry["transceiver"].sender.replaceTrack(None)
        await old.close()
        if tell_server:
            await self.request({"type": "restart_media", "side": "publish"})
        pc = self._publisher()
        for entry in self._sending:
            entry["transceiver"] = pc.addTransceiver(entry["sent"], direction="sendonly")
        await self._publish_offer(pc)

    async def _remote(self, sdp: str) -> str:
        return sdp if self.remote_sdp is None else await self.remote_sdp(sdp)

    async def _local(self, sdp: str) -> str:
        return sdp if self.local_sdp is None else await self.local_sdp(sdp)

    async def publish_sdp(self, sdp: str, tracks: list[dict[str, Any]]) -> dict[str, Any]:
        """Send a publish offer made elsewhere (e.g. a raw-RTP peer); returns the ``answer``."""
        reply = await self.request({"type": "offer", "sdp": sdp, "tracks": tracks})
        self.published = dict(reply.get("tracks", {}))
        return reply

    async def unpublish(self, track: MediaStreamTrack) -> None:
        """Stop sending ``track`` and renegotiate (the server closes its producer)."""
        assert self.pub is not None
        sent = next((e["sent"] for e in self._sending if e["track"] is track), track)
        for transceiver in self.pub.getTransceivers():
            if transceiver.sender.track is sent:
                transceiver.direction = "inactive"
        self._sending = [e for e in self._sending if e["track"] is not track]
        await self.pub.setLocalDescription(await self.pub.createOffer())
        reply = await self.request({"type": "offer", "sdp": self.pub.localDescription.sdp})
        await self.pub.setRemoteDescription(
            RTCSessionDescription(sdp=await self._remote(reply["sdp"]), type="answer")
        )
        self.published = dict(reply.get("tracks", {}))

    async def _drop_publisher(self) -> None:
        pc, self.pub = self.pub, None
        self.published = {}
        self._sending = []
        if pc is not None:
            await pc.close()

    # -- subscribing ---------------------------------------------------------------------------

    def _subscriber(self) -> RTCPeerConnection:
        if self.sub is None:
            if self.count_only:
                sink = self._count_sink = _CountingSink(self.counter, None)
                self.sub = adapter.ForwardingPeerConnection(
                    sink,
                    adapter.make_configuration([]),
                    srtp_counter=None if self.counter.keep_payloads else sink.on_rtp_encrypted,
                )
                if self.receiver_reports and self._report_task is None:
                    self._report_task = asyncio.ensure_future(self._send_receiver_reports())
            else:
                self.sub = RTCPeerConnection(adapter.make_configuration([]))
                self._watch_failure(self.sub, "subscribe")

                @self.sub.on("track")
                def on_track(track: MediaStreamTrack) -> None:
                    for transceiver in self.sub.getTransceivers():  # type: ignore[union-attr]
                        if transceiver.receiver.track is track and transceiver.mid in self._mids:
                            self._mids[transceiver.mid].track = track
                    self._changed.set()

        return self.sub

    async def _send_receiver_reports(self) -> None:
        """Send the count-only subscriber's receiver reports, every
        :data:`RECEIVER_REPORT_INTERVAL_S` while it receives video, else every
        ``audio_report_interval_s`` (default :data:`AUDIO_RECEIVER_REPORT_INTERVAL_S`; both
        ±50%; the subscriber may be replaced by a media restart: the current one reports)."""
        while not self._closing:
            video = any(r.kind == "video" for r in self._mids.values())
            mean = RECEIVER_REPORT_INTERVAL_S if video else self.audio_report_interval_s
            await asyncio.sleep(mean * random.uniform(0.5, 1.5))
            sink = self._count_sink
            if self.sub is None or sink is None or sink.raw is None:
                continue
            report = sink.receiver_report()
            if report is not None:
                sink.raw.send_rtcp(report)

    async def _answer(self, offer: dict[str, Any]) -> None:
        async with self._offer_lock:
            for item in offer.get("tracks", []):
                received = ReceivedTrack(
                    mid=item["mid"],
                    participant=item["participant"],
                    track_sid=item["track"],
                    kind=item["kind"],
                )
                previous = self._mids.get(item["mid"])
                if previous is not None and previous.track_sid == received.track_sid:
                    continue
                self._mids[item["mid"]] = received
            current = {item["track"] for item in offer.get("tracks", [])}
            for mid, received in list(self._mids.items()):
                if received.track_sid not in current:
                    del self._mids[mid]
            pc = self._subscriber()
            if pc.connectionState == "closed" or self._closing:
                return  # an offer that raced our close()
            await pc.setRemoteDescription(
                RTCSessionDescription(sdp=await self._remote(offer["sdp"]), type="offer")
            )
            for transceiver in pc.getTransceivers():
                if self.count_only or transceiver.mid is None:
                    continue
                adapter.browser_like_recovery(transceiver.receiver)  # video: NACK retries, drain
                received_track = self._mids.get(transceiver.mid)
                if received_track is not None and received_track.track is None:
                    received_track.track = transceiver.receiver.track
            try:
                await pc.setLocalDescription(await pc.createAnswer())
            except InvalidStateError:
                if self._closing:
                    return  # closed while we answered
                raise
            self.received = {r.track_sid: r for r in self._mids.values()}
            with contextlib.suppress(SignalingError, TimeoutError, ConnectionError):
                await self.request(
                    {"type": "answer", "sdp": await self._local(pc.localDescription.sdp)}
                )
            self.offers_answered += 1
            self._changed.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 20) -> None:
        """Wait until ``predicate()`` holds, re-checking on every message (bounded).

        Raises:
            TimeoutError: when it does not hold within ``timeout`` s.
        """
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("condition not met in time")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.2))

    # -- close ---------------------------------------------------------------------------------

    async def close(self) -> None:
        """Leave, close both peer connections and the WebSocket."""
        self._closing = True
        if self._report_task is not None:
            self._report_task.cancel()
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reconnecting
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.request({"type": "leave"}, timeout=5)
            await self.ws.close()
        for pc in (self.pub, self.sub):
            if pc is not None:
                await pc.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self.session is not None:
            await self.session.close()
