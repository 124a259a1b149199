"""Whiteboard strokes on MongoDB: collection ``board_strokes``, one document per stroke.

=================  ====================================================================  =======
collection         document                                                              indexes
=================  ====================================================================  =======
``board_strokes``  ``_id, room_id, order, identity, participant, stroke_id, tool, color,  room,
                   width, points ([[x, y], ...] in board px), at``                       order
=================  ====================================================================  =======

``order`` is the stroke's position on its room's board (increasing, gaps after an undo); a
board is read back sorted by it. Documents are only ever inserted and deleted (an undo deletes
one, a clear deletes the room's), never updated: the embedded nx-27017 server stores a datetime
written by an update operator as a string (see :mod:`signaling.store.mongo`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from signaling.store.mongo import utcnow

COLLECTION = "board_strokes"


@dataclass(frozen=True, slots=True)
class StrokeRecord:
    """One stored stroke of room ``room_id``: ``points`` and ``width`` are in board pixels
    (a 1600x900 board), ``color`` is ``#rrggbb``, ``tool`` is ``pen`` or ``eraser``."""

    doc_id: str
    room_id: str
    order: int
    identity: str
    participant: str
    stroke_id: str
    tool: str
    color: str
    width: float
    points: list[tuple[float, float]]


class BoardStore:
    """Repository of whiteboard strokes over one MongoDB database (e.g. ``Store.db``)."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.collection = db[COLLECTION]

    async def ensure_indexes(self) -> None:
        """Create the (room, order) index (idempotent)."""
        await self.collection.create_index([("room_id", ASCENDING), ("order", ASCENDING)])

    async def add(
        self,
        *,
        room_id: str,
        order: int,
        identity: str,
        participant: str,
        stroke_id: str,
        tool: str,
        color: str,
        width: float,
        points: list[tuple[float, float]],
    ) -> StrokeRecord:
        """Insert one stroke and return it with its document id."""
        record = StrokeRecord(
            doc_id="s_" + uuid.uuid4().hex,
            room_id=room_id,
            order=order,
            identity=identity,
            participant=participant,
            stroke_id=stroke_id,
            tool=tool,
            color=color,
            width=width,
            points=points,
        )
        await self.collection.insert_one(
            {
                "_id": record.doc_id,
                "room_id": room_id,
                "order": order,
                "identity": identity,
                "participant": participant,
                "stroke_id": stroke_id,
                "tool": tool,
                "color": color,
                "width": width,
                "points": [[x, y] for x, y in points],
                "at": utcnow(),
            }
        )
        return record

    async def load(self, room_id: str) -> list[StrokeRecord]:
        """Every stroke of ``room_id``, in board order (oldest first)."""
        cursor = self.collection.find({"room_id": room_id}).sort("order", ASCENDING)
        return [
            StrokeRecord(
                doc_id=doc["_id"],
                room_id=doc["room_id"],
                order=int(doc["order"]),
                identity=doc["identity"],
                participant=doc.get("participant", ""),
                stroke_id=doc["stroke_id"],
                tool=doc["tool"],
                color=doc["color"],
                width=float(doc["width"]),
                points=[(float(x), float(y)) for x, y in doc["points"]],
            )
            async for doc in cursor
        ]

    async def delete(self, room_id: str, doc_id: str) -> bool:
        """Delete one stroke; False when it was already gone."""
        result = await self.collection.delete_one({"_id": doc_id, "room_id": room_id})
        return result.deleted_count == 1

    async def clear(self, room_id: str) -> int:
        """Delete every stroke of ``room_id``; returns how many there were."""
        result = await self.collection.delete_many({"room_id": room_id})
        return result.deleted_count
