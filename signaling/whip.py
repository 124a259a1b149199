"""WHIP (RFC 9725) publishing and WHEP playback endpoints.

* ``POST /whip/{room}`` with an ``application/sdp`` offer: 201 Created, a ``Location``
  resource and the SDP answer. The publisher is an ordinary participant of the room that
  browsers see and hear. ``DELETE`` on the resource ends the session.
* ``POST /whep/{room}/{identity}``: a viewer's offer (recvonly m-lines) is answered with one
  consumer per m-line of that publisher's tracks, matched by kind.
* Errors: 400 bad SDP, 401 missing/invalid/expired/revoked token, 403 a token of another
  room or without ``canPublish`` (WHIP) / ``canSubscribe`` (WHEP), 404 unknown room,
  publisher or resource, 415 wrong content type, 405 for trickle PATCH (not supported: the
  answer carries all our candidates). ``OPTIONS`` answers CORS preflight.
* Identity: ``Authorization: Bearer <room token>`` (RFC 9725 §4.1, RFC 6750); the
  publisher's identity is the token's ``sub``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict

from sfu.errors import InvalidSdpError, SfuError
from sfu.participant import NullListener, Participant, negotiate_viewer
from sfu.room import Room
from signaling import keys
from signaling.accounts import authorize_join, bearer_token
from signaling.auth.tokens import AccessClaims, TokenError
from signaling.turn import client_ice_servers, ice_server_link_headers

routes = web.RouteTableDef()

SDP_TYPE = "application/sdp"
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, DELETE, OPTIONS, PATCH",
    "Access-Control-Allow-Headers": "Content-Type, Authorization, If-Match",
    "Access-Control-Expose-Headers": "Location, Link, ETag",
    "Access-Control-Max-Age": "600",
}


@dataclass(slots=True)
class Resource:
    """One WHIP or WHEP session: its room and participant."""

    room: Room
    participant: Participant


RESOURCES: web.AppKey[dict[str, Resource]] = web.AppKey("whip_resources", dict)


def install(app: web.Application) -> None:
    """Create the resource registry."""
    app[RESOURCES] = {}


def _problem(status: int, detail: str) -> web.Response:
    return web.json_response(
        {"type": "about:blank", "title": detail, "status": status, "detail": detail},
        status=status,
        content_type="application/problem+json",
        headers=_CORS,
    )


async def _authorize(request: web.Request, room: str, *, publish: bool) -> AccessClaims:
    try:
        claims = await authorize_join(request.app, bearer_token(request), room)
    except TokenError as exc:
        raise _HttpError(exc.status, f"{exc.code}: {exc.message}") from None
    claimed = request.query.get("identity")
    if publish and claimed is not None and claimed != claims.sub:
        raise _HttpError(403, "identity differs from the token's subject")
    allowed = claims.video.canPublish if publish else claims.video.canSubscribe
    if not allowed:
        grant = "canPublish" if publish else "canSubscribe"
        raise _HttpError(403, f"the token has no {grant} grant")
    return claims


async def _read_offer(request: web.Request) -> str:
    if request.content_type != SDP_TYPE:
        raise _HttpError(415, f"Content-Type must be {SDP_TYPE}")
    try:
        body = await request.text()
    except (UnicodeDecodeError, web.HTTPRequestEntityTooLarge) as exc:
        raise _HttpError(400, f"unreadable body: {exc}") from None
    if not body.strip().startswith("v=0"):
        raise _HttpError(400, "body is not an SDP offer")
    return body


class _HttpError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _created(request: web.Request, location: str, answer: str, identity: str) -> web.Response:
    headers = CIMultiDict(_CORS)
    headers["Location"] = location
    headers["ETag"] = '"' + secrets.token_hex(8) + '"'
    for link in _ice_server_links(request, identity):
        headers.add("Link", link)
    return web.Response(status=201, text=answer, content_type=SDP_TYPE, headers=headers)


def _ice_server_links(request: web.Request, identity: str) -> list[str]:
    """``Link: <url>; rel="ice-server"; ...`` values for the 201 (RFC 9725 §4.6): the static
    ICE servers and, when TURN is configured, fresh TURN credentials for ``identity``."""
    app = request.app
    servers = client_ice_servers(app[keys.SETTINGS], app[keys.MEDIA].ice_servers(), identity)
    return ice_server_link_headers(servers)


@routes.post("/whip/{room}")
async def whip_publish(request: web.Request) -> web.Response:
    """Start a WHIP session: publish the offer's tracks into the room."""
    try:
        room_name = request.match_info["room"]
        claims = await _authorize(request, room_name, publish=True)
        offer = await _read_offer(request)
        media = request.app[keys.MEDIA]
        room = media.room(room_name)
        participant = await room.join(
            claims.sub, claims.name or claims.sub, NullListener(), can_subscribe=False
        )
        try:
            answer, _mids = await participant.publish_offer(offer)
        except BaseException:
            await room.remove(participant, reason="whip_failed")
            raise
        resource = secrets.token_urlsafe(12)
        request.app[RESOURCES][resource] = Resource(room, participant)
        return _created(request, f"/whip/{room_name}/{resource}", answer, claims.sub)
    except _HttpError as exc:
        return _problem(exc.status, exc.detail)
    except InvalidSdpError as exc:
        return _problem(400, str(exc))
    except SfuError as exc:
        return _problem(400, str(exc))


@routes.post("/whep/{room}/{identity}")
async def whep_play(request: web.Request) -> web.Response:
    """Start a WHEP session: receive one publisher's audio and video."""
    try:
        room_name = request.match_info["room"]
        claims = await _authorize(request, room_name, publish=False)
        offer = await _read_offer(request)
        media = request.app[keys.MEDIA]
        room = media.get_room(room_name)
        if room is None:
            raise _HttpError(404, f"no room {room_name}")
        publisher = room.by_identity(request.match_info["identity"])
        if publisher is None or not publisher.producers:
            raise _HttpError(404, "no such publisher in this room")
        viewer = await room.join(
            claims.sub,
            claims.name or claims.sub,
            NullListener(),
            can_publish=False,
            auto_subscribe=False,
        )
        try:
            answer = await negotiate_viewer(viewer, offer, list(publisher.producers.values()))
        except BaseException:
            await room.remove(viewer, reason="whep_failed")
            raise
        resource = secrets.token_urlsafe(12)
        request.app[RESOURCES][resource] = Resource(room, viewer)
        location = f"/whep/{room_name}/{request.match_info['identity']}/{resource}"
        return _created(request, location, answer, claims.sub)
    except _HttpError as exc:
        return _problem(exc.status, exc.detail)
    except SfuError as exc:
        return _problem(400, str(exc))


async def _delete(request: web.Request) -> web.Response:
    resource = request.app[RESOURCES].pop(request.match_info["resource"], None)
    if resource is None:
        return _problem(404, "no such session")
    await resource.room.remove(resource.participant, reason="left")
    return web.Response(status=200, headers=_CORS)


@routes.delete("/whip/{room}/{resource}")
async def whip_delete(request: web.Request) -> web.Response:
    """End a WHIP session (RFC 9725 §4.2)."""
    return await _delete(request)


@routes.delete("/whep/{room}/{identity}/{resource}")
async def whep_delete(request: web.Request) -> web.Response:
    """End a WHEP session."""
    return await _delete(request)


async def _patch(request: web.Request) -> web.Response:
    headers = dict(_CORS)
    headers["Allow"] = "DELETE, OPTIONS"
    return web.Response(status=405, headers=headers, text="trickle ICE is not supported")


routes.patch("/whip/{room}/{resource}")(_patch)
routes.patch("/whep/{room}/{identity}/{resource}")(_patch)


async def _options(request: web.Request) -> web.Response:
    headers = dict(_CORS)
    headers["Accept-Post"] = SDP_TYPE
    return web.Response(status=204, headers=headers)


for _path in (
    "/whip/{room}",
    "/whip/{room}/{resource}",
    "/whep/{room}/{identity}",
    "/whep/{room}/{identity}/{resource}",
):
    routes.route("OPTIONS", _path)(_options)
