"""WorkerMediaPlane: the :class:`~sfu.plane.api.MediaPlane` over media worker processes.

The control process keeps a roster (participant sid -> worker, room, grants, listener) and
routes every per-participant call to its worker's :class:`sfu.plane.worker_target.PlaneTarget`
over a :class:`sfu.worker.pool.WorkerPool` (docs/worker-channel.md). A room whose
participants sit on several workers has one Room *shard* per worker; this class relays the
room events of one shard to the others, pipes producers between shards (``sfu/pipe.py``,
once per worker pair and room; the piped producer keeps its track and participant sid so the
other shard's Room policy subscribes its participants unchanged) and handles the loss of a
worker (issue 12, docs/media-plane.md "what a worker proxy adds").

Placement: the first participant of a room goes to the least-loaded worker (load: packets
sent per second from the workers' one-second stats, plus a weight per publisher and per
participant placed since); later participants stay on the room's workers while one of them
holds fewer than ``spread_at`` of the room's participants, then go to the least-loaded
worker. A small room stays on one worker, a big audience spreads over all of them. A
listener promoted to speaker stays where it is: its producer is piped to every other shard
that takes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from sfu.errors import InvalidStateError, NotFoundError, SfuError
from sfu.events import (
    ParticipantClosed,
    ParticipantEvent,
    ParticipantInfo,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantUpdated,
    TrackMuted,
    TrackPublished,
    TrackUnpublished,
)
from sfu.plane.api import PipeListener, PlaneListener
from sfu.plane.types import (
    IceServer,
    JoinResult,
    ParticipantSpec,
    ParticipantState,
    PipeControl,
    PipeProducerParameters,
    PipeTransportParameters,
    PlaneStats,
    PublishAnswer,
    TrackSpec,
)
from sfu.plane.worker_target import pipe_params_from_wire, pipe_params_to_wire
from sfu.server import MediaSettings
from sfu.stats import COUNTER_NAMES
from sfu.worker.errors import ChannelError
from sfu.worker.pool import WorkerPool

logger = logging.getLogger(__name__)

WORKER_LOST = "worker_lost"
"""``ParticipantClosed`` reason of a participant whose worker died: the edge tells the client
to reconnect (docs/protocol.md ``reconnect``)."""
PUBLISHER_WEIGHT = 1000.0
"""Placement load (packets/s) counted per publisher on a worker."""
PARTICIPANT_WEIGHT = 10.0
"""Placement load (packets/s) counted per participant on a worker."""
SUBSCRIBER_PPS_FLOOR = 50.0
"""Packets per second a subscribing participant on a worker is counted at least (one Opus
stream): a worker's load counts the larger of its measured packets sent per second and this
floor times its subscribers, so that listeners placed since the last one-second stats sample
count before their packets show in it (a burst of joins would otherwise all go to the worker
whose sample lags)."""
LOST_PUBLISHER_GRACE_S = 30.0
"""How long the tracks of a publisher whose worker died stay paused on other workers,
waiting for it to come back, before they are unpublished (s)."""
RESUME_PLACEMENT_WAIT_S = 3.0
"""How long the join of a publisher whose worker died waits for a worker that holds none of
its suspended producers (the dead one, restarted within 2 s) before it lands on one that
does (s); there its subscribers take the new producers afresh."""
_EARLY_MAX = 256
_GONE_MAX = 4096


@dataclass(slots=True)
class _Member:
    sid: str
    room: str
    identity: str
    worker: int
    listener: PlaneListener
    can_publish: bool
    can_subscribe: bool
    auto_subscribe: bool
    hidden: bool
    kinds: tuple[str, ...] | None

    def wants(self, kind: str) -> bool:
        return (
            self.can_subscribe
            and self.auto_subscribe
            and (self.kinds is None or kind in self.kinds)
        )


@dataclass(slots=True)
class _Track:
    sid: str
    room: str
    participant: str
    identity: str
    worker: int
    kind: str
    muted: bool
    source: str = "unknown"


@dataclass(slots=True)
class _Lost:
    """A publisher whose worker died: its tracks are paused (suspended piped producers) on
    the other workers until it joins again with the same sid and its new producers of the
    same (kind, source) take the old track sids (``back``), or ``LOST_PUBLISHER_GRACE_S``.

    ``tracks``: track sid -> (kind, source), the ones not resumed yet; ``told``: the sids of
    the members that saw them paused (they keep the participant and its tracks)."""

    participant: str
    tracks: dict[str, tuple[str, str]]
    workers: set[int] = field(default_factory=set)
    told: set[str] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None
    back: bool = False


class WorkerMediaPlane:
    """The media plane in ``workers`` worker processes (``sfu serve --workers N``, N > 0).

    Args:
        settings: every worker's media settings.
        workers: number of worker processes (>= 1).
        spread_at: participants of one room on one worker before the room spreads to
            another worker (>= 1).
        log_level: the workers' log level.
        call_timeout_s: per-call timeout on the channel (s).

    Call :meth:`start` before use and :meth:`close` at the end (it stops every worker).
    """

    def __init__(
        self,
        settings: MediaSettings | None = None,
        workers: int = 1,
        *,
        spread_at: int = 100,
        log_level: str = "warning",
        call_timeout_s: float = 10.0,
        python: str = sys.executable,
    ) -> None:
        settings = settings or MediaSettings()
        self.spread_at = max(1, spread_at)
        self.pool = WorkerPool(
            "sfu.plane.worker_target:create",
            {"media": dataclasses.asdict(settings), "log_level": log_level},
            workers=workers,
            codec="sfu.plane.codec:CHANNEL_CODEC",
            on_notification=self._on_notification,
            on_worker_died=self._on_worker_died,
            call_timeout_s=call_timeout_s,
            log_level=log_level,
            python=python,
        )
        self._members: dict[str, _Member] = {}
        self._tracks: dict[str, _Track] = {}
        self._pipes: set[tuple[str, int, int]] = set()
        self._piped: set[tuple[str, int, str]] = set()  # (room, target worker, track sid)
        self._pipe_locks: dict[tuple[str, int, int], asyncio.Lock] = {}
        # events of a sid whose join reply is not processed yet (the reply and the first
        # notifications come in one read), oldest sid first
        self._early: dict[str, list[ParticipantEvent]] = {}
        self._gone: dict[str, None] = {}  # sids forgotten lately (late events are dropped)
        self._lost: dict[tuple[str, str], _Lost] = {}
        self._rate: dict[int, tuple[float, int, float]] = {}  # worker -> (at, sent, pps)
        self._tasks: set[asyncio.Task[Any]] = set()
        # monotonic counters: each worker's last answer, and what dead processes had counted
        self._last_counters: dict[int, dict[str, int]] = {}
        self._retired_counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        # pipes to other nodes (MediaPlane.pipe_*): (room, peer) -> gateway worker, listener;
        # track sid -> (room, peer) of producers received from another node
        self._gateways: dict[tuple[str, str], int] = {}
        self._pipe_listeners: dict[tuple[str, str], PipeListener] = {}
        self._remote_tracks: dict[str, tuple[str, str]] = {}
        self.piped = 0
        """Producers piped so far (a counter, for tests and benchmarks)."""

    async def start(self) -> None:
        """Start the worker processes.

        Raises:
            sfu.worker.errors.WorkerStartError: a worker did not start."""
        await self.pool.start()

    # -- bookkeeping ------------------------------------------------------------------------

    def worker_of(self, participant: str) -> int | None:
        """The worker index of a participant (None: unknown)."""
        member = self._members.get(participant)
        return member.worker if member is not None else None

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _room_members(self, room: str) -> list[_Member]:
        return [m for m in self._members.values() if m.room == room]

    def _room_workers(self, room: str) -> set[int]:
        return {m.worker for m in self._members.values() if m.room == room}

    def _member(self, participant: str) -> _Member:
        member = self._members.get(participant)
        if member is None:
            raise NotFoundError(f"no participant {participant}")
        return member

    def _deliver(self, member: _Member, event: ParticipantEvent) -> None:
        try:
            member.listener(event)
        except Exception:
            logger.exception("listener of %s failed", member.sid)

    def _pps(self, index: int) -> float:
        """Packets sent per second by worker ``index`` (from the pool's 1 s samples)."""
        stats = self.pool.stats()[index]
        sent = int(stats.counters.get("packets_sent", 0))
        previous = self._rate.get(index)
        if previous is None:
            self._rate[index] = (stats.sampled_at, sent, 0.0)
            return 0.0
        at, before, pps = previous
        if stats.sampled_at > at:
            pps = max(0.0, (sent - before) / (stats.sampled_at - at))
            self._rate[index] = (stats.sampled_at, sent, pps)
        return pps

    def load(self, index: int) -> float:
        """Placement load of worker ``index``: packets sent per second (measured, at least
        :data:`SUBSCRIBER_PPS_FLOOR` per subscriber), plus weights per publisher and per
        participant."""
        members = [m for m in self._members.values() if m.worker == index]
        # each publisher once: by its grant (decided at join) or by an audio track it has
        # here (a listener promoted to speaker)
        speaking = {
            t.participant for t in self._tracks.values() if t.worker == index and t.kind == "audio"
        }
        publishers = len(speaking | {m.sid for m in members if m.can_publish and not m.hidden})
        subscribers = sum(1 for m in members if m.can_subscribe)
        pps = max(self._pps(index), SUBSCRIBER_PPS_FLOOR * subscribers)
        return pps + PUBLISHER_WEIGHT * publishers + PARTICIPANT_WEIGHT * len(members)

    def _place(self, room: str, avoid: set[int] | None = None) -> int:
        up = [i for i in range(len(self.pool)) if self.pool.is_up(i)]
        if not up:
            raise InvalidStateError("no media worker is up")
        up = [i for i in up if i not in (avoid or set())] or up
        counts: dict[int, int] = {}
        for m in self._members.values():
            if m.room == room and m.worker in up:
                counts[m.worker] = counts.get(m.worker, 0) + 1
        fitting = [i for i, n in counts.items() if n < self.spread_at]
        return min(fitting or up, key=lambda i: (self.load(i), i))

    def _forget(self, member: _Member) -> None:
        if self._members.get(member.sid) is not member:
            return
        del self._members[member.sid]
        self._remember_gone(member.sid)
        for track in [t for t in self._tracks.values() if t.participant == member.sid]:
            del self._tracks[track.sid]
        if member.worker not in {m.worker for m in self._members.values() if m.room == member.room}:
            # this worker's shard of the room closes with its last participant: so do the
            # other ends of its pipes
            self._piped = {
                k for k in self._piped if not (k[0] == member.room and k[1] == member.worker)
            }
            for key in [k for k in self._pipes if k[0] == member.room and member.worker in k[1:]]:
                self._pipes.discard(key)
                peer = key[2] if key[1] == member.worker else key[1]
                self._spawn(self._call_quiet(peer, "pipe_close", member.room, member.worker))

    def _remember_gone(self, sid: str) -> None:
        self._gone[sid] = None
        while len(self._gone) > _GONE_MAX:
            del self._gone[next(iter(self._gone))]

    async def _call_quiet(self, index: int, method: str, *args: Any) -> Any:
        try:
            return await self.pool.call(index, method, *args)
        except (SfuError, OSError) as exc:
            logger.info("worker %d: %s failed: %s", index, method, exc)
            return None

    # -- notifications ----------------------------------------------------------------------

    def _on_notification(self, index: int, event: str, data: Any) -> None:
        try:
            if event == "ev":
                sid, item = data
                self._on_participant_event(sid, item)
            elif event == "room":
                room, item, announced = data
                self._on_room_event(index, room, item, bool(announced))
            elif event == "speakers":  # the shard's ranking, to its own participants
                room, item = data
                for member in self._room_members(room):
                    if member.worker == index:
                        self._deliver(member, item)
            elif event == "pipe" and isinstance(data[1], str):  # a pipe to another node
                room, peer, control = data
                if control.get("action") == "close":
                    self._forget_remote(str(control.get("producer_id")))
                listener = self._pipe_listeners.get((room, peer))
                if listener is not None:
                    listener(PipeControl(**control))
            elif event == "pipe":
                room, peer, control = data
                if control.get("action") == "close":  # that producer is piped no more
                    self._piped.discard((room, index, control.get("producer_id")))
                    self._piped.discard((room, int(peer), control.get("producer_id")))
                with contextlib.suppress(ChannelError):
                    self.pool.notify(int(peer), "pipe", [room, index, control])
        except Exception:
            logger.exception("worker %d: notification %s failed", index, event)

    def _on_participant_event(self, sid: str, event: ParticipantEvent) -> None:
        member = self._members.get(sid)
        if member is None:
            if sid in self._gone:
                return  # a participant already closed here (e.g. its leave's last events)
            early = self._early.get(sid)
            if early is None:
                while len(self._early) >= _EARLY_MAX:  # sids that never joined: oldest out
                    del self._early[next(iter(self._early))]
                early = self._early[sid] = []
            if len(early) < _EARLY_MAX:
                early.append(event)
            return
        self._deliver(member, event)
        if isinstance(event, ParticipantClosed):
            self._forget(member)

    def _resuming(self, participant: str) -> _Lost | None:
        """The lost-publisher entry of a participant that joined again (None: not one)."""
        for entry in self._lost.values():
            if entry.back and entry.participant == participant:
                return entry
        return None

    def _on_room_event(self, index: int, room: str, event: Any, announced: bool) -> None:
        # a publisher back after its worker died: members that saw its tracks paused keep
        # the participant and the track sids; they get an update and the unmute instead
        told: set[str] = set()
        instead: Any = None
        if isinstance(event, ParticipantJoined):
            entry = self._resuming(event.participant.sid)
            if entry is not None:
                told, instead = entry.told, ParticipantUpdated(event.participant)
        elif isinstance(event, TrackPublished):
            entry = self._resuming(event.participant)
            if entry is not None and entry.tracks.pop(event.track.sid, None) is not None:
                told = entry.told
                instead = TrackMuted(event.participant, event.track.sid, event.track.muted)
                if not entry.tracks:  # every track resumed
                    self._finish_lost(room, entry)
        if isinstance(event, TrackPublished):
            publisher = self._members.get(event.participant)
            self._tracks[event.track.sid] = _Track(
                sid=event.track.sid,
                room=room,
                participant=event.participant,
                identity=publisher.identity if publisher is not None else "",
                worker=index,
                kind=event.track.kind,
                muted=event.track.muted,
                source=event.track.source,
            )
            for worker in {
                m.worker
                for m in self._room_members(room)
                if m.worker != index and m.sid != event.participant and m.wants(event.track.kind)
            }:
                self._spawn(self._pipe(room, index, worker, event.track.sid))
        elif isinstance(event, TrackUnpublished):
            self._tracks.pop(event.track, None)
        elif isinstance(event, TrackMuted):
            track = self._tracks.get(event.track)
            if track is not None:
                track.muted = event.muted
        if not announced:
            return
        for member in self._room_members(room):
            if member.worker != index:
                self._deliver(member, instead if member.sid in told else event)

    # -- pipes ------------------------------------------------------------------------------

    async def _pipe(self, room: str, source: int, target: int, track: str) -> bool:
        """Pipe producer ``track`` of worker ``source``'s shard of ``room`` to ``target``'s
        (the worker pair's pipe is created on first use). False when it could not be."""
        key = (room, min(source, target), max(source, target))
        lock = self._pipe_locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                if (room, target, track) in self._piped:
                    return True
                if key not in self._pipes:
                    a, b = await asyncio.gather(
                        self.pool.call(source, "pipe_open", room, target),
                        self.pool.call(target, "pipe_open", room, source),
                    )
                    await asyncio.gather(
                        self.pool.call(source, "pipe_connect", room, target, b),
                        self.pool.call(target, "pipe_connect", room, source, a),
                    )
                    self._pipes.add(key)
                for _ in range(50):
                    try:
                        params = await self.pool.call(source, "pipe_consume", room, target, track)
                        break
                    except NotFoundError:
                        return False  # the producer closed meanwhile
                    except InvalidStateError:
                        await asyncio.sleep(0.1)  # not negotiated yet
                else:
                    return False
                await self.pool.call(target, "pipe_produce", room, source, params)
                self._piped.add((room, target, track))
                self.piped += 1
                return True
        except (SfuError, OSError) as exc:
            logger.info(
                "pipe of %s %s: worker %d -> %d failed: %s", room, track, source, target, exc
            )
            return False

    async def _pipe_wanted(self, member: _Member) -> None:
        """Pipe to ``member``'s worker every producer of its room it takes."""
        await asyncio.gather(
            *(
                self._pipe(member.room, t.worker, member.worker, t.sid)
                for t in list(self._tracks.values())
                if t.room == member.room
                and t.worker != member.worker
                and t.participant != member.sid
                and member.wants(t.kind)
            )
        )

    # -- pipes to another node (MediaPlane.pipe_*; docs/media-plane.md) ---------------------
    # One worker of the room, its *gateway* for that peer, holds the cross-node pipe end: a
    # producer sent to the peer is piped to the gateway first (the worker pipes above), a
    # producer received from the peer is piped on from the gateway to every other worker of
    # the room that has participants taking it.

    def _gateway(self, room: str, peer: str) -> int:
        gateway = self._gateways.get((room, peer))
        if gateway is not None and self.pool.is_up(gateway):
            return gateway
        workers = self._room_workers(room)
        if not workers:
            raise NotFoundError(f"no room {room} here")
        counts = {w: sum(1 for m in self._room_members(room) if m.worker == w) for w in workers}
        gateway = max(sorted(workers), key=lambda w: counts[w])
        self._gateways[(room, peer)] = gateway
        return gateway

    async def pipe_open(
        self,
        room: str,
        peer: str,
        listener: PipeListener,
        listen_ip: str = "127.0.0.1",
        enable_srtp: bool = True,
    ) -> PipeTransportParameters:
        """See :meth:`sfu.plane.api.MediaPlane.pipe_open` (on the room's gateway worker for
        ``peer``)."""
        self._gateways.pop((room, peer), None)
        gateway = self._gateway(room, peer)
        self._pipe_listeners[(room, peer)] = listener
        data = await self.pool.call(gateway, "pipe_open", room, peer, listen_ip, enable_srtp)
        return PipeTransportParameters(
            str(data["ip"]), int(data["port"]), data.get("srtp_key") or None
        )

    async def pipe_connect(self, room: str, peer: str, remote: PipeTransportParameters) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.pipe_connect`."""
        params = {"ip": remote.ip, "port": remote.port, "srtp_key": remote.srtp_key}
        await self.pool.call(self._gateway(room, peer), "pipe_connect", room, peer, params)

    async def pipe_consume(self, room: str, peer: str, producer: str) -> PipeProducerParameters:
        """See :meth:`sfu.plane.api.MediaPlane.pipe_consume` (the producer is piped to the
        gateway worker first)."""
        gateway = self._gateway(room, peer)
        track = self._tracks.get(producer)
        if track is None or track.room != room:
            raise NotFoundError(f"no producer {producer}")
        if track.worker != gateway and not await self._pipe(room, track.worker, gateway, producer):
            raise InvalidStateError(f"producer {producer} could not reach worker {gateway}")
        data = await self.pool.call(gateway, "pipe_consume", room, peer, producer)
        return pipe_params_from_wire(data)

    async def pipe_produce(self, room: str, peer: str, params: PipeProducerParameters) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.pipe_produce` (on the gateway; piped on to the
        room's other workers that take it)."""
        gateway = self._gateway(room, peer)
        await self.pool.call(gateway, "pipe_produce", room, peer, pipe_params_to_wire(params))
        sid = params.producer_id
        self._tracks[sid] = _Track(
            sid=sid,
            room=room,
            participant=params.participant_sid,
            identity="",
            worker=gateway,
            kind=params.kind,
            muted=params.paused,
        )
        self._remote_tracks[sid] = (room, peer)
        for worker in {
            m.worker
            for m in self._room_members(room)
            if m.worker != gateway and m.wants(params.kind)
        }:
            self._spawn(self._pipe(room, gateway, worker, sid))

    async def pipe_control(self, room: str, peer: str, control: PipeControl) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.pipe_control`."""
        gateway = self._gateways.get((room, peer))
        if gateway is None:
            return
        if control.action == "close":
            self._forget_remote(control.producer_id)
        with contextlib.suppress(ChannelError):
            self.pool.notify(gateway, "pipe", [room, peer, dataclasses.asdict(control)])

    def _forget_remote(self, sid: str) -> None:
        if self._remote_tracks.pop(sid, None) is not None:
            self._tracks.pop(sid, None)

    async def pipe_close(self, room: str, peer: str, keep_producers: bool = False) -> list[str]:
        """See :meth:`sfu.plane.api.MediaPlane.pipe_close`."""
        gateway = self._gateways.pop((room, peer), None)
        self._pipe_listeners.pop((room, peer), None)
        if gateway is None:
            return []
        held = await self._call_quiet(gateway, "pipe_close", room, peer, keep_producers)
        if not keep_producers:
            for sid in held or []:
                self._forget_remote(sid)
        return list(held or [])

    async def pipe_drop(self, room: str, producers: list[str]) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.pipe_drop` (on every worker of the room)."""
        for sid in producers:
            self._forget_remote(sid)
        for worker in self._room_workers(room):
            await self._call_quiet(worker, "drop_producers", room, list(producers))

    # -- worker loss ------------------------------------------------------------------------

    def _on_worker_died(self, index: int) -> None:
        for name, value in self._last_counters.pop(index, {}).items():
            self._retired_counters[name] = self._retired_counters.get(name, 0) + value
        lost = [m for m in self._members.values() if m.worker == index]
        rooms = {m.room for m in lost}
        for key in [k for k in self._pipes if index in k[1:]]:
            self._pipes.discard(key)
        # the dead worker's producers are piped again (to resume them) once their publisher
        # is back
        dead = {t.sid for t in self._tracks.values() if t.worker == index}
        self._piped = {k for k in self._piped if k[1] != index and k[2] not in dead}
        for room in rooms:
            others = [m for m in self._room_members(room) if m.worker != index]
            workers = {m.worker for m in others}
            for worker in workers:
                self._spawn(self._call_quiet(worker, "pipe_close", room, index, True))
            for member in [m for m in lost if m.room == room]:
                tracks = [t for t in self._tracks.values() if t.participant == member.sid]
                if tracks:
                    entry = _Lost(
                        member.sid,
                        {t.sid: (t.kind, t.source) for t in tracks},
                        set(workers),
                        {m.sid for m in others},
                    )
                    previous = self._lost.pop((room, member.identity), None)
                    if previous is not None and previous.timer is not None:
                        previous.timer.cancel()
                    self._lost[(room, member.identity)] = entry
                    entry.timer = asyncio.get_running_loop().call_later(
                        LOST_PUBLISHER_GRACE_S, self._drop_lost, room, member.identity
                    )
                    for track in tracks:
                        if not track.muted:
                            for other in others:
                                self._deliver(other, TrackMuted(member.sid, track.sid, True))
                elif not member.hidden:
                    for other in others:
                        self._deliver(other, ParticipantLeft(member.sid))
        for member in lost:
            del self._members[member.sid]
            self._remember_gone(member.sid)
            for track in [t for t in self._tracks.values() if t.participant == member.sid]:
                del self._tracks[track.sid]
            self._deliver(member, ParticipantClosed(WORKER_LOST))
        logger.warning("media worker %d died: %d participants told to reconnect", index, len(lost))

    def _finish_lost(self, room: str, entry: _Lost) -> None:
        for key in [k for k, v in self._lost.items() if v is entry]:
            del self._lost[key]
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None

    def _drop_lost(
        self, room: str, identity: str, workers: set[int] | None = None, *, close: bool = True
    ) -> None:
        """Close the tracks of a lost publisher not resumed (on ``workers``, default all of
        the entry's): unpublished for the members that saw them paused; the participant
        leaves too unless it is back. ``close`` False: the caller closes the producers."""
        entry = self._lost.get((room, identity))
        if entry is None:
            return
        targets = set(entry.workers) if workers is None else workers & entry.workers
        entry.workers -= targets
        if not entry.workers or not entry.tracks:
            self._finish_lost(room, entry)
        tracks = list(entry.tracks)
        for worker in targets if close else ():
            self._spawn(self._call_quiet(worker, "drop_producers", room, tracks))
        for member in self._room_members(room):
            if member.worker in targets and member.sid != entry.participant:
                for track in tracks:
                    self._deliver(member, TrackUnpublished(entry.participant, track))
                if not entry.back:
                    self._deliver(member, ParticipantLeft(entry.participant))

    async def _wait_for_worker_outside(self, avoid: set[int]) -> None:
        """Wait (at most ``RESUME_PLACEMENT_WAIT_S``) until a worker not in ``avoid`` is up."""
        outside = [i for i in range(len(self.pool)) if i not in avoid]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RESUME_PLACEMENT_WAIT_S
        while outside and not any(self.pool.is_up(i) for i in outside):
            if loop.time() >= deadline:
                return
            await asyncio.sleep(0.05)

    # -- membership -------------------------------------------------------------------------

    async def join(self, room: str, spec: ParticipantSpec, listener: PlaneListener) -> JoinResult:
        """See :meth:`sfu.plane.api.MediaPlane.join`; the worker is chosen by placement
        (module docstring). Raises InvalidStateError also when no worker is up."""
        for old in [m for m in self._room_members(room) if m.identity == spec.identity]:
            # Room.join closes a duplicate within its shard only
            self._deliver(old, ParticipantClosed("duplicate_identity"))
            self._forget(old)
            await self._call_quiet(old.worker, "leave", old.sid, "duplicate_identity", False)
        entry = self._lost.get((room, spec.identity))
        avoid: set[int] = set()
        if entry is not None and not entry.back:
            # the publisher is back: same sid, and its new producers of the same (kind,
            # source) keep the old track sids, so the other workers resume their suspended
            # piped producers (consumers keep SSRC, sequence numbers, timestamps)
            entry.back = True
            self._gone.pop(entry.participant, None)
            spec = dataclasses.replace(
                spec,
                sid=entry.participant,
                resume_tracks=tuple((k, s, t) for t, (k, s) in entry.tracks.items()),
            )
            avoid = set(entry.workers)
            await self._wait_for_worker_outside(avoid)
        worker = self._place(room, avoid)
        if entry is not None and worker in entry.workers:
            # no other worker: the suspended producers there go (a producer id is unique
            # per router); that worker's subscribers take the new producers afresh
            self._drop_lost(room, spec.identity, {worker}, close=False)
            await self._call_quiet(worker, "drop_producers", room, list(entry.tracks))
        result: JoinResult = await self.pool.call(worker, "join", room, spec)
        sid = result.participant.sid
        member = _Member(
            sid=sid,
            room=room,
            identity=spec.identity,
            worker=worker,
            listener=listener,
            can_publish=spec.can_publish,
            can_subscribe=spec.can_subscribe,
            auto_subscribe=spec.auto_subscribe,
            hidden=spec.hidden,
            kinds=tuple(spec.subscribe_kinds) if spec.subscribe_kinds is not None else None,
        )
        self._members[sid] = member
        for event in self._early.pop(sid, []):
            self._deliver(member, event)
        others = list(result.others)
        for index in self._room_workers(room) - {worker}:
            with contextlib.suppress(SfuError):
                others.extend(await self.pool.call(index, "room_participants", room, sid))
        if member.wants("audio") or member.wants("video"):
            self._spawn(self._pipe_wanted(member))
        return dataclasses.replace(result, others=tuple(others))

    async def leave(self, participant: str, reason: str = "left", *, notify: bool = False) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.leave`."""
        member = self._members.get(participant)
        if member is None:
            return
        if notify:
            self._deliver(member, ParticipantClosed(reason))
        self._forget(member)
        await self._call_quiet(member.worker, "leave", participant, reason, False)

    # -- per-participant calls --------------------------------------------------------------

    async def _call(self, participant: str, method: str, *args: Any) -> Any:
        return await self.pool.call(self._member(participant).worker, method, participant, *args)

    async def publish_offer(
        self, participant: str, sdp: str, tracks: list[TrackSpec]
    ) -> PublishAnswer:
        """See :meth:`sfu.plane.api.MediaPlane.publish_offer`."""
        answer: PublishAnswer = await self._call(participant, "publish_offer", sdp, list(tracks))
        return answer

    async def subscribe_answer(self, participant: str, sdp: str) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.subscribe_answer`."""
        await self._call(participant, "subscribe_answer", sdp)

    async def add_ice_candidate(
        self,
        participant: str,
        side: str,
        candidate: str | None,
        sdp_mid: str | None,
        sdp_mline_index: int | None,
    ) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.add_ice_candidate`."""
        await self._call(
            participant, "add_ice_candidate", side, candidate, sdp_mid, sdp_mline_index
        )

    async def restart_media(self, participant: str, side: str) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.restart_media`."""
        await self._call(participant, "restart_media", side)

    async def set_track_muted(
        self, participant: str, track: str, muted: bool, *, remote: bool = False
    ) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.set_track_muted`."""
        await self._call(participant, "set_track_muted", track, muted, remote)

    async def set_track_settings(
        self, participant: str, track: str, visible: bool, width: int | None
    ) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.set_track_settings`."""
        await self._call(participant, "set_track_settings", track, visible, width)

    async def unpublish(self, participant: str, track: str) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.unpublish`."""
        await self._call(participant, "unpublish", track)

    async def set_can_publish(self, participant: str, allowed: bool) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.set_can_publish`. A listener promoted to
        speaker stays on its worker; its producers are piped to the other shards."""
        member = self._members.get(participant)
        if member is not None:
            member.can_publish = allowed
            await self._call_quiet(member.worker, "set_can_publish", participant, allowed)

    async def set_hidden(self, participant: str, hidden: bool) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.set_hidden`."""
        member = self._members.get(participant)
        if member is not None:
            member.hidden = hidden
            await self._call_quiet(member.worker, "set_hidden", participant, hidden)

    async def set_attributes(self, participant: str, attributes: dict[str, str]) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.set_attributes`."""
        member = self._members.get(participant)
        if member is not None:
            await self._call_quiet(member.worker, "set_attributes", participant, dict(attributes))

    async def set_subscribe_kinds(self, participant: str, kinds: tuple[str, ...] | None) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.set_subscribe_kinds`: producers of newly taken
        kinds on other workers are piped first."""
        member = self._members.get(participant)
        if member is None:
            return
        member.kinds = tuple(kinds) if kinds is not None else None
        await self._pipe_wanted(member)
        await self._call_quiet(
            member.worker,
            "set_subscribe_kinds",
            participant,
            list(kinds) if kinds is not None else None,
        )

    # -- reading ----------------------------------------------------------------------------

    async def participant(self, participant: str) -> ParticipantState:
        """See :meth:`sfu.plane.api.MediaPlane.participant`."""
        state: ParticipantState = await self._call(participant, "participant")
        return state

    async def find_participant(self, room: str, identity: str) -> ParticipantState | None:
        """See :meth:`sfu.plane.api.MediaPlane.find_participant`."""
        for member in self._room_members(room):
            if member.identity == identity:
                with contextlib.suppress(SfuError):
                    state: ParticipantState = await self.pool.call(
                        member.worker, "participant", member.sid
                    )
                    return state
        return None

    async def room_participants(
        self, room: str, exclude: str | None = None
    ) -> list[ParticipantInfo]:
        """See :meth:`sfu.plane.api.MediaPlane.room_participants` (every shard, merged)."""
        out: list[ParticipantInfo] = []
        for index in sorted(self._room_workers(room)):
            with contextlib.suppress(SfuError):
                out.extend(await self.pool.call(index, "room_participants", room, exclude))
        return out

    async def whep_play(self, viewer: str, publisher: str, sdp: str) -> str:
        """See :meth:`sfu.plane.api.MediaPlane.whep_play`; a publisher on another worker is
        piped to the viewer's first."""
        member = self._member(viewer)
        source = next((m for m in self._room_members(member.room) if m.identity == publisher), None)
        if source is None:
            raise NotFoundError(f"no publisher {publisher}")
        if source.worker == member.worker:
            answer: str = await self.pool.call(member.worker, "whep_play", viewer, publisher, sdp)
            return answer
        tracks = [
            t
            for t in self._tracks.values()
            if t.participant == source.sid and (member.kinds is None or t.kind in member.kinds)
        ]
        piped = await asyncio.gather(
            *(self._pipe(member.room, source.worker, member.worker, t.sid) for t in tracks)
        )
        ids = [t.sid for t, ok in zip(tracks, piped, strict=True) if ok]
        answer = await self.pool.call(member.worker, "whep_play_tracks", viewer, ids, sdp)
        return answer

    # -- rooms and the process --------------------------------------------------------------

    async def close_room(self, room: str, reason: str = "room_closed") -> None:
        """See :meth:`sfu.plane.api.MediaPlane.close_room` (every shard)."""
        workers = self._room_workers(room)
        await asyncio.gather(
            *(self._call_quiet(index, "close_room", room, reason) for index in workers)
        )

    async def ice_servers(self) -> list[IceServer]:
        """See :meth:`sfu.plane.api.MediaPlane.ice_servers` (asked of a live worker)."""
        for index in range(len(self.pool)):
            if self.pool.is_up(index):
                servers: list[IceServer] = await self.pool.call(index, "ice_servers")
                return list(servers)
        return []

    async def stats(self) -> PlaneStats:
        """See :meth:`sfu.plane.api.MediaPlane.stats`: the live workers summed; ``workers``
        one entry per worker (``sfu_worker_up``, restarts, CPU, memory)."""
        indexes = [i for i in range(len(self.pool)) if self.pool.is_up(i)]
        results = await asyncio.gather(
            *(self.pool.call(i, "plane_stats", timeout_s=2.0) for i in indexes),
            return_exceptions=True,
        )
        rooms: set[str] = {m.room for m in self._members.values()}
        totals = {"participants": 0, "producers": 0, "consumers": 0}
        for index, item in zip(indexes, results, strict=True):
            if isinstance(item, PlaneStats):
                totals["participants"] += item.participants
                totals["producers"] += item.producers
                totals["consumers"] += item.consumers
                self._last_counters[index] = {k: int(v) for k, v in item.counters.items()}
        # a worker that did not answer in time counts what it last said (counters never
        # go back on /metrics)
        counters = dict(self._retired_counters)
        for last in self._last_counters.values():
            for name, value in last.items():
                counters[name] = counters.get(name, 0) + value
        return PlaneStats(
            rooms=len(rooms),
            participants=totals["participants"],
            producers=totals["producers"],
            consumers=totals["consumers"],
            counters=counters,
            workers=self.pool.worker_infos(),
        )

    async def close(self) -> None:
        """Stop every worker (SIGTERM, SIGKILL after the pool's grace); safe twice."""
        for task in list(self._tasks):
            task.cancel()
        for entry in self._lost.values():
            if entry.timer is not None:
                entry.timer.cancel()
        self._lost.clear()
        await self.pool.close()
