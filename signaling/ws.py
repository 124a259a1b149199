"""One signaling session per WebSocket (``/ws``): JSON requests in, responses and events out.

Requests are handled strictly in order, one at a time. Bad input (invalid JSON, unknown type,
invalid SDP, oversize frame, a message out of order) gets a typed ``error`` and the session and
the room go on. aiohttp's heartbeat pings detect dead sockets; when the socket closes, the
participant leaves and every transport, producer and consumer of it is closed.

Limits (``signaling/wslimits.py``, docs/protocol.md "Limits"): a token bucket per socket
(``rate_limited``), only ``join``, ``resume`` and ``ping`` before joining, a join timeout and
a bounded outbox (both close with 1008), and a cap of sockets per client address (1013).

Resume (``signaling/resume.py``, docs/protocol.md "Resume"): after ``joined`` every message
carries ``seq``. When the socket drops without ``leave``, the session is held for
``resume_grace_s``: the participant stays (media keeps flowing, nobody sees it leave), messages
go to its replay buffer, and a ``resume`` on a new socket moves the session there and replays
what the client missed. After the grace period the participant leaves as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Sequence
from typing import Any

from aiohttp import WSMsgType, web
from pydantic import BaseModel

from sfu import events as ev
from sfu.errors import (
    InvalidSdpError,
    InvalidStateError,
    LimitExceededError,
    NotAllowedError,
    NotFoundError,
    SfuError,
)
from sfu.plane.types import ParticipantRef, TrackSpec
from sfu.tasks import spawn
from signaling import keys
from signaling import protocol as p
from signaling.accounts import authorize_join, record_presence
from signaling.admission import admit
from signaling.auth.tokens import AccessClaims, TokenError, VideoGrant
from signaling.chat import CHAT
from signaling.cluster.node import CLUSTER
from signaling.metrics import observe_join
from signaling.resume import (
    CLOSE_RESUMED_ELSEWHERE,
    REASON_GRACE_EXPIRED,
    REASON_RESUME_OVERFLOW,
    REASON_RESUMED_ELSEWHERE,
    ReplayBuffer,
    ResumeRegistry,
)
from signaling.stage import KNOCK_TIMEOUT_S, Knock, Stage, permissions
from signaling.turn import client_ice_servers
from signaling.whiteboard import BOARD
from signaling.wslimits import (
    CLOSE_POLICY_VIOLATION,
    CLOSE_TRY_AGAIN_LATER,
    PRE_JOIN_TYPES,
    REASON_JOIN_TIMEOUT,
    REASON_OUTBOX_OVERFLOW,
    REASON_TOO_MANY_CONNECTIONS,
    AddressSlots,
    TokenBucket,
    utf8_length,
)

logger = logging.getLogger(__name__)

_SOCKETS: web.AppKey[weakref.WeakSet[web.WebSocketResponse]] = web.AppKey(
    "ws_sockets", weakref.WeakSet
)
_SLOTS: web.AppKey[AddressSlots] = web.AppKey("ws_address_slots", AddressSlots)
_RESUMES: web.AppKey[ResumeRegistry[Session]] = web.AppKey("ws_resumes", ResumeRegistry)

ABORT_AFTER_S = 10.0
"""After the server closes a socket on its own, the TCP connection is aborted this many seconds
later if the client has still not read the close frame (so a client that never reads cannot
hold the connection and its write buffer)."""


def track_info(track: ev.TrackInfo) -> p.TrackInfo:
    """Media-plane track -> protocol track."""
    return p.TrackInfo(
        sid=track.sid,
        kind=track.kind,  # type: ignore[arg-type]
        source=track.source,  # type: ignore[arg-type]
        name=track.name,
        muted=track.muted,
    )


def participant_info(info: ev.ParticipantInfo) -> p.ParticipantInfo:
    """Media-plane participant -> protocol participant (the role is an attribute)."""
    role = info.attributes.get("role", "speaker")
    return p.ParticipantInfo(
        sid=info.sid,
        identity=info.identity,
        name=info.name,
        tracks=[track_info(t) for t in info.tracks],
        role=role if role in ("host", "moderator", "speaker", "listener") else "speaker",  # type: ignore[arg-type]
    )


def event_message(event: ev.RoomEvent) -> BaseModel:
    """Media-plane room event -> protocol event message."""
    if isinstance(event, ev.ParticipantJoined):
        return p.ParticipantJoinedEvent(participant=participant_info(event.participant))
    if isinstance(event, ev.ParticipantLeft):
        return p.ParticipantLeftEvent(participant=event.participant)
    if isinstance(event, ev.ParticipantUpdated):
        return p.ParticipantUpdatedEvent(participant=participant_info(event.participant))
    if isinstance(event, ev.TrackPublished):
        return p.TrackPublishedEvent(participant=event.participant, track=track_info(event.track))
    if isinstance(event, ev.TrackUnpublished):
        return p.TrackUnpublishedEvent(participant=event.participant, track=event.track)
    if isinstance(event, ev.ActiveSpeakersChanged):
        return p.ActiveSpeakersEvent(
            speakers=[
                p.SpeakerInfo(participant=s.participant, track=s.track, level=s.level_dbov)
                for s in event.speakers
            ]
        )
    if isinstance(event, ev.TrackBandwidthPaused):
        return p.TrackPausedForBandwidthEvent(
            participant=event.participant, track=event.track, paused=event.paused
        )
    if isinstance(event, ev.PublisherLayers):
        return p.PublisherLayersEvent(track=event.track, active=list(event.active))
    return p.TrackMutedEvent(
        participant=event.participant, track=event.track, muted=event.muted, remote=event.remote
    )


class Session:
    """The signaling session of one WebSocket; also the participant's listener."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.request = request
        self.app = request.app
        self.ws = ws
        self.participant: ParticipantRef | None = None
        self._held_events: list[ev.ParticipantEvent] | None = []  # until ``joined`` is sent
        self.grants = VideoGrant()
        self.claims: AccessClaims | None = None
        self.stage: Stage | None = None
        settings = self.app[keys.SETTINGS]
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._outbox_bytes = 0
        self._max_messages = settings.ws_outbox_max_messages
        self._max_bytes = settings.ws_outbox_max_bytes
        self.outbox_peak = (0, 0)  # (messages, bytes) most ever queued at once
        self.dropped: str | None = None  # why the server dropped the socket, if it did
        self.requests = TokenBucket(settings.ws_request_rate, settings.ws_request_burst)
        self._joining = False
        self._ever_joined = False
        self._join_expired = False
        self._join_timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            settings.ws_join_timeout_s, self._on_join_deadline
        )
        self._writer = asyncio.ensure_future(self._write_loop(ws, self._outbox))
        self.replay: ReplayBuffer | None = None  # set once joined: numbered messages
        self.resume_token: str | None = None
        self.detached = False  # the socket dropped; held for a resume
        self._detach_seq = 0  # replay.seq when the socket dropped
        self._grace: asyncio.TimerHandle | None = None
        self._busy = asyncio.Lock()  # held while a request is handled
        self.successor: Session | None = None  # the held session this socket resumed

    # -- outgoing ------------------------------------------------------------------------------

    def send(self, message: BaseModel) -> None:
        """Queue one message; messages leave in order. When the queue already holds
        ``ws_outbox_max_messages`` messages, or this one would take it past
        ``ws_outbox_max_bytes``, the client is not reading: the socket is dropped (1008)."""
        if self.dropped is not None:
            return
        text = p.dump(message)
        if self.replay is not None:
            _, text = self.replay.add(text)
            if self.detached:
                if self.replay.evicted > self._detach_seq:
                    self.drop(CLOSE_POLICY_VIOLATION, REASON_RESUME_OVERFLOW)
                return
        self._enqueue(text)

    def _enqueue(self, text: str) -> None:
        size = utf8_length(text)
        queued = self._outbox.qsize()
        if queued and (queued >= self._max_messages or self._outbox_bytes + size > self._max_bytes):
            self.drop(CLOSE_POLICY_VIOLATION, REASON_OUTBOX_OVERFLOW)
            return
        self._outbox_bytes += size
        self._outbox.put_nowait(text)
        if queued + 1 > self.outbox_peak[0] or self._outbox_bytes > self.outbox_peak[1]:
            self.outbox_peak = (
                max(queued + 1, self.outbox_peak[0]),
                max(self._outbox_bytes, self.outbox_peak[1]),
            )

    async def _write_loop(
        self, ws: web.WebSocketResponse, outbox: asyncio.Queue[str | None]
    ) -> None:
        while True:
            text = await outbox.get()
            if text is None or ws.closed:
                return
            if outbox is self._outbox:
                self._outbox_bytes -= utf8_length(text)
            try:
                await ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    def error(
        self, code: p.ErrorCode, message: str, ref: str | None = None, reason: str | None = None
    ) -> None:
        """Send a typed error (``reason``: see :attr:`ErrorResponse.reason`)."""
        self.send(p.ErrorResponse(code=code, message=message, ref=ref, reason=reason))

    # -- the media plane's listener -------------------------------------------------------------

    def on_plane_event(self, event: ev.ParticipantEvent) -> None:
        """An event of this session's participant (``sfu.plane.api.PlaneListener``). Events
        that come before ``joined`` was sent wait for it (a media plane in another process
        may deliver the first subscribe offer before the join call returns here)."""
        if self._held_events is not None:
            self._held_events.append(event)
            return
        if isinstance(event, ev.SubscribeOffer):
            self.send_subscribe_offer(event.sdp, event.tracks)
        elif isinstance(event, ev.ParticipantClosed):
            self.on_closed(event.reason)
        elif isinstance(event, ev.MediaRestarted):
            self.on_media_restart(event.side, event.reason)
        else:
            self.on_room_event(event)

    def _release_events(self) -> None:
        """``joined`` was sent (or the join failed): deliver the events held until now."""
        held, self._held_events = self._held_events, None
        for event in held or ():
            self.on_plane_event(event)

    def send_subscribe_offer(self, sdp: str, tracks: Sequence[ev.SubscribedTrack]) -> None:
        """Deliver a subscribe offer with its mid map."""
        self.send(
            p.OfferEvent(
                sdp=sdp,
                tracks=[
                    p.SubscribedTrack(
                        mid=t.mid,
                        participant=t.participant,
                        track=t.track,
                        kind=t.kind,  # type: ignore[arg-type]
                    )
                    for t in tracks
                ],
            )
        )

    def on_room_event(self, event: ev.RoomEvent) -> None:
        """Forward a room event to the client."""
        self.send(event_message(event))

    def on_media_restart(self, side: str, reason: str) -> None:
        """A transport's media path failed and the server replaced it: tell the client, which
        renegotiates that side on a new RTCPeerConnection (the session stays joined)."""
        self.send(p.MediaRestartEvent(side=side, reason=reason))  # type: ignore[arg-type]

    def on_closed(self, reason: str) -> None:
        """The server closed this participant: tell the client and close the socket."""
        if reason == "worker_lost":
            self.on_worker_lost()
            return
        self.send(
            p.ErrorResponse(
                code=p.ErrorCode.NOT_JOINED, message=f"removed from room: {reason}", reason=reason
            )
        )
        participant, self.participant = self.participant, None
        self._end_resume()
        if participant is not None:
            self._leave_hubs(participant)
            spawn(
                record_presence(
                    self.app, participant.room, participant.identity, "left", participant.name
                )
            )
        self._outbox.put_nowait(None)
        spawn(self.ws.close(message=reason.encode()))  # the close reason names why

    # -- cluster drain (signaling/cluster) -------------------------------------------------------

    def redirect(self, url: str, reason: str) -> None:
        """This node is draining: send ``redirect`` (``url``: another node), then leave the
        room and close the socket (1012, RFC 6455 7.4.1) once the message is written."""
        self.send(p.RedirectEvent(url=url, reason=reason))  # type: ignore[arg-type]
        self._end_resume()  # the client joins the other node: nothing to resume here
        spawn(self._hand_off())

    async def _hand_off(self) -> None:
        await self.leave()
        self._outbox.put_nowait(None)  # the writer sends what is queued, then stops
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self._writer), 2.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code=1012, message=b"redirect"), 2.0)

    def on_worker_lost(self) -> None:
        """The media worker of this participant died (issue 12): send ``reconnect``, end the
        session (no resume) and close the socket with 1012 (service restart); the client
        joins again and lands on a live worker."""
        self.send(p.ReconnectEvent())
        participant, self.participant = self.participant, None
        self._end_resume()
        if participant is not None:
            self._leave_hubs(participant)
            spawn(
                record_presence(
                    self.app, participant.room, participant.identity, "left", participant.name
                )
            )
        self._outbox.put_nowait(None)
        spawn(self.ws.close(code=1012, message=b"worker_lost"))

    # -- dropping the socket --------------------------------------------------------------------

    def drop(self, code: int, reason: str) -> None:
        """The server gives up on this socket (outbox overflow, join timeout): forget what is
        queued, leave the room at once and close the socket with ``code`` (RFC 6455 7.4.1) and
        ``reason``; the TCP connection is aborted :data:`ABORT_AFTER_S` later if the client has
        not read the close frame by then. Safe to call twice."""
        if self.dropped is not None:
            return
        self.dropped = reason
        queued, size = self._outbox.qsize(), self._outbox_bytes
        while not self._outbox.empty():
            self._outbox.get_nowait()
        self._outbox_bytes = 0
        self._outbox.put_nowait(None)
        logger.info(
            "ws %s: closing (%s) with %d messages / %d bytes unsent",
            self.request.remote,
            reason,
            queued,
            size,
        )
        spawn(self._drop(code, reason))

    async def _drop(self, code: int, reason: str) -> None:
        transport = self.request.transport
        try:
            await self.leave()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()), 2.0)
            if transport is not None:
                asyncio.get_running_loop().call_later(ABORT_AFTER_S, transport.abort)

    def _on_join_deadline(self) -> None:
        self._join_timer = None
        if self._ever_joined:
            return
        if self._joining:
            self._join_expired = True  # decided when that join ends
        else:
            self.drop(CLOSE_POLICY_VIOLATION, REASON_JOIN_TIMEOUT)

    # -- resume (signaling/resume.py) -----------------------------------------------------------

    def _start_resume(self) -> str | None:
        """At join: mint the session's resume token (None when resume is off)."""
        registry = self.app.get(_RESUMES)
        if self.app[keys.SETTINGS].resume_grace_s <= 0 or registry is None:
            return None
        self.resume_token = registry.mint(self)
        return self.resume_token

    def _end_resume(self) -> None:
        """The session ends: its token stops working and a grace timer stops."""
        registry = self.app.get(_RESUMES)
        if registry is not None:
            registry.forget(self.resume_token)
        self.resume_token = None
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None

    def _resumable(self) -> bool:
        registry = self.app.get(_RESUMES)
        return (
            self.participant is not None
            and self.dropped is None
            and self.replay is not None
            and self.resume_token is not None
            and registry is not None
            and not registry.closing
        )

    def _detach(self) -> None:
        """The socket dropped without ``leave``: keep the participant, stop writing, and give
        up after ``resume_grace_s`` unless a ``resume`` comes."""
        assert self.replay is not None
        self.detached = True
        self._detach_seq = self.replay.seq
        self._stop_writer()
        if self._grace is None:
            self._grace = asyncio.get_running_loop().call_later(
                self.app[keys.SETTINGS].resume_grace_s, self._on_grace_expired
            )
        logger.info(
            "ws %s: socket dropped, session held for a resume (seq %d)",
            self.request.remote,
            self.replay.seq,
        )

    def _on_grace_expired(self) -> None:
        self._grace = None
        if self.detached:
            self.drop(CLOSE_POLICY_VIOLATION, REASON_GRACE_EXPIRED)

    def _stop_writer(self) -> None:
        """Stop writing to the current socket (what is queued is in the replay buffer)."""
        self._outbox.put_nowait(None)
        self._outbox = asyncio.Queue()
        self._outbox_bytes = 0

    async def _resume(self, request: p.ResumeRequest) -> None:
        """This (fresh) socket resumes the held session of ``request.token``."""
        if self.participant is not None:
            raise p.ProtocolError(p.ErrorCode.ALREADY_JOINED, "already joined", request.id)
        registry = self.app.get(_RESUMES)
        held = registry.get(request.token) if registry is not None else None
        if held is None or held is self:
            raise p.ProtocolError(
                p.ErrorCode.RESUME_FAILED, "unknown or expired session: join again", request.id
            )
        await held.adopt(self.ws, self.request, request)
        self.successor = held

    async def adopt(
        self, ws: web.WebSocketResponse, request: web.Request, resume: p.ResumeRequest
    ) -> None:
        """Move this held (or still attached) session to socket ``ws``: the old socket, if
        still open, is closed (4001); a request it was handling finishes first; then every
        message after ``resume.last_seq`` is sent again, in order, and ``resumed``.

        Raises:
            ProtocolError: ``resume_failed`` when the session ended or the messages after
                ``last_seq`` are no longer held (then the session is given up).
        """
        failed = p.ProtocolError(
            p.ErrorCode.RESUME_FAILED, "the session can no longer be resumed: join again", resume.id
        )
        if self.replay is None or self.participant is None or self.dropped is not None:
            raise failed
        if not self.replay.covers(resume.last_seq):
            self.drop(CLOSE_POLICY_VIOLATION, REASON_RESUME_OVERFLOW)
            raise failed
        previous = self.ws
        if not self.detached:  # the server had not noticed the old socket was gone
            self.detached = True
            self._detach_seq = self.replay.seq
            self._stop_writer()
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        self.ws, self.request = ws, request  # the old socket's reader stops here
        if not previous.closed:
            spawn(self._close_quietly(previous))
        async with self._busy:  # a request read from the old socket ends first
            pass
        media = self.app[keys.MEDIA]
        try:
            state = await media.participant(self.participant.sid) if self.participant else None
        except NotFoundError:
            state = None
        base_servers = [s.as_w3c() for s in await media.ice_servers()]
        if self.participant is None or self.dropped is not None or state is None:
            raise failed
        if not self.replay.covers(resume.last_seq):
            self.drop(CLOSE_POLICY_VIOLATION, REASON_RESUME_OVERFLOW)
            raise failed
        self._writer = asyncio.ensure_future(self._write_loop(ws, self._outbox))
        missed = self.replay.after(resume.last_seq)
        for text in missed:
            self._enqueue(text)
        self.detached = False
        participant = self.participant
        self._enqueue(
            p.dump(
                p.ResumedResponse(
                    ref=resume.id,
                    participant=participant_info(state.info),
                    last_seq=self.replay.seq,
                    replayed=len(missed),
                    ice_servers=client_ice_servers(
                        self.app[keys.SETTINGS], base_servers, participant.identity
                    ),
                    resume_grace_s=self.app[keys.SETTINGS].resume_grace_s,
                )
            )
        )
        logger.info(
            "ws %s: session of %s resumed, %d messages replayed",
            request.remote,
            participant.identity,
            len(missed),
        )

    @staticmethod
    async def _close_quietly(ws: web.WebSocketResponse) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                ws.close(code=CLOSE_RESUMED_ELSEWHERE, message=REASON_RESUMED_ELSEWHERE.encode()),
                2.0,
            )

    # -- incoming ------------------------------------------------------------------------------

    async def handle(self, raw: str, *, limited: bool = False) -> None:
        """Handle one text frame; never raises for bad input. ``limited``: the socket's token
        bucket was empty, so a well-formed request gets ``rate_limited``."""
        ref: str | None = None
        try:
            allowed = None if self.participant is not None else PRE_JOIN_TYPES
            request = p.parse_request(raw, allowed)
            ref = request.id
            if limited:
                raise p.ProtocolError(
                    p.ErrorCode.RATE_LIMITED, "too many requests on this socket, slow down", ref
                )
            async with self._busy:
                await self._dispatch(request)
        except p.ProtocolError as exc:
            self.error(exc.code, exc.message, exc.ref or ref, exc.reason)
        except InvalidSdpError as exc:
            self.error(p.ErrorCode.INVALID_SDP, str(exc), ref)
        except NotAllowedError as exc:
            self.error(p.ErrorCode.FORBIDDEN, str(exc), ref)
        except InvalidStateError as exc:
            self.error(p.ErrorCode.OUT_OF_ORDER, str(exc), ref)
        except NotFoundError as exc:
            self.error(p.ErrorCode.NOT_FOUND, str(exc), ref)
        except LimitExceededError as exc:
            self.error(p.ErrorCode.TOO_LARGE, str(exc), ref)
        except SfuError as exc:
            self.error(p.ErrorCode.BAD_REQUEST, str(exc), ref)
        except Exception:
            logger.exception("signaling request failed")
            self.error(p.ErrorCode.INTERNAL, "internal error", ref)

    async def _dispatch(self, request: p.Request) -> None:
        if isinstance(request, p.PingRequest):
            self.send(p.PongResponse(ref=request.id))
            return
        if isinstance(request, p.JoinRequest | p.ResumeRequest):
            self._joining = True
            try:
                if isinstance(request, p.JoinRequest):
                    await self._join(request)
                else:
                    await self._resume(request)
            finally:
                self._joining = False
                self._ever_joined = (
                    self._ever_joined or self.participant is not None or self.successor is not None
                )
                if self._join_expired and not self._ever_joined:
                    self.drop(CLOSE_POLICY_VIOLATION, REASON_JOIN_TIMEOUT)
            return
        participant = self.participant
        if participant is None:
            raise p.ProtocolError(p.ErrorCode.NOT_JOINED, "send join first", request.id)
        media = self.app[keys.MEDIA]
        if isinstance(request, p.OfferRequest):
            specs = [
                TrackSpec(
                    mid=t.mid, kind=t.kind, source=t.source, name=t.name, muted=t.muted, sid=t.sid
                )
                for t in request.tracks
            ]
            # NotAllowedError (no canPublish grant) is answered ``forbidden`` by handle()
            answer = await media.publish_offer(participant.sid, request.sdp, specs)
            self.send(p.AnswerResponse(ref=request.id, sdp=answer.sdp, tracks=answer.tracks))
            if (cluster := self.app.get(CLUSTER)) is not None:  # tracks reach the other nodes
                cluster.changed(participant.room)
        elif isinstance(request, p.AnswerRequest):
            await media.subscribe_answer(participant.sid, request.sdp)
            self.send(p.OkResponse(ref=request.id))
        elif isinstance(request, p.TrickleRequest):
            c = request.candidate
            await media.add_ice_candidate(
                participant.sid,
                request.transport,
                c.candidate if c else None,
                c.sdpMid if c else None,
                c.sdpMLineIndex if c else None,
            )
            self.send(p.OkResponse(ref=request.id))
        elif isinstance(request, p.RestartMediaRequest):
            await media.restart_media(participant.sid, request.side)
            self.send(p.OkResponse(ref=request.id))
        elif isinstance(request, p.MuteRequest):
            await media.set_track_muted(participant.sid, request.track, request.muted)
            self.send(p.OkResponse(ref=request.id))
        elif isinstance(request, p.TrackSettingsRequest):
            await media.set_track_settings(
                participant.sid, request.track, request.visible, request.width
            )
            self.send(p.OkResponse(ref=request.id))
        elif request.type in p.BOARD_REQUEST_TYPES:
            await self.app[BOARD].handle(
                self,
                room=participant.room,
                participant=participant.sid,
                identity=participant.identity,
                grants=self.grants,
                request=request,
                can_share=self.stage is None
                or self.stage.may_share(participant.identity, self.grants),
            )
            self.send(p.OkResponse(ref=request.id))
        elif isinstance(request, p.ChatRequest | p.ReactionRequest):
            if not self.grants.canPublishData:
                raise p.ProtocolError(p.ErrorCode.FORBIDDEN, "no canPublishData grant", request.id)
            hub = self.app[CHAT]
            try:
                if isinstance(request, p.ChatRequest):
                    await hub.post(
                        participant.room,
                        participant=participant.sid,
                        identity=participant.identity,
                        name=participant.name,
                        text=request.text,
                    )
                else:
                    hub.react(
                        participant.room,
                        participant=participant.sid,
                        identity=participant.identity,
                        emoji=request.emoji,
                    )
            except p.ProtocolError as exc:
                raise p.ProtocolError(exc.code, exc.message, request.id) from None
            self.send(p.OkResponse(ref=request.id))
        elif request.type in p.STAGE_REQUEST_TYPES:
            assert self.stage is not None
            cluster = self.app.get(CLUSTER)
            if cluster is not None and await cluster.relay_stage(self, request):
                return  # a participant on another node: done by the room's origin
            room = self.stage.room
            await self.stage.handle(self.app, self, request)
            if cluster is not None:
                await cluster.after_stage(room, request)
        elif isinstance(request, p.LeaveRequest):
            await self.leave()
            self.send(p.OkResponse(ref=request.id))

    async def _join(self, request: p.JoinRequest) -> None:
        if self.participant is not None:
            raise p.ProtocolError(p.ErrorCode.ALREADY_JOINED, "already joined", request.id)
        if request.v != p.PROTOCOL_VERSION:
            raise p.ProtocolError(
                p.ErrorCode.UNSUPPORTED_VERSION,
                f"protocol version {request.v} is not supported (use {p.PROTOCOL_VERSION})",
                request.id,
            )
        started = time.monotonic()
        identity, name, claims = await self._authorize(request)
        grants = claims.video
        if (cluster := self.app.get(CLUSTER)) is not None:  # several nodes: docs/cluster.md
            try:
                redirect = await cluster.placement()
            except p.ProtocolError as exc:
                raise p.ProtocolError(exc.code, exc.message, request.id, exc.reason) from None
            if redirect is not None:
                self.send(redirect.model_copy(update={"ref": request.id}))
                return
            await cluster.prepare_room(request.room)
        base_servers = [s.as_w3c() for s in await self.app[keys.MEDIA].ice_servers()]
        self._held_events = []
        try:
            admission = await admit(
                self.app,
                self,
                claims,
                room=request.room,
                name=name,
                can_subscribe=grants.canSubscribe and request.subscribe,
                wait=lambda knock: self._wait_in_lobby(knock, request.room),
                media_restart_grace_s=self.app[keys.SETTINGS].media_restart_grace_s,
            )
        except p.ProtocolError as exc:
            self._release_events()
            raise p.ProtocolError(exc.code, exc.message, request.id, exc.reason) from None
        except BaseException:
            self._release_events()
            raise
        stage, member, role = admission.stage, admission.member, admission.role
        participant = member.participant
        self.stage = stage
        room = participant.room
        # Reply before any await: the join may have scheduled a subscribe offer (if the room
        # already has producers), and the client must get ``joined`` before that offer; any
        # event the media plane delivered meanwhile was held (on_plane_event) and follows.
        resume_token = self._start_resume()
        self.send(
            p.JoinedResponse(
                ref=request.id,
                room=room,
                participant=participant_info(admission.joined.info),
                participants=[participant_info(i) for i in admission.joined.others]
                + (cluster.remote_participants(room) if cluster is not None else []),
                ice_servers=client_ice_servers(self.app[keys.SETTINGS], base_servers, identity),
                kind=stage.kind,
                role=role,
                permissions=permissions(role, grants),
                audience=stage.audience_total(),
                stage_video=stage.video,
                resume_token=resume_token,
                resume_grace_s=self.app[keys.SETTINGS].resume_grace_s if resume_token else 0.0,
            )
        )
        if resume_token is not None:  # every message after ``joined`` is numbered
            settings = self.app[keys.SETTINGS]
            self.replay = ReplayBuffer(
                min(settings.resume_buffer_messages, self._max_messages),
                min(settings.resume_buffer_bytes, self._max_bytes),
            )
        self._release_events()
        stage.welcome(member)
        hub = self.app.get(CHAT)
        if hub is not None:
            hub.join(room, self)
        await record_presence(self.app, room, identity, "joined", name)
        observe_join(self.app, started)
        if hub is not None:
            self.send(p.ChatHistoryEvent(messages=await hub.history(room)))
        if (board := self.app.get(BOARD)) is not None:
            await board.join(
                room,
                self,
                can_draw=grants.canPublishData and stage.may_share(identity, grants),
                can_clear=grants.roomAdmin,
            )
            if self.participant is not participant:  # removed while the board was read
                board.leave(room, self)
        # Subscriptions to existing producers were made during join; their offer follows.

    async def _wait_in_lobby(self, knock: Knock, room: str) -> None:
        """Wait in ``room``'s waiting room (see :meth:`Stage.knock`): tell the client
        (``waiting``) and read its socket until the host settles ``knock``. Meanwhile only
        ``ping`` (answered) and ``leave`` (gives up) are accepted; the socket closing gives up
        too. The join timeout is paused while waiting and restarts after a refusal."""
        self.send(p.WaitingEvent(room=room, timeout_s=KNOCK_TIMEOUT_S))
        if self._join_timer is not None:
            self._join_timer.cancel()
            self._join_timer = None
        settings = self.app[keys.SETTINGS]
        waiting = frozenset({"ping", "leave"})
        try:
            while not knock.outcome.done():
                receive = asyncio.ensure_future(self.ws.receive())
                either: set[asyncio.Future[Any]] = {receive, knock.outcome}
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                if not receive.done():
                    receive.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await receive
                    return
                msg = receive.result()
                if msg.type != WSMsgType.TEXT:
                    if msg.type == WSMsgType.BINARY:
                        self.error(p.ErrorCode.BAD_REQUEST, "binary frames are not supported")
                        continue
                    return  # closing or closed: the joiner gave up
                ref: str | None = None
                try:
                    if len(msg.data) > settings.max_message_bytes:
                        raise p.ProtocolError(p.ErrorCode.TOO_LARGE, "message too large")
                    request = p.parse_request(msg.data, waiting)
                    ref = request.id
                    if not self.requests.take():
                        raise p.ProtocolError(p.ErrorCode.RATE_LIMITED, "slow down", ref)
                except p.ProtocolError as exc:
                    code = exc.code
                    text = "waiting for the host to let you in" if code == "not_joined" else ""
                    self.error(code, text or exc.message, exc.ref or ref)
                    continue
                if isinstance(request, p.LeaveRequest):
                    self.send(p.OkResponse(ref=ref))
                    return
                self.send(p.PongResponse(ref=ref))
        finally:
            if self._join_timer is None and self.dropped is None:
                self._join_timer = asyncio.get_running_loop().call_later(
                    settings.ws_join_timeout_s, self._on_join_deadline
                )

    async def _authorize(self, request: p.JoinRequest) -> tuple[str, str, AccessClaims]:
        """(identity, display name, claims) from the join's room token.

        The identity is the token's ``sub`` (a client cannot choose another one); the display
        name is the token's ``name`` unless the join names one.

        Raises:
            ProtocolError: ``unauthorized`` for a missing, invalid, expired or revoked token,
                ``forbidden`` for a token of another room.
        """
        try:
            claims = await authorize_join(self.app, request.token, request.room)
        except TokenError as exc:
            code = p.ErrorCode.FORBIDDEN if exc.status == 403 else p.ErrorCode.UNAUTHORIZED
            raise p.ProtocolError(code, f"{exc.code}: {exc.message}", request.id) from None
        if request.identity is not None and request.identity != claims.sub:
            raise p.ProtocolError(
                p.ErrorCode.FORBIDDEN, "identity differs from the token's subject", request.id
            )
        identity = claims.sub
        name = request.name or claims.name or identity
        return identity, name, claims

    async def leave(self) -> None:
        """Leave the room (idempotent)."""
        participant, self.participant = self.participant, None
        self._end_resume()
        if participant is not None:
            self._leave_hubs(participant)
            await self.app[keys.MEDIA].leave(participant.sid, reason="left")
            await record_presence(
                self.app, participant.room, participant.identity, "left", participant.name
            )

    def _leave_hubs(self, participant: ParticipantRef) -> None:
        hub = self.app.get(CHAT)
        if hub is not None:
            hub.leave(participant.room, self)
        if (board := self.app.get(BOARD)) is not None:
            board.leave(participant.room, self)
        stage, self.stage = self.stage, None
        if stage is not None:
            stage.remove(self, participant.sid)

    async def close(self, ws: web.WebSocketResponse | None = None) -> None:
        """The socket ``ws`` (None: whichever is current) closed: hold a joined session for a
        resume (unless it left, was dropped or resume is off), else leave; stop the writer.
        A socket whose session was resumed elsewhere closes nothing."""
        if ws is not None and ws is not self.ws:
            return
        if self._join_timer is not None:
            self._join_timer.cancel()
            self._join_timer = None
        if self._resumable():
            self._detach()
            return
        await self.leave()
        self._outbox.put_nowait(None)
        try:
            await asyncio.wait_for(self._writer, timeout=2)
        except (TimeoutError, asyncio.CancelledError):
            self._writer.cancel()


async def handle_ws(request: web.Request) -> web.WebSocketResponse:
    """The ``/ws`` endpoint: one :class:`Session` per connection."""
    settings = request.app[keys.SETTINGS]
    # Frames up to 4x the limit are read and refused with a typed error (the session goes
    # on); larger ones make aiohttp close the socket with 1009.
    ws = web.WebSocketResponse(
        heartbeat=settings.ws_heartbeat_s, max_msg_size=max(4 * settings.max_message_bytes, 1 << 20)
    )
    await ws.prepare(request)
    address = request.remote or "unknown"
    slots = request.app.get(_SLOTS)
    if slots is not None and not slots.acquire(address):
        logger.info("ws %s: %s", address, REASON_TOO_MANY_CONNECTIONS)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                ws.close(code=CLOSE_TRY_AGAIN_LATER, message=REASON_TOO_MANY_CONNECTIONS.encode()),
                2.0,
            )
        return ws
    try:
        await _serve(request, ws)
    finally:
        if slots is not None:
            slots.release(address)
    return ws


async def _serve(request: web.Request, ws: web.WebSocketResponse) -> None:
    settings = request.app[keys.SETTINGS]
    sockets = request.app.get(_SOCKETS)
    if sockets is not None:
        sockets.add(ws)
    session = Session(request, ws)
    try:
        async for msg in ws:
            if session.dropped is not None or session.ws is not ws:
                break  # dropped, or resumed on a newer socket
            limited = not session.requests.take()
            if msg.type == WSMsgType.TEXT:
                if len(msg.data) > settings.max_message_bytes:
                    session.error(
                        p.ErrorCode.TOO_LARGE,
                        f"message of {len(msg.data)} bytes exceeds {settings.max_message_bytes}",
                    )
                    continue
                await session.handle(msg.data, limited=limited)
                if session.successor is not None:  # this socket resumed a held session
                    fresh, session = session, session.successor
                    await fresh.close()
            elif msg.type == WSMsgType.BINARY:
                session.error(p.ErrorCode.BAD_REQUEST, "binary frames are not supported")
            elif msg.type == WSMsgType.ERROR:
                break
    finally:
        await session.close(ws)


def install(app: web.Application) -> None:
    """Register the WebSocket set used to close every socket at shutdown, and the
    per-address socket counter (``ws_max_connections_per_address``)."""
    app[_SOCKETS] = weakref.WeakSet()
    app[_SLOTS] = AddressSlots(app[keys.SETTINGS].ws_max_connections_per_address)
    app[_RESUMES] = ResumeRegistry()


async def close_all_sockets(app: web.Application) -> None:
    """``on_shutdown``: close every WebSocket so participants leave cleanly."""
    resumes = app.get(_RESUMES)
    if resumes is not None:
        resumes.closing = True  # sessions whose socket closes now leave, none is held
        for session in resumes.sessions():
            if session.detached:
                await session.leave()
    sockets: Any = app.get(_SOCKETS) or ()
    for ws in list(sockets):
        await ws.close(code=1001, message=b"server shutdown")
