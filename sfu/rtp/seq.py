"""Wrap-around aware sequence number and timestamp arithmetic (RFC 3550 §A.1).

RTP sequence numbers are 16-bit and RTP timestamps are 32-bit unsigned counters
that wrap. "Newer" is defined by serial-number arithmetic (RFC 1982): ``a`` is
newer than ``b`` when the forward distance from ``b`` to ``a`` is less than half
the number space.
"""

from __future__ import annotations

__all__ = ["SeqUnwrapper", "seq_diff", "seq_newer", "ts_newer"]


def seq_newer(a: int, b: int) -> bool:
    """Return True if 16-bit sequence number ``a`` is newer than ``b``.

    ``a`` and ``b`` are RTP sequence numbers in ``0..65535``. Equal values are
    not newer. Exactly half-way (distance 0x8000) is ambiguous and neither is
    newer than the other (RFC 1982 §3.2 leaves it undefined; RFC 3550 §A.1).
    """
    return a != b and ((a - b) & 0xFFFF) < 0x8000


def seq_diff(a: int, b: int) -> int:
    """Return the signed 16-bit distance ``a - b`` in ``[-32768, 32767]``.

    Positive means ``a`` is newer than ``b`` (in sequence-number units), e.g.
    ``seq_diff(2, 65534) == 4`` and ``seq_diff(65534, 2) == -4`` (RFC 3550 §A.1).
    """
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def ts_newer(a: int, b: int) -> bool:
    """Return True if 32-bit RTP timestamp ``a`` is newer than ``b``.

    ``a`` and ``b`` are RTP timestamps in clock-rate ticks, ``0..2**32-1``;
    a distance of exactly 2**31 is neither newer nor older; same serial-number
    rule as :func:`seq_newer` with a 32-bit space (RFC 3550 §5.1).
    """
    return a != b and ((a - b) & 0xFFFFFFFF) < 0x80000000


class SeqUnwrapper:
    """Convert 16-bit RTP sequence numbers to monotonic extended integers.

    Like libwebrtc ``SeqNumUnwrapper``: the first value unwraps to itself; each
    later value is placed at the signed 16-bit distance (see :func:`seq_diff`)
    from the highest extended value seen so far, so forward wraps (65535 -> 0)
    add 65536 and reordered packets from before a wrap map back below it.
    A packet older than the very first one can unwrap to a negative number.
    Extended values are unbounded Python ints (each 65536 = one RFC 3550 cycle).

    Attributes:
        highest: highest extended sequence number returned so far, or None.
    """

    __slots__ = ("highest",)

    def __init__(self) -> None:
        """Create an unwrapper with no history (``highest is None``)."""
        self.highest: int | None = None

    def unwrap(self, seq: int) -> int:
        """Return the extended sequence number for 16-bit ``seq`` (0..65535)."""
        highest = self.highest
        if highest is None:
            self.highest = seq
            return seq
        ext = highest + (((seq - highest + 0x8000) & 0xFFFF) - 0x8000)
        if ext > highest:
            self.highest = ext
        return ext
