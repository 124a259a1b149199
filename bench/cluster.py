"""Cluster benchmark: one Opus speaker, listeners spread over 2-3 nodes on loopback (issue 13).

Usage: ``python -m bench.cluster --nodes 3 --listeners 60 [--duration 10]``

Starts ``redis-server`` and ``--nodes`` ``sfu serve`` nodes (``--workers 0``, media pipes on
127.0.0.1) sharing it, all on 127.0.0.1. The speaker (raw Opus, 50 packets/s) publishes on
node 0; listeners join the nodes round robin, count packets without decoding, and a few per
node (``--probes``) match payloads to measure latency. Node 0 forwards to its own listeners
and pipes the producer once to each other node (SRTP AEAD_AES_128_GCM), which fans it out to
its listeners. Printed, measured in this one run over the same window:

* per node: server CPU (s and us per packet it sent: to its listeners plus over pipes), from
  /proc for the node process and its descendants that are Python processes (media workers;
  the embedded MongoDB each node starts without ``MONGO_URL`` is left out), its share of a
  core, and its pipe packets sent/received (``sfu_pipe_packets_*_total`` from ``/metrics``);
* the cross-node pipe: packets per second per producer per node (one copy each, whatever the
  number of listeners there);
* delivery per listener (min / median) per node;
* latency p50/p99 (ms) from the speaker's send to a probe's arrival, per node: node 0's
  listeners are one hop, the others two (the extra hop's cost is the difference).

Loops are bounded in count and time; every address is 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import secrets
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench.fanout import _gather_limited, _latencies, _percentile, cpu_seconds
from bench.peers import RawOpusPublisher, encode_opus_frames
from sfu import _aiortc_adapter as adapter
from signaling.auth.tokens import VideoGrant, create_access_token
from signaling.client import PacketCounter, RoomClient
from signaling.serverproc import start_server, stop_server, wait_healthy
from tests.support.redis import start_redis

ROOM = "bench-cluster"


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def node_cpu_seconds(pid: int) -> float:
    """CPU (s) of node process ``pid`` and its Python descendants (media workers), walking
    /proc; other descendants (an embedded MongoDB) are left out."""
    tree = _children()
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/comm") as f:
                comm = f.read().strip()
            if current == pid or comm.startswith("python"):
                total += cpu_seconds(current)
        except OSError:
            continue
        stack.extend(tree.get(current, []))
    return total


async def pipe_counters(http: aiohttp.ClientSession, url: str) -> tuple[float, float, float]:
    """(pipe packets sent, pipe packets received, packets sent to subscribers) of a node,
    from ``/metrics``."""
    async with http.get(f"{url}/metrics", raise_for_status=True) as resp:
        text = await resp.text()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.labels or set(sample.labels) == {"worker"}:
                values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return (
        values.get("sfu_pipe_packets_sent_total", 0.0),
        values.get("sfu_pipe_packets_received_total", 0.0),
        values.get("sfu_packets_sent_total", 0.0),
    )


@dataclass
class NodeResult:
    """One node's measurements over the window."""

    node: int
    listeners: int
    cpu_s: float
    core_share: float
    packets_sent: int
    pipe_sent: int
    pipe_received: int
    us_per_packet: float | None
    delivery_min: float
    delivery_median: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None


async def run(nodes: int, listeners: int, duration: float, probes: int) -> list[NodeResult]:
    """Start Redis and ``nodes`` nodes, the speaker on node 0 and ``listeners`` listeners
    round robin; measure for ``duration`` s. Returns one :class:`NodeResult` per node."""
    adapter.set_ice_host_addresses(["127.0.0.1"])
    workdir = Path(tempfile.mkdtemp(prefix="sfu-bench-cluster-"))
    redis = start_redis(workdir)
    secret = secrets.token_urlsafe(48)
    procs = []
    urls = []
    clients: list[RoomClient] = []
    publisher = RawOpusPublisher(encode_opus_frames(250))
    speaker: RoomClient | None = None
    try:
        for i in range(nodes):
            env = {
                "SFU_JWT_SECRET": secret,
                "SFU_REDIS_URL": redis.url,
                "SFU_NODE_ID": f"n{i}",
                "SFU_NODE_MEDIA_HOST": "127.0.0.1",
                "SFU_WORKERS": "0",
            }
            proc, url = start_server(workdir / f"n{i}", env=env)
            procs.append(proc)
            urls.append(url)
        for proc, url in zip(procs, urls, strict=True):
            await asyncio.to_thread(wait_healthy, url, proc, 60)

        def token(identity: str, publish: bool) -> str:
            grant = VideoGrant(room=ROOM, roomJoin=True, canPublish=publish, canSubscribe=True)
            return create_access_token(secret, identity=identity, ttl_s=3600, video=grant)[0]

        speaker = RoomClient(
            urls[0], ROOM, "speaker", token=token("speaker", True), subscribe=False
        )
        await speaker.connect()
        reply = await speaker.publish_sdp(
            await publisher.offer(), [{"mid": "0", "kind": "audio", "source": "microphone"}]
        )
        await publisher.answer(reply["sdp"])
        publisher.start()
        homes: list[int] = []
        for i in range(listeners):
            home = i % nodes
            client = RoomClient(
                urls[home], ROOM, f"l{i}", token=token(f"l{i}", False), count_only=True
            )
            client.counter.keep_payloads = i // nodes < probes
            clients.append(client)
            homes.append(home)
        results = await _gather_limited([c.connect() for c in clients], 8)
        joined = [
            (c, h)
            for c, h, r in zip(clients, homes, results, strict=True)
            if not isinstance(r, BaseException)
        ]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(c.counter.packets for c, _ in joined):
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # settle
        async with aiohttp.ClientSession() as http:
            gc.collect()
            gc.freeze()
            gc.disable()
            try:
                counts0 = [sum(c.counter.packets.values()) for c, _ in joined]
                sent0 = publisher.sent
                cpu0 = [node_cpu_seconds(p.pid) for p in procs]
                pipes0 = [await pipe_counters(http, u) for u in urls]
                t0 = time.monotonic()
                await asyncio.sleep(duration)
                t1 = time.monotonic()
                cpu1 = [node_cpu_seconds(p.pid) for p in procs]
                pipes1 = [await pipe_counters(http, u) for u in urls]
                counts1 = [sum(c.counter.packets.values()) for c, _ in joined]
                sent = publisher.sent - sent0
            finally:
                gc.enable()
                gc.unfreeze()
        window = t1 - t0
        out = []
        for n in range(nodes):
            mine = [i for i, (_, h) in enumerate(joined) if h == n]
            ratios = sorted(
                max(0, min(sent, counts1[i] - counts0[i])) / sent if sent else 0.0 for i in mine
            ) or [0.0]
            counters: list[PacketCounter] = [joined[i][0].counter for i in mine]
            lat = _latencies(counters, publisher.send_times, t0, t1)
            cpu = cpu1[n] - cpu0[n]
            pipe_sent = int(pipes1[n][0] - pipes0[n][0])
            pipe_received = int(pipes1[n][1] - pipes0[n][1])
            packets_sent = int(pipes1[n][2] - pipes0[n][2])
            work = packets_sent + pipe_sent
            out.append(
                NodeResult(
                    node=n,
                    listeners=len(mine),
                    cpu_s=round(cpu, 3),
                    core_share=round(cpu / window, 3),
                    packets_sent=packets_sent,
                    pipe_sent=pipe_sent,
                    pipe_received=pipe_received,
                    us_per_packet=round(cpu / work * 1e6, 1) if work else None,
                    delivery_min=round(ratios[0], 4),
                    delivery_median=round(statistics.median(ratios), 4),
                    latency_p50_ms=None if not lat else round(_percentile(lat, 0.5) or 0, 2),
                    latency_p99_ms=None if not lat else round(_percentile(lat, 0.99) or 0, 2),
                )
            )
        return out
    finally:
        await publisher.stop()
        await _gather_limited([c.close() for c in clients], 16)
        if speaker is not None:
            await speaker.close()
        for proc in procs:
            stop_server(proc)
        redis.stop()


def _table(results: list[NodeResult], duration: float) -> str:
    lines = [
        "node listeners cpu_s core  sent  pipe_tx pipe_rx us/pkt  deliv(min/med)  p50/p99 ms",
    ]
    for r in results:
        lat = f"{r.latency_p50_ms}/{r.latency_p99_ms}" if r.latency_p50_ms is not None else "-"
        lines.append(
            f"{r.node:>4} {r.listeners:>9} {r.cpu_s:>5} {r.core_share:>5} {r.packets_sent:>5} "
            f"{r.pipe_sent:>7} {r.pipe_received:>7} {r.us_per_packet!s:>6}  "
            f"{r.delivery_min}/{r.delivery_median}  {lat}"
        )
    origin = results[0]
    remote = [r for r in results[1:] if r.latency_p50_ms is not None]
    if origin.latency_p50_ms is not None and remote:
        extra50 = statistics.median([r.latency_p50_ms or 0 for r in remote]) - (
            origin.latency_p50_ms
        )
        extra99 = statistics.median([r.latency_p99_ms or 0 for r in remote]) - (
            origin.latency_p99_ms or 0
        )
        lines.append(f"extra hop: +{extra50:.2f} ms p50, +{extra99:.2f} ms p99")
    per_node = [r.pipe_received / duration for r in results[1:]]
    if per_node:
        rates = ", ".join(
            f"node {r.node} receives {v:.1f} pkt/s"
            for r, v in zip(results[1:], per_node, strict=True)
        )
        lines.append(f"pipe: {rates} (one copy of the 50 pkt/s producer per node, plus RTCP)")
    return "\n".join(lines)


def main() -> int:
    """Entry point: parse arguments, run, print the table (and JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--nodes",
        type=int,
        default=3,
        choices=(1, 2, 3),
        help="1: every listener on the speaker's node (the baseline)",
    )
    parser.add_argument("--listeners", type=int, default=60)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--probes", type=int, default=3, help="latency probes per node")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(run(args.nodes, args.listeners, args.duration, args.probes))
    print(_table(results, args.duration))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
