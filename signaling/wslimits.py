"""Per-socket and per-address limits of the ``/ws`` edge (issue 10, item 5).

* :class:`TokenBucket`: the request rate of one socket (requests/s with a burst).
* :class:`AddressSlots`: how many sockets each client address holds open.
* the WebSocket close codes the server uses when it drops a socket on its own (RFC 6455
  section 7.4.1; 1013 is IANA's "Try Again Later").

Pure bookkeeping: no aiohttp, no I/O, so each piece is tested on its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable

CLOSE_POLICY_VIOLATION = 1008
"""RFC 6455 7.4.1: the client broke a rule (never read its replies, never joined)."""
CLOSE_TRY_AGAIN_LATER = 1013
"""IANA WebSocket close code registry: a temporary condition (too many sockets)."""

REASON_OUTBOX_OVERFLOW = "outbox overflow: the client does not read"
REASON_JOIN_TIMEOUT = "join timeout"
REASON_TOO_MANY_CONNECTIONS = "too many connections from this address"

PRE_JOIN_TYPES = frozenset({"join", "ping", "resume"})
"""The only requests a socket may send before it has joined (or resumed)."""


class TokenBucket:
    """A token bucket: ``rate`` tokens per second, holding at most ``burst``; starts full.

    Args:
        rate: refill rate (tokens/s, > 0).
        burst: capacity (tokens, >= 1): how many requests may arrive back to back.
        clock: monotonic seconds (``time.monotonic`` unless a test passes its own).
    """

    __slots__ = ("_clock", "_stamp", "_tokens", "burst", "rate")

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def take(self) -> bool:
        """Spend one token; False (and nothing spent) when the bucket is empty."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class AddressSlots:
    """Open sockets per client address, capped at ``limit`` (0: no cap)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[str, int] = {}

    def acquire(self, address: str) -> bool:
        """Count one more socket of ``address``; False (nothing counted) at the cap."""
        held = self.open.get(address, 0)
        if self.limit and held >= self.limit:
            return False
        self.open[address] = held + 1
        return True

    def release(self, address: str) -> None:
        """Forget one socket of ``address`` (after a successful :meth:`acquire`)."""
        held = self.open.get(address, 0) - 1
        if held > 0:
            self.open[address] = held
        else:
            self.open.pop(address, None)


def utf8_length(text: str) -> int:
    """Bytes of ``text`` once UTF-8 encoded (JSON from pydantic is mostly ASCII)."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))
