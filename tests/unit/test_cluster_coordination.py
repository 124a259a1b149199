"""The cluster's Redis primitives against a real ``redis-server`` (docs/cluster.md): origin
leases and their fencing epoch, the node registry's liveness and least-loaded choice."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp import web
from redis.asyncio import Redis

from signaling import keys as app_keys
from signaling import protocol as p
from signaling.auth.tokens import VideoGrant
from signaling.cluster import keys
from signaling.cluster.lease import Lease, Leases
from signaling.cluster.node import Cluster
from signaling.cluster.registry import NodeInfo, least_loaded, live_nodes, now_unix_ms, register
from signaling.settings import Settings
from signaling.stage import STAGES, Member, Stage, Stages
from tests.support.redis import RedisServer, find_redis_server, start_redis

pytestmark = pytest.mark.skipif(
    find_redis_server() is None, reason="redis-server missing (scripts/test.sh installs it)"
)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_redis(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


async def test_lease_fencing_epoch(redis: Redis) -> None:
    leases = Leases(redis, ttl_ms=300)
    first = await leases.acquire("r", "a")
    assert first == Lease("a", 1)
    assert await leases.acquire("r", "b") == first  # held: b learns the holder, takes nothing
    assert await leases.renew("r", first)
    await asyncio.sleep(0.5)  # a stops renewing: the lease expires
    second = await leases.acquire("r", "b")
    assert second == Lease("b", 2)  # the takeover carries a larger epoch
    assert not await leases.renew("r", first)  # the stale origin cannot renew ...
    assert not await leases.release("r", first)  # ... nor release b's lease
    assert not await leases.check_epoch("r", first.epoch)  # its requests are refused
    assert await leases.check_epoch("r", second.epoch)
    assert await leases.release("r", second)  # a drain hands it over at once
    assert await leases.holder("r") is None
    assert await leases.acquire("r", "c") == Lease("c", 3)


async def test_registry_liveness_and_least_loaded(redis: Redis) -> None:
    def node(node_id: str, participants: int, **kw: object) -> NodeInfo:
        base: dict[str, object] = {
            "url": f"http://{node_id}",
            "media_host": node_id,
            "workers": 1,
            "participants": participants,
            "capacity": 0,
            "state": "serving",
            "last_seen": 0,
        }
        return NodeInfo(id=node_id, **{**base, **kw})  # type: ignore[arg-type]

    for info in (node("a", 5), node("b", 2), node("c", 1, state="draining"), node("d", 3)):
        await register(redis, info)
    # d stopped heartbeating 7 s ago: dead to the others although its record is there
    stale = node("d", 0, last_seen=now_unix_ms() - 7000)
    await redis.set(keys.node("d"), json.dumps(asdict(stale)))
    alive = await live_nodes(redis)
    assert [n.id for n in alive] == ["a", "b", "c"]
    assert least_loaded(alive, exclude="b").id == "a"  # type: ignore[union-attr]  # c drains
    assert least_loaded(alive, exclude="a").id == "b"  # type: ignore[union-attr]
    full = node("b", 2, capacity=2)
    assert not full.has_room()
    assert least_loaded([full, node("c", 0, state="draining")], exclude="a") is None


class _Leaving:
    """A session that leaves its stage when told to go elsewhere (as ws.Session does)."""

    def __init__(self, stage: Stage, sid: str, told: list[tuple[float, str]]) -> None:
        self.participant = SimpleNamespace(sid=sid, identity=sid, name=sid)
        self.stage, self.sid, self.told = stage, sid, told

    def send(self, message: object) -> None:
        pass

    def redirect(self, url: str, reason: str) -> None:
        assert reason == "draining"
        self.told.append((time.monotonic(), url))
        del self.stage.members[self.sid]


async def test_drain_redirects_at_most_200_a_second(
    redis: Redis, redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = Settings(
        redis_url=redis_server.url, node_id="a", data_dir=tmp_path, drain_timeout_s=10
    )
    app = web.Application()
    app[app_keys.SETTINGS] = settings
    app[STAGES] = stages = Stages()
    stage = Stage("big", "podcast", registry=stages)
    stages.rooms["big"] = stage
    told: list[tuple[float, str]] = []
    for i in range(450):
        session = _Leaving(stage, f"s{i}", told)
        stage.members[f"s{i}"] = Member(session, "listener")  # type: ignore[arg-type]
    other = NodeInfo("b", "http://b.example", "b", 1, 0, 0, "serving", 0)
    await register(redis, other)
    cluster = Cluster(app, settings)
    stopped: list[bool] = []
    cluster.stop_process = lambda: stopped.append(True)
    try:
        started = time.monotonic()
        await cluster.drain()
    finally:
        await cluster.close()
    assert stopped == [True]  # nobody left: the process stops before the deadline
    assert len(told) == 450 and {url for _, url in told} == {"http://b.example"}
    for t, _ in told:  # no one-second window holds more than 200 redirects
        assert sum(1 for u, _ in told if t <= u < t + 1.0) <= 200
    assert told[-1][0] - started < 4.0  # 450 people in three batches
    record = json.loads(await redis.get(keys.node("a")) or "{}")
    assert record.get("state") in (None, "draining")  # deregistered at close, or draining


class _Recording:
    """A local stage session that keeps what it is sent."""

    def __init__(self, sid: str) -> None:
        self.participant = SimpleNamespace(sid=sid, identity=sid, name=sid)
        self.grants = VideoGrant()
        self.claims = None
        self.sent: list[object] = []

    def send(self, message: object) -> None:
        self.sent.append(message)


def _node(redis_url: str, node_id: str, tmp_path: Path) -> tuple[web.Application, Settings]:
    settings = Settings(redis_url=redis_url, node_id=node_id, data_dir=tmp_path)
    app = web.Application()
    app[app_keys.SETTINGS] = settings
    app[STAGES] = Stages()
    return app, settings


async def test_apply_from_a_stale_origin_is_refused(
    redis: Redis, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Room r was at epoch 2 (its origin then: b); a, with people in r, takes the free lease
    (epoch 3). b's request carrying epoch 2 is refused (``unavailable``/``stale_origin``)
    and changes nothing; the same request at the current epoch applies."""
    app_a, settings_a = _node(redis_server.url, "a", tmp_path)
    app_b, settings_b = _node(redis_server.url, "b", tmp_path)
    stage = Stage("r", "podcast", registry=app_a[STAGES])
    app_a[STAGES].rooms["r"] = stage
    target = _Recording("t1")
    stage.members["t1"] = Member(target, "listener")  # type: ignore[arg-type]
    stage.members["t1"].hand_raised_at = time.monotonic()
    await redis.set(keys.epoch("r"), 2)
    a, b = Cluster(app_a, settings_a), Cluster(app_b, settings_b)
    await a.start()
    await b.start()
    try:
        for _ in range(50):  # both listening
            if a.linked and b.linked:
                break
            await asyncio.sleep(0.1)
        assert a.held["r"].epoch == 3
        args = {
            "room": "r",
            "actor": {"sid": "m1", "identity": "mod", "name": "Mod", "role": "moderator"},
            "home": "a",
            "request": {"type": "raise_hand", "id": "7", "participant": "t1", "raised": False},
        }
        with pytest.raises(p.ProtocolError) as stale:
            await b.bus.call("a", "apply", {**args, "epoch": 2})
        assert (stale.value.code, stale.value.reason) == ("unavailable", "stale_origin")
        assert stage.members["t1"].hand_raised_at is not None and target.sent == []
        result = await b.bus.call("a", "apply", {**args, "epoch": 3})
        assert result["messages"] == [{"type": "ok", "ref": "7"}]
        assert stage.members["t1"].hand_raised_at is None
        assert target.sent == [p.HandEvent(raised=False)]
        assert set(stage.members) == {"t1"}  # the stand-in actor is gone
    finally:
        await b.close()
        await a.close()
