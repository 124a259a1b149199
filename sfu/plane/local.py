"""LocalMediaPlane: the :class:`~sfu.plane.api.MediaPlane` with its media in this process.

It wraps one :class:`~sfu.server.MediaServer` (its Rooms, Routers, WebRtcTransports,
Producers and Consumers) and translates: ids in, plain dataclasses out, and the
``ParticipantListener`` callbacks of :class:`~sfu.participant.Participant` into
:data:`sfu.events.ParticipantEvent` dataclasses for the edge's :data:`PlaneListener`.
The room's subscription policy stays in :class:`~sfu.room.Room`.
"""

from __future__ import annotations

import logging
import weakref

from sfu.errors import NotAllowedError, NotFoundError
from sfu.events import (
    MediaRestarted,
    ParticipantClosed,
    ParticipantInfo,
    RoomEvent,
    SubscribedTrack,
    SubscribeOffer,
)
from sfu.participant import Participant, negotiate_viewer
from sfu.plane.api import PipeListener, PlaneListener
from sfu.plane.pipes import PipeEndpoints, subscribe_piped
from sfu.plane.types import (
    IceServer,
    JoinResult,
    ParticipantRef,
    ParticipantSpec,
    ParticipantState,
    PipeControl,
    PipeProducerParameters,
    PipeTransportParameters,
    PlaneStats,
    PublishAnswer,
    TrackSpec,
)
from sfu.server import MediaServer, MediaSettings

__all__ = ["LocalMediaPlane", "MediaSettings"]

logger = logging.getLogger(__name__)


class _Listener:
    """A :class:`~sfu.participant.ParticipantListener` that hands every callback to a
    :data:`PlaneListener` as an event dataclass."""

    __slots__ = ("deliver",)

    def __init__(self, deliver: PlaneListener) -> None:
        self.deliver = deliver

    def send_subscribe_offer(self, sdp: str, tracks: list[SubscribedTrack]) -> None:
        self.deliver(SubscribeOffer(sdp, tuple(tracks)))

    def on_room_event(self, event: RoomEvent) -> None:
        self.deliver(event)

    def on_closed(self, reason: str) -> None:
        self.deliver(ParticipantClosed(reason))

    def on_media_restart(self, side: str, reason: str) -> None:
        self.deliver(MediaRestarted(side, reason))


def _ref(participant: Participant) -> ParticipantRef:
    return ParticipantRef(
        sid=participant.sid,
        room=participant.room.name,
        identity=participant.identity,
        name=participant.name,
    )


def _state(participant: Participant) -> ParticipantState:
    kinds = participant.subscribe_kinds
    return ParticipantState(
        participant=_ref(participant),
        info=participant.info(),
        hidden=participant.hidden,
        can_publish=participant.can_publish,
        can_subscribe=participant.can_subscribe,
        subscribe_kinds=tuple(sorted(kinds)) if kinds is not None else None,
        producers=tuple(p.info() for p in participant.producers.values()),
    )


class LocalMediaPlane:
    """The media plane of this process (``sfu serve --workers 0``).

    Args:
        settings: the media settings (ICE hosts and servers, NACK buffer, limits ...).

    Raises (constructor):
        RuntimeError: when the installed aiortc is not the pinned version.

    Attributes:
        server: the wrapped :class:`MediaServer` (for tests and benchmarks of this process
            only; the edge never reads it).
    """

    def __init__(self, settings: MediaSettings | None = None) -> None:
        self.server = MediaServer(settings)
        self.pipes = PipeEndpoints(self.server)
        # participant sid -> Participant; weak, so a removed participant is not kept alive
        self._participants: weakref.WeakValueDictionary[str, Participant] = (
            weakref.WeakValueDictionary()
        )

    def _find(self, sid: str) -> Participant | None:
        participant = self._participants.get(sid)
        if participant is None:
            return None
        if participant.closed or participant.room.participants.get(sid) is not participant:
            return None
        return participant

    def _get(self, sid: str) -> Participant:
        participant = self._find(sid)
        if participant is None:
            raise NotFoundError(f"no participant {sid}")
        return participant

    # -- membership ----------------------------------------------------------------------------

    async def join(self, room: str, spec: ParticipantSpec, listener: PlaneListener) -> JoinResult:
        """See :meth:`sfu.plane.api.MediaPlane.join`."""
        media_room = self.server.room(room)
        participant = await media_room.join(
            spec.identity,
            spec.name,
            _Listener(listener),
            can_publish=spec.can_publish,
            can_subscribe=spec.can_subscribe,
            auto_subscribe=spec.auto_subscribe,
            hidden=spec.hidden,
            subscribe_kinds=frozenset(spec.subscribe_kinds)
            if spec.subscribe_kinds is not None
            else None,
            attributes=dict(spec.attributes),
            sid=spec.sid,
        )
        participant.resume_track_ids = {
            (str(kind), str(source)): str(track) for kind, source, track in spec.resume_tracks
        }
        if spec.media_restart_grace_s is not None:
            listener_ = participant.listener
            assert isinstance(listener_, _Listener)
            participant.enable_media_restart(listener_.on_media_restart, spec.media_restart_grace_s)
        self._participants[participant.sid] = participant
        if spec.can_subscribe and spec.auto_subscribe:
            subscribe_piped(media_room, [participant.sid])
        return JoinResult(
            participant=_ref(participant),
            info=participant.info(),
            others=tuple(media_room.participant_infos(participant)),
        )

    async def leave(self, participant: str, reason: str = "left", *, notify: bool = False) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.leave`."""
        found = self._participants.get(participant)
        if found is None:
            return
        if notify and not found.closed:
            found.listener.on_closed(reason)
        await found.room.remove(found, reason=reason)

    # -- negotiation ---------------------------------------------------------------------------

    async def publish_offer(
        self, participant: str, sdp: str, tracks: list[TrackSpec]
    ) -> PublishAnswer:
        """See :meth:`sfu.plane.api.MediaPlane.publish_offer`."""
        found = self._get(participant)
        if not found.can_publish:
            raise NotAllowedError("no canPublish grant")
        answer, mids = await found.publish_offer(sdp, tracks)
        return PublishAnswer(sdp=answer, tracks=mids)

    async def subscribe_answer(self, participant: str, sdp: str) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.subscribe_answer`."""
        await self._get(participant).subscribe_answer(sdp)

    async def add_ice_candidate(
        self,
        participant: str,
        side: str,
        candidate: str | None,
        sdp_mid: str | None,
        sdp_mline_index: int | None,
    ) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.add_ice_candidate`."""
        await self._get(participant).add_ice_candidate(side, candidate, sdp_mid, sdp_mline_index)

    async def restart_media(self, participant: str, side: str) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.restart_media`."""
        await self._get(participant).restart_media(side)

    # -- tracks --------------------------------------------------------------------------------

    async def set_track_muted(
        self, participant: str, track: str, muted: bool, *, remote: bool = False
    ) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.set_track_muted`."""
        self._get(participant).set_track_muted(track, muted, remote=remote)

    async def set_track_settings(
        self, participant: str, track: str, visible: bool, width: int | None
    ) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.set_track_settings`."""
        self._get(participant).set_track_settings(track, visible=visible, width=width)

    async def unpublish(self, participant: str, track: str) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.unpublish`."""
        await self._get(participant).unpublish(track)

    # -- grants and visibility -----------------------------------------------------------------

    async def set_can_publish(self, participant: str, allowed: bool) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.set_can_publish`."""
        found = self._participants.get(participant)
        if found is not None:
            await found.room.set_can_publish(found, allowed)

    async def set_hidden(self, participant: str, hidden: bool) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.set_hidden`."""
        found = self._participants.get(participant)
        if found is not None:
            found.room.set_hidden(found, hidden)

    async def set_attributes(self, participant: str, attributes: dict[str, str]) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.set_attributes`."""
        found = self._participants.get(participant)
        if found is not None:
            found.room.set_attributes(found, dict(attributes))

    async def set_subscribe_kinds(self, participant: str, kinds: tuple[str, ...] | None) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.set_subscribe_kinds`."""
        found = self._participants.get(participant)
        if found is not None:
            found.room.set_subscribe_kinds(found, frozenset(kinds) if kinds is not None else None)
            subscribe_piped(found.room, [found.sid])

    # -- reading -------------------------------------------------------------------------------

    async def participant(self, participant: str) -> ParticipantState:
        """See :meth:`sfu.plane.api.MediaPlane.participant`."""
        return _state(self._get(participant))

    async def find_participant(self, room: str, identity: str) -> ParticipantState | None:
        """See :meth:`sfu.plane.api.MediaPlane.find_participant`."""
        media_room = self.server.get_room(room)
        found = media_room.by_identity(identity) if media_room is not None else None
        return _state(found) if found is not None else None

    async def room_participants(
        self, room: str, exclude: str | None = None
    ) -> list[ParticipantInfo]:
        """See :meth:`sfu.plane.api.MediaPlane.room_participants`."""
        media_room = self.server.get_room(room)
        if media_room is None:
            return []
        return [i for i in media_room.participant_infos() if i.sid != exclude]

    # -- WHEP ----------------------------------------------------------------------------------

    async def whep_play(self, viewer: str, publisher: str, sdp: str) -> str:
        """See :meth:`sfu.plane.api.MediaPlane.whep_play`."""
        found = self._get(viewer)
        source = found.room.by_identity(publisher)
        if source is None:
            raise NotFoundError(f"no publisher {publisher}")
        kinds = found.subscribe_kinds  # a podcast listener: audio, unless the stage shows video
        producers = [pr for pr in source.producers.values() if kinds is None or pr.kind in kinds]
        return await negotiate_viewer(found, sdp, producers)

    # -- pipes ---------------------------------------------------------------------------------

    async def pipe_open(
        self,
        room: str,
        peer: str,
        listener: PipeListener,
        listen_ip: str = "127.0.0.1",
        enable_srtp: bool = True,
    ) -> PipeTransportParameters:
        """See :meth:`sfu.plane.api.MediaPlane.pipe_open`."""
        return await self.pipes.open(
            room, peer, listener, listen_ip=listen_ip, enable_srtp=enable_srtp
        )

    async def pipe_connect(self, room: str, peer: str, remote: PipeTransportParameters) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.pipe_connect`."""
        self.pipes.connect(room, peer, remote)

    async def pipe_consume(self, room: str, peer: str, producer: str) -> PipeProducerParameters:
        """See :meth:`sfu.plane.api.MediaPlane.pipe_consume`."""
        return self.pipes.consume(room, peer, producer)

    async def pipe_produce(self, room: str, peer: str, params: PipeProducerParameters) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.pipe_produce`."""
        self.pipes.produce(room, peer, params)

    async def pipe_control(self, room: str, peer: str, control: PipeControl) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.pipe_control`."""
        self.pipes.control(room, peer, control)

    async def pipe_close(self, room: str, peer: str, keep_producers: bool = False) -> list[str]:
        """See :meth:`sfu.plane.api.MediaPlane.pipe_close`."""
        return await self.pipes.close(room, peer, keep_producers=keep_producers)

    async def pipe_drop(self, room: str, producers: list[str]) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.pipe_drop`."""
        self.pipes.drop(room, list(producers))

    # -- rooms and the process -----------------------------------------------------------------

    async def close_room(self, room: str, reason: str = "room_closed") -> None:
        """See :meth:`sfu.plane.api.MediaPlane.close_room`."""
        await self.server.close_room(room, reason=reason)

    async def ice_servers(self) -> list[IceServer]:
        """See :meth:`sfu.plane.api.MediaPlane.ice_servers`."""
        out = []
        for entry in self.server.ice_servers():
            username = entry.get("username")
            credential = entry.get("credential")
            out.append(
                IceServer(
                    urls=str(entry["urls"]),
                    username=str(username) if username is not None else None,
                    credential=str(credential) if credential is not None else None,
                )
            )
        return out

    async def stats(self) -> PlaneStats:
        """See :meth:`sfu.plane.api.MediaPlane.stats`."""
        counts = self.server.stats()
        return PlaneStats(
            rooms=counts["rooms"],
            participants=counts["participants"],
            producers=counts["producers"],
            consumers=counts["consumers"],
            counters=self.server.counters(),
        )

    async def close(self) -> None:
        """See :meth:`sfu.plane.api.MediaPlane.close`."""
        await self.pipes.close_all()
        await self.server.close()
