"""Room origin leases with a fencing epoch (docs/cluster.md "Room origin").

One node, the *origin*, owns each room: ``sfu:room:<room>:origin`` holds
``"<node id>:<epoch>"`` with a TTL of :data:`LEASE_TTL_MS`, renewed every heartbeat by a
compare-and-renew script. Taking a lease that is free (expired: its holder died, or released:
its holder drained) INCRs ``sfu:room:<room>:epoch`` and sets the key ``NX PX`` in one atomic
script, so every holder of a room has a larger epoch than the one before it. Requests the
origin sends to other nodes carry its epoch; a node refuses one whose epoch is not the room's
current epoch (:func:`check_epoch`), so a stale origin (one that lost its lease while paused
or cut off) can no longer change the room.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from signaling.cluster import keys

LEASE_TTL_MS = 6000
"""Lifetime of a lease not renewed (ms): the origin's death is noticed about this late."""

# KEYS[1] origin key, KEYS[2] epoch key; ARGV[1] node id, ARGV[2] TTL ms.
# Returns the holder "<node>:<epoch>" (this node's when it took the lease).
_ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
local epoch = redis.call('INCR', KEYS[2])
local val = ARGV[1] .. ':' .. epoch
redis.call('SET', KEYS[1], val, 'NX', 'PX', ARGV[2])
return val
"""
# KEYS[1] origin key; ARGV[1] expected "<node>:<epoch>", ARGV[2] TTL ms. 1: renewed, 0: lost.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
# KEYS[1] origin key; ARGV[1] expected "<node>:<epoch>". 1: released, 0: not ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Lease:
    """A room's origin: the holding node and its fencing epoch."""

    node: str
    epoch: int

    @property
    def value(self) -> str:
        """The value stored in Redis."""
        return f"{self.node}:{self.epoch}"

    @staticmethod
    def parse(value: str | bytes | None) -> Lease | None:
        """``"<node>:<epoch>"`` -> Lease (None for None or a malformed value)."""
        if value is None:
            return None
        text = value.decode() if isinstance(value, bytes) else value
        node, _, epoch = text.rpartition(":")
        if not node or not epoch.isdigit():
            return None
        return Lease(node, int(epoch))


class Leases:
    """The lease scripts of one Redis client.

    Every method raises ``redis.exceptions.RedisError`` when Redis is unreachable.
    """

    def __init__(self, redis: Redis, ttl_ms: int = LEASE_TTL_MS) -> None:
        self.redis = redis
        self.ttl_ms = ttl_ms
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    async def acquire(self, room: str, node_id: str) -> Lease | None:
        """Take ``room``'s lease for ``node_id`` if it is free; returns the holder (this node
        with a new epoch when it took it)."""
        raw = await self._acquire(
            keys=[keys.origin(room), keys.epoch(room)], args=[node_id, self.ttl_ms]
        )
        return Lease.parse(raw)

    async def renew(self, room: str, lease: Lease) -> bool:
        """Extend ``lease``; False when it is no longer held (expired, taken over)."""
        return bool(await self._renew(keys=[keys.origin(room)], args=[lease.value, self.ttl_ms]))

    async def release(self, room: str, lease: Lease) -> bool:
        """Give ``lease`` up (drain) so another node takes the room at once."""
        return bool(await self._release(keys=[keys.origin(room)], args=[lease.value]))

    async def holder(self, room: str) -> Lease | None:
        """The current origin of ``room`` (None when nobody holds it)."""
        return Lease.parse(await self.redis.get(keys.origin(room)))

    async def check_epoch(self, room: str, epoch: int) -> bool:
        """True when ``epoch`` is ``room``'s current fencing epoch (the sender still holds
        the lease); a smaller one is stale."""
        current = await self.redis.get(keys.epoch(room))
        return current is not None and int(current) == epoch
