"""Fan-out benchmark: one Opus speaker to N listeners, our SFU versus aiortc's MediaRelay.

Usage: ``python -m bench.fanout --listeners 200 [--duration 10] [--baseline-listeners 20]``

Both servers run in their own process on 127.0.0.1. The speaker sends real Opus at 50
packets/s; listeners count packets without decoding (a few probes also match payloads to
measure latency). Printed per server, measured in this one run:

* server CPU (us) per forwarded packet, from /proc/<pid>/stat over the measurement window,
  and the server's share of one core;
* delivery ratio per listener (min / median), the packets each listener got over the packets
  the speaker sent in the window;
* added latency p50/p99 (ms), publisher send to probe arrival (our SFU only: MediaRelay
  re-encodes, so payloads cannot be matched);
* the ratio of CPU per forwarded packet, MediaRelay / SFU.

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
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
from aiortc import RTCRtpTransceiver, RTCSessionDescription

from bench.peers import RawOpusPublisher, encode_opus_frames
from sfu import _aiortc_adapter as adapter
from signaling.auth.tokens import VideoGrant, create_access_token
from signaling.client import PacketCounter, RoomClient, _CountingSink
from signaling.serverproc import free_port, start_server, stop_server, wait_healthy

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (s), from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def own_cpu_seconds() -> float:
    """CPU time of this (the tester's) process (s)."""
    t = os.times()
    return t.user + t.system


@dataclass
class Result:
    """One server's measurements."""

    server: str
    listeners: int
    joined: int
    window_s: float
    sent: int
    delivered: int
    server_cpu_s: float
    us_per_packet: float
    core_share: float
    delivery_min: float
    delivery_median: float
    listeners_complete: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    tester_core_share: float
    join_s: float
    notes: list[str] = field(default_factory=list)


def _start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


async def _gather_limited(coros: list[Any], limit: int) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def run(coro: Any) -> Any:
        async with semaphore:
            return await coro

    return await asyncio.gather(*(run(c) for c in coros), return_exceptions=True)


def _latencies(
    counters: list[PacketCounter], send_times: dict[bytes, list[float]], t0: float, t1: float
) -> list[float]:
    """Latency (ms) of every probe arrival whose payload was sent in [t0, t1], matched to the
    latest send of that payload before the arrival."""
    out = []
    for counter in counters:
        for arrival, payload in counter.arrivals:
            sends = [s for s in send_times.get(payload, ()) if s <= arrival]
            if sends and t0 <= sends[-1] <= t1:
                out.append((arrival - sends[-1]) * 1000)
    return out


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def _measure(
    name: str,
    pid: int,
    publisher: RawOpusPublisher,
    counters: list[PacketCounter],
    duration: float,
    join_s: float,
    listeners: int,
) -> Result:
    await asyncio.sleep(1.0)  # settle
    # The tester's own gen-2 collections (80-100 ms with hundreds of peers in one process)
    # would be measured as server latency: collect and freeze now, no GC in the window.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        start_counts = [sum(c.packets.values()) for c in counters]
        sent0, cpu0, own0 = publisher.sent, cpu_seconds(pid), own_cpu_seconds()
        t0 = time.monotonic()
        await asyncio.sleep(duration)
        sent1, cpu1, own1 = publisher.sent, cpu_seconds(pid), own_cpu_seconds()
        end_counts = [sum(c.packets.values()) for c in counters]
        t1 = time.monotonic()
        # Packets in flight at t0 and at t1 (latency is far below the 20 ms packet interval)
        # shift a count by at most one packet either way.
        sent = sent1 - sent0
        got = [min(sent, e - s) for s, e in zip(start_counts, end_counts, strict=True)]
        delivered = sum(max(0, g) for g in got)
        ratios = sorted(max(0, g) / sent for g in got) if sent else [0.0]
        cpu = cpu1 - cpu0
        window = t1 - t0
        lat = _latencies(counters, publisher.send_times, t0, t1)
        return Result(
            server=name,
            listeners=listeners,
            joined=len(counters),
            window_s=round(window, 2),
            sent=sent,
            delivered=delivered,
            server_cpu_s=round(cpu, 3),
            us_per_packet=round(cpu / delivered * 1e6, 2) if delivered else float("inf"),
            core_share=round(cpu / window, 3),
            delivery_min=round(ratios[0], 4),
            delivery_median=round(statistics.median(ratios), 4),
            listeners_complete=sum(1 for r in ratios if r >= 0.995),
            latency_p50_ms=None if not lat else round(_percentile(lat, 0.5) or 0, 2),
            latency_p99_ms=None if not lat else round(_percentile(lat, 0.99) or 0, 2),
            tester_core_share=round((own1 - own0) / window, 3),
            join_s=round(join_s, 1),
        )
    finally:
        gc.enable()
        gc.unfreeze()


async def run_sfu(listeners: int, duration: float, probes: int, payloads: list[bytes]) -> Result:
    """Our SFU in its own process: one raw Opus speaker, ``listeners`` count-only listeners."""
    secret = secrets.token_urlsafe(48)
    proc, url = start_server(tempfile.mkdtemp(prefix="sfu-bench-"), env={"SFU_JWT_SECRET": secret})

    def token(identity: str) -> str:
        grant = VideoGrant(room="bench", roomJoin=True, canPublish=True, canSubscribe=True)
        return create_access_token(secret, identity=identity, ttl_s=3600, video=grant)[0]

    clients: list[RoomClient] = []
    publisher = RawOpusPublisher(payloads)
    speaker = RoomClient(url, "bench", "speaker", token=token("speaker"), subscribe=False)
    try:
        await asyncio.to_thread(wait_healthy, url, proc)
        await speaker.connect()
        reply = await speaker.publish_sdp(
            await publisher.offer(), [{"mid": "0", "kind": "audio", "source": "microphone"}]
        )
        await publisher.answer(reply["sdp"])
        publisher.start()
        started = time.monotonic()
        for i in range(listeners):
            client = RoomClient(url, "bench", f"l{i}", token=token(f"l{i}"), count_only=True)
            client.counter.keep_payloads = i < probes
            clients.append(client)
        results = await _gather_limited([c.connect() for c in clients], 16)
        joined = [
            c for c, r in zip(clients, results, strict=True) if not isinstance(r, BaseException)
        ]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(c.counter.packets for c in joined):
            await asyncio.sleep(0.2)
        join_s = time.monotonic() - started
        result = await _measure(
            "sfu", proc.pid, publisher, [c.counter for c in joined], duration, join_s, listeners
        )
        if len(joined) < listeners:
            result.notes.append(f"{listeners - len(joined)} listeners failed to join")
        return result
    finally:
        await publisher.stop()
        await _gather_limited([c.close() for c in clients], 32)
        await speaker.close()
        stop_server(proc)


class _RelayListener:
    """A count-only listener of the MediaRelay baseline (offers recvonly audio)."""

    def __init__(self) -> None:
        self.counter = PacketCounter()
        sink = _CountingSink(self.counter, None)
        self.pc = adapter.ForwardingPeerConnection(
            sink, adapter.make_configuration([]), srtp_counter=sink.on_rtp_encrypted
        )

    async def connect(self, http: aiohttp.ClientSession, url: str) -> None:
        transceiver: RTCRtpTransceiver = self.pc.addTransceiver("audio", direction="recvonly")
        assert transceiver is not None
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with http.post(url + "/subscribe", data=self.pc.localDescription.sdp) as resp:
            answer = await resp.text()
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))


async def run_baseline(listeners: int, duration: float, payloads: list[bytes]) -> Result:
    """aiortc MediaRelay in its own process, same speaker and listeners."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start([sys.executable, "-m", "bench.relay_baseline", "--port", str(port)], {})
    publisher = RawOpusPublisher(payloads)
    peers = [_RelayListener() for _ in range(listeners)]
    try:
        await asyncio.to_thread(wait_healthy, url, proc)
        async with aiohttp.ClientSession() as http:
            async with http.post(url + "/publish", data=await publisher.offer()) as resp:
                await publisher.answer(await resp.text())
            publisher.start()
            started = time.monotonic()
            await _gather_limited([p.connect(http, url) for p in peers], 8)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(p.counter.packets for p in peers):
            await asyncio.sleep(0.2)
        join_s = time.monotonic() - started
        result = await _measure(
            "aiortc-mediarelay",
            proc.pid,
            publisher,
            [p.counter for p in peers],
            duration,
            join_s,
            listeners,
        )
        result.notes.append("latency n/a: MediaRelay re-encodes, payloads cannot be matched")
        return result
    finally:
        await publisher.stop()
        await asyncio.gather(*(p.pc.close() for p in peers), return_exceptions=True)
        stop_server(proc)


def _table(results: list[Result]) -> str:
    head = (
        f"{'server':<18} {'N':>4} {'us/pkt':>8} {'core':>6} {'deliv min':>9} {'median':>7} "
        f"{'full':>5} {'p50 ms':>7} {'p99 ms':>7} {'tester':>6}"
    )
    rows = [head]
    for r in results:
        p50 = "n/a" if r.latency_p50_ms is None else f"{r.latency_p50_ms:.2f}"
        p99 = "n/a" if r.latency_p99_ms is None else f"{r.latency_p99_ms:.2f}"
        rows.append(
            f"{r.server:<18} {r.joined:>4} {r.us_per_packet:>8.1f} {r.core_share:>6.2f} "
            f"{r.delivery_min:>9.4f} {r.delivery_median:>7.4f} {r.listeners_complete:>5} "
            f"{p50:>7} {p99:>7} {r.tester_core_share:>6.2f}"
        )
    return "\n".join(rows)


async def main_async(args: argparse.Namespace) -> list[Result]:
    payloads = encode_opus_frames(500)
    if args.workers:  # issue 12: one run per worker count (bench/procs.py)
        from bench.procs import derive_pipe_cost, run_workers, table

        runs = [
            await run_workers(int(n), args.listeners, args.duration, args.probes, payloads)
            for n in args.workers.split(",")
        ]
        derive_pipe_cost(runs)
        print(table(runs))
        return []
    results = [await run_sfu(args.listeners, args.duration, args.probes, payloads)]
    if args.baseline_listeners > 0:
        results.append(await run_baseline(args.baseline_listeners, args.duration, payloads))
    print(_table(results))
    for r in results:
        for note in r.notes:
            print(f"note ({r.server}): {note}")
    if len(results) == 2 and results[0].us_per_packet > 0:
        ratio = results[1].us_per_packet / results[0].us_per_packet
        print(f"MediaRelay / SFU CPU per forwarded packet: {ratio:.1f}x")
    return results


def main() -> int:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listeners", type=int, default=200)
    parser.add_argument("--duration", type=float, default=10.0, help="measurement window (s)")
    parser.add_argument("--probes", type=int, default=8, help="listeners that measure latency")
    parser.add_argument(
        "--baseline-listeners",
        type=int,
        default=20,
        help="listeners for the MediaRelay baseline (0 to skip)",
    )
    parser.add_argument(
        "--workers", help="comma-separated SFU_WORKERS values to compare, e.g. 0,1,2"
    )
    parser.add_argument("--json", help="write the results as JSON to this file")
    args = parser.parse_args()
    adapter.set_ice_host_addresses(["127.0.0.1"])
    results = asyncio.run(main_async(args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in results], f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
