"""Keyframe detection (RFC 7741 VP8, RFC 6184 H.264) and PLI/FIR throttling."""

from __future__ import annotations

__all__ = ["KeyframeRequestThrottle", "is_keyframe"]


class KeyframeRequestThrottle:
    """Rate-limit keyframe requests (PLI/FIR, RFC 4585 §6.3.1 / RFC 5104 §4.3.1)
    towards one publisher, like mediasoup ``KeyFrameRequestManager``.

    :meth:`should_request` allows at most one request per ``min_interval_ms``
    (milliseconds). A request arriving while throttled is remembered; the
    caller's periodic timer polls :meth:`pending_due`, which fires once when
    the interval has elapsed, so late-joining consumers still get their
    keyframe. :meth:`on_keyframe` cancels the pending request.
    """

    __slots__ = ("_last_ms", "min_interval_ms", "pending")

    def __init__(self, min_interval_ms: int = 500) -> None:
        """Create a throttle allowing one request per ``min_interval_ms`` ms."""
        self.min_interval_ms = min_interval_ms
        self._last_ms: int | None = None
        self.pending = False

    def should_request(self, now_ms: int) -> bool:
        """Return True if a request may be sent now (``now_ms``: monotonic ms).

        On True the request is considered sent and any pending one is
        satisfied; on False the request is remembered as pending.
        """
        last = self._last_ms
        if last is None or now_ms - last >= self.min_interval_ms:
            self._last_ms = now_ms
            self.pending = False
            return True
        self.pending = True
        return False

    def pending_due(self, now_ms: int) -> bool:
        """Return True once when a remembered request may now be sent.

        The request is then considered sent at ``now_ms`` (monotonic ms).
        """
        if not self.pending:
            return False
        last = self._last_ms
        if last is not None and now_ms - last < self.min_interval_ms:
            return False
        self._last_ms = now_ms
        self.pending = False
        return True

    def on_keyframe(self) -> None:
        """A keyframe arrived from the publisher: drop any pending request."""
        self.pending = False


def _vp8_keyframe(p: bytes) -> bool:
    """VP8 RTP payload (RFC 7741 §4.2 descriptor, §4.3 payload header)."""
    n = len(p)
    if n < 1:
        return False
    b0 = p[0]
    # S bit must be set and PID == 0: first packet of partition 0 of a frame.
    if b0 & 0x17 != 0x10:
        return False
    pos = 1
    if b0 & 0x80:  # X: extension byte present
        if n < 2:
            return False
        x = p[1]
        pos = 2
        if x & 0x80:  # I: PictureID present
            if pos >= n:
                return False
            pos += 2 if p[pos] & 0x80 else 1  # M bit: 15-bit picture id
        if x & 0x40:  # L: TL0PICIDX
            pos += 1
        if x & 0x30:  # T or K: TID/Y/KEYIDX byte
            pos += 1
    if pos >= n:
        return False
    return not p[pos] & 0x01  # VP8 payload header P bit: 0 = key frame


def _h264_keyframe(p: bytes) -> bool:
    """H.264 RTP payload (RFC 6184 §5.6 single NAL, §5.7.1 STAP-A, §5.8 FU-A)."""
    n = len(p)
    if n < 1:
        return False
    nal = p[0] & 0x1F
    if nal == 5 or nal == 7:
        return True
    if nal == 24:  # STAP-A: [hdr][size16][nal]...[size16][nal]
        pos = 1
        while pos + 2 < n:
            size = (p[pos] << 8) | p[pos + 1]
            pos += 2
            inner = p[pos] & 0x1F
            if inner == 5 or inner == 7:
                return True
            pos += size
        return False
    if nal == 28:  # FU-A: [indicator][S|E|R|type]
        if n < 2:
            return False
        fu = p[1]
        inner = fu & 0x1F
        return bool(fu & 0x80) and (inner == 5 or inner == 7)
    return False


def is_keyframe(codec: str, payload: bytes) -> bool:
    """Return True if RTP ``payload`` starts a keyframe for ``codec``.

    ``codec``: "VP8" or "H264" (case-insensitive; an optional "video/" MIME
    prefix is accepted); other codecs return False. ``payload``: RTP payload
    bytes (after header, extensions and padding).

    * VP8 (RFC 7741 §4.2-4.3): the descriptor (X/I/M/L/T/K) is skipped; the
      packet is a keyframe start if S=1, PID=0 and the VP8 payload header's P
      bit is 0.
    * H.264 (RFC 6184): NAL type 5 (IDR) or 7 (SPS) as a single NAL unit, any
      such NAL inside STAP-A (24), or an FU-A (28) start fragment of one.
    """
    c = codec.upper()
    if c.startswith("VIDEO/"):
        c = c[6:]
    if c == "VP8":
        return _vp8_keyframe(payload)
    if c == "H264":
        return _h264_keyframe(payload)
    return False
