"""Receive statistics for RTCP receiver reports (RFC 3550 §6.4.1, §A.1, §A.3, §A.8)."""

from __future__ import annotations

__all__ = ["ReceiveStats"]

_MAX_DROPOUT = 3000  # RFC 3550 §A.1
_MAX_MISORDER = 100  # RFC 3550 §A.1
_SEQ_MOD = 1 << 16
_LOST_MAX = 0x7FFFFF
_LOST_MIN = -0x800000


class ReceiveStats:
    """Per-SSRC receive statistics feeding an RTCP RR report block.

    * Sequence tracking follows RFC 3550 §A.1 ``update_seq`` (without the
      probation phase: the first packet initialises the source): in-order
      jumps < 3000 are accepted, wrap-around adds a cycle, a jump > 3000 ahead
      (or > 100 behind) is ignored unless the next packet follows it, in which
      case the sender is assumed to have restarted and stats are reset.
    * Loss: RFC 3550 §A.3 (cumulative lost = expected - received, clamped to
      signed 24-bit; fraction lost over the interval since the last report,
      8-bit fixed point).
    * Jitter: RFC 3550 §A.8 integer form (stored x16), in RTP clock ticks,
      using arrival time converted to ticks with ``clock_rate`` (Hz). Like
      libwebrtc, only packets newer than the highest seq update jitter
      (retransmissions and reordered packets would inflate it).

    Attributes:
        packets: packets counted as received (including duplicates, per RFC).
        clock_rate: RTP clock rate in Hz.
    """

    __slots__ = (
        "_bad_seq",
        "_base_seq",
        "_cycles",
        "_expected_prior",
        "_jitter_q4",
        "_last_transit",
        "_max_seq",
        "_received_prior",
        "clock_rate",
        "packets",
    )

    def __init__(self, clock_rate: int) -> None:
        """Create empty stats for a stream with ``clock_rate`` Hz RTP clock."""
        self.clock_rate = clock_rate
        self.packets = 0
        self._max_seq = -1  # -1 = no packet yet
        self._base_seq = 0
        self._cycles = 0
        self._bad_seq = _SEQ_MOD + 1
        self._expected_prior = 0
        self._received_prior = 0
        self._jitter_q4 = 0
        self._last_transit: int | None = None

    def _init_seq(self, seq: int) -> None:
        self._base_seq = seq
        self._max_seq = seq
        self._bad_seq = _SEQ_MOD + 1
        self._cycles = 0
        self.packets = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._last_transit = None

    def on_packet(self, seq: int, ts: int, arrival_ms: int) -> None:
        """Account a received packet: 16-bit ``seq``, 32-bit RTP ``ts`` (ticks),
        ``arrival_ms`` local arrival time in milliseconds (any monotonic epoch).
        """
        max_seq = self._max_seq
        if max_seq < 0:
            self._init_seq(seq)
            in_order = True
        else:
            udelta = (seq - max_seq) & 0xFFFF
            in_order = False
            if 0 < udelta < _MAX_DROPOUT:
                if seq < max_seq:
                    self._cycles += _SEQ_MOD
                self._max_seq = seq
                in_order = True
            elif udelta == 0:
                pass  # duplicate of the highest packet
            elif udelta <= _SEQ_MOD - _MAX_MISORDER:
                # very large jump: accept only if the next packet confirms it
                if seq == self._bad_seq:
                    self._init_seq(seq)
                    in_order = True
                else:
                    self._bad_seq = (seq + 1) & 0xFFFF
                    return
            # else: duplicate or reordered packet
        self.packets += 1
        if not in_order:
            return
        transit = (arrival_ms * self.clock_rate) // 1000 - ts
        last = self._last_transit
        self._last_transit = transit
        if last is not None:
            d = ((transit - last + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            if d < 0:
                d = -d
            self._jitter_q4 += d - ((self._jitter_q4 + 8) >> 4)

    @property
    def jitter(self) -> int:
        """Interarrival jitter estimate in RTP clock ticks (RFC 3550 §A.8)."""
        return self._jitter_q4 >> 4

    @property
    def extended_highest_seq(self) -> int:
        """Cycles << 16 | highest seq, as a 32-bit value (RFC 3550 §6.4.1)."""
        if self._max_seq < 0:
            return 0
        return (self._cycles + self._max_seq) & 0xFFFFFFFF

    def report(self) -> tuple[int, int, int, int]:
        """Return ``(fraction_lost, packets_lost, extended_highest_seq, jitter)``.

        * fraction_lost: 0..255, lost/expected since the previous ``report()``
          call in 1/256 units (0 if packets were duplicated), RFC 3550 §A.3.
        * packets_lost: cumulative expected - received, clamped to signed
          24-bit [-8388608, 8388607].
        * extended_highest_seq: 32-bit extended highest seq received.
        * jitter: interarrival jitter in RTP clock ticks.

        Returns ``(0, 0, 0, 0)`` before any packet. Starts a new interval.
        """
        if self._max_seq < 0:
            return 0, 0, 0, 0
        extended_max = self._cycles + self._max_seq
        expected = extended_max - self._base_seq + 1
        lost = expected - self.packets
        if lost > _LOST_MAX:
            lost = _LOST_MAX
        elif lost < _LOST_MIN:
            lost = _LOST_MIN
        expected_interval = expected - self._expected_prior
        self._expected_prior = expected
        received_interval = self.packets - self._received_prior
        self._received_prior = self.packets
        lost_interval = expected_interval - received_interval
        if expected_interval <= 0 or lost_interval <= 0:
            fraction = 0
        else:
            fraction = (lost_interval << 8) // expected_interval
            if fraction > 255:
                fraction = 255
        return fraction, lost, extended_max & 0xFFFFFFFF, self._jitter_q4 >> 4
