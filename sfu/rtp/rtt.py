"""Round-trip time of one outgoing RTP stream from the receiver's reports (RFC 3550 §6.4.1).

Each sender report (SR) we send carries a 64-bit NTP timestamp; the receiver echoes its middle
32 bits as LSR in its next report block for our SSRC, with DLSR, the delay between receiving
that SR and sending the report (units of 1/65536 s). Then

    RTT = (time the report arrived) - (time we sent the SR named by LSR) - DLSR

Our SR timestamps follow the publisher's NTP clock (so lip sync survives forwarding), not
ours, so instead of subtracting NTP values we remember, per LSR, when (on our own millisecond
clock) we sent that SR. mediasoup keeps the same per-stream RTT (``RtpStreamSend::rtt``) and
uses 100 ms until a report arrives.
"""

from __future__ import annotations

__all__ = ["DEFAULT_RTT_MS", "MAX_RTT_MS", "MIN_RTT_MS", "RttEstimator"]

DEFAULT_RTT_MS = 100
"""RTT (ms) assumed until the receiver has reported on one of our sender reports."""

MIN_RTT_MS = 10
"""Floor of a measured RTT (ms): a receiver cannot talk us into resending faster than this."""

MAX_RTT_MS = 5000
"""Ceiling of a measured RTT (ms)."""

_KEEP_SR = 8  # sender reports remembered (one a second: a report may name one 8 s old)


class RttEstimator:
    """Latest RTT (ms) of one outgoing stream, from its SR send times and the receiver's
    LSR/DLSR (RFC 3550 §6.4.1).

    Attributes:
        rtt_ms: the latest measurement clamped to [:data:`MIN_RTT_MS`, :data:`MAX_RTT_MS`],
            or :data:`DEFAULT_RTT_MS` before the first one.
        measured: True once a report block named one of our sender reports.
    """

    __slots__ = ("_sent", "measured", "rtt_ms")

    def __init__(self) -> None:
        self.rtt_ms = DEFAULT_RTT_MS
        self.measured = False
        self._sent: dict[int, int] = {}  # LSR (middle 32 bits of the SR's NTP) -> sent at (ms)

    def on_sender_report_sent(self, ntp_timestamp: int, now_ms: int) -> None:
        """We sent an SR with 64-bit ``ntp_timestamp`` at ``now_ms`` (our clock, ms)."""
        sent = self._sent
        sent[(ntp_timestamp >> 16) & 0xFFFFFFFF] = now_ms
        while len(sent) > _KEEP_SR:
            del sent[next(iter(sent))]

    def on_report_block(self, lsr: int, dlsr: int, now_ms: int) -> int | None:
        """A receiver report block for our SSRC arrived at ``now_ms`` (ms) with ``lsr`` (middle
        32 bits of an SR's NTP timestamp, 0 = no SR received yet) and ``dlsr`` (1/65536 s).

        Returns the new RTT (ms), or None when the block names no SR we remember (it is then
        ignored).
        """
        if lsr == 0:
            return None
        sent_ms = self._sent.get(lsr)
        if sent_ms is None:
            return None
        rtt = now_ms - sent_ms - (dlsr * 1000 + 32768) // 65536  # DLSR rounded to ms
        self.rtt_ms = min(MAX_RTT_MS, max(MIN_RTT_MS, rtt))
        self.measured = True
        return self.rtt_ms
