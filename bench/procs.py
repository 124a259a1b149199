"""Fan-out over media worker processes (issue 12): ``python -m bench.fanout --workers 0,1,2``.

For each worker count, a fresh ``sfu serve`` (``SFU_WORKERS=N``) gets one raw Opus speaker
and N count-only listeners (as :func:`bench.fanout.run_sfu`); measured over the window:

* server CPU per forwarded packet (µs) of *every* server process: the control process and
  each descendant (the workers), walked in /proc (``/proc/<pid>/stat`` utime + stime);
* each worker process's share of that CPU (the control process has the rest);
* the pipe's packets (``sfu_pipe_packets_sent_total``) and the pipe's cost per piped packet,
  derived against the one-worker run of the same invocation: (CPU of this run - µs/packet of
  the 1-worker run * packets delivered) / pipe packets (noisy on a shared machine; compare
  with ``bench/pipe.py``);
* delivery ratio and added latency (probe listeners), as in :mod:`bench.fanout`;
* listeners per core implied: 1 / (50 packets/s * µs per packet).

Every address is 127.0.0.1; loops are bounded in count and time.
"""

from __future__ import annotations

import asyncio
import gc
import os
import secrets
import statistics
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field

from bench.peers import RawOpusPublisher
from signaling.auth.tokens import VideoGrant, create_access_token
from signaling.client import RoomClient
from signaling.serverproc import start_server, stop_server, wait_healthy

CLK_TCK = os.sysconf("SC_CLK_TCK")
OPUS_PPS = 50
"""Packets per second of one Opus speaker (20 ms frames)."""


def process_tree(root: int) -> set[int]:
    """``root`` and every live descendant of it (walked in /proc by parent pid)."""
    children: dict[int, set[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        children.setdefault(ppid, set()).add(int(entry))
    found = {root}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def is_worker(pid: int) -> bool:
    """Whether ``pid`` runs ``python -m sfu.worker`` (not, e.g., the embedded MongoDB)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"sfu.worker" in f.read()
    except OSError:
        return False


def cpu_seconds(pid: int) -> float:
    """User + system CPU (s) of one process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def open_fds(pid: int) -> int:
    """Open file descriptors of ``pid`` (a worker holds one UDP socket per transport without
    ``SFU_RTC_PORT``: a rough count of its participants); 0 when it is gone."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def other_threads_cpu(pid: int) -> float:
    """CPU (s) of ``pid``'s threads other than its main thread (0 when it is gone)."""
    total = 0.0
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid]
    except OSError:
        return 0.0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def process_detail(pid: int) -> tuple[float, float, int, int]:
    """User CPU (s), system CPU (s), voluntary and involuntary context switches of ``pid``
    (zeros when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return 0.0, 0.0, 0, 0
    fields = stat[stat.rfind(b")") + 2 :].split()
    return (
        int(fields[11]) / CLK_TCK,
        int(fields[12]) / CLK_TCK,
        int(status["voluntary_ctxt_switches"]),
        int(status["nonvoluntary_ctxt_switches"]),
    )


def tree_cpu(root: int) -> dict[int, float]:
    """CPU seconds of every process of ``root``'s tree, by pid."""
    return {pid: cpu_seconds(pid) for pid in process_tree(root)}


def scrape(url: str) -> dict[str, float]:
    """``/metrics`` of the server at ``url`` as {series with labels: value}."""
    out: dict[str, float] = {}
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    out[name] = float(value)
                except ValueError:
                    pass
    return out


@dataclass
class WorkersResult:
    """One configuration's measurements (``workers`` 0: media in the control process)."""

    workers: int
    listeners: int
    joined: int
    window_s: float
    sent: int
    delivered: int
    server_cpu_s: float
    us_per_packet: float
    worker_share: list[float]
    pipe_packets: int
    delivery_min: float
    delivery_median: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    pipe_us_per_packet: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def listeners_per_core(self) -> float:
        """Opus listeners one core forwards to at this CPU per packet."""
        return 1e6 / (OPUS_PPS * self.us_per_packet) if self.us_per_packet > 0 else 0.0


async def run_workers(
    workers: int,
    listeners: int,
    duration: float,
    probes: int,
    payloads: list[bytes],
    profile: str | None = None,
) -> WorkersResult:
    """One ``sfu serve`` with ``SFU_WORKERS=workers``: a raw Opus speaker, ``listeners``
    count-only listeners, measured for ``duration`` s. ``profile``: a directory where a py-spy
    profile of every server process over the window is written (``w<workers>-<pid>.txt``,
    the control process's pid first)."""
    from bench.fanout import _gather_limited, _latencies, _percentile, _start_profiler

    secret = secrets.token_urlsafe(48)
    proc, url = start_server(
        tempfile.mkdtemp(prefix="sfu-bench-"),
        env={"SFU_JWT_SECRET": secret, "SFU_WORKERS": str(workers)},
    )

    def token(identity: str, publish: bool = False) -> str:
        grant = VideoGrant(room="bench", roomJoin=True, canPublish=publish, canSubscribe=True)
        return create_access_token(secret, identity=identity, ttl_s=3600, video=grant)[0]

    clients: list[RoomClient] = []
    publisher = RawOpusPublisher(payloads)
    speaker = RoomClient(url, "bench", "speaker", token=token("speaker", True), subscribe=False)
    try:
        await asyncio.to_thread(wait_healthy, url, proc)
        await speaker.connect()
        reply = await speaker.publish_sdp(
            await publisher.offer(), [{"mid": "0", "kind": "audio", "source": "microphone"}]
        )
        await publisher.answer(reply["sdp"])
        publisher.start()
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
        silent = sum(1 for c in joined if not c.counter.packets)
        result_notes = [f"{silent} listeners got nothing before the window"] if silent else []
        await asyncio.sleep(1.5)  # settle (and one /metrics sample of the workers)
        counters = [c.counter for c in joined]
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            start_counts = [sum(c.packets.values()) for c in counters]
            m0 = await asyncio.to_thread(scrape, url)
            sent0, cpu0 = publisher.sent, tree_cpu(proc.pid)
            detail0 = {p: process_detail(p) for p in cpu0}
            threads0 = {p: other_threads_cpu(p) for p in cpu0}
            t0 = time.monotonic()
            profilers = [
                _start_profiler(p, duration, os.path.join(profile, f"w{workers}-{p}.txt"))
                for p in sorted(cpu0)
                if profile
            ]
            await asyncio.sleep(duration)
            sent1, cpu1 = publisher.sent, tree_cpu(proc.pid)
            detail1 = {p: process_detail(p) for p in cpu1}
            threads1 = {p: other_threads_cpu(p) for p in cpu1}
            for profiler in profilers:
                await asyncio.to_thread(profiler.wait, 30)
            t1 = time.monotonic()
            end_counts = [sum(c.packets.values()) for c in counters]
            await asyncio.sleep(1.1)  # the workers' CPU on /metrics is sampled every second
            m1 = await asyncio.to_thread(scrape, url)
        finally:
            gc.enable()
            gc.unfreeze()
        sent = sent1 - sent0
        got = [min(sent, e - s) for s, e in zip(start_counts, end_counts, strict=True)]
        delivered = sum(max(0, g) for g in got)
        ratios = sorted(max(0, g) / sent for g in got) if sent else [0.0]
        cpu = sum(cpu1[p] - cpu0.get(p, 0.0) for p in cpu1)
        # each worker process's part of the server's CPU (the control process is the rest)
        total = cpu or 1.0
        shares = [
            round((cpu1[p] - cpu0.get(p, 0.0)) / total, 3)
            for p in sorted(cpu1)
            if p != proc.pid and is_worker(p)
        ]
        pipe = int(
            m1.get("sfu_pipe_packets_sent_total", 0) - m0.get("sfu_pipe_packets_sent_total", 0)
        )
        lat = _latencies(counters, publisher.send_times, t0, t1)
        result = WorkersResult(
            workers=workers,
            listeners=listeners,
            joined=len(joined),
            window_s=round(t1 - t0, 2),
            sent=sent,
            delivered=delivered,
            server_cpu_s=round(cpu, 3),
            us_per_packet=round(cpu / delivered * 1e6, 2) if delivered else float("inf"),
            worker_share=shares,
            pipe_packets=pipe,
            delivery_min=round(ratios[0], 4),
            delivery_median=round(statistics.median(ratios), 4),
            latency_p50_ms=None if not lat else round(_percentile(lat, 0.5) or 0, 2),
            latency_p99_ms=None if not lat else round(_percentile(lat, 0.99) or 0, 2),
        )
        result.notes.extend(result_notes)
        for p in sorted(detail1):
            d0, d1 = detail0.get(p, (0.0, 0.0, 0, 0)), detail1[p]
            if d1[0] + d1[1] - d0[0] - d0[1] > 0.05:
                role = "worker" if is_worker(p) else "control" if p == proc.pid else "other"
                result.notes.append(
                    f"{role} {p}: user {d1[0] - d0[0]:.2f} s, sys {d1[1] - d0[1]:.2f} s, "
                    f"context switches {d1[2] - d0[2]} voluntary, {d1[3] - d0[3]} involuntary, "
                    f"other threads {threads1[p] - threads0.get(p, 0.0):.2f} s, "
                    f"{open_fds(p)} open descriptors"
                )
        if len(joined) < listeners:
            result.notes.append(f"{listeners - len(joined)} listeners failed to join")
        return result
    finally:
        await publisher.stop()
        await _gather_limited([c.close() for c in clients], 32)
        await speaker.close()
        stop_server(proc)


def derive_pipe_cost(results: list[WorkersResult]) -> None:
    """Fill ``pipe_us_per_packet`` of every run with pipe packets, against the 1-worker run
    (same process model without pipes)."""
    base = next((r for r in results if r.workers == 1), None)
    if base is None or base.us_per_packet <= 0:
        return
    for r in results:
        if r.pipe_packets > 0:
            extra = r.server_cpu_s - base.us_per_packet * 1e-6 * r.delivered
            r.pipe_us_per_packet = round(extra / r.pipe_packets * 1e6, 1)


def table(results: list[WorkersResult]) -> str:
    """The results as a text table."""
    head = (
        f"{'workers':>7} {'N':>4} {'us/pkt':>7} {'shares':>13} {'pipe pkts':>9} "
        f"{'pipe us/pkt':>11} {'deliv min':>9} {'median':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'listeners/core':>14}"
    )
    rows = [head]
    for r in results:
        shares = "/".join(f"{s:.2f}" for s in r.worker_share) or "-"
        pipe = "-" if r.pipe_us_per_packet is None else f"{r.pipe_us_per_packet:.1f}"
        p50 = "n/a" if r.latency_p50_ms is None else f"{r.latency_p50_ms:.2f}"
        p99 = "n/a" if r.latency_p99_ms is None else f"{r.latency_p99_ms:.2f}"
        rows.append(
            f"{r.workers:>7} {r.joined:>4} {r.us_per_packet:>7.1f} {shares:>13} "
            f"{r.pipe_packets:>9} {pipe:>11} {r.delivery_min:>9.4f} {r.delivery_median:>7.4f} "
            f"{p50:>7} {p99:>7} {r.listeners_per_core:>14.0f}"
        )
    for r in results:
        rows.append(f"workers={r.workers}: speaker sent {r.sent} packets in {r.window_s} s")
        rows.extend(f"note (workers={r.workers}): {note}" for note in r.notes)
    return "\n".join(rows)
