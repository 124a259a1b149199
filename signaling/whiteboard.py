"""The collaborative whiteboard of a room (signaling layer; no media involved).

A board is an ordered list of strokes in board pixels (a logical 1600x900 board, see
:class:`signaling.protocol.Stroke`). Per room, :class:`BoardHub` keeps who is in the room, a
cache of the board (read from MongoDB, collection ``board_strokes``, when the first member
arrives; dropped when the last one leaves) and the rate limiters:

* ``board_stroke``: a finished stroke, stored and sent to everyone (the author included, so
  every client sees the same order). Needs ``canPublishData`` and a role that may share (a
  podcast listener only when the host allows it: ``forbidden``). At most :data:`STROKE_LIMIT`
  per :data:`STROKE_WINDOW_S` per identity; at most :data:`MAX_BOARD_STROKES` strokes and
  ``max_points`` points per board (``SFU_BOARD_MAX_POINTS``) and ``max_points_per_identity``
  points of one identity on it (``SFU_BOARD_POINTS_PER_IDENTITY``): ``too_large`` beyond
  (undo frees one's share, a clear frees everything).
* ``board_stroke_part``: points of a stroke still being drawn, relayed to the others and never
  stored (at most :data:`PART_LIMIT` per :data:`PART_WINDOW_S`).
* ``board_undo``: removes the caller's own latest stroke (by identity; ``not_found`` when it
  has none). ``board_clear``: removes every stroke; needs ``roomAdmin``. Both at most
  :data:`EDIT_LIMIT` per :data:`EDIT_WINDOW_S`.

Writes of one room are serialised by a lock, so the stored order, the order of the events and
the ``board_state`` a joiner gets all agree: a joiner is added to the room under the same lock,
right after its ``board_state`` is queued, so it misses no stroke and gets none twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web
from pydantic import BaseModel
from pymongo.errors import PyMongoError

from signaling import keys
from signaling import protocol as p
from signaling.auth.ratelimit import SlidingWindowLimiter
from signaling.auth.tokens import VideoGrant
from signaling.store.board import BoardStore, StrokeRecord

logger = logging.getLogger(__name__)

STROKE_LIMIT = 40
STROKE_WINDOW_S = 5.0
PART_LIMIT = 150
PART_WINDOW_S = 5.0
EDIT_LIMIT = 20
EDIT_WINDOW_S = 5.0
MAX_BOARD_STROKES = 5000
MAX_BOARD_POINTS = 100_000
"""With :data:`MAX_BOARD_STROKES`, keeps one ``board_state`` under 4 MiB of JSON (the default
frame limit of aiohttp's WebSocket client; browsers take more)."""
MAX_POINTS_PER_IDENTITY = 20_000
"""Default share of one identity of a board's points."""


class Member(Protocol):
    """A signaling session as the board hub sees it."""

    def send(self, message: BaseModel) -> None:
        """Queue one server message for this client."""


@dataclass
class _Entry:
    item: p.BoardItem
    doc_id: str | None  # None without a store


@dataclass
class _Board:
    members: set[Member] = field(default_factory=set)
    entries: list[_Entry] = field(default_factory=list)
    keys: set[tuple[str, str]] = field(default_factory=set)  # (identity, stroke id)
    points: int = 0
    points_by: dict[str, int] = field(default_factory=dict)  # identity -> its points here
    next_order: int = 0
    loaded: bool = False
    busy: int = 0  # operations holding or waiting for the lock
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def append(self, entry: _Entry) -> None:
        self.entries.append(entry)
        self.keys.add((entry.item.identity, entry.item.stroke.id))
        self.points += len(entry.item.stroke.points)
        identity = entry.item.identity
        self.points_by[identity] = self.points_by.get(identity, 0) + len(entry.item.stroke.points)

    def drop_points(self, identity: str, count: int) -> None:
        self.points -= count
        left = self.points_by.get(identity, 0) - count
        if left > 0:
            self.points_by[identity] = left
        else:
            self.points_by.pop(identity, None)

    def broadcast(self, event: BaseModel, *, skip: Member | None = None) -> None:
        for member in list(self.members):
            if member is not skip:
                member.send(event)


def board_item(record: StrokeRecord) -> p.BoardItem:
    """Stored record -> protocol board item."""
    return p.BoardItem(
        stroke=p.Stroke.model_construct(
            id=record.stroke_id,
            tool=record.tool,
            color=record.color,
            width=record.width,
            points=record.points,
        ),
        participant=record.participant,
        identity=record.identity,
    )


class BoardHub:
    """Every room's whiteboard: members, cached strokes, persistence and limits.

    Args:
        store: where boards are kept; None keeps them in memory only (lost at restart).
        max_strokes, max_points: the caps of one board (tests lower them).
        max_points_per_identity: the most points one identity may have on one board.
    """

    def __init__(
        self,
        store: BoardStore | None,
        *,
        max_strokes: int = MAX_BOARD_STROKES,
        max_points: int = MAX_BOARD_POINTS,
        max_points_per_identity: int = MAX_POINTS_PER_IDENTITY,
    ) -> None:
        self.store = store
        self.max_strokes = max_strokes
        self.max_points = max_points
        self.max_points_per_identity = max_points_per_identity
        self.stroke_limiter = SlidingWindowLimiter(STROKE_LIMIT, STROKE_WINDOW_S)
        self.part_limiter = SlidingWindowLimiter(PART_LIMIT, PART_WINDOW_S)
        self.edit_limiter = SlidingWindowLimiter(EDIT_LIMIT, EDIT_WINDOW_S)
        self._boards: dict[str, _Board] = {}

    # -- membership ----------------------------------------------------------------------------

    async def join(self, room: str, member: Member, *, can_draw: bool, can_clear: bool) -> None:
        """Send ``member`` the board (``board_state``) and from then on every board event.

        When the board cannot be read, ``member`` gets an ``internal`` error event instead and
        no board events (it may still draw: its requests retry the read).
        """
        try:
            async with self._locked(room) as board:
                member.send(
                    p.BoardStateEvent(
                        strokes=[entry.item for entry in board.entries],
                        can_draw=can_draw,
                        can_clear=can_clear,
                    )
                )
                board.members.add(member)
        except PyMongoError:
            logger.exception("whiteboard of room %s could not be read", room)
            member.send(
                p.ErrorResponse(code=p.ErrorCode.INTERNAL, message="whiteboard unavailable")
            )

    def leave(self, room: str, member: Member) -> None:
        """``member`` no longer receives board events (idempotent)."""
        board = self._boards.get(room)
        if board is not None:
            board.members.discard(member)
            self._evict_if_idle(room, board)

    def strokes(self, room: str) -> list[p.BoardItem]:
        """The cached board of ``room`` (empty when nobody is in it), oldest first."""
        board = self._boards.get(room)
        return [entry.item for entry in board.entries] if board is not None else []

    # -- requests ------------------------------------------------------------------------------

    async def handle(
        self,
        member: Member,
        *,
        room: str,
        participant: str,
        identity: str,
        grants: VideoGrant,
        request: p.Request,
        can_share: bool = True,
    ) -> None:
        """Apply one ``board_*`` request of ``member`` (participant sid ``participant``).
        ``can_share``: the caller's role may draw (False: a podcast listener the host did not
        allow).

        Raises:
            ProtocolError (with ``ref`` = the request id): ``forbidden`` without the grant
                (``canPublishData`` to draw and undo, ``roomAdmin`` to clear) or the role,
                ``rate_limited``, ``too_large`` (board full), ``bad_request`` (a stroke id
                the caller already used on this board), ``not_found`` (nothing to undo).
        """
        try:
            if isinstance(request, p.BoardClearRequest):
                if not grants.roomAdmin:
                    raise p.ProtocolError(
                        p.ErrorCode.FORBIDDEN, "clearing the board needs the roomAdmin grant"
                    )
                await self.clear(room, participant=participant, identity=identity)
            elif not grants.canPublishData:
                raise p.ProtocolError(p.ErrorCode.FORBIDDEN, "no canPublishData grant")
            elif not can_share and not isinstance(request, p.BoardUndoRequest):
                raise p.ProtocolError(
                    p.ErrorCode.FORBIDDEN, "listeners draw only when the host allows it"
                )
            elif isinstance(request, p.BoardStrokeRequest):
                await self.stroke(
                    room, participant=participant, identity=identity, stroke=request.stroke
                )
            elif isinstance(request, p.BoardStrokePartRequest):
                self.stroke_part(
                    room, member, participant=participant, identity=identity, stroke=request.stroke
                )
            elif isinstance(request, p.BoardUndoRequest):
                await self.undo(room, participant=participant, identity=identity)
        except p.ProtocolError as exc:
            raise p.ProtocolError(exc.code, exc.message, request.id) from None

    async def stroke(
        self, room: str, *, participant: str, identity: str, stroke: p.Stroke
    ) -> p.BoardItem:
        """Store ``stroke`` at the end of the board and send ``board_stroke`` to everyone.

        Raises:
            ProtocolError: ``rate_limited``, ``too_large`` (board full) or ``bad_request``
                (``identity`` already has a stroke with this id on the board).
        """
        self._limit(self.stroke_limiter, room, identity, "strokes")
        async with self._locked(room) as board:
            if (identity, stroke.id) in board.keys:
                raise p.ProtocolError(
                    p.ErrorCode.BAD_REQUEST, f"stroke id {stroke.id!r} is already on the board"
                )
            if (
                len(board.entries) >= self.max_strokes
                or board.points + len(stroke.points) > self.max_points
            ):
                raise p.ProtocolError(
                    p.ErrorCode.TOO_LARGE,
                    f"the board is full ({self.max_strokes} strokes or {self.max_points} "
                    "points); undo strokes or ask a room admin to clear it",
                )
            mine = board.points_by.get(identity, 0)
            if mine + len(stroke.points) > self.max_points_per_identity:
                raise p.ProtocolError(
                    p.ErrorCode.TOO_LARGE,
                    f"your share of the board is full ({self.max_points_per_identity} points); "
                    "undo some of your strokes",
                )
            order = board.next_order
            doc_id = None
            if self.store is not None:
                record = await self.store.add(
                    room_id=room,
                    order=order,
                    identity=identity,
                    participant=participant,
                    stroke_id=stroke.id,
                    tool=stroke.tool,
                    color=stroke.color,
                    width=stroke.width,
                    points=stroke.points,
                )
                doc_id = record.doc_id
            board.next_order = order + 1
            item = p.BoardItem(stroke=stroke, participant=participant, identity=identity)
            board.append(_Entry(item, doc_id))
            board.broadcast(
                p.BoardStrokeEvent(stroke=stroke, participant=participant, identity=identity)
            )
            return item

    def stroke_part(
        self, room: str, member: Member, *, participant: str, identity: str, stroke: p.Stroke
    ) -> None:
        """Relay the points of a stroke being drawn to everyone but ``member`` (not stored).

        Raises:
            ProtocolError: ``rate_limited``.
        """
        self._limit(self.part_limiter, room, identity, "stroke parts")
        board = self._boards.get(room)
        if board is not None:
            event = p.BoardStrokePartEvent(
                stroke=stroke, participant=participant, identity=identity
            )
            board.broadcast(event, skip=member)

    async def undo(self, room: str, *, participant: str, identity: str) -> str:
        """Remove ``identity``'s latest stroke and send ``board_undo``; returns its stroke id.

        Raises:
            ProtocolError: ``rate_limited``, or ``not_found`` when ``identity`` has no stroke
                on the board.
        """
        self._limit(self.edit_limiter, room, identity, "undo or clear requests")
        async with self._locked(room) as board:
            for index in range(len(board.entries) - 1, -1, -1):
                if board.entries[index].item.identity == identity:
                    break
            else:
                raise p.ProtocolError(p.ErrorCode.NOT_FOUND, "no stroke of yours to undo")
            entry = board.entries[index]
            if self.store is not None and entry.doc_id is not None:
                await self.store.delete(room, entry.doc_id)
            del board.entries[index]
            stroke = entry.item.stroke
            board.keys.discard((identity, stroke.id))
            board.drop_points(identity, len(stroke.points))
            board.broadcast(
                p.BoardUndoEvent(stroke_id=stroke.id, identity=identity, participant=participant)
            )
            return stroke.id

    async def clear(self, room: str, *, participant: str, identity: str) -> int:
        """Remove every stroke and send ``board_cleared``; returns how many were removed.
        The caller checks the ``roomAdmin`` grant.

        Raises:
            ProtocolError: ``rate_limited``.
        """
        self._limit(self.edit_limiter, room, identity, "undo or clear requests")
        async with self._locked(room) as board:
            count = len(board.entries)
            if self.store is not None:
                await self.store.clear(room)
            board.entries.clear()
            board.keys.clear()
            board.points = 0
            board.points_by.clear()
            board.broadcast(p.BoardClearedEvent(by=participant))
            return count

    # -- internals -----------------------------------------------------------------------------

    @staticmethod
    def _limit(limiter: SlidingWindowLimiter, room: str, identity: str, what: str) -> None:
        wait = limiter.hit(f"{room}\x00{identity}")
        if wait:
            raise p.ProtocolError(
                p.ErrorCode.RATE_LIMITED, f"too many {what}; retry in {wait:.1f} s"
            )

    @contextlib.asynccontextmanager
    async def _locked(self, room: str) -> AsyncIterator[_Board]:
        """The room's board, read from the store if needed, under the room's write lock."""
        board = self._boards.get(room)
        if board is None:
            board = self._boards[room] = _Board()
        board.busy += 1
        try:
            async with board.lock:
                if not board.loaded:
                    if self.store is not None:
                        for record in await self.store.load(room):
                            board.append(_Entry(board_item(record), record.doc_id))
                            board.next_order = record.order + 1
                    board.loaded = True
                yield board
        finally:
            board.busy -= 1
            self._evict_if_idle(room, board)

    def _evict_if_idle(self, room: str, board: _Board) -> None:
        # The store has every stroke: an empty room's board is read again when someone joins.
        # Without a store, the cache is the board and stays.
        if self.store is None or board.members or board.busy:
            return
        if self._boards.get(room) is board:
            del self._boards[room]


BOARD: web.AppKey[BoardHub] = web.AppKey("board", BoardHub)


async def board_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx`` (after the accounts store): the app's :class:`BoardHub` and its index."""
    from signaling.accounts import STORE

    store = app.get(STORE)
    boards = BoardStore(store.db) if store is not None else None
    if boards is not None:
        await boards.ensure_indexes()
    settings = app[keys.SETTINGS]
    app[BOARD] = BoardHub(
        boards,
        max_points=settings.board_max_points,
        max_points_per_identity=settings.board_points_per_identity,
    )
    yield
