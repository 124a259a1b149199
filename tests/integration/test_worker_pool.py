"""WorkerPool with real worker processes (``python -m sfu.worker``) serving the echo target of
tests/support/echo_target.py: routing, notifications, typed errors, stats and metrics,
restart after ``kill -9``, clean stop, and no orphan worker in any case."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from sfu.errors import NotFoundError
from sfu.plane.types import PlaneStats
from sfu.worker.channel import Channel
from sfu.worker.errors import WorkerCrashedError, WorkerStartError
from sfu.worker.pool import WorkerPool, restart_delay
from sfu.worker.process import SYS_INIT
from signaling.worker_metrics import WorkerCollector

REPO = Path(__file__).resolve().parents[2]
FACTORY = "tests.support.echo_target:make"


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def _worker_descendants(root: int) -> list[int]:
    """Live processes below ``root`` (walking /proc's parent links) that run sfu.worker."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                ppid = int(stat.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if b"sfu.worker" in cmdline.read() and _alive(pid):
                    found.append(pid)
        except OSError:
            continue
    return found


def _read(path: Path) -> str:
    with open(path) as file:
        return file.read()


def _plane_stats(pool: WorkerPool) -> PlaneStats:
    """What a worker-backed media plane's ``stats()`` reports for ``pool``."""
    return PlaneStats(
        rooms=0, participants=0, producers=0, consumers=0, workers=pool.worker_infos()
    )


async def _until(condition: Any, timeout_s: float) -> bool:
    """Poll ``condition()`` every 20 ms for at most ``timeout_s``; its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.02)
    return bool(condition())


class Events:
    def __init__(self) -> None:
        self.notes: list[tuple[int, str, Any]] = []
        self.died: list[int] = []
        self.restarted: list[int] = []


@pytest.fixture
async def pool2(tmp_path: Path) -> AsyncIterator[tuple[WorkerPool, Events]]:
    events = Events()
    pool = WorkerPool(
        FACTORY,
        {"close_marker": str(tmp_path), "name": "echo"},
        workers=2,
        on_notification=lambda i, e, d: events.notes.append((i, e, d)),
        on_worker_died=events.died.append,
        on_worker_restarted=events.restarted.append,
        stats_interval_s=0.2,
        call_timeout_s=5,
    )
    await pool.start()
    yield pool, events
    await pool.close()
    assert _worker_descendants(os.getpid()) == []


async def test_calls_go_to_the_worker_asked_for(pool2: tuple[WorkerPool, Events]) -> None:
    pool, events = pool2
    first, second = await pool.call(0, "whoami"), await pool.call(1, "whoami")
    assert first == {"pid": pool.pid(0), "index": 0}
    assert second == {"pid": pool.pid(1), "index": 1}
    assert first["pid"] != second["pid"] != os.getpid()
    assert await pool.call(1, "config") == {
        "close_marker": pool.config["close_marker"],
        "name": "echo",
    }
    assert await pool.call(0, "echo", 1, "two", [3.0], {"k": b"v"}) == [
        1,
        "two",
        [3.0],
        {"k": b"v"},
    ]
    with pytest.raises(NotFoundError, match="no such producer"):
        await pool.call(1, "fail", "not_found")
    with pytest.raises(IndexError):
        await pool.call(2, "whoami")
    # Notifications carry the index of the worker that emitted them.
    assert await pool.call(1, "emit", "speaker", 3) == 3
    assert await _until(lambda: len(events.notes) == 3, 2)
    assert events.notes == [(1, "speaker", {"n": n, "index": 1}) for n in range(3)]
    # ... and go the other way, to the target's on_notification.
    pool.notify(0, "hello", {"x": 1})
    assert await _until(lambda: False, 0.1) is False
    assert await pool.call(0, "notes") == [["hello", {"x": 1}]]


async def test_stats_and_metrics_per_worker(pool2: tuple[WorkerPool, Events]) -> None:
    pool, _ = pool2
    for _ in range(3):
        await pool.call(1, "echo", 0)
    assert await _until(
        lambda: all(s.counters.get("calls") == 3 * (s.index == 1) for s in pool.stats()), 3
    )
    for worker in pool.stats():
        assert worker.up and worker.pid == pool.pid(worker.index)
        assert worker.counters["pid"] == worker.pid
        assert worker.rss_bytes > 1_000_000  # a Python process
        assert worker.cpu_seconds > 0
    registry = CollectorRegistry()
    registry.register(WorkerCollector(lambda: _plane_stats(pool)))
    text = generate_latest(registry).decode()
    assert 'sfu_worker_up{worker="0"} 1.0' in text
    assert 'sfu_worker_up{worker="1"} 1.0' in text
    assert 'sfu_worker_restarts_total{worker="1"} 0.0' in text
    assert 'sfu_worker_cpu_seconds_total{worker="0"}' in text
    empty = CollectorRegistry()
    empty.register(WorkerCollector(lambda: None))
    assert "# TYPE sfu_worker_up gauge" in generate_latest(empty).decode()


async def test_kill_9_worker_is_back_within_2_s_and_the_other_is_untouched(
    pool2: tuple[WorkerPool, Events],
) -> None:
    pool, events = pool2
    await pool.call(0, "set", "room", "a")
    await pool.call(1, "set", "room", "b")
    old0, old1 = pool.pid(0), pool.pid(1)
    assert old0 is not None and old1 is not None
    pending = asyncio.ensure_future(pool.call(0, "sleep", 30))
    await asyncio.sleep(0.05)
    killed_at = time.monotonic()
    os.kill(old0, signal.SIGKILL)
    with pytest.raises(WorkerCrashedError):
        await asyncio.wait_for(pending, 2)

    answer: dict[str, Any] | None = None
    while answer is None and time.monotonic() - killed_at < 2.0:
        try:
            answer = await pool.call(0, "whoami", timeout_s=0.5)
        except WorkerCrashedError:
            await asyncio.sleep(0.02)
    assert answer is not None, "worker 0 not answering 2 s after kill -9"
    assert answer["pid"] not in (old0, old1) and answer["index"] == 0
    assert not _alive(old0)
    assert events.died == [0] and events.restarted == [0]
    assert await pool.call(0, "get", "room") is None  # a new process, new state
    assert await pool.call(1, "get", "room") == "b"  # the other worker lost nothing
    assert pool.pid(1) == old1
    stats = pool.stats()
    assert (stats[0].restarts, stats[1].restarts) == (1, 0)


async def _back_within(pool: WorkerPool, index: int, old_pid: int, timeout_s: float) -> bool:
    """Whether worker ``index`` answers from a process other than ``old_pid`` within
    ``timeout_s`` seconds (bounded: one try per 20 ms at most)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            answer = await pool.call(index, "whoami", timeout_s=0.5)
        except WorkerCrashedError:
            await asyncio.sleep(0.02)
            continue
        return bool(answer["pid"] != old_pid)
    return False


async def test_a_worker_killed_again_and_again_keeps_coming_back(
    pool2: tuple[WorkerPool, Events],
) -> None:
    pool, events = pool2
    # Young deaths in a row: restarted after 0, 0.25 and 0.5 s (restart_delay), each well
    # within 2 s.
    for _ in range(3):
        old = pool.pid(1)
        assert old is not None
        os.kill(old, signal.SIGKILL)
        assert await _back_within(pool, 1, old, 2.0)
    assert events.died == [1, 1, 1] and events.restarted == [1, 1, 1]
    assert [worker.restarts for worker in pool.stats()] == [0, 3]
    registry = CollectorRegistry()
    registry.register(WorkerCollector(lambda: _plane_stats(pool)))
    assert 'sfu_worker_restarts_total{worker="1"} 3.0' in generate_latest(registry).decode()


async def test_close_stops_every_worker_cleanly(tmp_path: Path) -> None:
    pool = WorkerPool(FACTORY, {"close_marker": str(tmp_path)}, workers=2)
    await pool.start()
    pids = [pool.pid(0), pool.pid(1)]
    assert sorted(_worker_descendants(os.getpid())) == sorted(pids)
    await pool.close()
    assert _worker_descendants(os.getpid()) == []
    # SIGTERM closed each target (its close() wrote the marker) before the process exited.
    assert sorted(os.listdir(tmp_path)) == ["closed-0", "closed-1"]
    markers = [_read(tmp_path / f"closed-{index}") for index in (0, 1)]
    assert markers == [str(pid) for pid in pids]
    with pytest.raises(WorkerCrashedError):
        await pool.call(0, "whoami")
    await pool.close()  # idempotent


async def test_a_worker_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    pool = WorkerPool(FACTORY, {"hang_on_close": True}, workers=1, term_grace_s=0.5)
    await pool.start()
    pid = pool.pid(0)
    assert pid is not None
    await asyncio.wait_for(pool.close(), 5)
    assert not _alive(pid)
    assert _worker_descendants(os.getpid()) == []


async def test_a_factory_that_fails_fails_start_and_leaves_no_process() -> None:
    pool = WorkerPool(FACTORY, {"fail_start": True}, workers=2)
    with pytest.raises(WorkerStartError, match="refusing to start"):
        await pool.start()
    assert _worker_descendants(os.getpid()) == []
    bad = WorkerPool("tests.support.echo_target:nothing_here", workers=1)
    with pytest.raises(WorkerStartError, match="nothing_here"):
        await bad.start()
    assert _worker_descendants(os.getpid()) == []


async def test_a_codec_carries_dataclasses_both_ways() -> None:
    from tests.support.echo_target import Point

    notes: list[tuple[int, str, Any]] = []
    pool = WorkerPool(
        FACTORY,
        workers=1,
        codec="tests.support.echo_target:PointCodec",
        on_notification=lambda i, e, d: notes.append((i, e, d)),
    )
    await pool.start()
    try:
        assert await pool.call(0, "move", Point(1, 2), 10) == {"to": Point(11, 2)}
        assert await _until(lambda: notes == [(0, "moved", [Point(1, 2)])], 2)
    finally:
        await pool.close()


def test_restart_backoff_is_bounded() -> None:
    delays = [restart_delay(n, 5.0) for n in range(1, 10)]
    assert delays == [0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert restart_delay(10_000, 5.0) == 5.0


async def test_worker_exits_when_its_channel_closes() -> None:
    parent, child = socket.socketpair()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sfu.worker",
        "--fd",
        str(child.fileno()),
        pass_fds=(child.fileno(),),
        cwd=REPO,
    )
    child.close()
    try:
        channel = await Channel.open(parent)
        assert (await channel.call(SYS_INIT, FACTORY, {}, 0))["pid"] == process.pid
        await channel.close()  # EOF at the worker
        assert await asyncio.wait_for(process.wait(), 5) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_kill_9_of_the_control_process_takes_its_workers_down(tmp_path: Path) -> None:
    # The control's stdout is a file, not a pipe: its workers inherit it, and a pipe held
    # open by a worker would make waiting for the control wait for the workers too.
    out_path = tmp_path / "control.out"
    with open(out_path, "wb") as out:  # noqa: ASYNC230 - a local file, once
        control = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.pool_control",
            cwd=REPO,
            stdout=out,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    try:
        assert await _until(lambda: _read(out_path).endswith("\n"), 20)
        pids = json.loads(_read(out_path))["pids"]
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)
        control.kill()
        # Worker 0's event loop is blocked (it cannot see its channel's EOF): only the parent
        # death signal stops it. Worker 1 would also stop on EOF.
        assert await _until(lambda: not any(_alive(pid) for pid in pids), 2.0), [
            pid for pid in pids if _alive(pid)
        ]
    finally:
        if control.returncode is None:
            control.kill()
        await control.wait()


async def test_a_worker_freezes_its_startup_objects() -> None:
    """Once its target is built, a worker moves its start-up objects out of the cyclic GC's
    reach (gc.freeze, as the control process does): full collections in a busy worker then
    do not scan aiortc, numpy and the rest of the heap every time."""
    pool = WorkerPool(FACTORY, {}, workers=1)
    await pool.start()
    try:
        assert await pool.call(0, "gc_frozen") > 10_000
    finally:
        await pool.close()
