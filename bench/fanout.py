"""Fan-out benchmark: one speaker to N listeners; our SFU on its compiled forwarding path, on
its pure-Python path (``SFU_FAST_PATH=0``) and aiortc's MediaRelay, in one run.

Usage: ``python -m bench.fanout --listeners 200 [--duration 10] [--baseline-listeners 20]
[--media opus,av] [--microbench 1000]``

Every server runs in its own process on 127.0.0.1. The speaker sends real Opus at 50
packets/s (``opus``), or Opus plus VP8 at about 500 kbit/s, 15 fps (``av``); listeners count
packets without decoding (a few probes also match payloads to measure latency) and, as real
browsers do, send RTCP receiver reports (every 2.5-7.5 s for audio only, 0.5-1.5 s with video:
libWebRTC's audio and video report intervals; ``--audio-report-interval 1`` for one a second)
and answer ICE consent checks (``--receiver-reports off``: silent listeners). Our SFU gets all
media on one UDP port (``SFU_RTC_PORT``; ``--rtc-port per-transport``: a port per
transport). ``--profile DIR`` records py-spy on our SFU over each window
(``python -m bench.profile_summary`` sums it up) and, when ``perf`` is installed,
``perf record`` into ``<name>.perf.data`` beside it.
Printed per server and media, measured in this one run:

* server CPU (us) per forwarded packet, from /proc/<pid>/stat over the measurement window,
  the server's share of one core, and the kernel's share of the server's CPU;
* delivery ratio per listener (min / median), the packets each listener got over the packets
  the speaker sent in the window;
* added latency p50/p99 (ms), publisher send to probe arrival (our SFU only: MediaRelay
  re-encodes, so payloads cannot be matched);
* the ratios of CPU per forwarded packet, Python path / compiled path and MediaRelay /
  compiled path;
* a microbenchmark in this process: the event-loop time of one Opus packet fanned out to
  ``--microbench`` consumers by ``Producer.receive_rtp`` (header rewrite, SRTP protection and
  one UDP socket per consumer, as per-transport ports give today), on both paths.

Loops are bounded in count and time; every address is 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import aiohttp
from aiortc import RTCRtpTransceiver, RTCSessionDescription

from bench.peers import RawPublisher, encode_opus_frames
from sfu import _aiortc_adapter as adapter
from signaling import client as client_module
from signaling.auth.tokens import VideoGrant, create_access_token
from signaling.client import PacketCounter, RoomClient, _CountingSink
from signaling.loadtest.media import encode_vp8_frames
from signaling.serverproc import free_port, start_server, stop_server, wait_healthy

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (s), from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def sys_cpu_seconds(pid: int) -> float:
    """stime (kernel CPU time) of process ``pid`` (s), from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[12]) / CLK_TCK


def own_cpu_seconds() -> float:
    """CPU time of this (the tester's) process (s)."""
    t = os.times()
    return t.user + t.system


@dataclass
class Result:
    """One server's measurements."""

    server: str
    media: str
    listeners: int
    joined: int
    window_s: float
    sent: int
    delivered: int
    server_cpu_s: float
    us_per_packet: float
    core_share: float
    kernel_share: float
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


def _start_profiler(pid: int, duration: float, path: str) -> subprocess.Popen[bytes]:
    """py-spy (``py-spy record``, collapsed stacks incl. native frames of C extensions and
    idle) on process ``pid`` for ``duration`` s, written to ``path``; sampling does not stop
    the process (``--nonblocking``)."""
    py_spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    cmd = [py_spy, "record", "--pid", str(pid), "--duration", str(max(1, int(duration)))]
    cmd += ["--rate", "250", "--format", "raw", "--idle", "--nonblocking", "-o", path]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _start_perf(pid: int, duration: float, path: str) -> subprocess.Popen[bytes] | None:
    """``perf record`` (1999 Hz, call graphs) of process ``pid`` for ``duration`` s into
    ``path``, or None when ``perf`` is not installed (``perf report -i path`` reads it: the
    kernel's, libsrtp's and the interpreter's share of the server's CPU)."""
    perf = shutil.which("perf")
    if perf is None:
        return None
    cmd = [perf, "record", "-F", "1999", "-g", "-p", str(pid), "-o", path, "--"]
    cmd += ["sleep", str(duration)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _measure(
    name: str,
    media: str,
    pid: int,
    publisher: RawPublisher,
    counters: list[PacketCounter],
    duration: float,
    join_s: float,
    listeners: int,
    profile: str | None = None,
) -> Result:
    await asyncio.sleep(1.0)  # settle
    # Until the tester's own event loop keeps up again (DTLS handshakes and the first packets
    # of hundreds of new peers back it up for seconds on a loaded machine): its lag would be
    # measured as the server's latency and loss. At most 20 s.
    calm = 0
    for _ in range(200):
        t = time.monotonic()
        await asyncio.sleep(0.1)
        calm = calm + 1 if time.monotonic() - t < 0.115 else 0
        if calm >= 10:
            break
    # The tester's own gen-2 collections (80-100 ms with hundreds of peers in one process)
    # would be measured as server latency: collect and freeze now, no GC in the window.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        start_counts = [sum(c.packets.values()) for c in counters]
        sent0, cpu0, own0 = publisher.sent, cpu_seconds(pid), own_cpu_seconds()
        sys0 = sys_cpu_seconds(pid)
        t0 = time.monotonic()
        profiler = _start_profiler(pid, duration, profile) if profile else None
        perf = _start_perf(pid, duration, profile + ".perf.data") if profile else None
        await asyncio.sleep(duration)
        sent1, cpu1, own1 = publisher.sent, cpu_seconds(pid), own_cpu_seconds()
        sys1 = sys_cpu_seconds(pid)
        end_counts = [sum(c.packets.values()) for c in counters]
        t1 = time.monotonic()
        if profiler is not None:
            await asyncio.to_thread(profiler.wait, 30)
        if perf is not None:
            await asyncio.to_thread(perf.wait, 30)
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
            media=media,
            listeners=listeners,
            joined=len(counters),
            window_s=round(window, 2),
            sent=sent,
            delivered=delivered,
            server_cpu_s=round(cpu, 3),
            us_per_packet=round(cpu / delivered * 1e6, 2) if delivered else float("inf"),
            core_share=round(cpu / window, 3),
            kernel_share=round((sys1 - sys0) / cpu, 3) if cpu else 0.0,
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


async def run_sfu(
    listeners: int,
    duration: float,
    probes: int,
    payloads: list[bytes],
    *,
    fast: bool,
    video: list[list[bytes]] | None = None,
    one_port: bool = True,
    profile: str | None = None,
    receiver_reports: bool = True,
    audio_report_interval_s: float = client_module.AUDIO_RECEIVER_REPORT_INTERVAL_S,
) -> Result:
    """Our SFU in its own process (``SFU_FAST_PATH`` = ``fast``): one raw speaker (Opus, plus
    VP8 when ``video``), ``listeners`` count-only listeners. ``one_port``: all media on one
    UDP port (``SFU_RTC_PORT``), else ephemeral ports per transport. ``profile``: a py-spy
    profile of the server over the measurement window is written to this file.
    ``receiver_reports``: listeners send RTCP receiver reports as browsers do (every ~5 s for
    audio only (``audio_report_interval_s``), ~1 s with video; False: none, the listeners of
    earlier runs)."""
    secret = secrets.token_urlsafe(48)
    env = {"SFU_JWT_SECRET": secret, "SFU_FAST_PATH": "1" if fast else "0"}
    if one_port:
        env["SFU_RTC_PORT"] = str(free_port())
    proc, url = start_server(tempfile.mkdtemp(prefix="sfu-bench-"), env=env)

    def token(identity: str) -> str:
        grant = VideoGrant(room="bench", roomJoin=True, canPublish=True, canSubscribe=True)
        return create_access_token(secret, identity=identity, ttl_s=3600, video=grant)[0]

    clients: list[RoomClient] = []
    publisher = RawPublisher(audio=payloads, video=video)
    speaker = RoomClient(url, "bench", "speaker", token=token("speaker"), subscribe=False)
    try:
        await asyncio.to_thread(wait_healthy, url, proc)
        await speaker.connect()
        reply = await speaker.publish_sdp(await publisher.offer(), publisher.track_descriptions())
        await publisher.answer(reply["sdp"])
        publisher.start()
        started = time.monotonic()
        for i in range(listeners):
            client = RoomClient(
                url,
                "bench",
                f"l{i}",
                token=token(f"l{i}"),
                count_only=True,
                receiver_reports=receiver_reports,
                audio_report_interval_s=audio_report_interval_s,
            )
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
            "sfu-fast" if fast else "sfu-python",
            "av" if video else "opus",
            proc.pid,
            publisher,
            [c.counter for c in joined],
            duration,
            join_s,
            listeners,
            profile,
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
    """A count-only listener of the MediaRelay baseline (offers recvonly audio, and video
    when ``video``)."""

    def __init__(self, video: bool = False) -> None:
        self.kinds = ["audio", "video"] if video else ["audio"]
        self.counter = PacketCounter()
        sink = _CountingSink(self.counter, None)
        self.pc = adapter.ForwardingPeerConnection(
            sink, adapter.make_configuration([]), srtp_counter=sink.on_rtp_encrypted
        )

    async def connect(self, http: aiohttp.ClientSession, url: str) -> None:
        for kind in self.kinds:
            transceiver: RTCRtpTransceiver = self.pc.addTransceiver(kind, direction="recvonly")
            assert transceiver is not None
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with http.post(url + "/subscribe", data=self.pc.localDescription.sdp) as resp:
            answer = await resp.text()
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))


async def run_baseline(
    listeners: int,
    duration: float,
    payloads: list[bytes],
    video: list[list[bytes]] | None = None,
) -> Result:
    """aiortc MediaRelay in its own process, same speaker and listeners."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start([sys.executable, "-m", "bench.relay_baseline", "--port", str(port)], {})
    publisher = RawPublisher(audio=payloads, video=video)
    peers = [_RelayListener(video is not None) for _ in range(listeners)]
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
            "av" if video else "opus",
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
        f"{'server':<18} {'media':<5} {'N':>4} {'us/pkt':>8} {'core':>6} {'deliv min':>9} "
        f"{'median':>7} {'full':>5} {'p50 ms':>7} {'p99 ms':>7} {'tester':>6} {'kernel':>6}"
    )
    rows = [head]
    for r in results:
        p50 = "n/a" if r.latency_p50_ms is None else f"{r.latency_p50_ms:.2f}"
        p99 = "n/a" if r.latency_p99_ms is None else f"{r.latency_p99_ms:.2f}"
        rows.append(
            f"{r.server:<18} {r.media:<5} {r.joined:>4} {r.us_per_packet:>8.1f} "
            f"{r.core_share:>6.2f} {r.delivery_min:>9.4f} {r.delivery_median:>7.4f} "
            f"{r.listeners_complete:>5} {p50:>7} {p99:>7} {r.tester_core_share:>6.2f} "
            f"{r.kernel_share:>6.2f}"
        )
    return "\n".join(rows)


def microbench(consumers: int, packets: int, fast: bool) -> dict[str, float]:
    """Event-loop time (ms) of ``Producer.receive_rtp`` for one Opus packet fanned out to
    ``consumers`` consumers, each on its own UDP socket with its own SRTP context (AES-CM,
    SHA1-80), over ``packets`` packets: median, p99 and max, and the µs per consumer."""
    import socket
    from types import SimpleNamespace

    from pylibsrtp import Policy, Session

    from sfu import fastpath
    from sfu.consumer import Consumer
    from sfu.producer import Producer

    fastpath.configure(fast)
    sockets: list[socket.socket] = []
    receivers = []
    for _ in range(8):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        receivers.append(rx)

    class Raw:
        """What RawRtpTransport.send_rtp does: pylibsrtp protect, then the socket's sendto."""

        def __init__(self, i: int) -> None:
            key = secrets.token_bytes(30)
            policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND)
            policy.allow_repeat_tx = True
            policy.window_size = 1024
            self.session = Session(policy)
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.setblocking(False)
            sockets.append(self.sock)
            self.dest = receivers[i % len(receivers)].getsockname()
            self.sendto = self.sock.sendto
            self.key = key

        def send_rtp(self, data: bytes) -> None:
            self.sendto(self.session.protect(data), self.dest)

        def native_sender(self) -> Any:
            assert fastpath.native is not None
            sender = fastpath.native.SrtpSender(fastpath.native.PROFILE_AES128_CM_SHA1_80, self.key)
            sender.set_route(self.sock.fileno(), self.dest)
            return sender

    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    opus = RTCRtpCodecParameters(
        mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111
    )
    producer = Producer(
        transport=cast(Any, None), participant_sid="PA_bench", mid="0", kind="audio"
    )
    producer.on_negotiated(
        adapter.NegotiatedRtp(
            mid="0",
            kind="audio",
            codecs=[opus],
            header_extensions={adapter.URI_MID: 4, adapter.URI_AUDIO_LEVEL: 1},
            ssrc=1111,
            rtx_ssrc=None,
            rtcp_ssrc=9,
        )
    )
    for i in range(consumers):
        transceiver = SimpleNamespace(sender=SimpleNamespace(_ssrc=0x1000 + i, _rtx_ssrc=0))
        consumer = Consumer(producer, cast(Any, None), cast(Any, transceiver))
        producer.consumers.append(consumer)
        consumer.on_negotiated(
            adapter.NegotiatedRtp(
                mid=str(i),
                kind="audio",
                codecs=[opus],
                header_extensions={adapter.URI_MID: 1, adapter.URI_AUDIO_LEVEL: 2},
                ssrc=consumer.ssrc,
                rtx_ssrc=None,
                rtcp_ssrc=consumer.ssrc,
            ),
            cast(Any, Raw(i)),
        )
        assert consumer.native == (fast and fastpath.available())
    payload = bytes(range(100))
    times: list[float] = []
    gc.collect()
    gc.disable()
    try:
        for n in range(packets):
            seq = n & 0xFFFF
            data = (
                bytes([0x90, 111])
                + seq.to_bytes(2, "big")
                + (n * 960).to_bytes(4, "big")
                + (1111).to_bytes(4, "big")
                + bytes([0xBE, 0xDE, 0, 1, 0x10, 40, 0, 0])
                + payload
            )
            t0 = time.perf_counter()
            producer.receive_rtp(data, 1111, n * 20)
            times.append((time.perf_counter() - t0) * 1000)
            for rx in receivers:  # drain outside the timed section
                for _ in range(consumers + 1):
                    try:
                        rx.recv(2048)
                    except BlockingIOError:
                        break
    finally:
        gc.enable()
        producer.close()
        for sock in sockets + receivers:
            sock.close()
        fastpath.configure(True)
    times.sort()
    median = statistics.median(times)
    return {
        "consumers": consumers,
        "median_ms": round(median, 3),
        "p99_ms": round(times[min(len(times) - 1, int(0.99 * len(times)))], 3),
        "max_ms": round(times[-1], 3),
        "us_per_consumer": round(median * 1000 / consumers, 3),
    }


async def main_async(args: argparse.Namespace) -> tuple[list[Result], dict[str, Any]]:
    payloads = encode_opus_frames(500)
    if args.workers:  # issue 12: one run per worker count (bench/procs.py)
        from bench.procs import derive_pipe_cost, run_workers, table

        runs = [
            await run_workers(
                int(n), args.listeners, args.duration, args.probes, payloads, args.profile
            )
            for n in args.workers.split(",")
        ]
        derive_pipe_cost(runs)
        print(table(runs))
        return [], {}
    results: list[Result] = []
    for media in args.media.split(","):
        video = encode_vp8_frames(2.0) if media == "av" else None
        for fast in (path == "fast" for path in args.paths.split(",")):
            profile = None
            if args.profile:
                os.makedirs(args.profile, exist_ok=True)
                name = f"sfu-{'fast' if fast else 'python'}-{media}.txt"
                profile = os.path.join(args.profile, name)
            results.append(
                await run_sfu(
                    args.listeners,
                    args.duration,
                    args.probes,
                    payloads,
                    fast=fast,
                    video=video,
                    one_port=args.rtc_port == "one",
                    profile=profile,
                    receiver_reports=args.receiver_reports == "on",
                    audio_report_interval_s=args.audio_report_interval,
                )
            )
        if args.baseline_listeners > 0:
            results.append(
                await run_baseline(args.baseline_listeners, args.duration, payloads, video)
            )
    print(_table(results))
    for r in results:
        for note in r.notes:
            print(f"note ({r.server} {r.media}): {note}")
    for media in args.media.split(","):
        by = {r.server: r for r in results if r.media == media}
        fast_r = by.get("sfu-fast")
        if fast_r is None or not fast_r.us_per_packet:
            continue
        for other in ("sfu-python", "aiortc-mediarelay"):
            if other in by:
                ratio = by[other].us_per_packet / fast_r.us_per_packet
                print(f"{media}: {other} / sfu-fast CPU per forwarded packet: {ratio:.1f}x")
    micro: dict[str, Any] = {}
    if args.microbench > 0:
        for fast in (True, False):
            name = "fast" if fast else "python"
            micro[name] = microbench(args.microbench, 60, fast)
            print(
                f"microbench {name}: one Opus packet to {args.microbench} consumers:", micro[name]
            )
    return results, micro


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
        "--media", default="opus,av", help="comma-separated: opus (Opus only), av (Opus + VP8)"
    )
    parser.add_argument(
        "--paths",
        default="python,fast",
        help="SFU forwarding paths to run, in this order (the first run of a process pays the "
        "tester's warm-up: its p99 latency is higher whichever path it is)",
    )
    parser.add_argument(
        "--microbench", type=int, default=1000, help="consumers in the microbenchmark (0: skip)"
    )
    parser.add_argument(
        "--workers", help="comma-separated SFU_WORKERS values to compare, e.g. 0,1,2"
    )
    parser.add_argument(
        "--rtc-port",
        choices=("one", "per-transport"),
        default="one",
        help="our SFU's media sockets: one UDP port for the process (SFU_RTC_PORT, the "
        "default) or ephemeral ports per transport",
    )
    parser.add_argument(
        "--receiver-reports",
        choices=("on", "off"),
        default="on",
        help="listeners send RTCP receiver reports as browsers do (on, the default) or none (off)",
    )
    parser.add_argument(
        "--audio-report-interval",
        type=float,
        default=client_module.AUDIO_RECEIVER_REPORT_INTERVAL_S,
        metavar="S",
        help="mean interval (s, ±50%%) of an audio-only listener's receiver reports (default: "
        "libWebRTC's 5 s)",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="record py-spy (collapsed stacks, idle included) of our SFU over each "
        "measurement window into DIR (summarise with python -m bench.profile_summary)",
    )
    parser.add_argument("--json", help="write the results as JSON to this file")
    args = parser.parse_args()
    adapter.set_ice_host_addresses(["127.0.0.1"])
    results, micro = asyncio.run(main_async(args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"servers": [asdict(r) for r in results], "microbench": micro}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
