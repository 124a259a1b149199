"""Soak benchmark: join/leave churn around a steady room; nothing may grow without bound.

Usage: ``python -m bench.soak [--duration 600] [--listeners 50] [--churn 5] [--sample-every 30]``

A ``sfu serve`` subprocess on 127.0.0.1 hosts one room: two speakers publish real Opus (raw
RTP, 50 packets/s each) and ``--listeners`` count-only listeners (aiortc, no decoding) stay for
the whole run. Then, for ``--duration`` seconds, ``--churn`` extra listeners join every second,
each stays ``--stay`` seconds (subscribed: ICE, DTLS-SRTP and the speakers' audio, RFC 8445 /
RFC 5764) and leaves. Afterwards every churner is gone and the room is back to its steady
members.

The server is read from ``GET /metrics`` (Bearer ``SFU_METRICS_TOKEN`` when that variable is
set) every ``--sample-every`` seconds: ``sfu_participants``, ``process_open_fds``,
``sfu_asyncio_tasks`` and ``process_resident_memory_bytes``. Printed: a table of samples and a
verdict comparing the end (all churners gone, up to :data:`SETTLE_S` to clean up) with the
baseline taken before the churn: open fds and asyncio tasks must be back within
:func:`margin` of the baseline (a leaked socket, ICE port, DTLS transport or task per join
would grow by thousands), and RSS growth is given per 1000 joins (whole run, and over the
second half of the churn, where a leak keeps growing and an allocator's warm-up does not).
With the server's pid (the command line has it), fds are also broken down by kind from
``/proc``: growth of unix-domain sockets is the store client's connection pool (bounded by
pymongo's ``maxPoolSize``) and is reported apart. Steady members the server lost during the
run are reported too (``steady_left``).

:func:`run_soak` is also what ``tests/integration/test_soak_short.py`` runs for ~20 s. Loops
are bounded in count and time; every address is 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench.peers import RawOpusPublisher, encode_opus_frames
from bench.stage import _gather_limited, _until
from sfu import _aiortc_adapter as adapter
from signaling.auth.tokens import VideoGrant, create_access_token
from signaling.client import RoomClient
from signaling.serverproc import start_server, stop_server, wait_healthy

ROOM = "soak"
JOIN_CONCURRENCY = 16
SETTLE_S = 30.0  # the longest wait for the server to clean up after the last churner left
MAX_IN_FLIGHT_FACTOR = 4  # churners in flight beyond churn * stay * this are skipped (overload)
GAUGES = {
    "participants": "sfu_participants",
    "fds": "process_open_fds",
    "tasks": "sfu_asyncio_tasks",
    "rss": "process_resident_memory_bytes",
}


@dataclass
class Sample:
    """One scrape of the server: seconds since the baseline, and the gauges."""

    t: float
    participants: int
    fds: int
    tasks: int
    rss_bytes: int
    joins: int  # churner joins completed so far
    phase: str  # "start", "churn" or "end"

    @property
    def rss_mib(self) -> float:
        return self.rss_bytes / (1 << 20)


@dataclass
class SoakResult:
    """What one run measured (see the module docstring)."""

    listeners: int
    churn: float
    duration_s: float
    samples: list[Sample] = field(default_factory=list)
    joins: int = 0  # churners that joined
    join_failures: int = 0
    churners_with_media: int = 0  # churners that received RTP before leaving
    skipped: int = 0  # churners not started because too many were still in flight
    settle_s: float = 0.0  # how long the end took to come back within the margin
    fd_kinds: dict[str, dict[str, int]] = field(default_factory=dict)  # phase -> kind -> n
    steady_left: int = 0  # steady members the server no longer counts at the end
    notes: list[str] = field(default_factory=list)

    @property
    def start(self) -> Sample:
        return self.samples[0]

    @property
    def end(self) -> Sample:
        return self.samples[-1]

    def store_fds_growth(self) -> int:
        """Growth of the server's unix-domain sockets (needs ``pid``; else 0): those are the
        store client's connection pool to the embedded store, which pymongo widens under
        concurrent writes (every join and leave is logged) up to ``maxPoolSize`` (100) and
        keeps: bounded, so reported apart from the fds a per-join leak would hold."""
        start, end = self.fd_kinds.get("start", {}), self.fd_kinds.get("end", {})
        return max(0, end.get("unix", 0) - start.get("unix", 0))

    def fds_ok(self) -> bool:
        """Open fds at the end, less the store pool's growth, within :func:`margin` of the
        baseline."""
        growth = self.end.fds - self.start.fds - self.store_fds_growth()
        return growth <= margin(self.start.fds)

    def tasks_ok(self) -> bool:
        """asyncio tasks at the end within :func:`margin` of the baseline."""
        return self.end.tasks - self.start.tasks <= margin(self.start.tasks)

    def rss_mib_per_1000_joins(self, second_half: bool = False) -> float | None:
        """RSS growth (MiB) per 1000 churner joins: start to end, or over the second half of
        the churn samples only (None when there are too few joins to tell)."""
        if second_half:
            churn = [s for s in self.samples if s.phase != "end"]
            mid = next((s for s in churn if s.joins >= churn[-1].joins / 2), None)
            first, last = mid, churn[-1]
        else:
            first, last = self.start, self.end
        if first is None or last.joins - first.joins < 10:
            return None
        return (last.rss_mib - first.rss_mib) * 1000 / (last.joins - first.joins)


def margin(baseline: int) -> int:
    """The allowed end-minus-start growth of a count (fds, tasks): 5% of the baseline, at
    least 8 (a few sockets and timers come and go with the room's ordinary life)."""
    return max(8, baseline // 20)


def _token(secret: str, identity: str, *, publish: bool, kind: str) -> str:
    grant = VideoGrant(
        room=ROOM,
        roomJoin=True,
        canPublish=publish,
        canSubscribe=True,
        canPublishData=True,
        roomKind=kind,  # type: ignore[arg-type]
        role="speaker" if publish else "listener",
    )
    return create_access_token(secret, identity=identity, ttl_s=7200, video=grant)[0]


async def scrape(http: aiohttp.ClientSession, url: str, token: str | None) -> dict[str, float]:
    """The unlabelled samples of ``GET {url}/metrics`` by name (Bearer ``token`` if given).

    Raises:
        aiohttp.ClientResponseError: the server answered an error (e.g. 401 without the token).
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.get(f"{url}/metrics", headers=headers, raise_for_status=True) as resp:
        text = await resp.text()
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.labels
    }


async def run_soak(
    url: str,
    secret: str,
    *,
    duration: float,
    listeners: int = 50,
    churn: float = 5.0,
    stay: float = 2.0,
    sample_every: float = 30.0,
    kind: str = "conference",
    metrics_token: str | None = None,
    progress: Callable[[Sample], None] | None = None,
    pid: int | None = None,
) -> SoakResult:
    """Run the soak against a running server; see the module docstring.

    Args:
        url: the server's base URL; secret: its JWT secret (tokens are minted here).
        duration: churn window (s); listeners: steady listeners; churn: joins per second;
        stay: how long each churner stays (s); sample_every: scrape period (s).
        kind: ``conference`` (every join announced to all) or ``podcast`` (hidden listeners).
        metrics_token: ``SFU_METRICS_TOKEN`` of the server, if it has one.
        progress: called with every sample as it is taken.
        pid: the server's process id, to break its fds down by kind at start and end
            (:func:`fd_kinds`, Linux; None: not done).
    """
    adapter.set_ice_host_addresses(["127.0.0.1"])  # process-wide; aioice skips loopback
    result = SoakResult(listeners=listeners, churn=churn, duration_s=duration)
    payloads = await asyncio.to_thread(encode_opus_frames, 50)
    speakers = [
        RoomClient(
            url,
            ROOM,
            identity=f"speaker{i}",
            token=_token(secret, f"speaker{i}", publish=True, kind=kind),
            subscribe=False,
        )
        for i in range(2)
    ]
    audience = [
        RoomClient(
            url,
            ROOM,
            identity=f"l{i}",
            token=_token(secret, f"l{i}", publish=False, kind=kind),
            count_only=True,
        )
        for i in range(listeners)
    ]
    publishers: list[RawOpusPublisher] = []
    in_flight: set[asyncio.Task[None]] = set()
    http = aiohttp.ClientSession()
    origin = time.monotonic()

    async def sample(phase: str) -> Sample:
        values = await scrape(http, url, metrics_token)
        s = Sample(
            t=round(time.monotonic() - origin, 1),
            participants=int(values.get(GAUGES["participants"], 0)),
            fds=int(values.get(GAUGES["fds"], 0)),
            tasks=int(values.get(GAUGES["tasks"], 0)),
            rss_bytes=int(values.get(GAUGES["rss"], 0)),
            joins=result.joins,
            phase=phase,
        )
        result.samples.append(s)
        if pid is not None and phase in ("start", "end"):
            result.fd_kinds[phase] = fd_kinds(pid)
        if progress is not None:
            progress(s)
        return s

    async def churner(identity: str) -> None:
        token = _token(secret, identity, publish=False, kind=kind)
        client = RoomClient(url, ROOM, identity=identity, token=token, count_only=True)
        try:
            await client.connect()
            result.joins += 1
            await asyncio.sleep(stay)
            if sum(client.counter.packets.values()) > 0:
                result.churners_with_media += 1
        except Exception:
            result.join_failures += 1
        finally:
            await client.close()

    try:
        for speaker in speakers:
            await speaker.connect()
            publisher = RawOpusPublisher(payloads)
            publishers.append(publisher)
            reply = await speaker.publish_sdp(
                await publisher.offer(), publisher.track_descriptions()
            )
            await publisher.answer(reply["sdp"])
            publisher.start()
        outcomes = await _gather_limited([c.connect() for c in audience], JOIN_CONCURRENCY)
        joined = [
            c for c, r in zip(audience, outcomes, strict=True) if not isinstance(r, BaseException)
        ]
        if len(joined) < listeners:
            result.notes.append(f"{listeners - len(joined)} steady listeners failed to join")
        await _until(lambda: all(len(c.counter.packets) >= 2 for c in joined), 60)
        await asyncio.sleep(2.0)  # the joins' own tasks (ICE checks, DTLS) finish
        origin = time.monotonic()
        await sample("start")

        # --- churn --------------------------------------------------------------------------
        period = 1.0 / churn
        cap = max(4, int(churn * stay * MAX_IN_FLIGHT_FACTOR))
        next_join = next_sample = time.monotonic()
        next_sample += sample_every
        end = time.monotonic() + duration
        n = 0
        while (now := time.monotonic()) < end:
            if now >= next_sample:
                await sample("churn")
                next_sample += sample_every
            if now >= next_join:
                if len(in_flight) >= cap:
                    result.skipped += 1
                else:
                    task = asyncio.ensure_future(churner(f"churn{n}"))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                n += 1
                next_join += period
            await asyncio.sleep(max(0.0, min(next_join, next_sample, end) - time.monotonic()))
        await asyncio.wait_for(asyncio.gather(*in_flight, return_exceptions=True), stay + 60)

        # --- end: the churners are gone; wait (bounded) for the server to clean up ----------
        steady = len(joined) + len(speakers)
        left_at = time.monotonic()
        deadline = left_at + SETTLE_S
        start = result.samples[0]
        while True:
            values = await scrape(http, url, metrics_token)
            pool = 0  # the store pool's growth (see SoakResult.store_fds_growth)
            if pid is not None:
                unix_start = result.fd_kinds.get("start", {}).get("unix", 0)
                pool = max(0, fd_kinds(pid).get("unix", 0) - unix_start)
            back = (
                int(values.get(GAUGES["participants"], 0)) <= steady
                and values.get(GAUGES["fds"], 0) - pool - start.fds <= margin(start.fds)
                and values.get(GAUGES["tasks"], 0) - start.tasks <= margin(start.tasks)
            )
            if back or time.monotonic() >= deadline:
                break
            await asyncio.sleep(1.0)
        result.settle_s = round(time.monotonic() - left_at, 1)
        end_sample = await sample("end")
        result.steady_left = max(0, steady - end_sample.participants)
        if result.steady_left:
            gone = [c.identity for c in [*joined, *speakers] if c.ws is None or c.ws.closed]
            result.notes.append(
                f"{result.steady_left} steady members gone by the end; closed WebSockets: {gone}"
            )
        if result.fd_kinds:
            result.notes.append(f"server fds by kind: {result.fd_kinds}")
        return result
    finally:
        for task in list(in_flight):
            task.cancel()
        for publisher in publishers:
            await publisher.stop()
        await _gather_limited([c.close() for c in [*audience, *speakers]], 32)
        await http.close()


def print_report(result: SoakResult) -> None:
    """The table of samples and the verdict line."""
    head = ("t s", "phase", "joins", "partic.", "fds", "tasks", "RSS MiB")
    print("{:>7} {:<6} {:>6} {:>7} {:>5} {:>6} {:>8}".format(*head))
    for s in result.samples:
        print(
            f"{s.t:>7.1f} {s.phase:<6} {s.joins:>6} {s.participants:>7} {s.fds:>5} "
            f"{s.tasks:>6} {s.rss_mib:>8.1f}"
        )
    print(verdict(result))
    for note in result.notes:
        print(f"note: {note}")


def verdict(result: SoakResult) -> str:
    """One line: OK/LEAK, fds and tasks start -> end against the margin, RSS per 1000 joins."""
    start, end = result.start, result.end
    whole = result.rss_mib_per_1000_joins()
    late = result.rss_mib_per_1000_joins(second_half=True)
    rss = f"RSS {start.rss_mib:.1f} -> {end.rss_mib:.1f} MiB"
    if whole is not None:
        rss += f" ({whole:+.2f} MiB per 1000 joins"
        rss += f"; second half {late:+.2f})" if late is not None else ")"
    ok = result.fds_ok() and result.tasks_ok()
    store = result.store_fds_growth()
    pool = f" of which {store} store connections" if store else ""
    return (
        f"verdict: {'OK' if ok else 'LEAK'}: {result.joins} joins/leaves "
        f"({result.join_failures} failed, {result.churners_with_media} received media, "
        f"{result.skipped} skipped) in {result.duration_s:.0f} s; "
        f"fds {start.fds} -> {end.fds} ({end.fds - start.fds:+d}{pool}, margin "
        f"{margin(start.fds)}), "
        f"tasks {start.tasks} -> {end.tasks} ({end.tasks - start.tasks:+d}, margin "
        f"{margin(start.tasks)}), back after {result.settle_s:.0f} s; {rss}"
    )


def fd_kinds(pid: int) -> dict[str, int]:
    """Open fds of process ``pid`` by kind (``udp``, ``tcp``, ``unix``, other sockets,
    ``anon_inode:[eventpoll]``, files ...), from ``/proc`` (Linux; empty elsewhere)."""
    protocols: dict[str, str] = {}
    for proto in ("udp", "udp6", "tcp", "tcp6", "unix"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/net/{proto}") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                inode = fields[6] if proto == "unix" else fields[9]
                protocols[inode] = proto.rstrip("6")
    kinds: Counter[str] = Counter()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    kinds[protocols.get(target[8:-1], "socket")] += 1
                elif target.startswith("/"):
                    kinds["file"] += 1
                else:
                    kinds[target.split("[")[0]] += 1
    return dict(kinds.most_common())


async def main_async(args: argparse.Namespace) -> SoakResult:
    """Start the server, run the soak, stop the server."""
    secret = secrets.token_urlsafe(48)
    data_dir = tempfile.mkdtemp(prefix="sfu-soak-")
    log = await asyncio.to_thread(open, args.server_log or os.devnull, "wb")
    proc, url = start_server(
        data_dir, env={"SFU_JWT_SECRET": secret}, output=log, log_level=args.log_level
    )
    log.close()

    def show(s: Sample) -> None:
        print(
            f"  t={s.t:.0f} s {s.phase}: {s.joins} joins, {s.participants} participants, "
            f"{s.fds} fds, {s.tasks} tasks, {s.rss_mib:.1f} MiB",
            file=sys.stderr,
            flush=True,
        )

    try:
        await asyncio.to_thread(wait_healthy, url, proc)
        result = await run_soak(
            url,
            secret,
            duration=args.duration,
            listeners=args.listeners,
            churn=args.churn,
            stay=args.stay,
            sample_every=args.sample_every,
            kind=args.kind,
            metrics_token=os.environ.get("SFU_METRICS_TOKEN") or None,
            progress=show,
            pid=proc.pid,
        )
        return result
    finally:
        stop_server(proc)


def main() -> int:
    """Parse arguments, run, print; exit status 1 when fds or tasks did not come back."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="churn window (s)")
    parser.add_argument("--listeners", type=int, default=50, help="steady listeners")
    parser.add_argument("--churn", type=float, default=5.0, help="joins (and leaves) per second")
    parser.add_argument("--stay", type=float, default=2.0, help="how long a churner stays (s)")
    parser.add_argument("--sample-every", type=float, default=30.0, help="scrape period (s)")
    parser.add_argument("--kind", choices=["conference", "podcast"], default="conference")
    parser.add_argument("--json", default=None, help="also write the samples as JSON here")
    parser.add_argument("--server-log", default=None, help="write the server's output here")
    parser.add_argument("--log-level", default="warning", help="the server's log level")
    args = parser.parse_args()
    if not 1 <= args.duration <= 24 * 3600 or not 0 <= args.listeners <= 2000:
        parser.error("--duration must be 1..86400 s and --listeners 0..2000")
    if not 0 < args.churn <= 100 or not 0 < args.sample_every or not 0 <= args.stay <= 600:
        parser.error("--churn must be in (0, 100], --sample-every > 0, --stay 0..600")
    result = asyncio.run(main_async(args))
    print_report(result)
    if args.json:
        import json

        with open(args.json, "w") as f:
            json.dump(asdict(result), f, indent=2)
    return 0 if result.fds_ok() and result.tasks_ok() else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
