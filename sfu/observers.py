"""Audio level and active speaker observation from the RFC 6464 header extension.

No audio is decoded. Each audio Producer adds the level (-dBov, 0 loudest .. 127 silence,
RFC 6464 §3) of every packet to two accumulators; every ``interval_s`` the
:class:`ActiveSpeakerDetector` turns each producer's mean into a smoothed loudness in dBov
(exponential smoothing), applies a threshold with hysteresis and yields the active speakers,
loudest first, like mediasoup's ``AudioLevelObserver``. :class:`ActiveSpeakerObserver` runs the
detector for one room and reports only changes (of the set, the order, or a level by 6 dB),
so clients get at most ``1 / interval_s`` updates per second (5 by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from sfu.events import SpeakerLevel
from sfu.producer import Producer

logger = logging.getLogger(__name__)

SILENCE_DBOV = -127.0


class ActiveSpeakerDetector:
    """Smoothed levels and the active set, updated once per interval.

    Args:
        threshold_dbov: a speaker becomes active above this smoothed loudness (dBov).
        hysteresis_db: and stays active until it drops ``hysteresis_db`` below it.
        smoothing: weight of the newest interval in the exponential average (0 < w <= 1).
        max_speakers: at most this many are reported.
    """

    def __init__(
        self,
        threshold_dbov: float = -50.0,
        hysteresis_db: float = 5.0,
        smoothing: float = 0.5,
        max_speakers: int = 10,
    ) -> None:
        if not 0 < smoothing <= 1:
            raise ValueError("smoothing must be in (0, 1]")
        self.threshold = threshold_dbov
        self.hysteresis = hysteresis_db
        self.smoothing = smoothing
        self.max_speakers = max_speakers
        self.smoothed: dict[str, float] = {}
        self.active: set[str] = set()

    def update(self, producers: Iterable[Producer]) -> list[SpeakerLevel]:
        """Consume every producer's level accumulators; return the active speakers, loudest
        first."""
        seen: set[str] = set()
        candidates: list[tuple[float, Producer]] = []
        for producer in producers:
            if producer.kind != "audio" or producer.closed:
                continue
            seen.add(producer.id)
            count = producer.level_count
            mean = -(producer.level_sum / count) if count and not producer.paused else SILENCE_DBOV
            producer.level_sum = producer.level_count = 0
            previous = self.smoothed.get(producer.id, SILENCE_DBOV)
            value = self.smoothing * mean + (1 - self.smoothing) * previous
            self.smoothed[producer.id] = value
            limit = self.threshold - (self.hysteresis if producer.id in self.active else 0.0)
            if value > limit:
                candidates.append((value, producer))
        for gone in set(self.smoothed) - seen:
            del self.smoothed[gone]
        candidates.sort(key=lambda item: item[0], reverse=True)
        chosen = candidates[: self.max_speakers]
        self.active = {p.id for _, p in chosen}
        return [
            SpeakerLevel(participant=p.participant_sid, track=p.id, level_dbov=round(value))
            for value, p in chosen
        ]


class ActiveSpeakerObserver:
    """Runs an :class:`ActiveSpeakerDetector` for one room every ``interval_s`` and calls
    ``on_change`` with the new list when the set or the order of speakers changed, or when a
    speaker's level moved by ``level_step_db`` or more since the last report."""

    def __init__(
        self,
        producers: Callable[[], Iterable[Producer]],
        on_change: Callable[[list[SpeakerLevel]], None],
        interval_s: float = 0.2,
        detector: ActiveSpeakerDetector | None = None,
        level_step_db: int = 6,
    ) -> None:
        self.producers = producers
        self.on_change = on_change
        self.interval_s = interval_s
        self.detector = detector or ActiveSpeakerDetector()
        self.level_step_db = level_step_db
        self.last: list[SpeakerLevel] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start observing (idempotent)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def tick(self) -> None:
        """One observation; reports a change in the active set or its order."""
        speakers = self.detector.update(self.producers())
        changed = [s.track for s in speakers] != [s.track for s in self.last] or any(
            abs(new.level_dbov - old.level_dbov) >= self.level_step_db
            for new, old in zip(speakers, self.last, strict=False)
        )
        if changed:
            self.last = speakers
            self.on_change(speakers)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.tick()
            except Exception:  # a broken listener must not stop the observer
                logger.exception("active speaker observer failed")

    async def close(self) -> None:
        """Stop observing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
