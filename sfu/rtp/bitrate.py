"""Bit rate of an RTP stream from its growing byte counter (no per-packet work)."""

from __future__ import annotations

__all__ = ["BitrateMeter"]


class BitrateMeter:
    """Bits/s of a byte counter, sampled by the caller (at most every ``min_interval_s``),
    smoothed with an exponential moving average (weight 0.5 per sample, ~1-2 s memory).

    Attributes:
        bps: the latest smoothed rate in bits/s (0.0 before two samples).
    """

    __slots__ = ("_at", "_bytes", "bps", "min_interval_s")

    def __init__(self, min_interval_s: float = 0.4) -> None:
        self.min_interval_s = min_interval_s
        self._bytes = 0
        self._at: float | None = None
        self.bps = 0.0

    def sample(self, total_bytes: int, now_s: float) -> float:
        """Record the counter ``total_bytes`` (bytes) at monotonic ``now_s`` (s); returns the
        rate in bits/s."""
        at = self._at
        if at is None:
            self._at, self._bytes = now_s, total_bytes
            return self.bps
        elapsed = now_s - at
        if elapsed < self.min_interval_s:
            return self.bps
        rate = max(0, total_bytes - self._bytes) * 8 / elapsed
        self.bps = rate if self.bps == 0.0 else 0.5 * self.bps + 0.5 * rate
        self._at, self._bytes = now_s, total_bytes
        return self.bps
