"""Publisher bandwidth estimate sent as REMB: the loss-based controller of Google Congestion
Control (draft-ietf-rmcat-gcc-02 §6), driven by the loss we measure for RTCP receiver reports.

Why not a delay-based estimate: a receive-side delay estimator (aiortc's port of libwebrtc's
``RemoteBitrateEstimatorAbsSendTime``) reads queueing delay from arrival times, and a Python
event loop adds milliseconds of jitter to every arrival time; in our end-to-end tests it
reported overuse within two seconds and held Chromium's camera near 100 kbit/s. The browser
still runs its own loss-based controller; our REMB (a cap it honours) adds what the SFU sees.
"""

from __future__ import annotations


class LossBasedEstimator:
    """Additive-increase / multiplicative-decrease on the fraction of packets lost.

    Args:
        start_bps: first estimate (bits/s).
        min_bps, max_bps: bounds (bits/s); ``max_bps`` is the most a publisher may send.

    Per update (one RTCP interval of ``elapsed_s``, loss as a fraction 0..1):
    below 2% the estimate grows 8% per second; between 2% and 10% it holds; above 10% it is
    multiplied by (1 - 0.5 * loss), at most once per 300 ms (draft-ietf-rmcat-gcc-02 §6).
    """

    __slots__ = ("_last_decrease_s", "estimate_bps", "max_bps", "min_bps")

    def __init__(
        self, start_bps: int = 1_000_000, min_bps: int = 100_000, max_bps: int = 3_000_000
    ) -> None:
        if not 0 < min_bps <= start_bps <= max_bps:
            raise ValueError("need 0 < min_bps <= start_bps <= max_bps")
        self.min_bps = min_bps
        self.max_bps = max_bps
        self.estimate_bps = float(start_bps)
        self._last_decrease_s = float("-inf")

    def update(self, fraction_lost: float, elapsed_s: float, now_s: float) -> int:
        """Apply one interval's loss (fraction 0..1, RFC 3550 ``fraction lost`` / 256) that
        lasted ``elapsed_s`` seconds, at monotonic time ``now_s``; returns the estimate in
        bits/s."""
        if fraction_lost < 0.02:
            self.estimate_bps *= 1.08 ** max(0.0, min(elapsed_s, 2.0))
        elif fraction_lost > 0.10 and now_s - self._last_decrease_s >= 0.3:
            self.estimate_bps *= 1.0 - 0.5 * min(fraction_lost, 1.0)
            self._last_decrease_s = now_s
        self.estimate_bps = min(max(self.estimate_bps, self.min_bps), self.max_bps)
        return int(self.estimate_bps)
