"""The shared timers of transports' periodic work (sfu/ticker.py, issue 14): every member is
called once per period from one timer, spread over slots; connected transports send their
RTCP reports and run their liveness watchdog without an asyncio task each."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from sfu import ticker
from sfu.ticker import Ticker
from sfu.transport import WebRtcTransport


async def _until(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_every_member_runs_once_per_period_spread_over_slots() -> None:
    shared = Ticker(0.1, slots=4)
    calls: Counter[int] = Counter()
    batches: list[int] = []  # members called per timer run
    current: list[float] = []

    def member(i: int):  # type: ignore[no-untyped-def]
        def step(now: float) -> bool:
            if not current or current[-1] != now:
                current.append(now)
                batches.append(0)
            batches[-1] += 1
            calls[i] += 1
            return True

        return step

    keys = [shared.add(member(i)) for i in range(20)]
    await _until(lambda: min(calls[i] for i in range(20)) >= 3, timeout=5)
    assert max(batches) <= 5  # 20 members over 4 slots: never all 20 at once
    assert max(calls.values()) - min(calls.values()) <= 1  # each once per period
    for key in keys[:10]:
        shared.remove(key)
    before = {i: calls[i] for i in range(20)}
    await _until(lambda: min(calls[i] - before[i] for i in range(10, 20)) >= 2, timeout=5)
    assert all(calls[i] == before[i] for i in range(10))
    for key in keys[10:]:
        shared.remove(key)
    assert len(shared) == 0


async def test_a_failing_or_finished_member_leaves_and_the_others_stay() -> None:
    shared = Ticker(0.05, slots=1)
    calls: Counter[str] = Counter()

    def broken(now: float) -> bool:
        calls["broken"] += 1
        raise RuntimeError("boom")

    def done(now: float) -> bool:
        calls["done"] += 1
        return False

    def steady(now: float) -> bool:
        calls["steady"] += 1
        return True

    for step in (broken, done, steady):
        shared.add(step)
    await _until(lambda: calls["steady"] >= 4, timeout=5)
    assert calls["broken"] == 1 and calls["done"] == 1
    assert len(shared) == 1


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        Ticker(0)
    with pytest.raises(ValueError):
        Ticker(1, slots=0)


async def test_connected_transports_need_no_task_each_and_still_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """20 connected transports: no asyncio task per transport for RTCP or the watchdog, and
    every one of them still runs its RTCP reports about once a second."""
    reports: Counter[int] = Counter()

    def send_reports(self: WebRtcTransport) -> None:
        reports[id(self)] += 1

    monkeypatch.setattr(WebRtcTransport, "_send_reports", send_reports, raising=False)
    transports = [WebRtcTransport(ice_servers=[], media_timeout_s=2.0) for _ in range(20)]
    try:
        tasks_before = len(asyncio.all_tasks())
        monkeypatch.setattr(
            type(transports[0].pc), "connectionState", property(lambda s: "connected")
        )
        for transport in transports:
            transport.pc.emit("connectionstatechange")
        await asyncio.sleep(0)
        assert len(asyncio.all_tasks()) - tasks_before < len(transports)
        assert len(ticker.RTCP) >= len(transports)
        await _until(lambda: all(reports[id(t)] >= 1 for t in transports), timeout=5)
    finally:
        monkeypatch.undo()
        for transport in transports:
            await transport.close()
    assert all(t._rtcp_key is not None for t in transports)
    await asyncio.sleep(0.6)  # closed: their steps have left the shared timers
    assert len(ticker.RTCP) == 0
