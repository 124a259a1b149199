"""Simulated listeners: count-only subscribers with per-stream statistics, and one decoder.

A :class:`StatsListener` is a count-only :class:`~signaling.client.RoomClient` whose sink keeps,
per received SSRC, the packet and byte counts, the extended highest sequence number (for loss,
as in RFC 3550 §6.4.1) and the interarrival jitter (RFC 3550 §6.4.1, A.8), all read from the
clear-text RTP header of each SRTP packet without decrypting it. A *probe* listener decrypts
instead and also keeps (arrival time, payload) pairs so that latency can be matched to the
publisher's send times. The SSRC of every subscribed track comes from the subscribe offers.

A :class:`DecodingListener` is a normal RoomClient that decodes what it receives (aiortc's
decoders) and counts the decoded frames per kind: proof that the forwarded media is intact.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from aiortc import MediaStreamTrack
from aiortc.sdp import SessionDescription

from sfu import _aiortc_adapter as adapter
from sfu.rtp.header import parse_rtp
from signaling.client import RoomClient


@dataclass(slots=True)
class StreamStats:
    """Counters of one received SSRC."""

    clock: int
    packets: int = 0
    bytes: int = 0
    first_seq: int = -1  # extended
    max_seq: int = -1  # extended
    first_arrival: float = 0.0
    last_arrival: float = 0.0
    jitter: float = 0.0  # RTP timestamp units
    transit: float | None = None

    @property
    def expected(self) -> int:
        """Packets expected from the first to the highest sequence number received."""
        return 0 if self.first_seq < 0 else self.max_seq - self.first_seq + 1


@dataclass(slots=True)
class TrackInfo:
    """What a subscribed SSRC carries (from the subscribe offer)."""

    track: str
    participant: str
    kind: str
    clock: int
    rtx: bool = False


@dataclass
class ListenerStats:
    """Everything a :class:`StatsListener` measures."""

    probe: bool = False
    streams: dict[int, StreamStats] = field(default_factory=dict)
    ssrcs: dict[int, TrackInfo] = field(default_factory=dict)
    arrivals: list[tuple[float, bytes]] = field(default_factory=list)  # probes only

    def learn(self, offer: dict[str, Any]) -> None:
        """Map the SSRCs of a subscribe offer to the tracks its ``tracks`` list names."""
        by_mid = {item["mid"]: item for item in offer.get("tracks", [])}
        try:
            description = SessionDescription.parse(offer["sdp"])
        except Exception:  # a malformed offer: aiortc itself will refuse it
            return
        for media in description.media:
            item = by_mid.get(media.rtp.muxId or "")
            if item is None:
                continue
            clock = 48000 if media.kind == "audio" else 90000
            if media.rtp.codecs:
                clock = int(media.rtp.codecs[0].clockRate)
            rtx = {
                int(group.items[1])
                for group in media.ssrc_group
                if group.semantic == "FID" and len(group.items) > 1
            }
            for ssrc in media.ssrc:
                self.ssrcs[ssrc.ssrc] = TrackInfo(
                    track=item["track"],
                    participant=item["participant"],
                    kind=item["kind"],
                    clock=clock,
                    rtx=ssrc.ssrc in rtx,
                )

    def record(self, data: bytes, now: float) -> None:
        """Account one RTP (or SRTP: the header is in clear text) packet."""
        ssrc = int.from_bytes(data[8:12], "big")
        stream = self.streams.get(ssrc)
        seq = (data[2] << 8) | data[3]
        if stream is None:
            info = self.ssrcs.get(ssrc)
            stream = StreamStats(clock=info.clock if info is not None else 90000)
            stream.first_seq = stream.max_seq = seq
            stream.first_arrival = now
            self.streams[ssrc] = stream
        else:
            delta = (seq - stream.max_seq) & 0xFFFF
            if delta < 0x8000:
                stream.max_seq += delta
        stream.packets += 1
        stream.bytes += len(data)
        stream.last_arrival = now
        transit = now * stream.clock - int.from_bytes(data[4:8], "big")
        if stream.transit is not None:
            d = abs(transit - stream.transit)
            if d < stream.clock * 10:  # not a timestamp jump
                stream.jitter += (d - stream.jitter) / 16
        stream.transit = transit

    def totals(self) -> tuple[int, int, int]:
        """(packets, bytes, expected) over every media (non-RTX) stream."""
        packets = size = expected = 0
        for ssrc, stream in self.streams.items():
            info = self.ssrcs.get(ssrc)
            if info is not None and info.rtx:
                continue
            packets += stream.packets
            size += stream.bytes
            expected += stream.expected
        return packets, size, expected

    def per_track(self) -> dict[str, dict[str, Any]]:
        """Per subscribed track sid: packets, bytes, expected, arrivals and jitter (ms)."""
        out: dict[str, dict[str, Any]] = {}
        for ssrc, stream in self.streams.items():
            info = self.ssrcs.get(ssrc)
            if info is None or info.rtx:
                continue
            entry = out.setdefault(
                info.track,
                {
                    "participant": info.participant,
                    "kind": info.kind,
                    "packets": 0,
                    "bytes": 0,
                    "expected": 0,
                    "first_arrival": stream.first_arrival,
                    "last_arrival": 0.0,
                    "jitter_ms": 0.0,
                },
            )
            entry["packets"] += stream.packets
            entry["bytes"] += stream.bytes
            entry["expected"] += stream.expected
            entry["first_arrival"] = min(entry["first_arrival"], stream.first_arrival)
            entry["last_arrival"] = max(entry["last_arrival"], stream.last_arrival)
            entry["jitter_ms"] = max(entry["jitter_ms"], stream.jitter / stream.clock * 1000)
        for info in self.ssrcs.values():  # subscribed but nothing arrived
            if not info.rtx and info.track not in out:
                out[info.track] = {
                    "participant": info.participant,
                    "kind": info.kind,
                    "packets": 0,
                    "bytes": 0,
                    "expected": 0,
                    "first_arrival": None,
                    "last_arrival": None,
                    "jitter_ms": None,
                }
        return out


class _StatsSink(adapter.NullRtpSink):
    def __init__(self, stats: ListenerStats) -> None:
        self.stats = stats

    def on_rtp(self, data: bytes, arrival_ms: int) -> None:  # decrypted: probes only
        now = time.monotonic()
        self.stats.record(data, now)
        fields = parse_rtp(data)
        self.stats.arrivals.append((now, data[fields[8] : fields[9]]))

    def on_srtp(self, data: bytes) -> None:
        self.stats.record(data, time.monotonic())


class StatsListener(RoomClient):
    """A count-only listener that keeps :class:`ListenerStats` (``probe``: decrypt and keep
    payload arrivals for latency)."""

    def __init__(
        self, url: str, room: str, name: str = "", *, token: str | None, probe: bool = False
    ) -> None:
        super().__init__(url, room, name, token=token, count_only=True)
        self.stats = ListenerStats(probe=probe)

    def _subscriber(self) -> Any:
        if self.sub is None:
            sink = _StatsSink(self.stats)
            self.sub = adapter.ForwardingPeerConnection(
                sink,
                adapter.make_configuration([]),
                srtp_counter=None if self.stats.probe else sink.on_srtp,
            )
        return self.sub

    async def _answer(self, offer: dict[str, Any]) -> None:
        self.stats.learn(offer)
        await super()._answer(offer)


class DecodingListener(RoomClient):
    """A listener that decodes every subscribed track and counts decoded frames per kind."""

    def __init__(self, url: str, room: str, name: str = "", *, token: str | None) -> None:
        super().__init__(url, room, name, token=token)
        self.frames: dict[str, int] = {"audio": 0, "video": 0}
        self.tracks_decoding: set[str] = set()
        self.errors_seen: list[str] = []
        self._readers: dict[int, asyncio.Task[None]] = {}
        self._watch: asyncio.Task[None] | None = None

    def start_decoding(self) -> None:
        """Read every track the subscribe side exposes, now and as new ones appear."""
        self._watch = asyncio.ensure_future(self._watch_tracks())

    async def _watch_tracks(self) -> None:
        while True:
            for received in list(self.received.values()):
                track = received.track
                if track is not None and id(track) not in self._readers:
                    self._readers[id(track)] = asyncio.ensure_future(
                        self._read(track, received.kind, received.track_sid)
                    )
            await asyncio.sleep(0.2)

    async def _read(self, track: MediaStreamTrack, kind: str, sid: str) -> None:
        try:
            while True:
                await track.recv()
                self.frames[kind] = self.frames.get(kind, 0) + 1
                self.tracks_decoding.add(sid)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # MediaStreamError when the track ends
            self.errors_seen.append(type(exc).__name__)

    async def close(self) -> None:
        """Stop reading, then close as a RoomClient does."""
        tasks = [t for t in (self._watch, *self._readers.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await super().close()
