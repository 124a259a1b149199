"""Audio loss proxying: tell an Opus publisher about its subscribers' packet loss.

Audio has no retransmission here (no audio NACK, no RED); the repair for lost Opus packets is
in-band FEC (LBRR, RFC 6716 §2.1.7, enabled by ``useinbandfec=1``, RFC 7587 §6.1). The
publisher's encoder only spends bits on it when the receiver reports loss: libwebrtc feeds
the ``fraction lost`` of the RTCP receiver report blocks for its SSRC (RFC 3550 §6.4.1) to
``AudioEncoderOpus::OnReceivedUplinkPacketLossFraction``. The publisher's own link to the SFU
is usually clean, so its encoder would never protect the stream that its subscribers lose.

So, like LiveKit's "audio loss proxying", the report block we send to the publisher of an Opus
producer carries ``max(our own fraction lost, the worst fresh fraction lost a subscriber
reported for one of its consumers)``. Cumulative lost, highest sequence number and jitter stay
our own measurements. A subscriber's figure expires after :data:`DOWNSTREAM_LOSS_MAX_AGE_MS`
so a subscriber that left (or stopped reporting) no longer costs the publisher bits.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["DOWNSTREAM_LOSS_MAX_AGE_MS", "DownstreamLoss", "proxied_fraction_lost"]

DOWNSTREAM_LOSS_MAX_AGE_MS = 10_000
"""How long (ms) a subscriber's reported fraction lost counts. libwebrtc sends audio receiver
reports every 5 s on average (randomised to 2.5-7.5 s, RFC 3550 §6.3.1), so a shorter age would
let a lossy subscriber's figure lapse between two of its reports."""


class DownstreamLoss:
    """The latest fraction lost one subscriber reported for one consumer's SSRC.

    Attributes:
        fraction_lost: 0..255, packets lost / expected in 1/256 units (RFC 3550 §6.4.1) over
            the subscriber's last report interval.
        at_ms: when that report arrived (our millisecond clock), or None before any.
    """

    __slots__ = ("at_ms", "fraction_lost")

    def __init__(self) -> None:
        self.fraction_lost = 0
        self.at_ms: int | None = None

    def on_report(self, fraction_lost: int, now_ms: int) -> None:
        """Record a report block's ``fraction_lost`` (0..255, clamped) received at ``now_ms``."""
        self.fraction_lost = min(255, max(0, fraction_lost))
        self.at_ms = now_ms

    def fresh(self, now_ms: int, max_age_ms: int = DOWNSTREAM_LOSS_MAX_AGE_MS) -> int:
        """The recorded fraction lost (0..255) if reported within ``max_age_ms`` of ``now_ms``,
        else 0."""
        at = self.at_ms
        if at is None or now_ms - at > max_age_ms:
            return 0
        return self.fraction_lost


def proxied_fraction_lost(
    own: int,
    downstream: Iterable[DownstreamLoss],
    now_ms: int,
    max_age_ms: int = DOWNSTREAM_LOSS_MAX_AGE_MS,
) -> int:
    """``max(own, every fresh downstream fraction lost)``, all in 1/256 units (0..255).

    Args:
        own: the fraction lost we measured on the publisher's link (RFC 3550 §A.3).
        downstream: the consumers' latest subscriber reports.
        now_ms: our millisecond clock.
        max_age_ms: older subscriber reports are ignored (ms).
    """
    worst = own
    for loss in downstream:
        fraction = loss.fresh(now_ms, max_age_ms)
        if fraction > worst:
            worst = fraction
    return worst
