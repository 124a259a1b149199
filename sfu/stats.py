"""Monotonic media counters for monitoring: live objects plus everything already closed.

Each Producer, Consumer and WebRtcTransport exposes ``counters()``; when one closes, its
counters are added to a :class:`Totals` so that process-wide totals never go backwards
(Prometheus counters). Scraping walks the live objects; nothing is counted on the hot path
beyond the attributes the objects already keep.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

COUNTER_NAMES = (
    "packets_received",  # RTP packets from publishers
    "bytes_received",
    "packets_forwarded",  # RTP packets handed to consumers
    "packets_dropped",  # malformed or unroutable publisher packets
    "rtx_received",  # RFC 4588 retransmissions from publishers
    "nacks_sent",  # NACK packets to publishers
    "plis_sent",  # keyframe requests to publishers
    "keyframes_received",
    "packets_sent",  # SRTP/SRTCP datagrams sent by transports
    "bytes_sent",
    "send_dropped",  # datagrams dropped before the socket (not connected, buffer full)
    "retransmissions",  # packets resent to subscribers after their NACKs
    "nacks_received",  # NACK packets from subscribers
    "plis_received",  # PLI/FIR from subscribers
    "rtcp_received",
    "pipe_packets_sent",  # RTP/RTCP datagrams sent over pipes to other routers (sfu.pipe)
    "pipe_bytes_sent",
    "pipe_packets_received",  # datagrams received from the remote end of a pipe
    "pipe_bytes_received",
    "pipe_dropped",  # pipe datagrams dropped: stranger, malformed, SRTP failure, unknown SSRC
)


class Totals:
    """Counters of closed objects (a ``collections.Counter`` keyed by COUNTER_NAMES)."""

    def __init__(self) -> None:
        self.retired: Counter[str] = Counter()

    def retire(self, counters: Mapping[str, int]) -> None:
        """Add the final counters of an object that just closed."""
        self.retired.update(counters)

    def snapshot(self, live: Iterable[Mapping[str, int]]) -> dict[str, int]:
        """Totals: retired objects plus the given live objects' current counters."""
        total: Counter[str] = Counter(self.retired)
        for counters in live:
            total.update(counters)
        return {name: total.get(name, 0) for name in COUNTER_NAMES}
