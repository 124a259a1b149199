"""The development demo link: ``sfu serve`` with ``SFU_ENV=development`` prints a link that
opens a working call in one click.

On start-up it makes (or finds again, in the same database) a conference room "Demo room"
owned by no account (owner id :data:`DEMO_OWNER`) and a live invite to it (speaker role, up to
:data:`DEMO_INVITE_USES` redemptions, ``SFU_INVITE_TTL_S`` long: the same link keeps working
across restarts until it runs out), then prints ``Demo room: http://HOST:PORT/join/CODE`` on
stdout and logs it. Everyone who opens the link is a guest of the demo room. In production it
does nothing: an invite link in a production log would be a credential anyone reading the log
could use.
"""

from __future__ import annotations

import ipaddress
import logging
from datetime import timedelta

from aiohttp import web

from signaling import keys
from signaling.accounts import STORE
from signaling.settings import Settings
from signaling.store.mongo import Invite, Room, Store

log = logging.getLogger(__name__)

DEMO_OWNER = "sfu-demo"
"""Owner id of the demo room; account ids look like ``u_<hex>``, so no account owns it."""
DEMO_ROOM_NAME = "Demo room"
DEMO_INVITE_USES = 1000

DEMO_LINK: web.AppKey[str] = web.AppKey("dev_demo_link", str)


def base_url(settings: Settings) -> str:
    """The URL a browser on this machine opens: ``http(s)://HOST:PORT`` (a wildcard listen
    address becomes 127.0.0.1, a secure context for getUserMedia without TLS)."""
    scheme = "https" if settings.tls_cert is not None else "http"
    host = settings.host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass  # a host name
    return f"{scheme}://{host}:{settings.port}"


async def demo_invite(store: Store, settings: Settings) -> tuple[Room, Invite]:
    """The demo room and a live invite to it, made on first use and found again afterwards.

    Raises ``pymongo.errors.PyMongoError`` when the store fails.
    """
    rooms = await store.list_rooms(DEMO_OWNER, limit=1)
    if rooms:
        room = rooms[0]
    else:
        room = await store.create_room(owner=DEMO_OWNER, name=DEMO_ROOM_NAME, kind="conference")
    invite = await store.find_live_invite(room.id, DEMO_OWNER)
    if invite is None:
        invite = await store.create_invite(
            room_id=room.id,
            created_by=DEMO_OWNER,
            role="speaker",
            max_uses=DEMO_INVITE_USES,
            ttl=timedelta(seconds=settings.invite_ttl_s),
        )
    return room, invite


async def announce_demo_link(app: web.Application) -> None:
    """``on_startup`` hook (after the accounts store is up): print and log the demo link in
    development; nothing in production."""
    settings = app[keys.SETTINGS]
    if settings.env != "development":
        return
    _room, invite = await demo_invite(app[STORE], settings)
    link = f"{base_url(settings)}/join/{invite.code}"
    app[DEMO_LINK] = link
    log.info("development demo room: %s", link)
    print(f"\n  Demo room (development): open {link}\n", flush=True)
