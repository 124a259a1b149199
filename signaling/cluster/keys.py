"""Redis key and channel names of the cluster (docs/cluster.md "Keys and channels").

Every name starts with ``sfu:`` so that a Redis shared with other applications stays tidy.
"""

from __future__ import annotations

NODES = "sfu:nodes"
"""Set of node ids that registered (entries whose record is gone or stale are dead)."""


def node(node_id: str) -> str:
    """String key: the node's JSON record (:class:`~signaling.cluster.registry.NodeInfo`)."""
    return f"sfu:node:{node_id}"


def node_channel(node_id: str) -> str:
    """Pub/sub channel of requests and replies addressed to one node."""
    return f"sfu:node:{node_id}:rpc"


def room_channel(room: str) -> str:
    """Pub/sub channel of one room's events (chat, reactions, summaries, ended, reload)."""
    return f"sfu:room:{room}"


def origin(room: str) -> str:
    """String key: the room's origin lease, ``"<node id>:<epoch>"`` with a TTL (PX)."""
    return f"sfu:room:{room}:origin"


def epoch(room: str) -> str:
    """Integer key: the room's fencing epoch, INCR-ed at every takeover of the lease."""
    return f"sfu:room:{room}:epoch"


def summaries(room: str) -> str:
    """Hash: node id -> that node's latest summary of the room (JSON), so that a node
    arriving in the room knows the others at once (expires when nobody refreshes it)."""
    return f"sfu:room:{room}:nodes"
