"""The accounts store on MongoDB (pymongo's ``AsyncMongoClient``): typed repository methods.

Collections (all ``_id`` values are strings):

========================  ==========================================================  =========
collection                document                                                    indexes
========================  ==========================================================  =========
``users``                 ``_id, email?, phone?, password_hash?, display_name,        unique
                          created_at``                                                email,
                                                                                      phone
                                                                                      (sparse)
``otp_spent``             ``_id`` = one-time-code hash, ``attempts, spent,            TTL
                          expires_at``                                                expires_at
``refresh_tokens``        ``_id`` = SHA-256 of the token, ``user_id, family, used,    TTL, family
                          revoked, expires_at``
``revoked_tokens``        ``_id`` = access-token ``jti``, ``expires_at``              TTL
``rooms``                 ``_id, name, kind, owner, created_at``                      owner
``invites``               ``_id`` = code, ``room_id, role, remaining, created_by,     TTL, room
                          expires_at``
``history``               ``room_id, identity, name, event, at``                      room, at
========================  ==========================================================  =========

nx-27017 (0.8.1) gaps found while building this module, and how we live with them:

* A ``datetime`` written through an update operator (``$set``, and so ``find_one_and_update``)
  is stored as a *string*, so date comparisons on it silently fail. Datetimes are therefore only
  ever written by ``insert_one`` / ``insert_many``; updates touch booleans and integers only, and
  history is an append-only event log.
* TTL indexes are accepted and expired documents do disappear, but we do not rely on the timing:
  every query on a TTL collection also filters ``expires_at > now`` (real MongoDB deletes expired
  documents only once a minute).
* Index names differ from MongoDB's (``idx_users_email`` rather than ``email_1``); nothing here
  depends on index names.
* Unique, sparse-unique, conditional ``find_one_and_update`` (``$inc`` guarded by ``$lt``),
  ``update_many``, ``$or``/``$in``, sort and limit behave as in MongoDB.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

RoomKind = Literal["conference", "podcast"]
InviteRole = Literal["moderator", "speaker", "listener"]
PresenceEvent = Literal["joined", "left", "removed", "role_changed", "room_ended"]
OtpAttempt = Literal["ok", "spent", "exhausted"]
RefreshStatus = Literal["ok", "reused", "unknown"]

COLLECTIONS = (
    "users",
    "otp_spent",
    "refresh_tokens",
    "revoked_tokens",
    "rooms",
    "invites",
    "history",
    "chat",
)
"""Every collection the accounts service writes (tests count documents across them)."""


class DuplicateError(Exception):
    """A unique key (email, phone, invite code) is already taken."""


def utcnow() -> datetime:
    """Current time, timezone-aware UTC, truncated to BSON's millisecond precision."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _aware(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):  # nx-27017 gap: see the module docstring
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise TypeError(f"not a datetime: {value!r}")


@dataclass(frozen=True, slots=True)
class User:
    """An account. ``id`` is the JWT ``sub``; ``email`` and/or ``phone`` identify it at login."""

    id: str
    display_name: str
    email: str | None
    phone: str | None
    password_hash: str | None
    created_at: datetime

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> User:
        """Build from a ``users`` document."""
        return cls(
            id=doc["_id"],
            display_name=doc["display_name"],
            email=doc.get("email"),
            phone=doc.get("phone"),
            password_hash=doc.get("password_hash"),
            created_at=_aware(doc["created_at"]),
        )

    def public(self) -> dict[str, Any]:
        """JSON view for the API (never includes the password hash)."""
        return {
            "id": self.id,
            "display_name": self.display_name,
            "email": self.email,
            "phone": self.phone,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Room:
    """A meeting room owned by a user. ``id`` is the ``video.room`` grant of its tokens."""

    id: str
    name: str
    kind: RoomKind
    owner: str
    created_at: datetime

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Room:
        """Build from a ``rooms`` document."""
        return cls(
            id=doc["_id"],
            name=doc["name"],
            kind=doc["kind"],
            owner=doc["owner"],
            created_at=_aware(doc["created_at"]),
        )

    def public(self) -> dict[str, Any]:
        """JSON view for the API."""
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "owner": self.owner,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Invite:
    """An invite code to a room; ``remaining`` uses left, valid until ``expires_at``."""

    code: str
    room_id: str
    role: InviteRole
    remaining: int
    created_by: str
    expires_at: datetime

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Invite:
        """Build from an ``invites`` document."""
        return cls(
            code=doc["_id"],
            room_id=doc["room_id"],
            role=doc["role"],
            remaining=int(doc["remaining"]),
            created_by=doc["created_by"],
            expires_at=_aware(doc["expires_at"]),
        )


@dataclass(frozen=True, slots=True)
class ChatRecord:
    """One stored chat message of room ``room_id`` (``text`` is plain text, never HTML;
    ``file``: ``{id, name, size, content_type}`` of an attached file, or None)."""

    id: str
    room_id: str
    participant: str
    identity: str
    name: str
    text: str
    at: datetime
    file: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One presence event: ``identity`` ``joined`` or ``left`` room ``room_id`` at ``at``."""

    room_id: str
    identity: str
    name: str | None
    event: PresenceEvent
    at: datetime

    def public(self) -> dict[str, Any]:
        """JSON view for the API."""
        return {
            "room": self.room_id,
            "identity": self.identity,
            "name": self.name,
            "event": self.event,
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class RefreshOutcome:
    """Result of :meth:`Store.use_refresh_token`.

    ``status``: ``ok`` (token was live and is now spent), ``reused`` (it had been spent or
    revoked: the caller must treat it as theft), ``unknown`` (no such live token).
    """

    status: RefreshStatus
    user_id: str | None = None
    family: str | None = None


class Store:
    """Repository over one MongoDB database. Create with :meth:`connect`; ``close()`` at exit."""

    def __init__(self, client: AsyncMongoClient[dict[str, Any]], db_name: str) -> None:
        self.client = client
        self.db: AsyncDatabase[dict[str, Any]] = client[db_name]

    @classmethod
    async def connect(cls, url: str, db_name: str, *, timeout_s: float = 5.0) -> Store:
        """Connect to ``url`` and check it answers ``ping`` within ``timeout_s``.

        Raises ``PyMongoError`` (e.g. ``ServerSelectionTimeoutError``) when it does not.
        """
        options: dict[str, Any] = {"tz_aware": True}
        if "serverselectiontimeoutms" not in url.lower():  # options in the URL win
            options["serverSelectionTimeoutMS"] = int(timeout_s * 1000)
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, **options)
        try:
            await client.admin.command("ping")
        except BaseException:
            await client.close()
            raise
        return cls(client, db_name)

    async def close(self) -> None:
        """Close the client's connections."""
        await self.client.close()

    async def ensure_indexes(self) -> None:
        """Create every index (idempotent): unique keys, TTL on expiring collections."""
        db = self.db
        await db.users.create_index("email", unique=True, sparse=True)
        await db.users.create_index("phone", unique=True, sparse=True)
        for name in ("otp_spent", "refresh_tokens", "revoked_tokens", "invites"):
            await db[name].create_index("expires_at", expireAfterSeconds=0)
        await db.refresh_tokens.create_index("family")
        await db.rooms.create_index("owner")
        await db.invites.create_index("room_id")
        await db.history.create_index([("room_id", ASCENDING), ("at", ASCENDING)])
        await db.chat.create_index([("room_id", ASCENDING), ("at", DESCENDING)])

    async def count_all(self) -> dict[str, int]:
        """Document count per collection in :data:`COLLECTIONS` (used by tests and admin)."""
        return {name: await self.db[name].count_documents({}) for name in COLLECTIONS}

    # -- users -------------------------------------------------------------------------------

    async def create_user(
        self,
        *,
        display_name: str,
        email: str | None = None,
        phone: str | None = None,
        password_hash: str | None = None,
    ) -> User:
        """Insert a user; raises :class:`DuplicateError` if the email or phone is taken."""
        doc: dict[str, Any] = {
            "_id": "u_" + uuid.uuid4().hex,
            "display_name": display_name,
            "created_at": utcnow(),
        }
        if email is not None:
            doc["email"] = email
        if phone is not None:
            doc["phone"] = phone
        if password_hash is not None:
            doc["password_hash"] = password_hash
        try:
            await self.db.users.insert_one(doc)
        except DuplicateKeyError as exc:
            raise DuplicateError("email or phone already registered") from exc
        return User.from_doc(doc)

    async def get_user(self, user_id: str) -> User | None:
        """The user with id ``user_id``, or None."""
        doc = await self.db.users.find_one({"_id": user_id})
        return User.from_doc(doc) if doc else None

    async def find_user(self, *, email: str | None = None, phone: str | None = None) -> User | None:
        """The user with this (normalised) email or phone, or None."""
        if email is not None:
            doc = await self.db.users.find_one({"email": email})
        elif phone is not None:
            doc = await self.db.users.find_one({"phone": phone})
        else:
            return None
        return User.from_doc(doc) if doc else None

    # -- one-time codes ----------------------------------------------------------------------

    async def otp_attempt(
        self, code_hash: str, expires_at: datetime, max_attempts: int
    ) -> OtpAttempt:
        """Count one verification attempt against ``code_hash``.

        Returns ``ok`` when the attempt may proceed, ``spent`` when the hash was already used,
        ``exhausted`` when ``max_attempts`` were made. The record lives until ``expires_at``.
        """
        try:
            await self.db.otp_spent.insert_one(
                {"_id": code_hash, "attempts": 0, "spent": False, "expires_at": expires_at}
            )
        except DuplicateKeyError:
            pass
        doc = await self.db.otp_spent.find_one_and_update(
            {"_id": code_hash, "spent": False, "attempts": {"$lt": max_attempts}},
            {"$inc": {"attempts": 1}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is not None:
            return "ok"
        current = await self.db.otp_spent.find_one({"_id": code_hash})
        if current is not None and current.get("spent"):
            return "spent"
        return "exhausted"

    async def otp_spend(self, code_hash: str) -> bool:
        """Mark ``code_hash`` spent; False if it already was (a concurrent verification won)."""
        result = await self.db.otp_spent.update_one(
            {"_id": code_hash, "spent": False}, {"$set": {"spent": True}}
        )
        return result.modified_count == 1

    # -- refresh tokens ----------------------------------------------------------------------

    async def add_refresh_token(
        self, token_hash: str, *, user_id: str, family: str, expires_at: datetime
    ) -> None:
        """Store a refresh token by its SHA-256 hex digest, as a member of ``family``."""
        await self.db.refresh_tokens.insert_one(
            {
                "_id": token_hash,
                "user_id": user_id,
                "family": family,
                "used": False,
                "revoked": False,
                "expires_at": expires_at,
            }
        )

    async def use_refresh_token(self, token_hash: str) -> RefreshOutcome:
        """Spend a refresh token atomically (rotation); see :class:`RefreshOutcome`.

        On ``reused`` the whole family has already been revoked here.
        """
        now = utcnow()
        doc = await self.db.refresh_tokens.find_one_and_update(
            {"_id": token_hash, "used": False, "revoked": False, "expires_at": {"$gt": now}},
            {"$set": {"used": True}},
        )
        if doc is not None:
            return RefreshOutcome("ok", doc["user_id"], doc["family"])
        old = await self.db.refresh_tokens.find_one({"_id": token_hash})
        if old is None or _aware(old["expires_at"]) <= now:
            return RefreshOutcome("unknown")
        await self.revoke_family(old["family"])
        return RefreshOutcome("reused", old["user_id"], old["family"])

    async def revoke_family(self, family: str) -> int:
        """Revoke every refresh token of ``family``; returns how many were live."""
        result = await self.db.refresh_tokens.update_many(
            {"family": family, "revoked": False}, {"$set": {"revoked": True}}
        )
        return result.modified_count

    async def refresh_family_of(self, token_hash: str, user_id: str) -> str | None:
        """The family of a refresh token owned by ``user_id``, or None."""
        doc = await self.db.refresh_tokens.find_one({"_id": token_hash, "user_id": user_id})
        return doc["family"] if doc else None

    # -- access-token revocation -------------------------------------------------------------

    async def revoke_jti(self, jti: str, expires_at: datetime) -> None:
        """Deny the access token ``jti`` until ``expires_at`` (its own ``exp``)."""
        try:
            await self.db.revoked_tokens.insert_one({"_id": jti, "expires_at": expires_at})
        except DuplicateKeyError:
            pass

    async def is_revoked(self, jti: str) -> bool:
        """True when the access token ``jti`` was revoked and has not yet expired."""
        doc = await self.db.revoked_tokens.find_one({"_id": jti, "expires_at": {"$gt": utcnow()}})
        return doc is not None

    # -- rooms, invites, history -------------------------------------------------------------

    async def create_room(self, *, owner: str, name: str, kind: RoomKind) -> Room:
        """Create a room with a crypto-random URL-safe id (12 characters)."""
        doc = {
            "_id": secrets.token_urlsafe(9),
            "name": name,
            "kind": kind,
            "owner": owner,
            "created_at": utcnow(),
        }
        await self.db.rooms.insert_one(doc)
        return Room.from_doc(doc)

    async def get_room(self, room_id: str) -> Room | None:
        """The room ``room_id``, or None."""
        doc = await self.db.rooms.find_one({"_id": room_id})
        return Room.from_doc(doc) if doc else None

    async def list_rooms(self, owner: str, limit: int = 200) -> list[Room]:
        """Rooms owned by ``owner``, newest first."""
        cursor = self.db.rooms.find({"owner": owner}).sort("created_at", DESCENDING).limit(limit)
        return [Room.from_doc(doc) async for doc in cursor]

    async def create_invite(
        self,
        *,
        room_id: str,
        created_by: str,
        role: InviteRole,
        max_uses: int,
        ttl: timedelta,
    ) -> Invite:
        """Create an invite with a crypto-random URL-safe code (22 characters, 128 bits)."""
        doc = {
            "_id": secrets.token_urlsafe(16),
            "room_id": room_id,
            "role": role,
            "remaining": max_uses,
            "created_by": created_by,
            "expires_at": utcnow() + ttl,
        }
        await self.db.invites.insert_one(doc)
        return Invite.from_doc(doc)

    async def use_invite(self, code: str) -> Invite | None:
        """Consume one use of a live invite; None when unknown, expired or used up."""
        doc = await self.db.invites.find_one_and_update(
            {"_id": code, "expires_at": {"$gt": utcnow()}, "remaining": {"$gt": 0}},
            {"$inc": {"remaining": -1}},
            return_document=ReturnDocument.AFTER,
        )
        return Invite.from_doc(doc) if doc else None

    async def get_invite(self, code: str) -> Invite | None:
        """A live invite (unexpired, uses left) without using it; None otherwise."""
        doc = await self.db.invites.find_one(
            {"_id": code, "expires_at": {"$gt": utcnow()}, "remaining": {"$gt": 0}}
        )
        return Invite.from_doc(doc) if doc else None

    async def find_live_invite(self, room_id: str, created_by: str) -> Invite | None:
        """A live invite to ``room_id`` made by ``created_by`` (unexpired, uses left), the one
        that lasts longest; None when there is none."""
        cursor = (
            self.db.invites.find(
                {
                    "room_id": room_id,
                    "created_by": created_by,
                    "expires_at": {"$gt": utcnow()},
                    "remaining": {"$gt": 0},
                }
            )
            .sort("expires_at", DESCENDING)
            .limit(1)
        )
        async for doc in cursor:
            return Invite.from_doc(doc)
        return None

    async def invite_room(self, code: str) -> str | None:
        """The room of an invite code, live, used up or revoked (until it expires); or None."""
        doc = await self.db.invites.find_one({"_id": code, "expires_at": {"$gt": utcnow()}})
        return str(doc["room_id"]) if doc else None

    async def revoke_invite(self, code: str) -> bool:
        """Revoke an invite code: no uses left (the document stays until it expires, so a
        redemption can still tell which room it was for). False when it was unknown."""
        result = await self.db.invites.update_one({"_id": code}, {"$set": {"remaining": 0}})
        return result.matched_count == 1

    async def list_invites(self, room_id: str, limit: int = 200) -> list[Invite]:
        """The live invites of ``room_id`` (unexpired, uses left), newest first."""
        cursor = (
            self.db.invites.find(
                {"room_id": room_id, "expires_at": {"$gt": utcnow()}, "remaining": {"$gt": 0}}
            )
            .sort("expires_at", DESCENDING)
            .limit(limit)
        )
        return [Invite.from_doc(doc) async for doc in cursor]

    async def revoke_room_invite(self, room_id: str, code: str) -> bool:
        """Revoke invite ``code`` of ``room_id`` (see :meth:`revoke_invite`); False when the
        room has no such live invite."""
        result = await self.db.invites.update_one(
            {"_id": code, "room_id": room_id, "remaining": {"$gt": 0}}, {"$set": {"remaining": 0}}
        )
        return result.matched_count == 1

    async def delete_room(self, room_id: str) -> bool:
        """Delete a room with its invites, meeting history and chat; False when unknown."""
        result = await self.db.rooms.delete_one({"_id": room_id})
        for name in ("invites", "history", "chat"):
            await self.db[name].delete_many({"room_id": room_id})
        return result.deleted_count == 1

    async def count_history(self, room_id: str) -> int:
        """How many presence events ``room_id`` has."""
        return await self.db.history.count_documents({"room_id": room_id})

    async def record_presence(
        self, room_id: str, identity: str, event: PresenceEvent, name: str | None = None
    ) -> None:
        """Append an event (``joined``, ``left``, ``removed``, ``role_changed``, ``room_ended``) to
        the meeting history."""
        await self.db.history.insert_one(
            {"room_id": room_id, "identity": identity, "name": name, "event": event, "at": utcnow()}
        )

    async def add_chat_message(
        self,
        *,
        room_id: str,
        participant: str,
        identity: str,
        name: str,
        text: str,
        file: dict[str, Any] | None = None,
    ) -> ChatRecord:
        """Store one chat message (inserted, never updated: nx-27017 keeps dates only on
        inserts) and return it with its id and server time."""
        record = ChatRecord(
            id="m_" + str(ObjectId()),
            room_id=room_id,
            participant=participant,
            identity=identity,
            name=name,
            text=text,
            at=utcnow(),
            file=file,
        )
        doc: dict[str, Any] = {
            "_id": record.id,
            "room_id": room_id,
            "participant": participant,
            "identity": identity,
            "name": name,
            "text": text,
            "at": record.at,
        }
        if file is not None:
            doc["file"] = file
        await self.db.chat.insert_one(doc)
        return record

    async def recent_chat_messages(self, room_id: str, limit: int = 50) -> list[ChatRecord]:
        """The last ``limit`` chat messages of ``room_id``, oldest first. BSON dates keep ms:
        messages stored within one ms are ordered by id (an ObjectId, which grows within a
        process), as files and presence events are."""
        cursor = (
            self.db.chat.find({"room_id": room_id})
            .sort([("at", DESCENDING), ("_id", DESCENDING)])
            .limit(limit)
        )
        records = [
            ChatRecord(
                id=doc["_id"],
                room_id=doc["room_id"],
                participant=doc["participant"],
                identity=doc["identity"],
                name=doc["name"],
                text=doc["text"],
                at=doc["at"] if isinstance(doc["at"], datetime) else utcnow(),
                file=doc.get("file"),
            )
            async for doc in cursor
        ]
        records.reverse()
        return records

    async def list_history(
        self, room_id: str, limit: int = 1000, offset: int = 0
    ) -> list[HistoryEvent]:
        """Presence events of ``room_id``, oldest first: at most ``limit`` after skipping
        ``offset``."""
        cursor = (
            self.db.history.find({"room_id": room_id})
            .sort([("at", ASCENDING), ("_id", ASCENDING)])
            .skip(offset)
            .limit(limit)
        )
        return [
            HistoryEvent(
                room_id=doc["room_id"],
                identity=doc["identity"],
                name=doc.get("name"),
                event=doc["event"],
                at=_aware(doc["at"]),
            )
            async for doc in cursor
        ]
