"""Storage of encrypted room files: GridFS-shaped collections and the wrapped room keys.

Collections (same database as :class:`signaling.store.mongo.Store`):

===============  ===========================================================  ================
collection       document                                                     indexes
===============  ===========================================================  ================
``files``        GridFS files document: ``_id, length, chunkSize,             ``metadata.room``
                 uploadDate, filename, metadata: {room, size, content_type,   + ``uploadDate``
                 uploaded_by, uploader_name, chunks, plain_chunk_size,
                 nonce_prefix, alg}``
``file_chunks``  GridFS chunk document: ``files_id, n, data`` (ciphertext)    unique
                                                                              ``files_id, n``
``room_keys``    ``_id`` = room, ``wrapped`` (the room's data key, sealed     (``_id``)
                 by the master key), ``alg, kid, created_at``
===============  ===========================================================  ================

The documents follow the GridFS specification (``length`` and ``chunkSize`` count the stored,
encrypted bytes; every chunk but the last is ``chunkSize`` long; ``n`` counts from 0), but the
collections are *not* named ``<bucket>.files`` / ``<bucket>.chunks`` and are not written with
``gridfs.AsyncGridFSBucket``, for two reasons found while building this module:

* nx-27017 0.8.1 intercepts every collection whose name ends in ``.files`` or ``.chunks`` and
  maps it onto fixed SQLite tables: inserting a chunk creates a placeholder files row (empty
  name, length 0) at once, and deleting the chunks leaves that row behind, so "chunks first,
  files document last, delete the chunks on failure" cannot hold; ``find({})`` on a chunks
  collection returns nothing and ``count_documents`` fails on both; ``uploadDate`` comes back as
  a string and a ``datetime`` inside ``metadata`` makes the insert fail. (Collections named
  ``<bucket>_files`` / ``<bucket>_chunks`` share those tables: avoid such names.)
* ``AsyncGridIn`` buffers up to 32 MiB of chunks in memory before its first insert, so a 25 MB
  upload would be held whole; here each chunk is inserted as soon as it is sealed.

Since the bytes are encrypted with our own chunk framing, GridFS tools could only read
ciphertext anyway. Datetimes are written by inserts only (see ``signaling.store.mongo``).

Errors raised: pymongo's ``PyMongoError`` from every method (the HTTP layer answers 500).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bson import Binary
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from signaling.store.mongo import utcnow

FILES = "files"
CHUNKS = "file_chunks"
ROOM_KEYS = "room_keys"
COLLECTIONS = (FILES, CHUNKS, ROOM_KEYS)
"""Every collection this module writes (tests count documents across them)."""


def _aware(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))  # nx-27017 may hand back an ISO string
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One complete stored file (a ``files`` document).

    Fields: ``id`` (``f_`` + 24 hex digits), ``room``, ``name`` (sanitised), ``size``
    (plaintext bytes), ``content_type`` (as declared by the uploader, informational only),
    ``uploaded_by`` (token subject), ``uploader_name``, ``at`` (UTC upload time), ``chunks``
    (number of chunk documents, >= 1), ``plain_chunk_size`` (plaintext bytes per chunk but the
    last), ``nonce_prefix`` (8 bytes), ``alg`` (the encryption format name).
    """

    id: str
    room: str
    name: str
    size: int
    content_type: str
    uploaded_by: str
    uploader_name: str
    at: datetime
    chunks: int
    plain_chunk_size: int
    nonce_prefix: bytes
    alg: str

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> StoredFile:
        """Build from a ``files`` document."""
        meta = doc["metadata"]
        return cls(
            id=doc["_id"],
            room=meta["room"],
            name=doc["filename"],
            size=int(meta["size"]),
            content_type=meta["content_type"],
            uploaded_by=meta["uploaded_by"],
            uploader_name=meta.get("uploader_name", ""),
            at=_aware(doc["uploadDate"]),
            chunks=int(meta["chunks"]),
            plain_chunk_size=int(meta["plain_chunk_size"]),
            nonce_prefix=bytes.fromhex(meta["nonce_prefix"]),
            alg=meta["alg"],
        )

    def public(self) -> dict[str, Any]:
        """JSON view for the API: ``{id, name, size, content_type, uploaded_by, at}``."""
        return {
            "id": self.id,
            "name": self.name,
            "size": self.size,
            "content_type": self.content_type,
            "uploaded_by": self.uploaded_by,
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A room's data key as stored: ``wrapped`` bytes sealed by the master key ``kid``."""

    room: str
    wrapped: bytes
    alg: str
    kid: str


class FileStore:
    """Repository for encrypted files and room keys over one database (no crypto here)."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.db = db

    async def ensure_indexes(self) -> None:
        """Create the indexes (idempotent)."""
        await self.db[CHUNKS].create_index([("files_id", ASCENDING), ("n", ASCENDING)], unique=True)
        await self.db[FILES].create_index(
            [("metadata.room", ASCENDING), ("uploadDate", DESCENDING)]
        )

    # -- room keys ---------------------------------------------------------------------------

    async def get_room_key(self, room: str) -> WrappedKey | None:
        """The wrapped data key of ``room``, or None when the room has none yet."""
        doc = await self.db[ROOM_KEYS].find_one({"_id": room})
        if doc is None:
            return None
        return WrappedKey(room, bytes(doc["wrapped"]), doc["alg"], doc["kid"])

    async def add_room_key(self, key: WrappedKey) -> WrappedKey:
        """Store ``key`` unless the room already has one; returns the key that is stored.

        Two first uploads racing for one room both call this: the first insert wins and the
        second caller gets (and must use) the winner's key.
        """
        try:
            await self.db[ROOM_KEYS].insert_one(
                {
                    "_id": key.room,
                    "wrapped": Binary(key.wrapped),
                    "alg": key.alg,
                    "kid": key.kid,
                    "created_at": utcnow(),
                }
            )
        except DuplicateKeyError:
            existing = await self.get_room_key(key.room)
            if existing is None:  # deleted in between: not expected, refuse rather than guess
                raise
            return existing
        return key

    # -- chunks and files --------------------------------------------------------------------

    async def put_chunk(self, file_id: str, n: int, data: bytes) -> None:
        """Insert chunk ``n`` (0-based) of ``file_id``; ``data`` is ciphertext."""
        await self.db[CHUNKS].insert_one({"files_id": file_id, "n": n, "data": Binary(data)})

    async def get_chunk(self, file_id: str, n: int) -> bytes | None:
        """The stored bytes of chunk ``n`` of ``file_id``, or None when it is missing."""
        doc = await self.db[CHUNKS].find_one({"files_id": file_id, "n": n})
        return bytes(doc["data"]) if doc is not None else None

    async def delete_chunks(self, file_id: str) -> int:
        """Delete every chunk of ``file_id`` (an upload that failed); returns how many."""
        result = await self.db[CHUNKS].delete_many({"files_id": file_id})
        return result.deleted_count

    async def add_file(
        self,
        *,
        file_id: str,
        room: str,
        name: str,
        size: int,
        content_type: str,
        uploaded_by: str,
        uploader_name: str,
        stored_bytes: int,
        stored_chunk_size: int,
        chunks: int,
        plain_chunk_size: int,
        nonce_prefix: bytes,
        alg: str,
    ) -> StoredFile:
        """Insert the files document, which makes the file visible; call it after every chunk
        is stored. ``stored_bytes``/``stored_chunk_size`` are the GridFS ``length`` and
        ``chunkSize`` (ciphertext bytes); ``size`` is the plaintext size in bytes."""
        doc: dict[str, Any] = {
            "_id": file_id,
            "length": stored_bytes,
            "chunkSize": stored_chunk_size,
            "uploadDate": utcnow(),
            "filename": name,
            "metadata": {
                "room": room,
                "size": size,
                "content_type": content_type,
                "uploaded_by": uploaded_by,
                "uploader_name": uploader_name,
                "chunks": chunks,
                "plain_chunk_size": plain_chunk_size,
                "nonce_prefix": nonce_prefix.hex(),
                "alg": alg,
            },
        }
        await self.db[FILES].insert_one(doc)
        return StoredFile.from_doc(doc)

    async def get_file(self, room: str, file_id: str) -> StoredFile | None:
        """The file ``file_id`` of ``room``; None when unknown or stored for another room."""
        doc = await self.db[FILES].find_one({"_id": file_id})
        if doc is None or doc.get("metadata", {}).get("room") != room:
            return None
        return StoredFile.from_doc(doc)

    async def usage(self, room: str, identity: str) -> tuple[int, int]:
        """(plaintext bytes of every file of ``room``, of those uploaded by ``identity``)."""
        room_bytes = identity_bytes = 0
        # Whole documents: nx-27017 0.8.1 drops dotted fields from a projection.
        cursor = self.db[FILES].find({"metadata.room": room})
        async for doc in cursor:
            metadata = doc.get("metadata", {})
            size = int(metadata.get("size", 0))
            room_bytes += size
            if metadata.get("uploaded_by") == identity:
                identity_bytes += size
        return room_bytes, identity_bytes

    async def list_files(self, room: str, limit: int = 500) -> list[StoredFile]:
        """The files of ``room``, newest first (ties: the later id first), at most ``limit``."""
        cursor = (
            self.db[FILES]
            .find({"metadata.room": room})
            .sort([("uploadDate", DESCENDING), ("_id", DESCENDING)])
            .limit(limit)
        )
        return [StoredFile.from_doc(doc) async for doc in cursor]
