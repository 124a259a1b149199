"""Podcast-room benchmark: signaling cost per listener, and the stage flows at scale.

Usage: ``python -m bench.stage --listeners 200 [--duration 60] [--churn 1]``

A ``sfu serve`` subprocess on 127.0.0.1 hosts one podcast room: a host and two speakers
publish real Opus (raw RTP, 50 packets/s, RFC 6464 level -30 dBov), and N count-only
listeners (aiortc, no decoding) join through the stage (hidden, audio only, no publish
transport). Then, in one measured window of ``--duration`` seconds:

* ``--churn`` extra listeners join and leave every second (an audience that comes and goes);
* one listener raises a hand, the host promotes it, it publishes Opus, the host mutes it, it
  unmutes itself, the host demotes it;
* the host sends a chat message every 10 s; a listener sends a crafted ``set_role``.

The same scenario then runs as a *conference* room (every listener visible, as in a room with
no stage) on a fresh server, and the ratio of what a listener receives is printed.

Printed (and returned by :func:`run_stage`, which the integration test also runs): signaling
messages and bytes per listener per minute (median and max, by message type), what the
stage members received, delivery of the speakers' audio to every listener, whether every
listener heard the promoted speaker, whether forwarding stopped while muted, and the server's
CPU and RSS per listener (from /proc). Loops are bounded in count and time; every address is
127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.fanout import cpu_seconds
from bench.peers import RawOpusPublisher, encode_opus_frames
from sfu import _aiortc_adapter as adapter
from signaling.auth.tokens import VideoGrant, create_access_token
from signaling.client import RoomClient, SignalingError
from signaling.serverproc import start_server, stop_server, wait_healthy

ROOM = "stage-bench"
JOIN_CONCURRENCY = 16


@dataclass
class StageResult:
    """What one run measured (see the module docstring)."""

    listeners: int
    joined: int
    window_s: float
    join_s: float
    msgs_per_listener_min: dict[str, float] = field(default_factory=dict)  # median, max
    bytes_per_listener_min: dict[str, float] = field(default_factory=dict)
    listener_types: dict[str, int] = field(default_factory=dict)  # summed over listeners
    listener_max_by_type: dict[str, int] = field(default_factory=dict)
    host_msgs_per_min: float = 0.0
    host_types: dict[str, int] = field(default_factory=dict)
    listeners_hearing_both: int = 0
    listeners_hearing_promoted: int = 0
    listeners_dropped_promoted: int = 0
    forwarding_stopped_while_muted: bool = False
    forwarding_resumed_after_unmute: bool = False
    crafted_error: str = ""
    listener_joined_events_seen: int = 0  # participant_joined about listeners (must be 0)
    server_cpu_core: float = 0.0
    server_rss_mb_before: float = 0.0
    server_rss_mb_after: float = 0.0
    notes: list[str] = field(default_factory=list)
    kind: str = "podcast"


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def _gather_limited(coros: list[Awaitable[Any]], limit: int) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def run(coro: Awaitable[Any]) -> Any:
        async with semaphore:
            return await coro

    return await asyncio.gather(*(run(c) for c in coros), return_exceptions=True)


async def _until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return predicate()


def _snapshot(clients: list[RoomClient]) -> list[tuple[int, int]]:
    return [(len(c.message_types), c.signal_bytes) for c in clients]


async def run_stage(
    url: str,
    secret: str,
    *,
    listeners: int,
    duration: float,
    churn: int = 1,
    pid: int | None = None,
    kind: str = "podcast",
) -> StageResult:
    """Run the scenario against a running server; see the module docstring.

    Args:
        url: the server's base URL; secret: its JWT secret (tokens are minted here).
        listeners: steady audience size; duration: measured window (s, >= 8);
        churn: listeners that join and leave every second during the window.
        pid: the server's process id, for CPU and RSS (None: not measured).
        kind: ``podcast`` (hidden listeners) or ``conference`` (the same people, every
            listener visible to everyone: the baseline the stage is measured against).
    """
    room = f"{ROOM}-{kind}"
    # the peers here are aiortc clients of a server on loopback: aioice skips 127.0.0.1 when
    # gathering unless told (process-wide, as in bench/fanout.py)
    adapter.set_ice_host_addresses(["127.0.0.1"])

    def client(identity: str, role: str, **kwargs: Any) -> RoomClient:
        grant = VideoGrant(
            room=room,
            roomJoin=True,
            roomAdmin=role == "host",
            canPublish=role != "listener",
            canSubscribe=True,
            canPublishData=True,
            roomKind=kind,  # type: ignore[arg-type]
            role=role,  # type: ignore[arg-type]
        )
        token = create_access_token(secret, identity=identity, ttl_s=3600, video=grant)[0]
        return RoomClient(url, room, identity, token=token, **kwargs)

    payloads = await asyncio.to_thread(encode_opus_frames, 50)
    host = client("host", "host", subscribe=False)
    speakers = [client(f"speaker{i}", "speaker", subscribe=False) for i in range(2)]
    audience = [client(f"l{i}", "listener", count_only=True) for i in range(listeners)]
    publishers: list[RawOpusPublisher] = []
    extra: list[RoomClient] = []
    result = StageResult(listeners=listeners, joined=0, window_s=duration, join_s=0.0, kind=kind)

    async def publish(c: RoomClient) -> RawOpusPublisher:
        publisher = RawOpusPublisher(payloads)
        publishers.append(publisher)
        reply = await c.publish_sdp(await publisher.offer(), publisher.track_descriptions())
        await publisher.answer(reply["sdp"])
        publisher.start()
        return publisher

    try:
        await host.connect()
        for speaker in speakers:
            await speaker.connect()
            await publish(speaker)
        if pid is not None:
            result.server_rss_mb_before = _rss_mb(pid)
        started = time.monotonic()
        outcomes = await _gather_limited([c.connect() for c in audience], JOIN_CONCURRENCY)
        joined = [
            c for c, r in zip(audience, outcomes, strict=True) if not isinstance(r, BaseException)
        ]
        result.joined = len(joined)
        failures = Counter(type(r).__name__ for r in outcomes if isinstance(r, BaseException))
        if failures:
            result.notes.append(f"join failures: {dict(failures)}")
        await _until(lambda: all(len(c.counter.packets) >= 2 for c in joined), 60)
        result.join_s = time.monotonic() - started
        if pid is not None:
            result.server_rss_mb_after = _rss_mb(pid)

        # --- the measured window -------------------------------------------------------------
        before = _snapshot(joined)
        host_before = len(host.message_types)
        cpu_before = cpu_seconds(pid) if pid is not None else 0.0
        window_start = time.monotonic()
        type_start = [len(c.message_types) for c in joined]
        stop = asyncio.Event()

        async def churner() -> None:
            i = 0
            while not stop.is_set() and churn > 0:
                batch = [client(f"churn{i + k}", "listener", count_only=True) for k in range(churn)]
                i += churn
                extra.extend(batch)
                await _gather_limited([c.connect() for c in batch], JOIN_CONCURRENCY)
                await asyncio.sleep(0.5)
                await _gather_limited([c.close() for c in batch], JOIN_CONCURRENCY)
                await asyncio.sleep(0.5)

        async def chatter() -> None:
            while not stop.is_set():
                await host.request({"type": "chat", "text": "welcome to the show"})
                try:
                    await asyncio.wait_for(stop.wait(), 10)
                except TimeoutError:
                    pass

        tasks = [asyncio.ensure_future(churner()), asyncio.ensure_future(chatter())]
        fan, rest = joined[0], joined[1:]
        try:
            await fan.request(
                {
                    "type": "set_role",
                    "participant": fan.joined["participant"]["sid"],
                    "role": "speaker",
                }
            )
        except SignalingError as exc:
            result.crafted_error = exc.code
        await fan.request({"type": "raise_hand", "raised": True})
        await _until(lambda: any(e["type"] == "hands" and e["total"] for e in host.events), 10)
        fan_sid = fan.joined["participant"]["sid"]
        known = [set(c.counter.packets) for c in rest]  # the two speakers' SSRCs
        await host.request({"type": "set_role", "participant": fan_sid, "role": "speaker"})
        await _until(lambda: any(e["type"] == "role_changed" for e in fan.events), 10)
        await publish(fan)
        track = next(iter(fan.published.values()))

        def promoted_counts() -> list[int]:
            """Per listener: packets on SSRCs that appeared after the promotion."""
            return [
                sum(n for ssrc, n in c.counter.packets.items() if ssrc not in seen)
                for c, seen in zip(rest, known, strict=True)
            ]

        await _until(lambda: all(promoted_counts()), 30)
        result.listeners_hearing_promoted = sum(1 for n in promoted_counts() if n)

        await asyncio.sleep(1.0)
        await host.request({"type": "mute_participant", "participant": fan_sid})
        await asyncio.sleep(0.5)  # packets in flight land
        muted_at = promoted_counts()
        await asyncio.sleep(1.5)
        result.forwarding_stopped_while_muted = promoted_counts() == muted_at
        await fan.request({"type": "mute", "track": track, "muted": False})
        await asyncio.sleep(1.5)
        result.forwarding_resumed_after_unmute = all(
            a > b for a, b in zip(promoted_counts(), muted_at, strict=True)
        )
        await host.request({"type": "set_role", "participant": fan_sid, "role": "listener"})
        await _until(lambda: all(track not in c.received for c in rest), 30)
        result.listeners_dropped_promoted = sum(1 for c in rest if track not in c.received)

        remaining = duration - (time.monotonic() - window_start)
        if remaining > 0:
            await asyncio.sleep(remaining)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        window = time.monotonic() - window_start
        result.window_s = round(window, 1)
        if pid is not None:
            result.server_cpu_core = round((cpu_seconds(pid) - cpu_before) / window, 3)

        # --- accounting ----------------------------------------------------------------------
        after = _snapshot(joined)
        msgs = [(a[0] - b[0]) * 60 / window for a, b in zip(after, before, strict=True)][1:]
        sizes = [(a[1] - b[1]) * 60 / window for a, b in zip(after, before, strict=True)][1:]
        result.msgs_per_listener_min = {
            "median": round(statistics.median(msgs), 1),
            "max": round(max(msgs), 1),
        }
        result.bytes_per_listener_min = {
            "median": round(statistics.median(sizes)),
            "max": round(max(sizes)),
        }
        totals: Counter[str] = Counter()
        most: Counter[str] = Counter()
        for c, start in zip(rest, type_start[1:], strict=True):
            kinds = Counter(c.message_types[start:])
            totals.update(kinds)
            for kind, n in kinds.items():
                most[kind] = max(most[kind], n)
        result.listener_types = dict(totals.most_common())
        result.listener_max_by_type = dict(most.most_common())
        result.host_msgs_per_min = round((len(host.message_types) - host_before) * 60 / window, 1)
        result.host_types = dict(Counter(host.message_types[host_before:]).most_common())
        result.listeners_hearing_both = sum(
            1 for c in rest if sum(1 for n in c.counter.packets.values() if n > 50) >= 2
        )
        listener_sids = {c.joined["participant"]["sid"] for c in [*joined[1:], *extra] if c.joined}

        def about(event: dict[str, Any]) -> str:
            who = event.get("participant")
            return str(who.get("sid") if isinstance(who, dict) else who)

        result.listener_joined_events_seen = sum(
            1
            for c in [host, *speakers, *rest]
            for e in c.events
            if e["type"] in ("participant_joined", "participant_left") and about(e) in listener_sids
        )
        return result
    finally:
        for publisher in publishers:
            await publisher.stop()
        await _gather_limited([c.close() for c in [*audience, *extra]], 32)
        for c in [*speakers, host]:
            await c.close()


def _print(result: StageResult) -> None:
    print(
        f"{result.kind} room, {result.joined}/{result.listeners} listeners, "
        f"window {result.window_s} s"
    )
    print(
        f"  per listener per minute: {result.msgs_per_listener_min['median']} messages "
        f"(max {result.msgs_per_listener_min['max']}), "
        f"{result.bytes_per_listener_min['median'] / 1024:.1f} KiB "
        f"(max {result.bytes_per_listener_min['max'] / 1024:.1f} KiB)"
    )
    n = max(result.joined - 1, 1)
    per_type = ", ".join(
        f"{k} {v / n * 60 / result.window_s:.1f}" for k, v in result.listener_types.items()
    )
    print(f"  by type (per listener per minute): {per_type}")
    print(f"  host: {result.host_msgs_per_min} messages/min: {result.host_types}")
    print(
        f"  hearing both speakers: {result.listeners_hearing_both}, heard the promoted speaker: "
        f"{result.listeners_hearing_promoted}, dropped it on demote: "
        f"{result.listeners_dropped_promoted}"
    )
    print(
        f"  mute stopped forwarding: {result.forwarding_stopped_while_muted}, unmute resumed: "
        f"{result.forwarding_resumed_after_unmute}, crafted set_role: {result.crafted_error}"
    )
    print(f"  joins/leaves of listeners announced to anyone: {result.listener_joined_events_seen}")
    if result.server_rss_mb_after:
        per = (result.server_rss_mb_after - result.server_rss_mb_before) / max(result.joined, 1)
        print(
            f"  server: {result.server_cpu_core} core in the window, RSS "
            f"{result.server_rss_mb_before:.0f} -> {result.server_rss_mb_after:.0f} MB "
            f"({per * 1024:.0f} KiB per listener); joins took {result.join_s:.1f} s"
        )
    for note in result.notes:
        print(f"  note: {note}")


async def main_async(args: argparse.Namespace) -> list[StageResult]:
    """The podcast room, then (unless ``--no-baseline``) the same scenario as a conference
    room, each on a fresh server."""
    results = []
    for kind in ["podcast"] + ([] if args.no_baseline else ["conference"]):
        secret = secrets.token_urlsafe(48)
        proc, url = start_server(
            tempfile.mkdtemp(prefix="sfu-stage-"), env={"SFU_JWT_SECRET": secret}
        )
        try:
            await asyncio.to_thread(wait_healthy, url, proc)
            results.append(
                await run_stage(
                    url,
                    secret,
                    listeners=args.listeners,
                    duration=args.duration,
                    churn=args.churn,
                    pid=proc.pid,
                    kind=kind,
                )
            )
        finally:
            stop_server(proc)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listeners", type=int, default=200)
    parser.add_argument("--duration", type=float, default=60.0, help="measured window (s)")
    parser.add_argument("--churn", type=int, default=1, help="listeners joining+leaving per s")
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the conference-room baseline run"
    )
    args = parser.parse_args()
    if args.listeners < 2 or args.duration < 8:
        parser.error("--listeners must be >= 2 and --duration >= 8")
    results = asyncio.run(main_async(args))
    for result in results:
        _print(result)
    if len(results) == 2:
        pod, conf = results
        print(
            f"conference / podcast, per listener per minute: "
            f"{conf.msgs_per_listener_min['median'] / pod.msgs_per_listener_min['median']:.1f}x "
            f"messages, "
            f"{conf.bytes_per_listener_min['median'] / pod.bytes_per_listener_min['median']:.1f}x "
            f"bytes"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in results], f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
