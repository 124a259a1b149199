"""The node registry: who is in the cluster, where to reach it, how loaded it is.

Each node writes its :class:`NodeInfo` (JSON) under ``sfu:node:<id>`` every
:data:`HEARTBEAT_S` and adds its id to the set ``sfu:nodes``. A node is judged by the
``last_seen`` it stored (Unix ms), not by key expiry: one whose ``last_seen`` is older than
:data:`DEAD_AFTER_S` is dead to the others. The record also carries a TTL of
:data:`RECORD_TTL_S` so a dead node's record does not stay forever.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Literal

from redis.asyncio import Redis

from signaling.cluster import keys

HEARTBEAT_S = 2.0
"""Interval of heartbeats (registry record, lease renewals, room summaries), seconds."""
DEAD_AFTER_S = 6.0
"""A node whose last heartbeat is older than this is dead (seconds)."""
RECORD_TTL_S = 60
"""Expiry of a node's record in Redis (seconds); liveness is judged by ``last_seen``."""

NodeState = Literal["serving", "draining"]


@dataclass(slots=True)
class NodeInfo:
    """One node as the registry holds it.

    Fields: ``id``; ``url`` (clients' base URL for signaling, ``SFU_NODE_URL``);
    ``media_host`` (address for media pipes, ``SFU_NODE_MEDIA_HOST``); ``workers`` (media
    worker processes, 0: media in the control process); ``participants`` (load: sessions
    admitted on this node); ``capacity`` (``SFU_MAX_PARTICIPANTS``, 0: no cap); ``state``
    (``serving`` or ``draining``); ``last_seen`` (Unix time of the last heartbeat, ms).
    """

    id: str
    url: str
    media_host: str
    workers: int
    participants: int
    capacity: int
    state: NodeState
    last_seen: int

    def alive(self, now_ms: int | None = None) -> bool:
        """True when the last heartbeat is younger than :data:`DEAD_AFTER_S`."""
        now_ms = now_ms if now_ms is not None else now_unix_ms()
        return now_ms - self.last_seen < DEAD_AFTER_S * 1000

    def has_room(self) -> bool:
        """Serving and below its capacity."""
        return self.state == "serving" and (self.capacity == 0 or self.participants < self.capacity)


def now_unix_ms() -> int:
    """Wall-clock Unix time in ms (shared by every node, unlike ``time.monotonic``)."""
    return int(time.time() * 1000)


async def register(redis: Redis, info: NodeInfo) -> None:
    """Write ``info`` (a heartbeat).

    Raises: ``redis.exceptions.RedisError`` when Redis is unreachable.
    """
    info.last_seen = now_unix_ms()
    pipe = redis.pipeline(transaction=True)
    pipe.set(keys.node(info.id), json.dumps(asdict(info)), ex=RECORD_TTL_S)
    pipe.sadd(keys.NODES, info.id)
    await pipe.execute()


async def deregister(redis: Redis, node_id: str) -> None:
    """Remove a node's record (a clean exit).

    Raises: ``redis.exceptions.RedisError`` when Redis is unreachable.
    """
    pipe = redis.pipeline(transaction=True)
    pipe.delete(keys.node(node_id))
    pipe.srem(keys.NODES, node_id)
    await pipe.execute()


async def live_nodes(redis: Redis) -> list[NodeInfo]:
    """Every node alive now (any state), by id; forgets ids whose record is gone.

    Raises: ``redis.exceptions.RedisError`` when Redis is unreachable.
    """
    ids = sorted(str(i) for i in await redis.smembers(keys.NODES))
    if not ids:
        return []
    records = await redis.mget([keys.node(i) for i in ids])
    now = now_unix_ms()
    nodes: list[NodeInfo] = []
    gone: list[str] = []
    for node_id, raw in zip(ids, records, strict=True):
        if raw is None:
            gone.append(node_id)
            continue
        try:
            info = NodeInfo(**json.loads(raw))
        except (TypeError, ValueError):
            gone.append(node_id)
            continue
        if info.alive(now):
            nodes.append(info)
    if gone:
        await redis.srem(keys.NODES, *gone)
    return nodes


def least_loaded(nodes: list[NodeInfo], exclude: str) -> NodeInfo | None:
    """The serving node with room that has the fewest participants (ties: by id), other
    than ``exclude``; None when there is none."""
    candidates = [n for n in nodes if n.id != exclude and n.has_room()]
    if not candidates:
        return None
    return min(candidates, key=lambda n: (n.participants, n.id))
