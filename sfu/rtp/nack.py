"""Generic NACK (RFC 4585 §6.2.1): receiver-side loss tracking and FCI codec."""

from __future__ import annotations

import struct

__all__ = ["MAX_MISSING", "NackGenerator", "pack_nack_fci", "unpack_nack_fci"]

#: Upper bound on tracked missing sequence numbers per stream.
MAX_MISSING = 500

_FCI = struct.Struct("!HH")


class NackGenerator:
    """Track missing 16-bit RTP seqs from a publisher and decide what to NACK.

    Modelled on libwebrtc ``NackRequester`` / pion ``nack``:

    * ``max_age`` (sequence numbers): missing seqs more than this far behind the
      highest received seq are forgotten; a forward jump larger than this
      (long outage, sender restart) resets the state instead of listing
      thousands of seqs.
    * ``max_retries``: each missing seq is requested at most this many times,
      then given up.
    * ``rtt_ms`` (milliseconds): minimum interval between two requests for the
      same seq.
    * At most :data:`MAX_MISSING` seqs are tracked (oldest dropped first).

    A newly detected hole is requested on the next :meth:`missing` call.
    Insertion order of the internal dicts equals seq order, which keeps
    trimming and listing O(k) without sorting.
    """

    __slots__ = ("_highest", "_retries", "_sent_ms", "max_age", "max_retries", "rtt_ms")

    def __init__(self, max_age: int = 1000, max_retries: int = 10, rtt_ms: int = 100) -> None:
        """Create a generator; see the class docstring for units."""
        self.max_age = max_age
        self.max_retries = max_retries
        self.rtt_ms = rtt_ms if rtt_ms > 1 else 1
        self._highest: int | None = None
        self._retries: dict[int, int] = {}  # seq -> requests sent so far
        self._sent_ms: dict[int, int] = {}  # seq -> last request time (ms)

    def set_rtt(self, rtt_ms: int) -> None:
        """Update the re-request interval (round-trip time in ms, min 1)."""
        self.rtt_ms = rtt_ms if rtt_ms > 1 else 1

    @property
    def pending(self) -> int:
        """Number of seqs currently considered missing."""
        return len(self._retries)

    def on_packet(self, seq: int, now_ms: int) -> bool:
        """Record arrival of 16-bit ``seq`` at ``now_ms`` (ms, unused for now).

        Returns True if the packet filled a tracked hole (a retransmission or a
        reordered packet that had been marked missing), else False (in-order,
        duplicate, or too late to still be tracked).
        """
        highest = self._highest
        if highest is None:
            self._highest = seq
            return False
        diff = ((seq - highest + 0x8000) & 0xFFFF) - 0x8000
        if diff <= 0:
            if diff == 0 or self._retries.pop(seq, None) is None:
                return False
            self._sent_ms.pop(seq, None)
            return True
        self._highest = seq
        retries = self._retries
        if diff > self.max_age:
            retries.clear()
            self._sent_ms.clear()
            return False
        if diff > 1:
            first = diff - 1 if diff - 1 < MAX_MISSING else MAX_MISSING
            for back in range(first, 0, -1):
                retries[(seq - back) & 0xFFFF] = 0
        if retries:
            self._trim(seq)
        return False

    def _trim(self, highest: int) -> None:
        """Forget the oldest entries beyond ``max_age`` or :data:`MAX_MISSING`."""
        retries = self._retries
        sent = self._sent_ms
        max_age = self.max_age
        excess = len(retries) - MAX_MISSING
        drop: list[int] = []
        for s in retries:
            if excess > 0 or ((highest - s) & 0xFFFF) > max_age:
                drop.append(s)
                excess -= 1
            else:
                break
        for s in drop:
            del retries[s]
            sent.pop(s, None)

    def missing(self, now_ms: int) -> list[int]:
        """Return the 16-bit seqs to NACK at ``now_ms`` (ms), oldest first.

        A seq is included if it was never requested or its last request is at
        least ``rtt_ms`` old; seqs already requested ``max_retries`` times are
        dropped instead. The returned seqs are counted as requested now.
        """
        retries = self._retries
        if not retries:
            return []
        sent = self._sent_ms
        rtt = self.rtt_ms
        max_retries = self.max_retries
        out: list[int] = []
        give_up: list[int] = []
        for s, n in retries.items():
            if n and now_ms - sent[s] < rtt:
                continue
            if n >= max_retries:
                give_up.append(s)
                continue
            out.append(s)
        for s in out:
            retries[s] += 1
            sent[s] = now_ms
        for s in give_up:
            del retries[s]
            sent.pop(s, None)
        return out


def pack_nack_fci(lost: list[int]) -> bytes:
    """Encode lost 16-bit seqs as Generic NACK FCI entries (RFC 4585 §6.2.1).

    Each 4-byte entry is PID (16-bit seq) + BLP (bit i set => PID+i+1 lost).
    ``lost`` should be in ascending wrap-aware order (as produced by
    :meth:`NackGenerator.missing`); distances are computed mod 2**16 so runs
    across 65535 -> 0 share an entry. Duplicates of the current PID are
    skipped; any other out-of-order seq starts a new entry. For ascending
    non-wrapping input the output is byte-identical to aiortc's
    ``RtcpRtpfbPacket``. Returns ``b""`` for an empty list.
    """
    if not lost:
        return b""
    pack = _FCI.pack
    parts: list[bytes] = []
    pid = lost[0] & 0xFFFF
    blp = 0
    for p in lost[1:]:
        d = (p - pid - 1) & 0xFFFF
        if d < 16:
            blp |= 1 << d
        elif d == 0xFFFF:  # p == pid
            continue
        else:
            parts.append(pack(pid, blp))
            pid = p & 0xFFFF
            blp = 0
    parts.append(pack(pid, blp))
    return b"".join(parts)


def unpack_nack_fci(fci: bytes) -> list[int]:
    """Decode Generic NACK FCI (RFC 4585 §6.2.1) into 16-bit lost seqs.

    ``fci`` is the feedback control information after the 12-byte RTPFB
    header, a multiple of 4 bytes. Seqs are reduced mod 2**16, so a BLP that
    spans 65535 -> 0 yields 0, 1, ... (unlike aiortc, which yields 65536).
    Raises ValueError if the length is not a multiple of 4.
    """
    if len(fci) & 3:
        raise ValueError(f"NACK FCI length {len(fci)} is not a multiple of 4")
    out: list[int] = []
    for pid, blp in _FCI.iter_unpack(fci):
        out.append(pid)
        d = 0
        while blp:
            if blp & 1:
                out.append((pid + d + 1) & 0xFFFF)
            blp >>= 1
            d += 1
    return out
