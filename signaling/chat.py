"""Room chat and emoji reactions (signaling layer; no media involved).

* Chat: plain-text messages of at most 2 KB, stored in MongoDB (collection ``chat``) and sent
  to everyone in the room, the sender included; the last 50 are sent to each participant
  right after ``joined``. Rate limit: :data:`CHAT_LIMIT` messages per :data:`CHAT_WINDOW_S`
  per participant identity and room.
* Reactions: counted per (participant, emoji) and broadcast in one ``reactions`` message per
  room every :data:`REACTION_BATCH_S` (so at most four a second, whatever the audience does).

Messages are text everywhere: the browser client inserts them with ``textContent``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from aiohttp import web
from pydantic import BaseModel

from signaling import protocol as p
from signaling.auth.ratelimit import SlidingWindowLimiter
from signaling.store.mongo import ChatRecord, Store

CHAT_LIMIT = 5
CHAT_WINDOW_S = 5.0
REACTION_LIMIT = 20
REACTION_WINDOW_S = 5.0
REACTION_BATCH_S = 0.25
HISTORY_SIZE = 50


class Member(Protocol):
    """A signaling session as the chat hub sees it."""

    def send(self, message: BaseModel) -> None:
        """Queue one server message for this client."""


def chat_message(record: ChatRecord) -> p.ChatMessage:
    """Stored record -> protocol message."""
    return p.ChatMessage(
        id=record.id,
        participant=record.participant,
        identity=record.identity,
        name=record.name,
        text=record.text,
        at=record.at.isoformat(),
        file=p.ChatFile(**record.file) if record.file else None,
    )


class ChatHub:
    """Who is in which room (for chat), the rate limiters and the reaction batches."""

    def __init__(self, store: Store | None) -> None:
        self.store = store
        self.rooms: dict[str, set[Member]] = {}
        self.chat_limiter = SlidingWindowLimiter(CHAT_LIMIT, CHAT_WINDOW_S)
        self.reaction_limiter = SlidingWindowLimiter(REACTION_LIMIT, REACTION_WINDOW_S)
        self._reactions: dict[str, Counter[tuple[str, str]]] = {}
        self._flushers: dict[str, asyncio.Task[None]] = {}
        # Cluster (signaling.cluster): called with every chat event and reaction batch
        # delivered here, to deliver it to the room's members on the other nodes.
        self.relay: Callable[[str, BaseModel], None] | None = None

    def join(self, room: str, member: Member) -> None:
        """``member`` now receives the room's chat and reactions."""
        self.rooms.setdefault(room, set()).add(member)

    def leave(self, room: str, member: Member) -> None:
        """``member`` no longer receives them."""
        members = self.rooms.get(room)
        if members is not None:
            members.discard(member)
            if not members:
                del self.rooms[room]

    async def history(self, room: str) -> list[p.ChatMessage]:
        """The last :data:`HISTORY_SIZE` messages of ``room``, oldest first."""
        if self.store is None:
            return []
        return [chat_message(r) for r in await self.store.recent_chat_messages(room, HISTORY_SIZE)]

    async def post(
        self,
        room: str,
        *,
        participant: str,
        identity: str,
        name: str,
        text: str,
        file: p.ChatFile | None = None,
    ) -> p.ChatMessage:
        """Store and broadcast one message (``file``: an attached file, see signaling/files.py).

        Raises:
            ProtocolError: ``rate_limited`` when the participant sends too fast.
        """
        wait = self.chat_limiter.hit(f"{room}\x00{identity}")
        if wait:
            raise p.ProtocolError(
                p.ErrorCode.RATE_LIMITED, f"too many chat messages; retry in {wait:.1f} s"
            )
        if self.store is None:
            raise p.ProtocolError(p.ErrorCode.INTERNAL, "chat store unavailable")
        record = await self.store.add_chat_message(
            room_id=room,
            participant=participant,
            identity=identity,
            name=name,
            text=text,
            file=file.model_dump() if file else None,
        )
        message = chat_message(record)
        event = p.ChatEvent(message=message)
        for member in list(self.rooms.get(room, ())):
            member.send(event)
        if self.relay is not None:
            self.relay(room, event)
        return message

    def react(self, room: str, *, participant: str, identity: str, emoji: str) -> None:
        """Count one reaction into the room's next batch.

        Raises:
            ProtocolError: ``rate_limited`` when the participant reacts too fast.
        """
        wait = self.reaction_limiter.hit(f"{room}\x00{identity}")
        if wait:
            raise p.ProtocolError(
                p.ErrorCode.RATE_LIMITED, f"too many reactions; retry in {wait:.1f} s"
            )
        self._reactions.setdefault(room, Counter())[(participant, emoji)] += 1
        task = self._flushers.get(room)
        if task is None or task.done():
            self._flushers[room] = asyncio.ensure_future(self._flush_later(room))

    async def _flush_later(self, room: str) -> None:
        await asyncio.sleep(REACTION_BATCH_S)
        batch = self._reactions.pop(room, Counter())
        if not batch:
            return
        event = p.ReactionsEvent(
            reactions=[
                p.ReactionCount(participant=participant, emoji=emoji, count=count)
                for (participant, emoji), count in sorted(batch.items())
            ]
        )
        for member in list(self.rooms.get(room, ())):
            member.send(event)
        if self.relay is not None:
            self.relay(room, event)

    async def close(self) -> None:
        """Cancel pending reaction batches."""
        for task in self._flushers.values():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._flushers.clear()


CHAT: web.AppKey[ChatHub] = web.AppKey("chat", ChatHub)


async def chat_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx`` (after the accounts store): the app's :class:`ChatHub`."""
    from signaling.accounts import STORE

    hub = ChatHub(app.get(STORE))
    app[CHAT] = hub
    yield
    await hub.close()
