"""A small in-memory sliding-window rate limiter.

State lives in this process only: fine for one ``sfu serve`` process; several processes or
nodes would each allow the full rate (a shared limiter, e.g. in the store, would be needed).
Keys are strings such as ``"otp:id:email:a@b.c"`` or ``"otp:ip:127.0.0.1"``; the caller
decides which keys to check (the accounts API checks one per identity and one per client
address). Memory is bounded: idle keys are dropped, and at most ``max_keys`` are tracked.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable


class SlidingWindowLimiter:
    """Allow at most ``limit`` events per key in any ``window_s`` seconds.

    ``clock`` returns seconds (monotonic by default; tests inject a fake clock).
    """

    def __init__(
        self,
        limit: int,
        window_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if limit <= 0 or window_s <= 0:
            raise ValueError("limit and window_s must be positive")
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self.max_keys = max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def _prune(self, key: str, now: float) -> deque[float]:
        events = self._events.get(key)
        if events is None:
            events = deque()
            self._events[key] = events
            while len(self._events) > self.max_keys:
                self._events.popitem(last=False)
        else:
            self._events.move_to_end(key)
        horizon = now - self.window_s
        while events and events[0] <= horizon:
            events.popleft()
        return events

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may act again (0.0 when it may act now). Records nothing."""
        now = self.clock()
        events = self._prune(key, now)
        if len(events) < self.limit:
            return 0.0
        return max(0.0, events[0] + self.window_s - now)

    def hit(self, key: str) -> float:
        """Record one event for ``key`` if allowed: returns 0.0, else the seconds to wait."""
        wait = self.retry_after(key)
        if wait == 0.0:
            self._events.setdefault(key, deque()).append(self.clock())
        return wait

    def hit_all(self, keys: list[str]) -> float:
        """Record one event on every key only if all allow it; else the longest wait."""
        wait = max((self.retry_after(key) for key in keys), default=0.0)
        if wait == 0.0:
            now = self.clock()
            for key in keys:
                self._events.setdefault(key, deque()).append(now)
        return wait
