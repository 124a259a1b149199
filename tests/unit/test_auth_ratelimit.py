"""The in-memory sliding-window limiter."""

from __future__ import annotations

import pytest

from signaling.auth.ratelimit import SlidingWindowLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sliding_window() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(3, 60.0, clock=clock)
    assert [limiter.hit("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.hit("k") == pytest.approx(60.0)
    assert limiter.hit("other") == 0.0
    clock.now += 30
    assert limiter.retry_after("k") == pytest.approx(30.0)
    clock.now += 30.001
    assert limiter.hit("k") == 0.0


def test_hit_all_is_all_or_nothing() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(1, 10.0, clock=clock)
    assert limiter.hit_all(["a", "b"]) == 0.0
    assert limiter.hit_all(["b", "c"]) > 0
    assert limiter.hit("c") == 0.0  # "c" was not charged by the refused hit_all


def test_bounded_keys() -> None:
    limiter = SlidingWindowLimiter(1, 10.0, max_keys=100)
    for i in range(1000):
        limiter.hit(f"k{i}")
    assert len(limiter._events) <= 100


def test_rejects_bad_config() -> None:
    with pytest.raises(ValueError):
        SlidingWindowLimiter(0, 1.0)
