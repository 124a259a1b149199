"""Rate-limit counters and failed-login records on MongoDB, so that a restart keeps them.

================  =================================================================  ==========
collection        document                                                           indexes
================  =================================================================  ==========
``rate_counters``  ``_id`` = ``<key>|<window number>``, ``count``, ``expires_at``    TTL
``login_failures`` ``_id`` = ``<account>|<client address>``, ``failures``,           TTL
                   ``last_at`` (Unix seconds, float), ``expires_at``
================  =================================================================  ==========

Counters use fixed windows: window ``n`` of a ``window_s`` limit covers Unix time
``[n * window_s, (n + 1) * window_s)``; a key may act ``limit`` times per window. Every counter
is created by ``insert_one`` (with its ``expires_at``) and then only ``$inc``-ed: the embedded
nx-27017 server stores a datetime written by an update operator as a string (see
:mod:`signaling.store.mongo`). Queries also filter on ``expires_at`` (TTL deletion is lazy).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from signaling.store.mongo import utcnow

COUNTERS = "rate_counters"
FAILURES = "login_failures"


def _at(seconds: float) -> datetime:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class LimitStore:
    """Repository of rate-limit counters and login failures over one database.

    ``clock`` returns Unix seconds (``time.time``; tests may inject another).
    """

    def __init__(
        self, db: AsyncDatabase[dict[str, Any]], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.counters = db[COUNTERS]
        self.failures = db[FAILURES]
        self.clock = clock

    async def ensure_indexes(self) -> None:
        """TTL indexes on both collections (idempotent)."""
        await self.counters.create_index("expires_at", expireAfterSeconds=0)
        await self.failures.create_index("expires_at", expireAfterSeconds=0)

    # -- fixed-window counters ---------------------------------------------------------------

    def _window(self, key: str, window_s: float) -> tuple[str, float]:
        """(document id, end of the current window in Unix seconds)."""
        number = math.floor(self.clock() / window_s)
        return f"{key}|{number}", (number + 1) * window_s

    async def retry_after(self, key: str, limit: int, window_s: float) -> float:
        """Seconds until ``key`` may act again (0.0 now); records nothing."""
        doc_id, end = self._window(key, window_s)
        doc = await self.counters.find_one({"_id": doc_id, "expires_at": {"$gt": utcnow()}})
        if doc is None or int(doc["count"]) < limit:
            return 0.0
        return max(0.0, end - self.clock())

    async def hit(self, key: str, window_s: float) -> int:
        """Count one event for ``key`` in the current window; returns the new count."""
        doc_id, end = self._window(key, window_s)
        try:
            await self.counters.insert_one({"_id": doc_id, "count": 0, "expires_at": _at(end)})
        except DuplicateKeyError:
            pass
        doc = await self.counters.find_one_and_update(
            {"_id": doc_id}, {"$inc": {"count": 1}}, return_document=ReturnDocument.AFTER
        )
        return int(doc["count"]) if doc is not None else 1

    # -- failed logins -----------------------------------------------------------------------

    async def login_failures(self, account: str, address: str) -> tuple[int, float]:
        """(failures, Unix seconds of the last one) of ``account`` from ``address``."""
        doc = await self.failures.find_one(
            {"_id": f"{account}|{address}", "expires_at": {"$gt": utcnow()}}
        )
        if doc is None:
            return 0, 0.0
        return int(doc["failures"]), float(doc["last_at"])

    async def add_login_failure(self, account: str, address: str, ttl_s: float) -> int:
        """Count one failed login; the record is forgotten ``ttl_s`` seconds after its first
        failure. Returns the failures so far."""
        doc_id = f"{account}|{address}"
        now = self.clock()
        await self.failures.delete_one({"_id": doc_id, "expires_at": {"$lte": utcnow()}})
        try:
            await self.failures.insert_one(
                {"_id": doc_id, "failures": 0, "last_at": now, "expires_at": _at(now + ttl_s)}
            )
        except DuplicateKeyError:
            pass
        doc = await self.failures.find_one_and_update(
            {"_id": doc_id},
            {"$inc": {"failures": 1}, "$set": {"last_at": now}},
            return_document=ReturnDocument.AFTER,
        )
        return int(doc["failures"]) if doc is not None else 1

    async def reset_login_failures(self, account: str, address: str) -> None:
        """A successful login: forget the failures of ``account`` from ``address``."""
        await self.failures.delete_one({"_id": f"{account}|{address}"})
