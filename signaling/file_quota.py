"""Storage quotas of room files: bytes per identity per room and bytes per room.

Usage counts the plaintext size of the stored files (``metadata.size``). An upload is checked
twice: before its body is read (the room and the uploader must have room left; the upload may
not stream more than what is left) and again, exactly, under a per-room lock right before its
files document is inserted, so concurrent uploads cannot together pass a quota. Refusals are
413 ``quota_exceeded`` RFC 9457 problem details with ``quota_bytes`` and ``used_bytes``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from signaling.problems import ProblemError
from signaling.store.files import FileStore


class FileQuota:
    """The file quotas of one app.

    Args:
        store: the file store (usage is read from it).
        per_identity_bytes: most bytes one identity keeps in one room.
        per_room_bytes: most bytes one room keeps.
    """

    def __init__(self, store: FileStore, per_identity_bytes: int, per_room_bytes: int) -> None:
        self.store = store
        self.per_identity_bytes = per_identity_bytes
        self.per_room_bytes = per_room_bytes
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # room -> (lock, users)

    async def remaining(self, room: str, identity: str) -> int:
        """Bytes ``identity`` may still store in ``room`` (0 or more)."""
        room_bytes, identity_bytes = await self.store.usage(room, identity)
        return max(
            0,
            min(self.per_identity_bytes - identity_bytes, self.per_room_bytes - room_bytes),
        )

    async def check(self, room: str, identity: str, size: int) -> None:
        """Refuse when ``size`` more bytes would pass a quota.

        Raises:
            ProblemError: 413 ``quota_exceeded``.
        """
        room_bytes, identity_bytes = await self.store.usage(room, identity)
        if identity_bytes + size > self.per_identity_bytes:
            raise _exceeded("your files in this room", self.per_identity_bytes, identity_bytes)
        if room_bytes + size > self.per_room_bytes:
            raise _exceeded("this room's files", self.per_room_bytes, room_bytes)

    @contextlib.asynccontextmanager
    async def reserve(self, room: str, identity: str, size: int) -> AsyncIterator[None]:
        """Check ``size`` (:meth:`check`) and hold the room's lock while the caller inserts
        the file, so that the check and the insert are one step."""
        lock, users = self._locks.get(room) or (asyncio.Lock(), 0)
        self._locks[room] = (lock, users + 1)
        try:
            async with lock:
                await self.check(room, identity, size)
                yield
        finally:
            lock, users = self._locks[room]
            if users <= 1:
                del self._locks[room]
            else:
                self._locks[room] = (lock, users - 1)


def _exceeded(what: str, quota: int, used: int) -> ProblemError:
    return ProblemError(
        413,
        "quota_exceeded",
        f"{what} may take at most {quota} bytes ({used} used)",
        quota_bytes=quota,
        used_bytes=used,
    )
