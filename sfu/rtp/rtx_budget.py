"""Retransmission budget of one Consumer: a token bucket in packets, filled by the media the
Consumer sends (so retransmissions stay a bounded share of its send rate).

Each media packet sent earns :data:`BUDGET_RATIO` of a token; each retransmitted packet spends
one; the bucket holds at most :data:`BUDGET_BURST` tokens and starts full, so a lost keyframe
(tens of packets) is repaired at once while a receiver that NACKs everything can never make
us send more than ``BUDGET_BURST + BUDGET_RATIO * packets_sent`` retransmissions in total.
libwebrtc bounds RTX the same way, by rate relative to the media it sends.
"""

from __future__ import annotations

__all__ = ["BUDGET_BURST", "BUDGET_RATIO", "RetransmissionBudget"]

BUDGET_RATIO = 0.5
"""Retransmitted packets allowed per media packet sent (sustained)."""

BUDGET_BURST = 128.0
"""Bucket size in packets (the retransmissions allowed at once)."""


class RetransmissionBudget:
    """Token bucket of retransmissions for one outgoing stream.

    Args:
        ratio: tokens earned per media packet sent.
        burst: bucket capacity (packets); the bucket starts full.
    """

    __slots__ = ("_counted", "burst", "ratio", "tokens")

    def __init__(self, ratio: float = BUDGET_RATIO, burst: float = BUDGET_BURST) -> None:
        self.ratio = ratio
        self.burst = burst
        self.tokens = burst
        self._counted = 0  # media packets already turned into tokens

    def refill(self, packets_sent: int) -> None:
        """Earn tokens for the media packets sent since the last call (``packets_sent`` is
        the stream's running total)."""
        new = packets_sent - self._counted
        if new > 0:
            self._counted = packets_sent
            self.tokens = min(self.burst, self.tokens + new * self.ratio)

    def has_token(self) -> bool:
        """True while at least one more retransmission is allowed."""
        return self.tokens >= 1.0

    def spend(self) -> None:
        """Take the token of one retransmission (call only after :meth:`has_token`)."""
        self.tokens -= 1.0
