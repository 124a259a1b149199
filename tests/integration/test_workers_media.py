"""Media in worker processes (issue 12): ``--workers 2``, one room piped across workers.

The control process runs in this test's event loop (an aiohttp TestServer), the media in two
``python -m sfu.worker`` processes. ``worker_room_spread_at=1`` spreads a room over both
workers at once: the publisher lands on worker 0 and its listeners on worker 1, so every
packet a listener gets crossed a pipe.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestServer

from sfu import _aiortc_adapter as adapter
from sfu.plane.workers import WorkerMediaPlane
from signaling import keys
from signaling.app import create_app
from signaling.client import RoomClient
from signaling.serverproc import start_server, stop_server, wait_healthy
from signaling.settings import Settings
from tests.integration.conftest import TEST_SECRET, MakeToken
from tests.support.media import ColorTrack, ToneTrack, collect_audio, dominant_frequency, mean_color


@pytest.fixture
async def workers_app(
    tmp_path: Path, mongo_url: str, mongo_db: str
) -> AsyncIterator[tuple[str, WorkerMediaPlane]]:
    """``(base URL, media plane)`` of a server whose media runs in 2 worker processes."""
    settings = Settings(
        ice_hosts=["127.0.0.1"],
        ice_servers=[],
        data_dir=tmp_path,
        mongo_url=mongo_url,
        mongo_db=mongo_db,
        jwt_secret=TEST_SECRET,
        bcrypt_cost=4,
        workers=2,
        worker_room_spread_at=1,
    )
    # the media runs elsewhere: this process's aiortc clients need loopback candidates
    adapter.set_ice_host_addresses(["127.0.0.1"])
    app = create_app(settings)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        media = app[keys.MEDIA]
        assert isinstance(media, WorkerMediaPlane)
        yield str(server.make_url("")).rstrip("/"), media
    finally:
        await server.close()
        adapter.set_ice_host_addresses([])


def _client(url: str, make_token: MakeToken, room: str, identity: str, **kw: Any) -> RoomClient:
    grants = {k: kw.pop(k) for k in ("publish", "subscribe") if k in kw}
    return RoomClient(url, room, identity, token=make_token(room, identity, **grants), **kw)


async def _check_media(client: RoomClient, publisher: str, freq: float, rgb: Any) -> None:
    await client.wait_for(
        lambda: sum(1 for r in client.received.values() if r.track is not None) >= 2,
        timeout=20,
    )
    tracks = {r.kind: r.track for r in client.received.values() if r.participant == publisher}
    assert set(tracks) == {"audio", "video"}
    samples = await collect_audio(tracks["audio"], 1.0)
    assert abs(dominant_frequency(samples[len(samples) // 2 :]) - freq) < 15
    color = await mean_color(tracks["video"], frames=5)
    assert np.abs(color - np.array(rgb)).max() < 30


async def test_publisher_on_worker_0_listeners_on_worker_1(
    workers_app: tuple[str, WorkerMediaPlane], make_token: MakeToken
) -> None:
    url, media = workers_app
    speaker = _client(url, make_token, "spread", "speaker")
    listeners = [
        _client(url, make_token, "spread", f"listener{i}", publish=False) for i in range(2)
    ]
    try:
        await speaker.connect()
        await speaker.publish([ToneTrack(550.0), ColorTrack((200, 40, 40))])
        sid = speaker.joined["participant"]["sid"]
        for listener in listeners:
            await listener.connect()
        assert media.worker_of(sid) == 0
        assert [media.worker_of(c.joined["participant"]["sid"]) for c in listeners] == [1, 1]
        # the roster spans both workers
        assert {p["identity"] for p in listeners[1].joined["participants"]} == {
            "speaker",
            "listener0",
        }
        for listener in listeners:
            await _check_media(listener, sid, 550.0, (200, 40, 40))
        assert media.piped == 2  # audio and video, piped once to worker 1 for both listeners
        stats = await media.stats()
        assert stats.participants == 3 and [w.index for w in stats.workers] == [0, 1]
        assert all(w.up for w in stats.workers) and stats.counters["pipe_packets_sent"] > 50
        # a late listener on worker 1 needs a keyframe: its consumer's PLI crosses the pipe
        # (piped producer on worker 1 -> pipe -> worker 0's producer -> the publisher)
        await asyncio.sleep(1.2)  # past the start-up keyframe requests' throttle (500 ms)
        before = (await media.pool.call(0, "plane_stats")).counters
        late = _client(url, make_token, "spread", "late", publish=False)
        listeners.append(late)
        await late.connect()
        assert media.worker_of(late.joined["participant"]["sid"]) == 1
        await _check_media(late, sid, 550.0, (200, 40, 40))
        after = (await media.pool.call(0, "plane_stats")).counters
        assert after["plis_sent"] > before["plis_sent"], "worker 0 asked the publisher"
        assert after["keyframes_received"] > before["keyframes_received"]
        # a video packet lost on the pipe: worker 1 NACKs it, worker 0 resends it as RTX
        a0 = (await media.pool.call(0, "plane_stats")).counters
        b0 = (await media.pool.call(1, "plane_stats")).counters
        await media.pool.call(0, "pipe_drop_one", "spread", 1, "video")
        a1, b1 = a0, b0
        for _ in range(50):
            await asyncio.sleep(0.1)
            a1 = (await media.pool.call(0, "plane_stats")).counters
            b1 = (await media.pool.call(1, "plane_stats")).counters
            if (
                a1["retransmissions"] > a0["retransmissions"]
                and b1["rtx_received"] > b0["rtx_received"]
            ):
                break
        assert b1["nacks_sent"] > b0["nacks_sent"], "worker 1 NACKed the hole upstream"
        assert a1["retransmissions"] > a0["retransmissions"], "worker 0 answered from its buffer"
        assert b1["rtx_received"] > b0["rtx_received"], "the RTX came back over the pipe"
        await _check_media(listeners[0], sid, 550.0, (200, 40, 40))
    finally:
        await asyncio.gather(*(c.close() for c in [speaker, *listeners]))


def _descendants(pid: int) -> set[int]:
    children: dict[int, set[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        children.setdefault(ppid, set()).add(int(entry))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


async def test_killed_listener_worker_reconnects_its_listeners(
    workers_app: tuple[str, WorkerMediaPlane], make_token: MakeToken
) -> None:
    url, media = workers_app
    speaker = _client(url, make_token, "crash", "speaker", auto_reconnect=True)
    listener = _client(url, make_token, "crash", "listener", publish=False, auto_reconnect=True)
    try:
        await speaker.connect()
        await speaker.publish([ToneTrack(700.0), ColorTrack((40, 200, 40))])
        sid = speaker.joined["participant"]["sid"]
        await listener.connect()
        assert media.worker_of(listener.joined["participant"]["sid"]) == 1
        await _check_media(listener, sid, 700.0, (40, 200, 40))
        pid = media.pool.pid(1)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await listener.wait_for(lambda: listener.reconnects == ["rejoined"], timeout=15)
        assert "reconnect" in listener.message_types
        new_sid = listener.joined["participant"]["sid"]
        assert media.worker_of(new_sid) in (0, 1) and media.pool.is_up(
            media.worker_of(new_sid) or 0
        )
        await _check_media(listener, sid, 700.0, (40, 200, 40))
        # the speaker (worker 0) lost nothing: same session, no reconnect
        assert speaker.reconnects == [] and media.worker_of(sid) == 0
    finally:
        await asyncio.gather(speaker.close(), listener.close())


async def test_killed_publisher_worker_pauses_then_resumes(
    workers_app: tuple[str, WorkerMediaPlane], make_token: MakeToken
) -> None:
    url, media = workers_app
    speaker = _client(url, make_token, "pubcrash", "speaker", auto_reconnect=True)
    listener = _client(url, make_token, "pubcrash", "listener", publish=False)
    try:
        await speaker.connect()
        await speaker.publish([ToneTrack(900.0), ColorTrack((40, 40, 200))])
        sid = speaker.joined["participant"]["sid"]
        await listener.connect()
        await _check_media(listener, sid, 900.0, (40, 40, 200))
        pid = media.pool.pid(0)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await listener.wait_for(
            lambda: any(
                e.get("type") == "track_muted" and e.get("muted") and e.get("participant") == sid
                for e in listener.events
            ),
            timeout=10,
        )
        await speaker.wait_for(lambda: speaker.reconnects == ["rejoined"], timeout=20)
        new_sid = speaker.joined["participant"]["sid"]
        assert new_sid != sid
        await _check_media(listener, new_sid, 900.0, (40, 40, 200))
        assert listener.reconnects == []  # the listener's session survived
    finally:
        await asyncio.gather(speaker.close(), listener.close())


async def test_close_stops_every_worker(
    workers_app: tuple[str, WorkerMediaPlane], make_token: MakeToken
) -> None:
    _url, media = workers_app
    pids = {media.pool.pid(i) for i in range(2)}
    assert None not in pids and pids <= _descendants(os.getpid())
    await media.close()
    assert not pids & _descendants(os.getpid())


def _metric(url: str, line_start: str) -> float | None:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(line_start + " "):
                return float(line.split()[-1])
    return None


def test_sfu_serve_workers_metrics_restart_and_sigterm(mongo_url: str, tmp_path: Path) -> None:
    """``sfu serve --workers 2`` (SFU_WORKERS=2): per-worker series on /metrics, a worker
    killed with SIGKILL is restarted (``sfu_worker_restarts_total``), and SIGTERM of the
    server leaves no process of its tree behind (walked in /proc)."""
    env = {
        "SFU_WORKERS": "2",
        "SFU_JWT_SECRET": TEST_SECRET,
        "MONGO_URL": mongo_url,
        "SFU_MONGO_DB": f"workers_{uuid.uuid4().hex[:12]}",
    }
    proc, url = start_server(tmp_path, env=env)
    tree: set[int] = set()
    try:
        wait_healthy(url, proc, timeout_s=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _metric(url, 'sfu_worker_up{worker="1"}') != 1:
            time.sleep(0.2)
        assert _metric(url, 'sfu_worker_up{worker="0"}') == 1
        assert _metric(url, 'sfu_worker_up{worker="1"}') == 1
        workers = _descendants(proc.pid)
        assert len(workers) >= 2
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if (_metric(url, 'sfu_worker_restarts_total{worker="0"}') or 0) + (
                _metric(url, 'sfu_worker_restarts_total{worker="1"}') or 0
            ) >= 1 and len(_descendants(proc.pid)) >= 2:
                break
            time.sleep(0.2)
        tree = _descendants(proc.pid)
        assert victim not in tree and len(tree) >= 2, "the killed worker was replaced"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        stop_server(proc)
    alive = {pid for pid in tree if os.path.exists(f"/proc/{pid}")}
    assert not alive, f"orphans left: {alive}"
