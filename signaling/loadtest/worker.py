"""One load-test worker process: its own asyncio loop, its share of the peers.

The parent starts workers with multiprocessing's *spawn* method. A worker joins its peers at
its share of the join rate (a token bucket), reports cumulative counts to the parent every
second over a ``multiprocessing.Queue`` (``tick`` messages), stops publishing when
``stop_publish`` is set, and when ``stop`` is set sends a ``final`` message with per-listener,
per-track statistics, then leaves the room with every peer. Workers ignore SIGINT: the parent
handles Ctrl-C and sets the events.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from signaling.loadtest.config import LoadTestConfig, Placement

TICK_S = 1.0
MAX_LATENCY_SAMPLES_PER_TICK = 5000
MAX_CONCURRENT_JOINS = 32


def cpu_seconds() -> float:
    """This process's user + system CPU time (s)."""
    t = os.times()
    return t.user + t.system


class TokenBucket:
    """At most ``rate`` takes per second on average, bursts of at most ``burst``."""

    def __init__(self, rate: float, burst: float = 1.0) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.tokens = 1.0
        self.last = time.monotonic()

    async def take(self) -> None:
        """Wait for one token."""
        while True:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return
            await asyncio.sleep((1.0 - self.tokens) / self.rate)


def _reason(exc: BaseException) -> str:
    from signaling.client import SignalingError

    if isinstance(exc, SignalingError):
        return f"server refused: {exc.code}"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timeout"
    text = str(exc).splitlines()[0][:120] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class _State:
    placement: Placement
    config: LoadTestConfig
    publishers: list[tuple[Any, Any, str]] = field(default_factory=list)  # client, raw, identity
    listeners: list[tuple[Any, int, float]] = field(default_factory=list)  # client, index, t
    decoder: Any = None
    pending: set[Any] = field(default_factory=set)  # clients still joining
    joins: list[float] = field(default_factory=list)  # new join durations (s)
    failures: list[str] = field(default_factory=list)  # new failure reasons
    failed: int = 0
    attempted: int = 0
    join_done: bool = False
    publish_stopped: float | None = None


class Worker:
    """Runs one :class:`Placement`."""

    def __init__(self, config: LoadTestConfig, placement: Placement, queue: Any) -> None:
        self.config = config
        self.placement = placement
        self.queue = queue
        self.state = _State(placement=placement, config=config)
        self.bucket = TokenBucket(config.join_rate / config.processes)
        self.limit = asyncio.Semaphore(MAX_CONCURRENT_JOINS)

    def _token(self, identity: str, publish: bool) -> str | None:
        if self.config.token:
            return self.config.token
        from signaling.auth.tokens import VideoGrant, create_access_token

        assert self.config.token_secret is not None
        grant = VideoGrant(
            room=self.config.room, roomJoin=True, canPublish=publish, canSubscribe=not publish
        )
        token, _claims = create_access_token(
            self.config.token_secret,
            identity=identity,
            name=identity,
            ttl_s=self.config.token_ttl_s,
            video=grant,
        )
        return token

    def _send(self, message: dict[str, Any]) -> None:
        message["worker"] = self.placement.worker
        self.queue.put(message)

    # -- joining ----------------------------------------------------------------------------

    async def _join_publisher(self, index: int, kind: str) -> None:
        from signaling.client import RoomClient
        from signaling.loadtest.media import RawPublisher, encode_opus_frames, encode_vp8_frames

        identity = f"lt-pub-{index}"
        if kind == "audio":
            media = RawPublisher(
                audio=encode_opus_frames(250, frequency=330.0 + 37.0 * index, seed=1000 + index)
            )
        else:
            media = RawPublisher(video=encode_vp8_frames(2.0, seed=1 + index))
        client = RoomClient(
            self.config.url_for(index),
            self.config.room,
            identity,
            token=self._token(identity, True),
            subscribe=False,
        )
        await self.bucket.take()
        self.state.attempted += 1
        started = time.monotonic()
        try:
            async with self.limit:
                started = time.monotonic()
                await asyncio.wait_for(client.connect(), self.config.join_timeout_s)
                reply = await client.publish_sdp(await media.offer(), media.track_descriptions())
                await media.answer(reply["sdp"], timeout=self.config.join_timeout_s)
        except Exception as exc:
            self.state.failed += 1
            self.state.failures.append(f"publisher: {_reason(exc)}")
            await _quietly(media.stop())
            await _quietly(client.close())
            return
        self.state.joins.append(time.monotonic() - started)
        media.start()
        self.state.publishers.append((client, media, identity))

    async def _join_listener(self, index: int) -> None:
        from signaling.loadtest.peers import DecodingListener, StatsListener

        identity = f"lt-lis-{index}"
        token = self._token(identity, False)
        client: Any
        if index == self.placement.decoder:
            client = DecodingListener(
                self.config.url_for(index), self.config.room, identity, token=token
            )
        else:
            client = StatsListener(
                self.config.url_for(index),
                self.config.room,
                identity,
                token=token,
                probe=index in self.placement.probes,
            )
        await self.bucket.take()
        self.state.attempted += 1
        self.state.pending.add(client)
        started = time.monotonic()
        try:
            async with self.limit:
                started = time.monotonic()
                await asyncio.wait_for(client.connect(), self.config.join_timeout_s)
        except Exception as exc:
            self.state.failed += 1
            self.state.failures.append(_reason(exc))
            self.state.pending.discard(client)
            await _quietly(client.close())
            return
        self.state.pending.discard(client)
        self.state.joins.append(time.monotonic() - started)
        if index == self.placement.decoder:
            client.start_decoding()
            self.state.decoder = client
        else:
            self.state.listeners.append((client, index, started))

    async def join_all(self) -> None:
        """Publishers first (in order), then every listener, rate-limited."""
        for index, kind in self.placement.publishers:
            await self._join_publisher(index, kind)
        await asyncio.gather(*(self._join_listener(i) for i in self.placement.listeners))
        self.state.join_done = True

    # -- reporting ---------------------------------------------------------------------------

    def _latencies(self) -> list[float]:
        out: list[float] = []
        send_times: dict[bytes, list[float]] = {}
        for _client, media, _identity in self.state.publishers:
            send_times.update(media.send_times)
        for client, _index, _t in self.state.listeners:
            stats = client.stats
            if not stats.probe or not stats.arrivals:
                continue
            arrivals, stats.arrivals = stats.arrivals, []
            for arrival, payload in arrivals:
                sends = send_times.get(payload)
                if not sends:
                    continue
                before = [s for s in sends if s <= arrival]
                if before:
                    out.append((arrival - before[-1]) * 1000)
        if len(out) > MAX_LATENCY_SAMPLES_PER_TICK:
            step = len(out) / MAX_LATENCY_SAMPLES_PER_TICK
            out = [out[int(i * step)] for i in range(MAX_LATENCY_SAMPLES_PER_TICK)]
        return out

    def tick(self) -> None:
        """Send cumulative counts, and what is new since the last tick."""
        sent_packets = sent_bytes = 0
        for _client, media, _identity in self.state.publishers:
            for track in media.tracks.values():
                sent_packets += track.packets
                sent_bytes += track.bytes
        recv_packets = recv_bytes = expected = 0
        for client, _index, _t in self.state.listeners:
            p, b, e = client.stats.totals()
            recv_packets += p
            recv_bytes += b
            expected += e
        joins, self.state.joins = self.state.joins, []
        failures, self.state.failures = self.state.failures, []
        self._send(
            {
                "type": "tick",
                "t": time.monotonic(),
                "joined_publishers": len(self.state.publishers),
                "joined_listeners": len(self.state.listeners) + (self.state.decoder is not None),
                "failed": self.state.failed,
                "join_done": self.state.join_done,
                "joins": joins,
                "failures": failures,
                "sent_packets": sent_packets,
                "sent_bytes": sent_bytes,
                "recv_packets": recv_packets,
                "recv_bytes": recv_bytes,
                "expected": expected,
                "latencies": self._latencies(),
                "cpu_s": cpu_seconds(),
            }
        )

    def final(self) -> dict[str, Any]:
        """Per-listener and per-publisher statistics."""
        publishers = []
        for client, media, identity in self.state.publishers:
            sids = dict(client.published)  # mid -> track sid
            tracks = {}
            for mid, kind in enumerate(media.kinds):
                sent = media.tracks.get(kind)
                sid = sids.get(str(mid))
                if sid is None:
                    continue
                tracks[sid] = {
                    "kind": kind,
                    "packets": sent.packets if sent else 0,
                    "bytes": sent.bytes if sent else 0,
                    "started": sent.started if sent else None,
                    "last": sent.last if sent else None,
                }
            publishers.append({"identity": identity, "tracks": tracks})
        listeners = [
            {
                "index": index,
                "joined_at": started,
                "probe": client.stats.probe,
                "tracks": client.stats.per_track(),
            }
            for client, index, started in self.state.listeners
        ]
        decoder = None
        if self.state.decoder is not None:
            d = self.state.decoder
            decoder = {
                "identity": d.name,
                "frames": dict(d.frames),
                "tracks_subscribed": len(d.received),
                "tracks_decoding": len(d.tracks_decoding),
                "errors": sorted(set(d.errors_seen)),
            }
        return {
            "type": "final",
            "publishers": publishers,
            "listeners": listeners,
            "decoder": decoder,
            "publish_stopped": self.state.publish_stopped,
            "cpu_s": cpu_seconds(),
            "pending_joins": len(self.state.pending),
        }

    async def stop_publishing(self) -> None:
        """Stop every publisher's send loop (peers stay in the room)."""
        for _client, media, _identity in self.state.publishers:
            await _quietly(media.stop_sending())
        self.state.publish_stopped = time.monotonic()

    async def close_all(self) -> None:
        """Leave with every peer (bounded concurrency and time)."""
        clients: list[Any] = [c for c, _i, _t in self.state.listeners]
        if self.state.decoder is not None:
            clients.append(self.state.decoder)
        clients.extend(self.state.pending)
        for client, media, _identity in self.state.publishers:
            clients.append(client)
            clients.append(media)
        limit = asyncio.Semaphore(64)

        async def close(peer: Any) -> None:
            async with limit:
                await _quietly(
                    asyncio.wait_for(peer.close() if hasattr(peer, "close") else peer.stop(), 10)
                )

        await asyncio.gather(*(close(c) for c in clients))


async def _quietly(awaitable: Any) -> None:
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await awaitable


async def _run(
    config: LoadTestConfig, placement: Placement, queue: Any, stop_publish: Any, stop: Any
) -> None:
    from sfu import _aiortc_adapter as adapter

    adapter.set_ice_host_addresses(config.ice_hosts)
    worker = Worker(config, placement, queue)
    joining = asyncio.ensure_future(worker.join_all())
    next_tick = time.monotonic() + TICK_S
    try:
        while not stop.is_set():
            if stop_publish.is_set() and worker.state.publish_stopped is None:
                joining.cancel()
                await worker.stop_publishing()
            if time.monotonic() >= next_tick:
                next_tick += TICK_S
                worker.tick()
            await asyncio.sleep(0.05)
        joining.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await joining
        if worker.state.publish_stopped is None:
            await worker.stop_publishing()
        worker.tick()
        worker._send(worker.final())
    finally:
        await worker.close_all()
        worker._send({"type": "closed"})


def worker_main(
    config: LoadTestConfig, placement: Placement, queue: Any, stop_publish: Any, stop: Any
) -> None:
    """Entry point of a spawned worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    try:
        asyncio.run(_run(config, placement, queue, stop_publish, stop))
    except Exception as exc:
        queue.put(
            {
                "type": "error",
                "worker": placement.worker,
                "message": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
        )
