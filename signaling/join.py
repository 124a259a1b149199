"""Invite redemption: ``POST /api/join/{code}`` turns an invite code into a room token.

The caller is either signed in (``Authorization: Bearer <access token>``: the room token's
identity is the account) or a guest (a new ``guest-…`` identity per redemption). The browser
also keeps a *device key*: the answer's ``device`` (made on the first redemption), sent back
as ``device`` on the next ones and carried in the room token (``video.device``), so that a
removal bars that browser and not only one guest identity or account.

Before redeeming, the pre-join screen asks what the credential opens, without using it:
``GET /api/join/{code}`` (the room's title and kind and the invite's role) or
``GET /api/rooms/{room}/preview`` with a room token. ``GET /join/{code}`` serves the browser
client for a live invite and, for one that cannot be used, an HTML page in words (404 not
valid or expired, 410 used up or revoked): a person opened it, so never problem JSON.

Someone removed from the room (``remove_participant``: their account, or their device key) is
refused with 403 ``removed_from_room`` and the invite is not used. Errors are RFC 9457 problem
details (``signaling.problems``).
"""

from __future__ import annotations

import html
import re
import secrets
from typing import Annotated, Literal

from aiohttp import web
from pydantic import Field, StrictStr

from signaling.accounts import (
    STATIC_DIR,
    STORE,
    DisplayName,
    _Body,
    _slug,
    authorize_join,
    bearer_token,
    read_body,
    require_account,
)
from signaling.auth.tokens import TokenError
from signaling.problems import ProblemError
from signaling.rooms import _grants_for, _room_token
from signaling.stage import STAGES
from signaling.store.mongo import Room, User

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


# Invite codes are URL-safe base64 (``Store.create_invite``: 22 characters).
_CODE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

InviteState = Literal["live", "used", "unknown"]


async def _invite_state(app: web.Application, code: str) -> tuple[InviteState, Room | None]:
    """Whether an invite code can still be redeemed: ``live`` (with its room), ``used`` (used
    up or revoked, not yet expired) or ``unknown`` (never made, expired, or its room is gone)."""
    if not _CODE.match(code):
        return "unknown", None
    store = app[STORE]
    invite = await store.get_invite(code)
    if invite is not None:
        room = await store.get_room(invite.room_id)
        return ("live", room) if room is not None else ("unknown", None)
    room_id = await store.invite_room(code)
    if room_id is not None and await store.get_room(room_id) is not None:
        return "used", None
    return "unknown", None


_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="color-scheme" content="dark">
  <title>{title} · SFU</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/static/css/app.css">
</head>
<body class="notice-page">
  <header class="topbar"><p class="brand">SFU</p></header>
  <main id="main">
    <section class="panel notice" aria-labelledby="notice-title">
      <h1 id="notice-title">{title}</h1>
      <p>{text}</p>
      <p>{advice}</p>
      <p><a class="btn btn-primary" href="/">Go to the start page</a></p>
    </section>
  </main>
</body>
</html>
"""

_INVITE_PAGES: dict[int, tuple[str, str, str]] = {
    404: (
        "This invite link does not work",
        "The link is not a valid invite: it may be mistyped, cut short, or it has expired.",
        "Ask the person who invited you for a new link.",
    ),
    410: (
        "This invite link has been used up",
        "Everyone this link was made for has joined already, or its owner withdrew it.",
        "Ask the person who invited you for a new link.",
    ),
}


def invite_page(status: int) -> web.Response:
    """An HTML page in words for an invite link that cannot be used (404: not valid or
    expired; 410: used up or withdrawn). Never JSON: a person opened the link in a browser."""
    title, text, advice = _INVITE_PAGES[status]
    body = _PAGE.format(
        title=html.escape(title), text=html.escape(text), advice=html.escape(advice)
    )
    return web.Response(
        status=status,
        text=body,
        content_type="text/html",
        headers={"Cache-Control": "no-store"},
    )


@routes.get("/join/{code}")
async def join_page(request: web.Request) -> web.StreamResponse:
    """The invite link: the browser client (which reads the code from the path) for a live
    invite; otherwise a page in words, 404 (not valid, expired) or 410 (used up, revoked)."""
    state, _room = await _invite_state(request.app, request.match_info["code"])
    if state != "live":
        return invite_page(410 if state == "used" else 404)
    index = STATIC_DIR / "index.html"
    if not index.is_file():
        raise ProblemError(404, "not_found", "client not installed")
    return web.FileResponse(index, headers={"Cache-Control": "no-store"})


def _room_preview(room: Room) -> dict[str, str]:
    """What a credential holder may learn of a room before joining: its title and kind."""
    return {"id": room.id, "name": room.name, "kind": room.kind}


@routes.get("/api/join/{code}")
async def invite_preview(request: web.Request) -> web.Response:
    """The room an invite opens, without using it (the pre-join screen's "You're joining …").

    200 ``{room: {id, name, kind}, role, can_publish}``; 404 ``invite_not_found`` (unknown,
    malformed or expired); 410 ``invite_used_up`` (used up or revoked). The invite code is the
    credential: nothing is told without a valid one.
    """
    code = request.match_info["code"]
    state, room = await _invite_state(request.app, code)
    if state == "used":
        raise ProblemError(410, "invite_used_up", "this invite link has been used up")
    invite = await request.app[STORE].get_invite(code) if room is not None else None
    if room is None or invite is None:
        raise ProblemError(404, "invite_not_found", "invite not found, expired or used up")
    role = invite.role
    return web.json_response(
        {
            "room": _room_preview(room),
            "role": role,
            "can_publish": role in ("owner", "moderator", "speaker"),
        }
    )


@routes.get("/api/rooms/{room}/preview")
async def token_preview(request: web.Request) -> web.Response:
    """The room a room token opens (``Authorization: Bearer <room token>``), before joining.

    200 ``{room: {id, name, kind}}``: a room made with ``sfu token create`` and not in the
    store is named by its id (kind from the token). 401/403 problem for a bad token or another
    room's token (``signaling.accounts.authorize_join``).
    """
    room_id = request.match_info["room"]
    try:
        claims = await authorize_join(request.app, bearer_token(request), room_id)
    except TokenError as exc:
        raise ProblemError(exc.status, exc.code, exc.message) from exc
    found = await request.app[STORE].get_room(room_id) if _CODE.match(room_id) else None
    if found is not None:
        return web.json_response({"room": _room_preview(found)})
    kind = claims.video.roomKind if claims.video is not None else None
    return web.json_response(
        {"room": {"id": room_id, "name": room_id, "kind": kind or "conference"}}
    )


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
