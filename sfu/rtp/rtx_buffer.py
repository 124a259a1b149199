"""Per-consumer retransmission buffer and RTX wrapping (RFC 4585, RFC 4588)."""

from __future__ import annotations

import struct
from typing import Generic, TypeVar

from sfu.rtp.header import parse_rtp

__all__ = ["RetransmissionBuffer", "rtx_wrap"]

T = TypeVar("T")

_HDR = struct.Struct("!BBHII")


class RetransmissionBuffer(Generic[T]):
    """Fixed-size ring of recently sent packets keyed by outgoing 16-bit seq.

    Used to answer consumer NACKs (RFC 4585 §6.2.1) with RTX (RFC 4588).
    ``size`` slots (power of two, 1..32768); slot = ``out_seq & (size - 1)``.
    The seq is stored next to the item so a slot overwritten by a newer
    packet (``size`` seqs later) reports a miss instead of the wrong packet.
    Items are opaque references (e.g. shared packet bytes + rewritten header
    fields); nothing is copied.
    """

    __slots__ = ("_items", "_mask", "_resent", "_seqs")

    def __init__(self, size: int = 512) -> None:
        """Allocate ``size`` empty slots; ValueError unless a power of two <= 32768."""
        if size < 1 or size > 32768 or size & (size - 1):
            raise ValueError(f"size must be a power of two in 1..32768, got {size}")
        self._mask = size - 1
        self._seqs: list[int] = [-1] * size
        self._items: list[T | None] = [None] * size
        # (seq, ms) of the slot's last resend; not reset by store(): a newer packet in the slot
        # has another seq (the same seq returns only 65536 packets later, far beyond any RTT).
        self._resent: list[tuple[int, int] | None] = [None] * size

    def __len__(self) -> int:
        """Return the capacity (number of slots)."""
        return self._mask + 1

    def store(self, out_seq: int, item: T) -> None:
        """Remember ``item`` as the packet sent with 16-bit ``out_seq``."""
        i = out_seq & self._mask
        self._seqs[i] = out_seq & 0xFFFF
        self._items[i] = item

    def get(self, out_seq: int) -> T | None:
        """Return the item stored for 16-bit ``out_seq``, or None if evicted/never stored."""
        i = out_seq & self._mask
        if self._seqs[i] != out_seq & 0xFFFF:
            return None
        return self._items[i]

    def take_for_resend(self, out_seq: int, now_ms: int, min_interval_ms: int) -> T | None:
        """The item stored for 16-bit ``out_seq`` if it may be resent at ``now_ms`` (ms), else
        None: evicted, never stored, or already resent less than ``min_interval_ms`` (ms, the
        round-trip time) ago. A returned item is marked as resent at ``now_ms``.

        This is mediasoup's ``RtpStreamSend::FillRetransmissionContainer`` rule: a packet goes
        to one receiver at most once per round-trip time, however often it is NACKed.
        """
        i = out_seq & self._mask
        seq = out_seq & 0xFFFF
        if self._seqs[i] != seq:
            return None
        last = self._resent[i]
        if last is not None and last[0] == seq and now_ms - last[1] < min_interval_ms:
            return None
        self._resent[i] = (seq, now_ms)
        return self._items[i]

    def clear(self) -> None:
        """Drop every stored item (e.g. on consumer close or SSRC change)."""
        size = self._mask + 1
        self._seqs[:] = [-1] * size
        self._items[:] = [None] * size
        self._resent[:] = [None] * size


def rtx_wrap(packet: bytes, rtx_ssrc: int, rtx_seq: int, rtx_pt: int) -> bytes:
    """Build an RFC 4588 §4 retransmission packet from an RTP packet.

    ``packet``: complete plaintext RTP packet (fixed header, optional CSRCs,
    optional header extension, payload, optional padding). The result keeps
    V/X/CC/M, timestamp, CSRCs and the header extension verbatim, replaces
    PT with ``rtx_pt`` (0..127), seq with ``rtx_seq`` (16-bit) and SSRC with
    ``rtx_ssrc`` (32-bit), prefixes the payload with the 2-byte original
    sequence number (OSN) and drops padding (P=0). Raises ValueError for a
    malformed packet (see :func:`sfu.rtp.header.parse_rtp`).
    """
    fields = parse_rtp(packet)
    payload_start = fields[8]
    payload_end = fields[9]
    hdr = _HDR.pack(packet[0] & 0xDF, (packet[1] & 0x80) | rtx_pt, rtx_seq, fields[3], rtx_ssrc)
    view = memoryview(packet)
    return b"".join((hdr, view[12:payload_start], view[2:4], view[payload_start:payload_end]))
