"""Per-consumer RTP sequence number / timestamp rewriting.

Equivalent in role to mediasoup's ``SeqManager`` + ``RtpStreamSend`` offsets and
LiveKit's ``rtpmunger.go``: each consumer sees one continuous outgoing RTP stream
(RFC 3550 §5.1, RFC 7667 §3.7 "Selective Forwarding Middlebox") even when the
SFU switches sources, pauses, or the producer restarts with a new SSRC.
"""

from __future__ import annotations

import random

__all__ = ["RtpMunger"]

_SEQ_MASK = 0xFFFF
_TS_MASK = 0xFFFFFFFF


class RtpMunger:
    """Map producer (seq, ts) to consumer (seq, ts) with constant offsets.

    * seq: 16-bit RTP sequence numbers (RFC 3550 §5.1); ts: 32-bit RTP
      timestamps in the codec's clock-rate ticks (e.g. 90000 Hz for video).
    * Outgoing = (incoming + offset) mod 2**16 / 2**32, so producer gaps and
      reordering are preserved 1:1 and wrap-around (65535 -> 0, 2**32-1 -> 0)
      on either side is handled by the modular addition.
    * The first packet maps to a random 15-bit seq and a random 32-bit ts
      (RFC 3550 §5.1 recommends random initial values); one
      ``random.getrandbits(47)`` call at construction time.
    * :meth:`resync` marks a discontinuity; the next packet becomes the new sync
      point: out seq = ``last_seq + 1`` and out ts = ``last_ts + ts_gap``.
    * Packets older than the current sync point (the first packet ever, or the
      first packet after the last resync) are dropped (``munge`` returns None)
      because their outgoing numbers would collide with already-sent ones.
    * Incoming seqs are tracked as extended (unwrapped) ints internally, so the
      "older than sync point" test stays correct across any number of 16-bit
      wraps. A packet more than 32767 seqs away from the highest one is
      ambiguous by construction (RFC 3550 §A.1) and treated as newer.

    Attributes:
        last_seq: highest outgoing 16-bit seq emitted (meaningless until started).
        last_ts: outgoing 32-bit ts of the packet with ``last_seq``.
        started: True once the first packet has been munged.
    """

    __slots__ = (
        "_dropped",
        "_highest_in",
        "_init_seq",
        "_init_ts",
        "_resync_pending",
        "_resync_ts_gap",
        "_seq_offset",
        "_sync_in",
        "_ts_offset",
        "last_seq",
        "last_ts",
        "started",
    )

    def __init__(self) -> None:
        """Create an unstarted munger with random initial outgoing seq/ts."""
        bits = random.getrandbits(47)
        self._init_seq: int = bits & 0x7FFF
        self._init_ts: int = bits >> 15
        self._seq_offset = 0
        self._ts_offset = 0
        self._highest_in = 0  # extended incoming seq of the highest packet
        self._sync_in = 0  # extended incoming seq of the current sync point
        self._resync_pending = False
        self._resync_ts_gap = 1
        self._dropped: list[int] = []  # extended incoming seqs dropped by drop(), newest last
        self.last_seq = 0
        self.last_ts = 0
        self.started = False

    def resync(self, ts_gap: int = 1) -> None:
        """Mark a discontinuity (SSRC change, pause/resume, source switch).

        The next packet given to :meth:`munge` is mapped to ``last_seq + 1``
        (mod 2**16) and ``last_ts + max(1, ts_gap)`` (mod 2**32). ``ts_gap`` is
        in RTP clock ticks; the caller derives it from wall-clock time elapsed
        since ``last_ts`` was sent (``elapsed_ms * clock_rate // 1000``).
        Before the first packet this is a no-op (the random start is used).
        """
        if self.started:
            self._resync_pending = True
            self._resync_ts_gap = ts_gap if ts_gap > 1 else 1

    def munge(self, seq: int, ts: int) -> tuple[int, int] | None:
        """Return ``(out_seq, out_ts)`` for producer ``seq`` (16-bit), ``ts`` (32-bit).

        Returns None when the packet must be dropped: it is older than the
        current sync point (pre-resync straggler or pre-start reordering).
        Duplicates newer than the sync point map to the same output as the
        original (the transport may dedupe; RFC 3550 receivers tolerate it).
        """
        if not self.started or self._resync_pending:
            if self.started:
                out_seq = (self.last_seq + 1) & _SEQ_MASK
                out_ts = (self.last_ts + self._resync_ts_gap) & _TS_MASK
                # new extended incoming base: > every previous one, == seq mod 2**16
                base = self._highest_in + 1
                ext = base + ((seq - base) & _SEQ_MASK)
            else:
                out_seq = self._init_seq
                out_ts = self._init_ts
                ext = seq
                self.started = True
            self._resync_pending = False
            self._seq_offset = (out_seq - seq) & _SEQ_MASK
            self._ts_offset = (out_ts - ts) & _TS_MASK
            self._highest_in = ext
            self._sync_in = ext
            self._dropped.clear()
            self.last_seq = out_seq
            self.last_ts = out_ts
            return out_seq, out_ts

        highest = self._highest_in
        ext = highest + (((seq - highest + 0x8000) & _SEQ_MASK) - 0x8000)
        if ext < self._sync_in:
            return None
        offset = self._seq_offset
        if ext < highest and self._dropped:
            # a late packet from before some drops: the offset it had then
            offset += sum(1 for dropped in self._dropped if dropped > ext)
        out_seq = (seq + offset) & _SEQ_MASK
        out_ts = (ts + self._ts_offset) & _TS_MASK
        if ext > highest:
            self._highest_in = ext
            self.last_seq = out_seq
            self.last_ts = out_ts
        return out_seq, out_ts

    def drop(self, seq: int) -> None:
        """Producer packet ``seq`` (16-bit) is not forwarded (a VP8 temporal layer above the
        subscriber's, RFC 7741 §4.2): the packets after it move down by one, so the
        subscriber's sequence numbers have no gap (no NACK for it; LiveKit ``rtpmunger``
        ``PacketDropped``, mediasoup ``SeqManager::Drop``). Packets before it that arrive late
        keep the numbers they had. A dropped packet older than the newest one forwarded
        leaves a one-number gap (as a loss would)."""
        if not self.started or self._resync_pending:
            return
        highest = self._highest_in
        ext = highest + (((seq - highest + 0x8000) & _SEQ_MASK) - 0x8000)
        if ext <= highest:
            return
        self._seq_offset = (self._seq_offset - 1) & _SEQ_MASK
        self._highest_in = ext
        dropped = self._dropped
        dropped.append(ext)
        if len(dropped) > 256:
            del dropped[:128]  # late packets further back than this are rare and NACK-only

    def export_state(self) -> tuple[int, int, int, int, int, int, bool, int, int, int, bool]:
        """The whole state as a tuple (init_seq, init_ts, seq_offset, ts_offset, highest_in,
        sync_in, resync_pending, resync_ts_gap, last_seq, last_ts, started), for
        :meth:`from_state` and the compiled fan-out (``sfu._fastpath.NativeConsumer``), which
        continues the same stream."""
        return (
            self._init_seq,
            self._init_ts,
            self._seq_offset,
            self._ts_offset,
            self._highest_in,
            self._sync_in,
            self._resync_pending,
            self._resync_ts_gap,
            self.last_seq,
            self.last_ts,
            self.started,
        )

    @classmethod
    def from_state(
        cls, state: tuple[int, int, int, int, int, int, bool, int, int, int, bool]
    ) -> RtpMunger:
        """A munger continuing the stream of an :meth:`export_state` tuple."""
        munger = cls()
        (
            munger._init_seq,
            munger._init_ts,
            munger._seq_offset,
            munger._ts_offset,
            munger._highest_in,
            munger._sync_in,
            munger._resync_pending,
            munger._resync_ts_gap,
            munger.last_seq,
            munger.last_ts,
            munger.started,
        ) = state
        munger._resync_pending = bool(munger._resync_pending)
        munger.started = bool(munger.started)
        return munger

    @property
    def last_in_ts(self) -> int:
        """The producer timestamp (32-bit) of the packet with ``last_seq``."""
        return (self.last_ts - self._ts_offset) & _TS_MASK

    def unmunge_seq(self, out_seq: int) -> int:
        """Map an outgoing 16-bit seq (e.g. from a consumer NACK, RFC 4585) back
        to the producer's 16-bit seq under the current offset.

        Only meaningful for seqs sent since the last sync point; callers should
        look NACKed packets up in their per-consumer
        :class:`~sfu.rtp.rtx_buffer.RetransmissionBuffer` keyed by out seq first.
        """
        return (out_seq - self._seq_offset) & _SEQ_MASK
