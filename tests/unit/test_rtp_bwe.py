"""The loss-based publisher estimate (draft-ietf-rmcat-gcc-02 §6)."""

from __future__ import annotations

import pytest

from sfu.rtp.bwe import LossBasedEstimator


def test_grows_eight_percent_per_second_without_loss() -> None:
    bwe = LossBasedEstimator(start_bps=500_000, max_bps=10_000_000)
    now = 0.0
    for _ in range(10):
        now += 1.0
        value = bwe.update(0.0, 1.0, now)
    assert value == pytest.approx(500_000 * 1.08**10, rel=1e-6)


def test_holds_between_two_and_ten_percent() -> None:
    bwe = LossBasedEstimator(start_bps=800_000)
    assert bwe.update(0.05, 1.0, 1.0) == 800_000
    assert bwe.update(0.10, 1.0, 2.0) == 800_000


def test_heavy_loss_cuts_at_most_every_300_ms() -> None:
    bwe = LossBasedEstimator(start_bps=1_000_000)
    assert bwe.update(0.5, 1.0, 1.0) == 750_000  # * (1 - 0.25)
    assert bwe.update(0.5, 0.1, 1.1) == 750_000  # too soon after the last cut
    assert bwe.update(0.5, 0.3, 1.4) == 562_500


def test_bounds() -> None:
    bwe = LossBasedEstimator(start_bps=200_000, min_bps=150_000, max_bps=250_000)
    for i in range(20):
        bwe.update(0.0, 1.0, float(i))
    assert bwe.estimate_bps == 250_000
    for i in range(20):
        bwe.update(1.0, 1.0, 100.0 + i)
    assert bwe.estimate_bps == 150_000
    with pytest.raises(ValueError):
        LossBasedEstimator(start_bps=10, min_bps=100)
