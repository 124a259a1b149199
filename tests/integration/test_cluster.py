"""Three ``sfu serve`` nodes on 127.0.0.1 sharing one MongoDB and one Redis (issue 13,
docs/cluster.md): one podcast room spread over them, no media.

One scenario, in order (each step needs the state the previous one left): chat, reactions,
hands, promotion and removal cross nodes; ``kill -9`` of the origin: a survivor takes the
lease with a higher epoch and the stage state (a promotion, a ban) is intact; a node over
capacity redirects; Redis stopped: a room keeps working on its node and a cross-node request
gets ``unavailable``, then works again once Redis is back; SIGTERM: the node tells its
participants where to go and exits.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from signaling.client import RoomClient, SignalingError
from signaling.serverproc import start_server, stop_server, wait_healthy
from tests.integration.conftest import TEST_SECRET, MakeToken
from tests.support.redis import RedisServer, find_redis_server, start_redis

pytestmark = pytest.mark.skipif(
    find_redis_server() is None, reason="redis-server missing (scripts/test.sh installs it)"
)

ROOM = "cluster-pod"


@dataclass
class Node:
    name: str
    process: subprocess.Popen[bytes]
    url: str


@dataclass
class Cluster:
    redis: RedisServer
    nodes: dict[str, Node]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_redis(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cluster(mongo_url: str, redis_server: RedisServer, tmp_path: Path) -> Iterator[Cluster]:
    """Nodes a, b, c (c admits at most 2 participants; b drains for at most 5 s)."""
    db = f"cluster_{uuid.uuid4().hex[:12]}"
    extra = {"c": {"SFU_MAX_PARTICIPANTS": "2"}, "b": {"SFU_DRAIN_TIMEOUT_S": "5"}}
    nodes: dict[str, Node] = {}
    try:
        for name in ("a", "b", "c"):
            env = {
                "SFU_JWT_SECRET": TEST_SECRET,
                "MONGO_URL": mongo_url,
                "SFU_MONGO_DB": db,
                "SFU_REDIS_URL": redis_server.url,
                "SFU_NODE_ID": name,
                **extra.get(name, {}),
            }
            log = (tmp_path / f"node-{name}.log").open("wb")
            process, url = start_server(tmp_path / name, env=env, output=log, log_level="info")
            nodes[name] = Node(name, process, url)
        for node in nodes.values():
            wait_healthy(node.url, node.process, timeout_s=30)
        yield Cluster(redis_server, nodes)
    finally:
        for node in nodes.values():
            stop_server(node.process)


@pytest.fixture
async def inspect(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url, decode_responses=True, socket_timeout=1)
    yield client
    await client.aclose()


def has(client: RoomClient, kind: str, check: Callable[[dict[str, Any]], bool]) -> bool:
    return any(e.get("type") == kind and check(e) for e in client.events)


async def until(condition: Callable[[], Any], timeout_s: float) -> None:
    """Poll an async-or-sync condition every 0.2 s (bounded)."""
    for _ in range(int(timeout_s / 0.2)):
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("condition not met in time")


async def test_one_room_across_three_nodes(
    cluster: Cluster, inspect: Redis, make_token: MakeToken
) -> None:
    a, b, c = (cluster.nodes[n].url for n in "abc")
    clients: list[RoomClient] = []

    def client(url: str, identity: str, **grants: Any) -> RoomClient:
        token = make_token(ROOM, identity, kind="podcast", **grants)
        made = RoomClient(url, ROOM, identity, token=token)
        clients.append(made)
        return made

    try:
        host = client(a, "host", admin=True)
        await host.connect()
        assert await inspect.get(f"sfu:room:{ROOM}:origin") == "a:1"  # first node: origin
        on_b = client(b, "lb", publish=False, role="listener")
        on_c = client(c, "lc", publish=False, role="listener")
        sid_b = (await on_b.connect())["participant"]["sid"]
        sid_c = (await on_c.connect())["participant"]["sid"]

        # listeners on other nodes are counted, not announced
        await host.wait_for(lambda: has(host, "audience", lambda e: e["count"] == 2), 10)
        assert not has(host, "participant_joined", lambda e: True)

        # one host seat for the room: a second roomAdmin token on another node is a moderator
        second = await client(c, "cohost", admin=True).connect()
        assert second["role"] == "moderator"
        await clients[-1].close()

        # chat and reactions cross nodes
        await on_b.request({"type": "chat", "text": "hello from b"})
        for other in (host, on_c):
            await other.wait_for(
                lambda o=other: has(o, "chat", lambda e: e["message"]["text"] == "hello from b"),
                10,
            )
        await on_c.request({"type": "reaction", "emoji": "👏"})
        await host.wait_for(
            lambda: has(
                host, "reactions", lambda e: any(r["participant"] == sid_c for r in e["reactions"])
            ),
            10,
        )

        # hands raised on b and c reach the host's queue on a
        await on_c.request({"type": "raise_hand", "raised": True})
        await on_b.request({"type": "raise_hand", "raised": True})
        await host.wait_for(
            lambda: has(host, "hands", lambda e: {m["sid"] for m in e["queue"]} == {sid_b, sid_c}),
            10,
        )

        # promotion (a -> origin a -> c) and removal (a -> b) across nodes
        await host.request({"type": "set_role", "participant": sid_c, "role": "speaker"})
        await on_c.wait_for(lambda: has(on_c, "role_changed", lambda e: e["role"] == "speaker"), 10)
        await host.request({"type": "remove_participant", "participant": sid_b})
        await on_b.wait_for(lambda: on_b.removed == "removed", 10)

        # kill -9 of the origin: c (the node with people left) takes the room, epoch 2
        killed = time.monotonic()
        cluster.nodes["a"].process.send_signal(signal.SIGKILL)
        cluster.nodes["a"].process.wait(5)

        async def taken_over() -> bool:
            return await inspect.get(f"sfu:room:{ROOM}:origin") == "c:2"

        await until(taken_over, 15)
        print(f"origin kill -9 -> lease taken over: {time.monotonic() - killed:.1f} s")
        # the stage state is intact: the ban holds everywhere, the promotion is remembered
        for url in (b, c):
            with pytest.raises(SignalingError) as refused:
                await client(url, "lb", publish=False, role="listener").connect()
            assert refused.value.code == "forbidden"
        await on_c.close()
        again = await client(b, "lc", publish=False, role="listener").connect()
        assert again["role"] == "speaker"

        # c is full at 2: the third join is redirected to the least-loaded serving node (b)
        x1, x2 = client(c, "x1", publish=False), client(c, "x2", publish=False)
        sid_x1 = (await x1.connect())["participant"]["sid"]
        await x2.connect()
        x3 = client(c, "x3", publish=False)
        await x3.connect()  # the client follows the redirect
        assert [(r["url"], r["reason"]) for r in x3.redirects] == [(b, "capacity")]
        assert x3.url == b and x3.joined["type"] == "joined"

        # Redis stopped: the room goes on within c, a cross-node request fails typed
        host_b = client(b, "host", admin=True)
        host_b.auto_reconnect = True
        await host_b.connect()
        await x1.request({"type": "raise_hand", "raised": True})
        await host_b.wait_for(
            lambda: has(host_b, "hands", lambda e: sid_x1 in {m["sid"] for m in e["queue"]}), 10
        )
        cluster.redis.stop()
        await x1.request({"type": "chat", "text": "still here"})
        await x2.wait_for(
            lambda: has(x2, "chat", lambda e: e["message"]["text"] == "still here"), 10
        )
        with pytest.raises(SignalingError) as cut:
            await host_b.request({"type": "set_role", "participant": sid_x1, "role": "speaker"})
        assert cut.value.code == "unavailable"

        # Redis back: the nodes register again and the same request goes through
        cluster.redis.restart()
        restarted = time.monotonic()

        async def registered() -> bool:
            try:
                return await inspect.exists("sfu:node:b", "sfu:node:c") == 2 and bool(
                    await inspect.get(f"sfu:room:{ROOM}:origin")
                )
            except Exception:
                return False

        await until(registered, 10)
        await until(
            lambda: has(host_b, "hands", lambda e: sid_x1 in {m["sid"] for m in e["queue"]}), 5
        )
        for attempt in range(10):  # the summaries come back within a heartbeat
            try:
                await host_b.request({"type": "set_role", "participant": sid_x1, "role": "speaker"})
                break
            except SignalingError:
                if attempt == 9:
                    raise
                await asyncio.sleep(0.5)
        await x1.wait_for(lambda: has(x1, "role_changed", lambda e: e["role"] == "speaker"), 10)
        print(f"Redis restarted -> cross-node promotion done: {time.monotonic() - restarted:.1f} s")

        # SIGTERM on b: its participants are sent to c (which has room again), and it exits
        await x2.close()
        await asyncio.sleep(2.5)  # c's next heartbeat reports 1 of 2
        node_b = cluster.nodes["b"]
        terminated = time.monotonic()
        node_b.process.send_signal(signal.SIGTERM)
        await host_b.wait_for(lambda: bool(host_b.redirects), 10)
        assert [(r["url"], r["reason"]) for r in host_b.redirects] == [(c, "draining")]
        assert await asyncio.to_thread(node_b.process.wait, 15) == 0
        await host_b.wait_for(lambda: host_b.reconnects == ["rejoined"], 15)
        assert host_b.url == c and host_b.joined["role"] == "host"  # continues on c
        print(f"SIGTERM -> drained node exited: {time.monotonic() - terminated:.1f} s")
    finally:
        for made in clients:
            try:
                await asyncio.wait_for(made.close(), 5)
            except Exception:
                pass
