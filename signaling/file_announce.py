"""The chat announcement of a file just shared in a room (``POST /api/rooms/{room}/files``,
docs/files.md): the room's chat gets a message from the uploader that carries the file."""

from __future__ import annotations

import logging

from aiohttp import web
from pymongo.errors import PyMongoError

from signaling import keys
from signaling import protocol as p
from signaling.auth.tokens import AccessClaims
from signaling.store.files import StoredFile

log = logging.getLogger(__name__)


async def announce_file(
    app: web.Application, room: str, claims: AccessClaims, record: StoredFile
) -> None:
    """Post the chat message that carries the new file ``record`` to ``room``, from the
    uploader (``claims.sub``; its participant sid and display name when it is in the room).
    A failure is logged, not raised."""
    from signaling.chat import CHAT

    hub = app.get(CHAT)
    if hub is None:
        return
    found = await app[keys.MEDIA].find_participant(room, claims.sub) if keys.MEDIA in app else None
    participant = found.participant if found is not None else None
    try:
        await hub.post(
            room,
            participant=participant.sid if participant is not None else "",
            identity=claims.sub,
            name=participant.name if participant is not None else (claims.name or claims.sub),
            text=f"shared a file: {record.name}",
            file=p.ChatFile(
                id=record.id, name=record.name, size=record.size, content_type=record.content_type
            ),
        )
    except (p.ProtocolError, PyMongoError) as exc:
        log.warning("file %s stored but not announced in room %s: %s", record.id, room, exc)
