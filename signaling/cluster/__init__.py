"""Several nodes, one room: the coordination plane of a cluster, through Redis (issue 13).

* :mod:`~signaling.cluster.keys`: key and channel names;
* :mod:`~signaling.cluster.registry`: node records and heartbeats, liveness, least-loaded;
* :mod:`~signaling.cluster.lease`: room origin leases with a fencing epoch;
* :mod:`~signaling.cluster.bus`: pub/sub channels and calls between nodes;
* :mod:`~signaling.cluster.node`: the node's :class:`~signaling.cluster.node.Cluster`.

The design is in docs/cluster.md. Without ``SFU_REDIS_URL`` none of this runs.
"""
