"""Unit tests of the WebSocket edge's bookkeeping (signaling/wslimits.py)."""

from __future__ import annotations

from signaling.wslimits import AddressSlots, TokenBucket, utf8_length


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    clock = _Clock()
    bucket = TokenBucket(rate=10.0, burst=5, clock=clock)
    assert [bucket.take() for _ in range(7)] == [True] * 5 + [False] * 2
    clock.now += 0.25  # 2.5 tokens
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    clock.now += 60.0  # refills to the burst, never past it
    assert sum(bucket.take() for _ in range(20)) == 5


def test_address_slots_cap_each_address_and_free_on_release() -> None:
    slots = AddressSlots(limit=2)
    assert slots.acquire("10.0.0.1") and slots.acquire("10.0.0.1")
    assert not slots.acquire("10.0.0.1")
    assert slots.acquire("10.0.0.2")  # another address has its own slots
    slots.release("10.0.0.1")
    assert slots.acquire("10.0.0.1")
    for _ in range(2):
        slots.release("10.0.0.1")
    slots.release("10.0.0.2")
    assert slots.open == {}


def test_address_slots_zero_means_no_cap() -> None:
    slots = AddressSlots(limit=0)
    assert all(slots.acquire("127.0.0.1") for _ in range(1000))
    assert slots.open == {"127.0.0.1": 1000}


def test_utf8_length_counts_bytes() -> None:
    assert utf8_length('{"a":"b"}') == 9
    assert utf8_length("é🎉") == 2 + 4
