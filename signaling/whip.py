"""WHIP (RFC 9725) publishing and WHEP playback endpoints.

* ``POST /whip/{room}`` with an ``application/sdp`` offer: 201 Created, a ``Location``
  resource and the SDP answer. The publisher is a stage member like a ``/ws`` speaker: the
  room's participants see and hear it, and the host can mute, demote and remove it.
* ``POST /whep/{room}/{identity}``: a viewer's offer (recvonly m-lines) is answered with one
  consumer per m-line of that publisher's tracks, matched by kind. The viewer is a listener
  (hidden in podcast rooms, where it takes video only while the stage shows it).
* Admission is the one of ``/ws`` (``signaling.admission.admit``): the live role (a WHIP
  publisher whose role is listener, e.g. after a demotion, is refused), removed identities
  and rooms the host ended are refused.
* ``DELETE`` on the ``Location`` ends the session; it, and ``PATCH``, need the bearer token
  that created the session (RFC 9725 §4.2: the same token on every request to the session
  URL). ``PATCH`` (trickle ICE, ICE restart) is not supported: 405 (the answer carries all of
  our candidates).
* A session is forgotten whenever its participant goes: DELETE, the peer's transport failing
  or closing, removal by the host, ``end_room``, a demotion of a WHIP publisher, a later join
  with the same identity.
* Errors are RFC 9457 problem details: 400 bad SDP, 401 missing/invalid/expired/revoked token,
  403 a token of another room, without ``canSubscribe`` (WHEP), a listener's WHIP, a removed
  identity, an ended room, another token than the session's; 404 unknown room, publisher or
  session (a WHIP session on the WHEP route too); 405 ``PATCH``; 415 wrong content type.
* CORS: any origin (``signaling.cors``: bearer tokens, no cookies).
"""

from __future__ import annotations

import logging
import secrets
from typing import Literal

from aiohttp import web
from multidict import CIMultiDict
from pydantic import BaseModel

from sfu import events as ev
from sfu.errors import InvalidSdpError, InvalidStateError, SfuError
from sfu.plane.types import ParticipantRef
from sfu.tasks import spawn
from signaling import keys
from signaling import protocol as p
from signaling.accounts import authorize_join, bearer_token
from signaling.admission import Mode, admit
from signaling.auth.tokens import AccessClaims, TokenError, VideoGrant
from signaling.problems import ProblemError
from signaling.stage import Stage
from signaling.turn import client_ice_servers, ice_server_link_headers

logger = logging.getLogger(__name__)

routes = web.RouteTableDef()

SDP_TYPE = "application/sdp"

Kind = Literal["whip", "whep"]


class HttpSession:
    """One WHIP publisher or WHEP viewer: a stage session without a socket.

    It is its participant's media-plane listener (room events are dropped: an HTTP client
    has no channel for them) and a stage ``StageSession`` (stage messages are dropped, except
    that a WHIP publisher demoted to listener ends its session).

    Attributes:
        id: the resource id in the ``Location`` URL (random, 16 characters).
        kind: ``whip`` or ``whep``; room: the room name; target: the publisher a WHEP viewer
            plays (None for WHIP); claims, jti, identity: the token that created the session,
            its id and subject.
    """

    def __init__(
        self,
        app: web.Application,
        kind: Kind,
        room: str,
        claims: AccessClaims,
        target: str | None = None,
    ) -> None:
        self.app = app
        self.kind: Kind = kind
        self.room = room
        self.target = target
        self.id = secrets.token_urlsafe(12)
        self.participant: ParticipantRef | None = None
        self.grants = VideoGrant()
        self.claims: AccessClaims | None = claims
        self.jti = claims.jti
        self.identity = claims.sub
        self.stage: Stage | None = None

    @property
    def location(self) -> str:
        """The session URL (RFC 9725 §4.2 ``Location``)."""
        if self.kind == "whip":
            return f"/whip/{self.room}/{self.id}"
        return f"/whep/{self.room}/{self.target}/{self.id}"

    # -- StageSession --------------------------------------------------------------------------

    def send(self, message: BaseModel) -> None:
        """A stage message for this session: a WHIP publisher that lost ``canPublish`` (demoted
        to listener) ends its session; anything else is dropped."""
        if (
            self.kind == "whip"
            and isinstance(message, p.RoleChangedEvent)
            and not message.permissions.canPublish
        ):
            logger.info("room %s: WHIP session %s demoted to %s", self.room, self.id, message.role)
            spawn(self.close(reason="demoted"))

    # -- the media plane's listener -------------------------------------------------------------

    def on_plane_event(self, event: ev.ParticipantEvent) -> None:
        """Only ``ParticipantClosed`` matters (:meth:`on_closed`). Subscribe offers are
        dropped (a WHIP/WHEP session is negotiated once, by the client's offer: RFC 9725 has no
        server-initiated renegotiation), and so are room events (the HTTP client has no event
        channel)."""
        if isinstance(event, ev.ParticipantClosed):
            self.on_closed(event.reason)

    def on_closed(self, reason: str) -> None:
        """The server closed the participant (removed, room ended, transport failed or closed,
        duplicate identity): forget the session."""
        logger.info("room %s: %s session %s closed (%s)", self.room, self.kind, self.id, reason)
        self._forget()

    # -- lifetime ------------------------------------------------------------------------------

    def _forget(self) -> ParticipantRef | None:
        """Drop the session from the registry and the stage; returns its participant (or None
        when it was forgotten already)."""
        participant, self.participant = self.participant, None
        sessions = self.app[SESSIONS]
        if sessions.get(self.id) is self:
            del sessions[self.id]
        stage, self.stage = self.stage, None
        if stage is not None and participant is not None:
            stage.remove(self, participant.sid)
        return participant

    async def close(self, reason: str = "left") -> None:
        """End the session: forget it, then close its participant and media. Idempotent."""
        participant = self._forget()
        if participant is not None:
            await self.app[keys.MEDIA].leave(participant.sid, reason=reason)


SESSIONS: web.AppKey[dict[str, HttpSession]] = web.AppKey("whip_sessions", dict)
"""Live WHIP and WHEP sessions by resource id."""


def install(app: web.Application) -> None:
    """Create the session registry."""
    app[SESSIONS] = {}


async def _authorize(request: web.Request, room: str) -> AccessClaims:
    """The claims of the request's bearer room token for ``room``.

    Raises:
        ProblemError: 401 (missing, invalid, expired, revoked) or 403 (another room).
    """
    try:
        return await authorize_join(request.app, bearer_token(request), room)
    except TokenError as exc:
        raise ProblemError(exc.status, exc.code, exc.message) from None


async def _read_offer(request: web.Request) -> str:
    if request.content_type != SDP_TYPE:
        raise ProblemError(415, "unsupported_media_type", f"Content-Type must be {SDP_TYPE}")
    try:
        body = await request.text()
    except (UnicodeDecodeError, web.HTTPRequestEntityTooLarge) as exc:
        raise ProblemError(400, "bad_request", f"unreadable body: {exc}") from None
    if not body.strip().startswith("v=0"):
        raise ProblemError(400, "invalid_sdp", "body is not an SDP offer")
    return body


async def _admit(
    request: web.Request,
    session: HttpSession,
    claims: AccessClaims,
    *,
    mode: Mode,
    can_subscribe: bool,
) -> ParticipantRef:
    """Admit ``session`` as a ``/ws`` join is admitted; returns its participant.

    Raises:
        ProblemError: 403 when the stage refuses it (listener, removed, room ended), 409 when
            the media room is closing.
    """
    try:
        admission = await admit(
            request.app,
            session,
            claims,
            room=session.room,
            name=claims.name or claims.sub,
            can_subscribe=can_subscribe,
            mode=mode,
            auto_subscribe=mode != "viewer",
        )
    except p.ProtocolError as exc:
        raise ProblemError(403, str(exc.code), exc.message) from None
    except InvalidStateError as exc:
        raise ProblemError(409, "conflict", str(exc)) from None
    session.stage = admission.stage
    participant = session.participant
    assert participant is not None
    return participant


async def _created(request: web.Request, session: HttpSession, answer: str) -> web.Response:
    """Register the negotiated session and answer 201 with its ``Location``."""
    links = await _ice_server_links(request, session.identity)
    if session.participant is None:  # closed while negotiating (removed, room ended ...)
        raise ProblemError(409, "conflict", "the session was closed during negotiation")
    request.app[SESSIONS][session.id] = session
    headers: CIMultiDict[str] = CIMultiDict()
    headers["Location"] = session.location
    headers["ETag"] = '"' + secrets.token_hex(8) + '"'
    for link in links:
        headers.add("Link", link)
    return web.Response(status=201, text=answer, content_type=SDP_TYPE, headers=headers)


async def _ice_server_links(request: web.Request, identity: str) -> list[str]:
    """``Link: <url>; rel="ice-server"; ...`` values for the 201 (RFC 9725 §4.6): the static
    ICE servers and, when TURN is configured, fresh TURN credentials for ``identity``."""
    app = request.app
    base = [s.as_w3c() for s in await app[keys.MEDIA].ice_servers()]
    servers = client_ice_servers(app[keys.SETTINGS], base, identity)
    return ice_server_link_headers(servers)


@routes.post("/whip/{room}")
async def whip_publish(request: web.Request) -> web.Response:
    """Start a WHIP session: publish the offer's tracks into the room as a stage member."""
    room = request.match_info["room"]
    claims = await _authorize(request, room)
    claimed = request.query.get("identity")
    if claimed is not None and claimed != claims.sub:
        raise ProblemError(403, "forbidden", "identity differs from the token's subject")
    offer = await _read_offer(request)
    session = HttpSession(request.app, "whip", room, claims)
    participant = await _admit(request, session, claims, mode="publisher", can_subscribe=False)
    try:
        answer = (await request.app[keys.MEDIA].publish_offer(participant.sid, offer, [])).sdp
    except BaseException as exc:
        await session.close(reason="whip_failed")
        if isinstance(exc, SfuError):
            code = "invalid_sdp" if isinstance(exc, InvalidSdpError) else "bad_request"
            raise ProblemError(400, code, str(exc)) from None
        raise
    return await _created(request, session, answer)


@routes.post("/whep/{room}/{identity}")
async def whep_play(request: web.Request) -> web.Response:
    """Start a WHEP session: receive one publisher's audio and video as a listener."""
    room_name = request.match_info["room"]
    target = request.match_info["identity"]
    claims = await _authorize(request, room_name)
    if not claims.video.canSubscribe:
        raise ProblemError(403, "forbidden", "the token has no canSubscribe grant")
    offer = await _read_offer(request)
    media = request.app[keys.MEDIA]
    publisher = await media.find_participant(room_name, target)
    if publisher is None or publisher.hidden or not publisher.producers:
        raise ProblemError(404, "not_found", "no such publisher in this room")
    session = HttpSession(request.app, "whep", room_name, claims, target=target)
    viewer = await _admit(request, session, claims, mode="viewer", can_subscribe=True)
    try:  # a podcast listener takes audio, unless the stage shows video: the plane filters
        answer = await media.whep_play(viewer.sid, target, offer)
    except BaseException as exc:
        await session.close(reason="whep_failed")
        if isinstance(exc, SfuError):
            code = "invalid_sdp" if isinstance(exc, InvalidSdpError) else "bad_request"
            raise ProblemError(400, code, str(exc)) from None
        raise
    return await _created(request, session, answer)


async def _session(request: web.Request, kind: Kind) -> HttpSession:
    """The session a ``DELETE``/``PATCH`` names, for the token that created it.

    Raises:
        ProblemError: 401 without a valid token, 403 for another token than the one that
            created the session, 404 for an unknown session or one of the other route.
    """
    room = request.match_info["room"]
    claims = await _authorize(request, room)
    session = request.app[SESSIONS].get(request.match_info["resource"])
    if (
        session is None
        or session.kind != kind
        or session.room != room
        or session.target != request.match_info.get("identity")
    ):
        raise ProblemError(404, "not_found", "no such session")
    if claims.jti != session.jti:
        raise ProblemError(403, "forbidden", "only the token that created a session may end it")
    return session


async def _delete(request: web.Request, kind: Kind) -> web.Response:
    session = await _session(request, kind)
    await session.close(reason="left")
    return web.Response(status=200)


@routes.delete("/whip/{room}/{resource}")
async def whip_delete(request: web.Request) -> web.Response:
    """End a WHIP session (RFC 9725 §4.2)."""
    return await _delete(request, "whip")


@routes.delete("/whep/{room}/{identity}/{resource}")
async def whep_delete(request: web.Request) -> web.Response:
    """End a WHEP session."""
    return await _delete(request, "whep")


async def _patch(request: web.Request, kind: Kind) -> web.Response:
    await _session(request, kind)
    raise ProblemError(
        405,
        "method_not_allowed",
        "trickle ICE and ICE restarts are not supported",
        headers={"Allow": "DELETE, OPTIONS"},
    )


@routes.patch("/whip/{room}/{resource}")
async def whip_patch(request: web.Request) -> web.Response:
    """Trickle ICE / ICE restart on a WHIP session: not supported (405)."""
    return await _patch(request, "whip")


@routes.patch("/whep/{room}/{identity}/{resource}")
async def whep_patch(request: web.Request) -> web.Response:
    """Trickle ICE / ICE restart on a WHEP session: not supported (405)."""
    return await _patch(request, "whep")


async def _options(request: web.Request) -> web.Response:
    """``OPTIONS`` (RFC 9725 §4.2): what the endpoint accepts; CORS headers come from
    ``signaling.cors``."""
    return web.Response(status=204, headers={"Accept-Post": SDP_TYPE})


for _path in (
    "/whip/{room}",
    "/whip/{room}/{resource}",
    "/whep/{room}/{identity}",
    "/whep/{room}/{identity}/{resource}",
):
    routes.route("OPTIONS", _path)(_options)
