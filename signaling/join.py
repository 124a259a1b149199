"""Invite redemption: ``POST /api/join/{code}`` turns an invite code into a room token.

The caller is either signed in (``Authorization: Bearer <access token>``: the room token's
identity is the account) or a guest (a new ``guest-…`` identity per redemption). Errors are
RFC 9457 problem details (``signaling.problems``).
"""

from __future__ import annotations

import secrets
from typing import Literal

from aiohttp import web

from signaling.accounts import (
    STORE,
    JoinBody,
    _grants_for,
    _room_token,
    _slug,
    bearer_token,
    read_body,
    require_account,
)
from signaling.problems import ProblemError
from signaling.store.mongo import User

routes = web.RouteTableDef()


@routes.post("/api/join/{code}")
async def join_by_code(request: web.Request) -> web.Response:
    """Redeem an invite code: a room token for the caller (account) or a new guest identity.

    404 ``invite_not_found`` (unknown, expired or used up); 401 for a bad Bearer token.
    """
    app = request.app
    code = _slug(request, "code", "invite_not_found", "invite")
    user: User | None = None
    if bearer_token(request) is not None:
        _claims, user = await require_account(request)
    body = await read_body(request, JoinBody, optional=True)
    store = app[STORE]
    invite = await store.use_invite(code)
    room = await store.get_room(invite.room_id) if invite else None
    if invite is None or room is None:
        raise ProblemError(404, "invite_not_found", "invite not found, expired or used up")
    role: Literal["owner", "moderator", "speaker", "listener"] = invite.role
    if user is not None and user.id == room.owner:
        role = "owner"
    if user is not None:
        identity, name = user.id, body.display_name or user.display_name
    else:
        identity, name = "guest-" + secrets.token_urlsafe(9), body.display_name or "Guest"
    return web.json_response(_room_token(app, room, identity, name, _grants_for(room, role)))
