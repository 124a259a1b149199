"""Rooms API (issue 3): rooms, invite links, the owner's room token and the meeting history.

Split from ``signaling.accounts`` (which keeps users, logins and the shared request parsing).
JSON in, JSON out; errors are RFC 9457 problem details (``signaling.problems``).

=======  ==============================  =====================================================
method   path                            body -> answer
=======  ==============================  =====================================================
POST     /api/rooms                      [Bearer] {name, kind} -> 201 {room}
GET      /api/rooms                      [Bearer] -> {rooms: [room]}
POST     /api/rooms/{room}/invites       [Bearer, owner] {role?, max_uses?, ttl_s?} -> 201 invite
POST     /api/rooms/{room}/token         [Bearer, owner] -> 200 room token (admin)
GET      /api/rooms/{room}/history       [Bearer, owner] -> {events: [event]}
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
from signaling.store.mongo import Room, User

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
    """The caller's rooms, newest first: ``{rooms: [room]}``."""
    _claims, user = await require_account(request)
    rooms = await request.app[STORE].list_rooms(user.id)
    return web.json_response({"rooms": [room.public() for room in rooms]})


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
    return web.json_response(
        {
            "code": invite.code,
            "url": f"/join/{invite.code}",
            "room": room.id,
            "role": invite.role,
            "remaining": invite.remaining,
            "expires_at": invite.expires_at.isoformat(),
        },
        status=201,
    )


@routes.post("/api/rooms/{room}/token")
async def owner_token(request: web.Request) -> web.Response:
    """Owner only: a room token with ``roomAdmin`` and every permission."""
    _claims, user = await require_account(request)
    room = await _owned_room(request, user)
    await read_body(request, EmptyBody, optional=True)
    grants = _grants_for(room, "owner")
    return web.json_response(_room_token(request.app, room, user.id, user.display_name, grants))


@routes.get("/api/rooms/{room}/history")
async def history(request: web.Request) -> web.Response:
    """Owner only: ``{events: [{room, identity, name, event, at}]}`` oldest first; 403, 404."""
    _claims, user = await require_account(request)
    room = await _owned_room(request, user)
    events = await request.app[STORE].list_history(room.id)
    return web.json_response({"events": [event.public() for event in events]})
