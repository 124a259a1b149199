"""The stage state that must survive a restart: live roles, bans and ended rooms (MongoDB).

================  ==============================================================  ===========
collection        document                                                        indexes
================  ==============================================================  ===========
``stage_roles``   ``_id`` = ``<room>|<identity>``, ``room_id, identity, role,``   TTL, room
                  ``expires_at``
``stage_bans``    ``_id`` = ``<room>|<key>``, ``room_id, key, expires_at``;        TTL, room
                  ``key`` is ``id:<identity>`` (an account id or a guest
                  identity) or ``dev:<device>`` (a guest browser's device key)
``ended_rooms``   ``_id`` = room, ``expires_at``                                  TTL
``room_flags``    ``_id`` = ``<flag>|<room>``, ``room_id, flag, expires_at``;      TTL
                  ``flag`` is ``locked`` or ``waiting_room`` (set by the host)
================  ==============================================================  ===========

Every record lives at most ``ttl`` (``SFU_STAGE_STATE_TTL_S``): a ban bars the person for the
room's life, bounded by that maximum age. Datetimes are only written by ``insert_one`` (the
embedded nx-27017 stores a datetime written by an update operator as a string, see
:mod:`signaling.store.mongo`); a role change updates the ``role`` string only. Reads filter
``expires_at > now`` as TTL deletion is lazy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from signaling.store.mongo import utcnow

Role = Literal["host", "moderator", "speaker", "listener"]
Flag = Literal["locked", "waiting_room"]


@dataclass(slots=True)
class StageState:
    """Everything persisted, as loaded at start-up: ``roles[room][identity]``,
    ``bans[room]`` (ban keys), the ``ended`` rooms and the host's room ``flags`` (flag ->
    rooms: ``locked``, ``waiting_room``)."""

    roles: dict[str, dict[str, Role]] = field(default_factory=dict)
    bans: dict[str, set[str]] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)
    flags: dict[Flag, set[str]] = field(
        default_factory=lambda: {"locked": set(), "waiting_room": set()}
    )


class StageStore:
    """Repository of stage roles, bans and ended rooms over one database (``Store.db``).

    ``ttl``: the maximum age of every record.
    """

    def __init__(self, db: AsyncDatabase[dict[str, Any]], ttl: timedelta) -> None:
        self.roles = db["stage_roles"]
        self.bans = db["stage_bans"]
        self.ended = db["ended_rooms"]
        self.flags = db["room_flags"]
        self.ttl = ttl

    async def ensure_indexes(self) -> None:
        """TTL indexes on every collection and a room index on roles and bans (idempotent)."""
        for collection in (self.roles, self.bans, self.ended, self.flags):
            await collection.create_index("expires_at", expireAfterSeconds=0)
        await self.roles.create_index([("room_id", ASCENDING)])
        await self.bans.create_index([("room_id", ASCENDING)])

    async def load(self) -> StageState:
        """Every live (unexpired) record."""
        now = utcnow()
        live = {"expires_at": {"$gt": now}}
        state = StageState()
        async for doc in self.roles.find(live):
            state.roles.setdefault(doc["room_id"], {})[doc["identity"]] = doc["role"]
        async for doc in self.bans.find(live):
            state.bans.setdefault(doc["room_id"], set()).add(doc["key"])
        async for doc in self.ended.find(live):
            state.ended.add(doc["_id"])
        async for doc in self.flags.find(live):
            if doc.get("flag") in state.flags:
                state.flags[doc["flag"]].add(doc["room_id"])
        return state

    async def load_room(self, room: str) -> StageState:
        """The live records of one room (a cluster node taking a room over, or seeing another
        node change it, resumes from these: :mod:`signaling.cluster`)."""
        now = utcnow()
        live = {"room_id": room, "expires_at": {"$gt": now}}
        state = StageState()
        async for doc in self.roles.find(live):
            state.roles.setdefault(room, {})[doc["identity"]] = doc["role"]
        async for doc in self.bans.find(live):
            state.bans.setdefault(room, set()).add(doc["key"])
        if await self.ended.find_one({"_id": room, "expires_at": {"$gt": now}}) is not None:
            state.ended.add(room)
        async for doc in self.flags.find(live):
            if doc.get("flag") in state.flags:
                state.flags[doc["flag"]].add(room)
        return state

    # -- roles -------------------------------------------------------------------------------

    async def set_role(self, room: str, identity: str, role: Role) -> None:
        """Remember ``identity``'s live role in ``room``."""
        doc_id = f"{room}|{identity}"
        await self.roles.delete_one({"_id": doc_id, "expires_at": {"$lte": utcnow()}})
        try:
            await self.roles.insert_one(
                {
                    "_id": doc_id,
                    "room_id": room,
                    "identity": identity,
                    "role": role,
                    "expires_at": utcnow() + self.ttl,
                }
            )
        except DuplicateKeyError:
            await self.roles.update_one({"_id": doc_id}, {"$set": {"role": role}})

    async def forget_role(self, room: str, identity: str) -> None:
        """Drop ``identity``'s remembered role in ``room``."""
        await self.roles.delete_one({"_id": f"{room}|{identity}"})

    async def clear_roles(self, room: str) -> None:
        """Drop every remembered role of ``room`` (the room ended)."""
        await self.roles.delete_many({"room_id": room})

    # -- bans --------------------------------------------------------------------------------

    async def ban(self, room: str, keys: list[str]) -> None:
        """Bar every ban key in ``keys`` from ``room`` (``id:<identity>``, ``dev:<device>``)."""
        for key in keys:
            doc_id = f"{room}|{key}"
            await self.bans.delete_one({"_id": doc_id, "expires_at": {"$lte": utcnow()}})
            try:
                await self.bans.insert_one(
                    {"_id": doc_id, "room_id": room, "key": key, "expires_at": utcnow() + self.ttl}
                )
            except DuplicateKeyError:
                pass

    async def is_banned(self, room: str, keys: list[str]) -> bool:
        """True when any of ``keys`` is barred from ``room``."""
        ids = [f"{room}|{key}" for key in keys]
        doc = await self.bans.find_one({"_id": {"$in": ids}, "expires_at": {"$gt": utcnow()}})
        return doc is not None

    # -- ended rooms -------------------------------------------------------------------------

    async def end(self, room: str) -> None:
        """Mark ``room`` ended (until a ``roomAdmin`` opens it again)."""
        await self.ended.delete_one({"_id": room, "expires_at": {"$lte": utcnow()}})
        try:
            await self.ended.insert_one({"_id": room, "expires_at": utcnow() + self.ttl})
        except DuplicateKeyError:
            pass

    async def reopen(self, room: str) -> None:
        """``room`` is open again."""
        await self.ended.delete_one({"_id": room})

    # -- room flags (locked, waiting room) ---------------------------------------------------

    async def set_flag(self, room: str, flag: Flag, on: bool) -> None:
        """Set (``on``) or clear the host's ``flag`` on ``room``."""
        doc_id = f"{flag}|{room}"
        if not on:
            await self.flags.delete_one({"_id": doc_id})
            return
        await self.flags.delete_one({"_id": doc_id, "expires_at": {"$lte": utcnow()}})
        try:
            await self.flags.insert_one(
                {"_id": doc_id, "room_id": room, "flag": flag, "expires_at": utcnow() + self.ttl}
            )
        except DuplicateKeyError:
            pass
