"""Session resume bookkeeping for ``/ws`` (issue 11, "Staying connected").

After ``joined`` every server message of a session carries ``seq``, a per-session counter
that starts at 1 and grows by one per message. When the WebSocket drops without ``leave``, the
session (its participant, media, stage/chat/board membership) is kept for a grace period; a
new socket sends ``resume`` with the session's ``resume_token`` and the last ``seq`` it read,
and the server replays every message after it, in order (LiveKit's signal resume).

* :class:`ReplayBuffer`: the numbered messages a session sent recently, bounded in count and
  bytes, from which a resume is replayed;
* :class:`ResumeRegistry`: resume token -> session, for one app.

Pure bookkeeping: no aiohttp, no I/O.
"""

from __future__ import annotations

import secrets
from collections import deque
from typing import Generic, TypeVar

from signaling.wslimits import utf8_length

REASON_RESUME_OVERFLOW = "resume buffer overflow: the client stayed away too long"
REASON_GRACE_EXPIRED = "resume grace period expired"
REASON_RESUMED_ELSEWHERE = "session resumed on another socket"

CLOSE_RESUMED_ELSEWHERE = 4001
"""WebSocket close code (RFC 6455 7.4.2, private range) of a socket whose session was resumed
on a newer socket."""


def stamp(text: str, seq: int) -> str:
    """Put ``"seq": seq`` first in one serialised server message (a JSON object).

    >>> stamp('{"type":"ok"}', 7)
    '{"seq":7,"type":"ok"}'
    """
    return f'{{"seq":{seq},{text[1:]}' if len(text) > 2 else f'{{"seq":{seq}}}'


class ReplayBuffer:
    """The last numbered messages of one session, oldest first.

    Holds at most ``max_messages`` messages and ``max_bytes`` UTF-8 bytes; older messages are
    forgotten as new ones arrive (a resume that needs them fails).

    Args:
        max_messages: most messages kept (>= 1).
        max_bytes: most UTF-8 bytes kept (>= 1).
    """

    __slots__ = ("_bytes", "_items", "evicted", "max_bytes", "max_messages", "seq")

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.seq = 0
        """The seq of the newest message (0: none yet)."""
        self.evicted = 0
        """The seq of the newest message forgotten (0: none)."""
        self._items: deque[tuple[int, str, int]] = deque()
        self._bytes = 0

    def add(self, text: str) -> tuple[int, str]:
        """Number one serialised message; returns (seq, the stamped text), and keeps it."""
        self.seq += 1
        stamped = stamp(text, self.seq)
        size = utf8_length(stamped)
        self._items.append((self.seq, stamped, size))
        self._bytes += size
        while self._items and (
            len(self._items) > self.max_messages or self._bytes > self.max_bytes
        ):
            seq, _, dropped = self._items.popleft()
            self._bytes -= dropped
            self.evicted = seq
        return self.seq, stamped

    def covers(self, last_seq: int) -> bool:
        """Whether every message after ``last_seq`` is still held (a resume can replay)."""
        return self.evicted <= last_seq <= self.seq

    def after(self, last_seq: int) -> list[str]:
        """The stamped messages with seq > ``last_seq``, oldest first."""
        return [text for seq, text, _ in self._items if seq > last_seq]

    @property
    def nbytes(self) -> int:
        """UTF-8 bytes held."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)


S = TypeVar("S")


class ResumeRegistry(Generic[S]):
    """Resume token -> session. A token is 32 random bytes (URL-safe base64), minted at join
    and valid until the session ends; it names the session (room, identity, participant)."""

    def __init__(self) -> None:
        self._sessions: dict[str, S] = {}
        self.closing = False
        """Set at shutdown: no session is held any more."""

    def mint(self, session: S) -> str:
        """A fresh token for ``session``."""
        token = secrets.token_urlsafe(32)
        self._sessions[token] = session
        return token

    def get(self, token: str) -> S | None:
        """The session of ``token`` (None: unknown or ended)."""
        return self._sessions.get(token)

    def forget(self, token: str | None) -> None:
        """End ``token`` (no-op for None or an unknown token)."""
        if token is not None:
            self._sessions.pop(token, None)

    def sessions(self) -> list[S]:
        """Every session with a live token."""
        return list(self._sessions.values())

    def __len__(self) -> int:
        return len(self._sessions)
