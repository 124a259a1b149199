"""Invite redemption: ``POST /api/join/{code}`` turns an invite code into a room token.

The caller is either signed in (``Authorization: Bearer <access token>``: the room token's
identity is the account) or a guest (a new ``guest-…`` identity per redemption). The browser
also keeps a *device key*: the answer's ``device`` (made on the first redemption), sent back
as ``device`` on the next ones and carried in the room token (``video.device``), so that a
removal bars that browser and not only one guest identity or account.

Someone removed from the room (``remove_participant``: their account, or their device key) is
refused with 403 ``removed_from_room`` and the invite is not used. Errors are RFC 9457 problem
details (``signaling.problems``).
"""

from __future__ import annotations

import secrets
from typing import Annotated, Literal

from aiohttp import web
from pydantic import Field, StrictStr

from signaling.accounts import (
    STATIC_DIR,
    STORE,
    DisplayName,
    _Body,
    _grants_for,
    _room_token,
    _slug,
    bearer_token,
    read_body,
    require_account,
)
from signaling.problems import ProblemError
from signaling.stage import STAGES
from signaling.store.mongo import User

routes = web.RouteTableDef()

DeviceKey = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_-]{16,64}$")]


class JoinBody(_Body):
    """``POST /api/join/{code}`` (body optional): a guest's display name and device key."""

    display_name: DisplayName | None = None
    device: DeviceKey | None = None


@routes.post("/api/join/{code}")
async def join_by_code(request: web.Request) -> web.Response:
    """Redeem an invite code: a room token for the caller (account) or a new guest identity.

    The answer is a room token answer plus ``device`` (the browser's device key).
    404 ``invite_not_found`` (unknown, expired or used up); 403 ``removed_from_room``; 401 for
    a bad Bearer token.
    """
    app = request.app
    code = _slug(request, "code", "invite_not_found", "invite")
    user: User | None = None
    if bearer_token(request) is not None:
        _claims, user = await require_account(request)
    body = await read_body(request, JoinBody, optional=True)
    store = app[STORE]
    room_id = await store.invite_room(code)
    found = await store.get_room(room_id) if room_id is not None else None
    if found is not None and (user is None or user.id != found.owner):  # never the owner
        keys = [f"id:{user.id}"] if user is not None else []
        if body.device is not None:
            keys.append(f"dev:{body.device}")
        if await _barred(request.app, found.id, keys):
            raise ProblemError(403, "removed_from_room", "You were removed from this room")
    invite = await store.use_invite(code)
    room = await store.get_room(invite.room_id) if invite else None
    if invite is None or room is None:
        raise ProblemError(404, "invite_not_found", "invite not found, expired or used up")
    role: Literal["owner", "moderator", "speaker", "listener"] = invite.role
    if user is not None and user.id == room.owner:
        role = "owner"
    device = body.device or secrets.token_urlsafe(24)
    if user is not None:
        identity, name = user.id, body.display_name or user.display_name
    else:
        identity, name = "guest-" + secrets.token_urlsafe(9), body.display_name or "Guest"
    # The owner's token names no device: removing someone who shares the owner's browser
    # must not bar the owner.
    update = {"invite": invite.code, "device": device if role != "owner" else None}
    grants = _grants_for(room, role).model_copy(update=update)
    answer = _room_token(app, room, identity, name, grants)
    answer["device"] = device
    return web.json_response(answer)


@routes.get("/join/{code}")
async def join_page(request: web.Request) -> web.StreamResponse:
    """The invite link: serves the browser client, which reads the code from the path."""
    _slug(request, "code", "invite_not_found", "invite")
    index = STATIC_DIR / "index.html"
    if not index.is_file():
        raise ProblemError(404, "not_found", "client not installed")
    return web.FileResponse(index)


async def _barred(app: web.Application, room: str, keys: list[str]) -> bool:
    """True when any ban key is barred from ``room`` (live registry, then the store)."""
    if not keys:
        return False
    stages = app.get(STAGES)
    if stages is not None:
        if any(key in stages.state.bans.get(room, ()) for key in keys):
            return True
        if stages.store is not None:
            return await stages.store.is_banned(room, keys)
    return False
