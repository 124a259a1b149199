"""The target a media worker process serves (``python -m sfu.worker``, issue 12).

:func:`create` builds a :class:`PlaneTarget`: one :class:`~sfu.plane.local.LocalMediaPlane`
(this worker's rooms, one *shard* per room) plus the worker's pipe endpoints
(:class:`sfu.pipe.PipeTransport`, one per room and peer worker). The control process's
:class:`sfu.plane.workers.WorkerMediaPlane` calls it over the worker channel
(docs/worker-channel.md) with the codec :data:`sfu.plane.codec.CHANNEL_CODEC`.

Notifications this target emits (``context.emit``):

* ``"ev"``, ``[participant sid, event]``: one event for one of this worker's participants
  (what :data:`sfu.plane.api.PlaneListener` would get in process);
* ``"room"``, ``[room, event, announced]``: a room event of one of this worker's
  participants (joined, left, updated, published, unpublished, muted; ``announced`` False for
  a hidden participant's publication), for the proxy to relay to the room's other shards;
* ``"speakers"``, ``[room, ActiveSpeakersChanged]``: the shard's active speakers (ranked here
  over the audio producers it carries, its own and piped ones), once for all of this worker's
  participants of the room;
* ``"pipe"``, ``[room, peer, control]``: a :class:`sfu.pipe.PipeControl` (as a map) of this
  worker's pipe to worker ``peer``, for the proxy to hand to that worker.

Notification from the control process: ``"pipe"``, ``[room, peer, control]``: apply a control
that worker ``peer`` emitted.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from sfu.errors import NotFoundError
from sfu.events import ActiveSpeakersChanged, ParticipantEvent, RoomEvent
from sfu.participant import negotiate_viewer
from sfu.pipe import PipeControl, PipeProducerParameters, PipeTransport, PipeTransportParameters
from sfu.plane.local import LocalMediaPlane, MediaSettings
from sfu.plane.pipes import subscribe_piped
from sfu.plane.types import (
    IceServer,
    JoinResult,
    ParticipantSpec,
    ParticipantState,
    PlaneStats,
    PublishAnswer,
    TrackSpec,
)
from sfu.room import Room

logger = logging.getLogger(__name__)


class _Emitter:
    """What a worker needs of :class:`sfu.worker.process.WorkerContext`."""

    index: int

    def emit(self, event: str, data: Any = None) -> None: ...


def pipe_params_to_wire(params: PipeProducerParameters) -> dict[str, Any]:
    """A :class:`PipeProducerParameters` as a plain map (msgpack values)."""
    data = dataclasses.asdict(params)
    data["codec_parameters"] = [list(pair) for pair in params.codec_parameters]
    return data


def pipe_params_from_wire(data: dict[str, Any]) -> PipeProducerParameters:
    """The inverse of :func:`pipe_params_to_wire`.

    Raises:
        ValueError: missing or unknown fields, or values :meth:`PipeProducerParameters.validate`
            refuses."""
    fields = dict(data)
    fields["codec_parameters"] = tuple(
        (str(k), str(v)) for k, v in fields.get("codec_parameters") or ()
    )
    try:
        params = PipeProducerParameters(**fields)
    except TypeError as exc:
        raise ValueError(f"bad pipe producer parameters: {exc}") from None
    params.validate()
    return params


class PlaneTarget:
    """One worker's media plane and pipe endpoints (see the module docstring).

    Args:
        settings: the worker's media settings.
        context: the worker's context (``index``, ``emit``).
    """

    def __init__(self, settings: MediaSettings, context: _Emitter) -> None:
        self.plane = LocalMediaPlane(settings)
        self.context = context
        self.pipes: dict[tuple[str, int | str], PipeTransport] = {}

    # -- hooks -----------------------------------------------------------------------------

    def _shard(self, room: str) -> Room:
        shard = self.plane.server.room(room)
        if shard.on_event is None:
            name = room

            def relay(event: RoomEvent, announced: bool) -> None:
                if isinstance(event, ActiveSpeakersChanged):
                    # ranked on every worker over the producers it carries; sent once for
                    # the shard, the control process hands it to its participants
                    self.context.emit("speakers", [name, event])
                    return
                self.context.emit("room", [name, event, announced])

            shard.on_event = relay
        return shard

    # -- the media-plane API ----------------------------------------------------------------

    async def join(self, room: str, spec: ParticipantSpec) -> JoinResult:
        """:meth:`MediaPlane.join`; events go out as ``"ev"`` notifications."""
        shard = self._shard(room)
        holder: list[str] = []
        emit = self.context.emit

        def listener(event: ParticipantEvent) -> None:
            if holder and not isinstance(event, ActiveSpeakersChanged):  # per room: "speakers"
                emit("ev", [holder[0], event])

        result = await self.plane.join(room, spec, listener)
        holder.append(result.participant.sid)
        if spec.can_subscribe and spec.auto_subscribe:
            subscribe_piped(shard, [result.participant.sid])
        return result

    async def leave(self, participant: str, reason: str = "left", notify: bool = False) -> None:
        """:meth:`MediaPlane.leave`."""
        await self.plane.leave(participant, reason, notify=notify)

    async def publish_offer(
        self, participant: str, sdp: str, tracks: list[TrackSpec]
    ) -> PublishAnswer:
        """:meth:`MediaPlane.publish_offer`."""
        return await self.plane.publish_offer(participant, sdp, list(tracks))

    async def subscribe_answer(self, participant: str, sdp: str) -> None:
        """:meth:`MediaPlane.subscribe_answer`."""
        await self.plane.subscribe_answer(participant, sdp)

    async def add_ice_candidate(
        self,
        participant: str,
        side: str,
        candidate: str | None,
        sdp_mid: str | None,
        sdp_mline_index: int | None,
    ) -> None:
        """:meth:`MediaPlane.add_ice_candidate`."""
        await self.plane.add_ice_candidate(participant, side, candidate, sdp_mid, sdp_mline_index)

    async def restart_media(self, participant: str, side: str) -> None:
        """:meth:`MediaPlane.restart_media`."""
        await self.plane.restart_media(participant, side)

    async def set_track_muted(
        self, participant: str, track: str, muted: bool, remote: bool = False
    ) -> None:
        """:meth:`MediaPlane.set_track_muted`."""
        await self.plane.set_track_muted(participant, track, muted, remote=remote)

    async def set_track_settings(
        self, participant: str, track: str, visible: bool, width: int | None
    ) -> None:
        """:meth:`MediaPlane.set_track_settings`."""
        await self.plane.set_track_settings(participant, track, visible, width)

    async def unpublish(self, participant: str, track: str) -> None:
        """:meth:`MediaPlane.unpublish`."""
        await self.plane.unpublish(participant, track)

    async def set_can_publish(self, participant: str, allowed: bool) -> None:
        """:meth:`MediaPlane.set_can_publish`."""
        await self.plane.set_can_publish(participant, allowed)

    async def set_hidden(self, participant: str, hidden: bool) -> None:
        """:meth:`MediaPlane.set_hidden`."""
        await self.plane.set_hidden(participant, hidden)

    async def set_attributes(self, participant: str, attributes: dict[str, str]) -> None:
        """:meth:`MediaPlane.set_attributes`."""
        await self.plane.set_attributes(participant, dict(attributes))

    async def set_subscribe_kinds(self, participant: str, kinds: list[str] | None) -> None:
        """:meth:`MediaPlane.set_subscribe_kinds`; also takes the shard's piped producers."""
        await self.plane.set_subscribe_kinds(
            participant, tuple(kinds) if kinds is not None else None
        )
        found = self.plane._find(participant)
        if found is not None and found.can_subscribe:
            subscribe_piped(found.room, [participant])

    async def participant(self, participant: str) -> ParticipantState:
        """:meth:`MediaPlane.participant`."""
        return await self.plane.participant(participant)

    async def find_participant(self, room: str, identity: str) -> ParticipantState | None:
        """:meth:`MediaPlane.find_participant`."""
        return await self.plane.find_participant(room, identity)

    async def room_participants(self, room: str, exclude: str | None = None) -> list[Any]:
        """:meth:`MediaPlane.room_participants` (this shard only)."""
        return await self.plane.room_participants(room, exclude)

    async def whep_play(self, viewer: str, publisher: str, sdp: str) -> str:
        """:meth:`MediaPlane.whep_play` (the publisher on this worker)."""
        return await self.plane.whep_play(viewer, publisher, sdp)

    async def whep_play_tracks(self, viewer: str, tracks: list[str], sdp: str) -> str:
        """WHEP playback of the given producers of the viewer's shard (piped from the
        publisher's worker first), filtered by the viewer's subscribe kinds.

        Raises:
            NotFoundError: unknown viewer; InvalidSdpError: bad offer."""
        found = self.plane._get(viewer)
        kinds = found.subscribe_kinds
        producers = [
            p
            for t in tracks
            if (p := found.room.router.producers.get(t)) is not None
            and not p.closed
            and (kinds is None or p.kind in kinds)
        ]
        return await negotiate_viewer(found, sdp, producers)

    async def close_room(self, room: str, reason: str = "room_closed") -> None:
        """:meth:`MediaPlane.close_room` (this shard)."""
        await self.plane.close_room(room, reason)

    async def ice_servers(self) -> list[IceServer]:
        """:meth:`MediaPlane.ice_servers`."""
        return await self.plane.ice_servers()

    async def plane_stats(self) -> PlaneStats:
        """:meth:`MediaPlane.stats` of this worker."""
        return await self.plane.stats()

    def stats(self) -> dict[str, int]:
        """``sys.stats``: this worker's monotonic media counters (``sfu.stats.COUNTER_NAMES``)
        and its current participant count (``participants``)."""
        counters = dict(self.plane.server.counters())
        counters["participants"] = self.plane.server.stats()["participants"]
        return counters

    # -- pipes ------------------------------------------------------------------------------

    async def pipe_open(
        self,
        room: str,
        peer: int | str,
        listen_ip: str = "127.0.0.1",
        enable_srtp: bool = False,
    ) -> dict[str, Any]:
        """This worker's pipe end of ``room`` towards worker ``peer`` (an int; created on
        first use) or another node (a string key of ``MediaPlane.pipe_open``: a new end each
        call, an open one closed first with its piped producers suspended); returns its
        :class:`PipeTransportParameters` as a map.

        Raises:
            NotFoundError: no shard of ``room`` here."""
        pipe = self.pipes.get((room, peer))
        if isinstance(peer, str) and pipe is not None and not pipe.closed:
            del self.pipes[(room, peer)]
            await pipe.close(keep_producers=True)
            pipe = None
        if pipe is None or pipe.closed:
            shard = self.plane.server.get_room(room)
            if shard is None or shard.closed:
                raise NotFoundError(f"no room {room} on worker {self.context.index}")
            pipe = await shard.router.create_pipe_transport(
                listen_ip=listen_ip, enable_srtp=enable_srtp
            )
            emit = self.context.emit

            def on_control(control: PipeControl) -> None:
                emit("pipe", [room, peer, dataclasses.asdict(control)])

            pipe.on_control(on_control)
            self.pipes[(room, peer)] = pipe
        params = pipe.local_parameters()
        return {"ip": params.ip, "port": params.port, "srtp_key": params.srtp_key}

    def _pipe(self, room: str, peer: int | str) -> PipeTransport:
        pipe = self.pipes.get((room, peer))
        if pipe is None or pipe.closed:
            raise NotFoundError(f"no pipe of {room} to worker {peer}")
        return pipe

    async def pipe_connect(self, room: str, peer: int | str, params: dict[str, Any]) -> None:
        """Connect this end to the other end's :meth:`pipe_open` result.

        Raises:
            NotFoundError: no such pipe."""
        self._pipe(room, peer).connect(
            PipeTransportParameters(str(params["ip"]), int(params["port"]), params.get("srtp_key"))
        )

    async def pipe_consume(self, room: str, peer: int | str, producer_id: str) -> dict[str, Any]:
        """Pipe producer ``producer_id`` of this shard to ``peer``: its
        :class:`PipeProducerParameters` as a map.

        Raises:
            NotFoundError: no pipe or producer; InvalidStateError: not negotiated yet."""
        pipe = self._pipe(room, peer)
        return pipe_params_to_wire(pipe.consume(pipe.router.get_producer(producer_id)))

    async def pipe_produce(self, room: str, peer: int | str, params: dict[str, Any]) -> None:
        """The piped producer (same id and participant sid as on ``peer``) in this shard;
        this shard's participants subscribe to it by the room's policy.

        Raises:
            NotFoundError: no pipe; ValueError: bad parameters."""
        pipe = self._pipe(room, peer)
        pipe.produce(pipe_params_from_wire(params))
        shard = self.plane.server.get_room(room)
        if shard is not None:
            subscribe_piped(shard)

    async def pipe_close(
        self, room: str, peer: int | str, keep_producers: bool = False
    ) -> list[str]:
        """Close the pipe of ``room`` to ``peer`` (no-op without one); ``keep_producers``:
        suspend its piped producers (their consumers stay, issue 12 worker loss). Returns
        the ids of the piped producers it held."""
        pipe = self.pipes.pop((room, peer), None)
        if pipe is None:
            return []
        held = list(pipe.producers)
        await pipe.close(keep_producers=keep_producers)
        return held

    async def drop_producers(self, room: str, producer_ids: list[str]) -> None:
        """Close suspended piped producers of ``room`` (their publisher is gone for good)."""
        shard = self.plane.server.get_room(room)
        if shard is None:
            return
        for pid in producer_ids:
            producer = shard.router.producers.get(pid)
            if producer is not None and not producer.closed:
                producer.close()

    async def pipe_drop_one(self, room: str, peer: int | str, kind: str) -> None:
        """Fault injection (tests, benchmarks): drop the next RTP packet of the ``kind``
        stream this worker pipes to ``peer`` (a hole the other end NACKs, RFC 4585).

        Raises:
            NotFoundError: no such pipe or piped stream."""
        pipe = self._pipe(room, peer)
        ssrcs = {c.ssrc for c in pipe.consumers.values() if c.producer.kind == kind}
        if not ssrcs:
            raise NotFoundError(f"no {kind} piped to worker {peer}")
        dropped: list[int] = []

        def lose_one(packet: bytes) -> bool:
            if not dropped and int.from_bytes(packet[8:12], "big") in ssrcs:
                dropped.append(int.from_bytes(packet[2:4], "big"))
                return True
            return False

        pipe.impairment = lose_one

    def on_notification(self, event: str, data: Any) -> None:
        """``"pipe"``: apply the other end's control to this end's pipe."""
        if event != "pipe":
            return
        room, peer, control = data
        pipe = self.pipes.get((room, peer))
        if pipe is not None and not pipe.closed:
            pipe.apply(PipeControl(**control))

    async def close(self) -> None:
        """Close every pipe and room (SIGTERM or EOF)."""
        for pipe in list(self.pipes.values()):
            await pipe.close()
        self.pipes.clear()
        await self.plane.close()


def create(config: dict[str, Any], context: _Emitter) -> PlaneTarget:
    """The worker factory (``sfu.plane.worker_target:create``): ``config["media"]`` holds the
    :class:`MediaSettings` fields (plain values)."""
    media = dict(config.get("media") or {})
    if "ice_servers" in media:
        media["ice_servers"] = list(media["ice_servers"])
    if "ice_hosts" in media:
        media["ice_hosts"] = list(media["ice_hosts"])
    if media.get("rtc_port"):  # one UDP port per worker: worker k uses SFU_RTC_PORT + k
        media["rtc_port"] = int(media["rtc_port"]) + context.index
    logging.getLogger().setLevel(str(config.get("log_level", "WARNING")).upper())
    return PlaneTarget(MediaSettings(**media), context)
