"""Rooms API (issue 3): rooms, invite links, the owner's room token and the meeting history.

Split from ``signaling.accounts`` (which keeps users, logins and the shared request parsing).
JSON in, JSON out; errors are RFC 9457 problem details (``signaling.problems``).

=======  ==============================  =====================================================
method   path                            body -> answer
=======  ==============================  =====================================================
POST     /api/rooms                      [Bearer] {name, kind} -> 201 {room}
GET      /api/rooms                      [Bearer] -> {rooms: [room + {live, participants,
                                         listeners, ended}]}
DELETE   /api/rooms/{room}               [Bearer, owner] -> 204 (a live room ends first)
POST     /api/rooms/{room}/reopen        [Bearer, owner] -> 200 {room} (after the host ended it)
GET      /api/rooms/{room}/invites       [Bearer, owner] -> {invites: [invite]} (live ones)
DELETE   /api/rooms/{room}/invites/{c}   [Bearer, owner] -> 204 (revoked)
POST     /api/rooms/{room}/invites       [Bearer, owner] {role?, max_uses?, ttl_s?} -> 201 invite
POST     /api/rooms/{room}/token         [Bearer, owner] -> 200 room token (admin) | 409
                                         room_ended
GET      /api/rooms/{room}/history       [Bearer, owner] ?offset&limit -> {events: [event],
                                         total, offset, limit}
=======  ==============================  =====================================================

A *room token* answer is ``{token, expires_in, identity, name, room, grants}`` (seconds).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import Field, StrictInt

from signaling import keys
from signaling.accounts import (
    JWT_SECRET,
    STORE,
    EmptyBody,
    RoomName,
    _Body,
    _slug,
    read_body,
    require_account,
)
from signaling.auth.tokens import VideoGrant, create_access_token
from signaling.problems import ProblemError
from signaling.stage import ENDED_FOR_ADMIN, STAGES
from signaling.store.mongo import Invite, Room, User

routes = web.RouteTableDef()


class RoomBody(_Body):
    """``POST /api/rooms``."""

    name: RoomName
    kind: Literal["conference", "podcast"] = "conference"


class InviteBody(_Body):
    """``POST /api/rooms/{room}/invites``; the role defaults by room kind."""

    role: Literal["moderator", "speaker", "listener"] | None = None
    max_uses: Annotated[StrictInt, Field(ge=1, le=10_000)] = 100
    ttl_s: Annotated[StrictInt, Field(ge=60, le=90 * 24 * 3600)] | None = None


def _grants_for(
    room: Room, role: Literal["owner", "moderator", "speaker", "listener"]
) -> VideoGrant:
    """The room token grant of an invite role; the owner joins as host."""
    return VideoGrant(
        room=room.id,
        roomJoin=True,
        roomAdmin=role == "owner",
        canPublish=role in ("owner", "moderator", "speaker"),
        canSubscribe=True,
        canPublishData=True,
        roomKind=room.kind,
        role="host" if role == "owner" else role,
    )


def _room_token(
    app: web.Application, room: Room, identity: str, name: str | None, grants: VideoGrant
) -> dict[str, Any]:
    ttl = app[keys.SETTINGS].room_token_ttl_s
    token, _claims = create_access_token(
        app[JWT_SECRET], identity=identity, name=name, ttl_s=ttl, video=grants
    )
    return {
        "token": token,
        "expires_in": ttl,
        "identity": identity,
        "name": name,
        "room": room.public(),
        "grants": grants.model_dump(),
    }


async def _owned_room(request: web.Request, user: User) -> Room:
    room_id = _slug(request, "room", "room_not_found", "room")
    room = await request.app[STORE].get_room(room_id)
    if room is None:
        raise ProblemError(404, "room_not_found", "room not found")
    if room.owner != user.id:
        raise ProblemError(403, "not_room_owner", "only the room's owner may do this")
    return room


@routes.post("/api/rooms")
async def create_room(request: web.Request) -> web.Response:
    """Create a room owned by the caller: 201 ``{room}``."""
    _claims, user = await require_account(request)
    body = await read_body(request, RoomBody)
    room = await request.app[STORE].create_room(owner=user.id, name=body.name, kind=body.kind)
    return web.json_response({"room": room.public()}, status=201)


@routes.get("/api/rooms")
async def list_rooms(request: web.Request) -> web.Response:
    """The caller's rooms, newest first: ``{rooms: [room + live state]}``.

    Each room adds what the stage knows now (read-only): ``live`` (someone is in it),
    ``participants`` (everyone in it, hidden podcast listeners included), ``listeners`` and
    ``ended`` (its host ended it and it was not reopened).
    """
    _claims, user = await require_account(request)
    rooms = await request.app[STORE].list_rooms(user.id)
    return web.json_response({"rooms": [_with_live_state(request.app, room) for room in rooms]})


def _with_live_state(app: web.Application, room: Room) -> dict[str, Any]:
    stages = app[STAGES]
    participants, listeners = stages.counts(room.id)
    return {
        **room.public(),
        "live": participants > 0,
        "participants": participants,
        "listeners": listeners,
        "ended": room.id in stages.ended,
    }


@routes.delete("/api/rooms/{room}")
async def delete_room(request: web.Request) -> web.Response:
    """Owner only: delete the room with its invites and history; a live room ends first
    (everyone gets ``room_ended``) and its room tokens stop working. 204; 403, 404."""
    app = request.app
    _claims, user = await require_account(request)
    room = await _owned_room(request, user)
    await app[STAGES].end_room(app, room.id)
    await app[STORE].delete_room(room.id)
    return web.Response(status=204)


@routes.post("/api/rooms/{room}/reopen")
async def reopen_room(request: web.Request) -> web.Response:
    """Owner only: open a room its host ended, on purpose (an ended room refuses everyone,
    its owner included, until then). 200 ``{room}`` (with live state); 403, 404."""
    app = request.app
    _claims, user = await require_account(request)
    room = await _owned_room(request, user)
    await read_body(request, EmptyBody, optional=True)
    await app[STAGES].reopen(room.id)
    return web.json_response({"room": _with_live_state(app, room)})


@routes.get("/api/rooms/{room}/invites")
async def list_invites(request: web.Request) -> web.Response:
    """Owner only: the room's live invite links, newest first:
    ``{invites: [{code, url, room, role, remaining, expires_at}]}``; 403, 404."""
    _claims, user = await require_account(request)
    room = await _owned_room(request, user)
    invites = await request.app[STORE].list_invites(room.id)
    return web.json_response({"invites": [_invite_json(invite) for invite in invites]})


@routes.delete("/api/rooms/{room}/invites/{code}")
async def revoke_invite(request: web.Request) -> web.Response:
    """Owner only: revoke one invite link of the room (its link then answers 404
    ``invite_not_found``; people already in the room stay). 204; 403, 404."""
    _claims, user = await require_account(request)
    room = await _owned_room(request, user)
    code = _slug(request, "code", "invite_not_found", "invite")
    if not await request.app[STORE].revoke_room_invite(room.id, code):
        raise ProblemError(404, "invite_not_found", "this room has no such invite link")
    return web.Response(status=204)


@routes.post("/api/rooms/{room}/invites")
async def create_invite(request: web.Request) -> web.Response:
    """Owner only: 201 ``{code, url, room, role, remaining, expires_at}``; 403, 404."""
    app = request.app
    _claims, user = await require_account(request)
    room = await _owned_room(request, user)
    body = await read_body(request, InviteBody, optional=True)
    role = body.role or ("speaker" if room.kind == "conference" else "listener")
    invite = await app[STORE].create_invite(
        room_id=room.id,
        created_by=user.id,
        role=role,
        max_uses=body.max_uses,
        ttl=timedelta(seconds=body.ttl_s or app[keys.SETTINGS].invite_ttl_s),
    )
    return web.json_response(_invite_json(invite), status=201)


def _invite_json(invite: Invite) -> dict[str, Any]:
    return {
        "code": invite.code,
        "url": f"/join/{invite.code}",
        "room": invite.room_id,
        "role": invite.role,
        "remaining": invite.remaining,
        "expires_at": invite.expires_at.isoformat(),
    }


@routes.post("/api/rooms/{room}/token")
async def owner_token(request: web.Request) -> web.Response:
    """Owner only: a room token with ``roomAdmin`` and every permission.

    409 ``room_ended`` when its host ended the room: reopening is an explicit action
    (``POST /api/rooms/{room}/reopen``).
    """
    _claims, user = await require_account(request)
    room = await _owned_room(request, user)
    await read_body(request, EmptyBody, optional=True)
    if room.id in request.app[STAGES].ended:
        raise ProblemError(409, "room_ended", ENDED_FOR_ADMIN)
    grants = _grants_for(room, "owner")
    return web.json_response(_room_token(request.app, room, user.id, user.display_name, grants))


@routes.get("/api/rooms/{room}/history")
async def history(request: web.Request) -> web.Response:
    """Owner only, paginated: ``?offset=0&limit=100`` (limit 1 to 500) ->
    ``{events: [{room, identity, name, event, at}], total, offset, limit}`` oldest first.

    ``event`` is ``joined``, ``left``, ``removed``, ``role_changed`` or ``room_ended`` (by
    ``identity``). 403, 404; 422 ``validation_failed`` for a bad offset or limit.
    """
    _claims, user = await require_account(request)
    room = await _owned_room(request, user)
    offset = _int_query(request, "offset", 0, 0, 10_000_000)
    limit = _int_query(request, "limit", 100, 1, 500)
    store = request.app[STORE]
    events = await store.list_history(room.id, limit=limit, offset=offset)
    return web.json_response(
        {
            "events": [event.public() for event in events],
            "total": await store.count_history(room.id),
            "offset": offset,
            "limit": limit,
        }
    )


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ProblemError(
            422,
            "validation_failed",
            f"{name} must be a whole number from {low} to {high}",
            errors=[{"loc": ["query", name], "msg": "out of range", "type": "int_range"}],
        )
    return int(raw)
