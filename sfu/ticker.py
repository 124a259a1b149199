"""One shared timer for the periodic work of every transport (issue 14).

Each connected :class:`sfu.transport.WebRtcTransport` has periodic work that does not depend
on media: its liveness watchdog looks at it every 0.25 s and it sends RTCP reports about once a
second. As one asyncio task per transport and job, 400 subscribers cost 2,000 task wake-ups a
second (each a future, a timer-heap entry and a task step). A :class:`Ticker` runs all of them
from one ``loop.call_later`` chain instead: members are spread over ``slots`` slots, one slot
runs per ``period_s / slots`` so the work of N members comes in N/slots-sized pieces (no burst
of N calls that would delay the packets queued behind it), and each member is called once per
``period_s``.

A member is a callable ``step(now) -> bool`` (``now``: the loop's clock, s); it stays while it
returns True. An exception in a step is logged and removes that member only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

Step = Callable[[float], bool]


class Ticker:
    """Calls every member's ``step(now)`` once per ``period_s`` seconds from one timer.

    Args:
        period_s: how often each member is called (s), > 0.
        slots: members are spread over this many slots, one run every ``period_s / slots``.

    Raises:
        ValueError: for a period <= 0 or fewer than one slot.
    """

    def __init__(self, period_s: float, slots: int = 5) -> None:
        if period_s <= 0 or slots < 1:
            raise ValueError("period_s must be > 0 and slots >= 1")
        self.period_s = period_s
        self._slots: list[dict[int, Step]] = [{} for _ in range(slots)]
        self._next_slot = 0  # where the next member goes (round robin)
        self._running = 0  # the slot the next timer runs
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._keys = 0

    def __len__(self) -> int:
        return sum(len(slot) for slot in self._slots)

    def add(self, step: Step) -> int:
        """Call ``step(now)`` about every ``period_s`` from now on, the first time within
        ``period_s``; returns a key for :meth:`remove`. Needs a running event loop."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (tests run one per test)
            self._loop, self._timer = loop, None
            for slot in self._slots:
                slot.clear()
        self._keys += 1
        self._slots[self._next_slot][self._keys] = step
        self._next_slot = (self._next_slot + 1) % len(self._slots)
        if self._timer is None:
            self._schedule()
        return self._keys

    def remove(self, key: int) -> None:
        """Stop calling the member ``key`` (no-op when it is gone)."""
        for slot in self._slots:
            if slot.pop(key, None) is not None:
                return

    def _schedule(self) -> None:
        assert self._loop is not None
        self._timer = self._loop.call_later(self.period_s / len(self._slots), self._run)

    def _run(self) -> None:
        self._timer = None
        slot = self._slots[self._running]
        self._running = (self._running + 1) % len(self._slots)
        if slot:
            assert self._loop is not None
            now = self._loop.time()
            for key, step in list(slot.items()):
                try:
                    keep = step(now)
                except Exception:  # one broken member must not stop the others
                    logger.exception("periodic step failed")
                    keep = False
                if not keep:
                    slot.pop(key, None)
        if len(self):
            self._schedule()


WATCHDOGS = Ticker(0.25)
"""The liveness watchdogs of every transport of the process (0.25 s,
:data:`sfu.transport.WATCH_INTERVAL_S`)."""

RTCP = Ticker(0.25)
"""Every transport's RTCP timer: each step checks whether its transport's next report is due
(reports are randomised per transport around 1 s, RFC 3550 §6.2; 0.25 s granularity)."""
