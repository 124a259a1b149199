"""Room: the participants of one conference and its subscription policy.

A room subscribes every participant (with the ``canSubscribe`` grant) to every other
participant's producers of the kinds it takes (``subscribe_kinds``). Events (joined, left,
updated, published, unpublished, muted) go to every other participant's listener;
active-speaker changes (at most 5 a second) go to all.

*Hidden* participants (the audience of a podcast room) are never announced: their joins and
leaves produce no event and they are absent from :meth:`Room.participant_infos`, so an
audience of N costs O(N) messages, not O(N^2) (RFC 7667 §3.7 topologies; LiveKit's
``hidden`` grant). :meth:`Room.set_hidden` moves a participant on or off the stage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sfu.errors import InvalidStateError
from sfu.events import (
    ActiveSpeakersChanged,
    ParticipantInfo,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantUpdated,
    RoomEvent,
    SpeakerLevel,
    TrackMuted,
    TrackPublished,
    TrackUnpublished,
)
from sfu.observers import ActiveSpeakerObserver
from sfu.participant import Participant, ParticipantListener
from sfu.producer import Producer
from sfu.router import Router

logger = logging.getLogger(__name__)


class Room:
    """One room: a :class:`Router` and its :class:`Participant` objects.

    Args:
        name: the room name.
        router: the room's media router.
        on_empty: called when the last participant leaves (the server then closes the room).
    """

    def __init__(
        self, name: str, router: Router, on_empty: Callable[[Room], None] | None = None
    ) -> None:
        self.name = name
        self.router = router
        self.participants: dict[str, Participant] = {}
        self.closed = False
        self._on_empty = on_empty
        self.on_event: Callable[[RoomEvent, bool], None] | None = None
        """Sees every room event of this room's own participants (``announced``: it was
        broadcast; False for a hidden participant's publication): a worker relays them to
        the room's shards on other workers (sfu.plane.worker_target)."""
        self.speakers = ActiveSpeakerObserver(self._audio_producers, self._on_speakers)

    def _audio_producers(self) -> list[Producer]:
        return [p for p in self.router.producers.values() if p.kind == "audio"]

    def _on_speakers(self, speakers: list[SpeakerLevel]) -> None:
        self._broadcast(ActiveSpeakersChanged(tuple(speakers)))

    def participant_infos(self, exclude: Participant | None = None) -> list[ParticipantInfo]:
        """Every visible participant (but ``exclude``) with their tracks."""
        return [p.info() for p in self.participants.values() if p is not exclude and not p.hidden]

    def hidden_count(self) -> int:
        """How many hidden participants (the audience) are in the room."""
        return sum(1 for p in self.participants.values() if p.hidden)

    def by_identity(self, identity: str) -> Participant | None:
        """The participant with this identity, if present."""
        for participant in self.participants.values():
            if participant.identity == identity:
                return participant
        return None

    async def join(
        self,
        identity: str,
        name: str,
        listener: ParticipantListener,
        *,
        can_publish: bool = True,
        can_subscribe: bool = True,
        auto_subscribe: bool = True,
        hidden: bool = False,
        subscribe_kinds: frozenset[str] | None = None,
        attributes: dict[str, str] | None = None,
    ) -> Participant:
        """Add a participant. An existing participant with the same identity is closed first
        (reason ``duplicate_identity``), as LiveKit does. A ``hidden`` participant is not
        announced; ``subscribe_kinds`` limits its automatic subscriptions (None: all kinds).

        Raises:
            InvalidStateError: when the room is closed.
        """
        if self.closed:
            raise InvalidStateError("room is closed")
        previous = self.by_identity(identity)
        if previous is not None:
            previous.listener.on_closed("duplicate_identity")
            await self.remove(previous, reason="duplicate_identity", notify_empty=False)
        participant = Participant(
            self, identity, name, listener, can_publish=can_publish, can_subscribe=can_subscribe
        )
        participant.auto_subscribe = auto_subscribe
        participant.hidden = hidden
        participant.subscribe_kinds = subscribe_kinds
        participant.attributes = dict(attributes or {})
        self.participants[participant.sid] = participant
        if not hidden:
            self._broadcast(ParticipantJoined(participant.info()), exclude=participant)
        if can_subscribe and auto_subscribe:
            self._subscribe_to_all(participant)
        return participant

    def _subscribe_to_all(self, participant: Participant) -> None:
        for other in list(self.participants.values()):
            if other is participant:
                continue
            for producer in list(other.producers.values()):
                participant.subscribe(producer)

    def set_hidden(self, participant: Participant, hidden: bool) -> None:
        """Move a participant off (``hidden``) or onto the stage: others see it leave or
        join. Its media is unchanged."""
        if participant.hidden == hidden or participant.closed:
            return
        participant.hidden = hidden
        if hidden:
            self._broadcast(ParticipantLeft(participant.sid), exclude=participant)
        else:
            self._broadcast(ParticipantJoined(participant.info()), exclude=participant)

    def set_attributes(self, participant: Participant, attributes: dict[str, str]) -> None:
        """Replace a participant's attributes; a visible participant's change is announced
        (``ParticipantUpdated``) to everyone else."""
        if participant.attributes == attributes:
            return
        participant.attributes = dict(attributes)
        if not participant.hidden and not participant.closed:
            self._broadcast(ParticipantUpdated(participant.info()), exclude=participant)

    def set_subscribe_kinds(self, participant: Participant, kinds: frozenset[str] | None) -> None:
        """Change which producer kinds a participant takes: new kinds are subscribed at once,
        dropped kinds' consumers are closed."""
        participant.subscribe_kinds = kinds
        if kinds is not None:
            for consumer in list(participant.subscriptions.values()):
                if consumer.kind not in kinds:
                    consumer.close()
        if participant.can_subscribe and participant.auto_subscribe:
            self._subscribe_to_all(participant)

    async def set_can_publish(self, participant: Participant, allowed: bool) -> None:
        """Grant or withdraw ``canPublish`` while connected. Withdrawing closes the
        participant's producers at once (every consumer of them goes too); granting lets the
        client send a publish offer on the same signaling session, no reconnect."""
        participant.can_publish = allowed
        if not allowed:
            await participant.stop_publishing()

    async def remove(
        self, participant: Participant, *, reason: str = "left", notify_empty: bool = True
    ) -> None:
        """Remove a participant and close all of its media. Safe to call twice."""
        if self.participants.get(participant.sid) is not participant:
            return
        del self.participants[participant.sid]
        try:
            await participant.close()
        finally:
            if not participant.hidden:
                self._broadcast(ParticipantLeft(participant.sid), exclude=participant)
            logger.info("room %s: %s left (%s)", self.name, participant.identity, reason)
            if notify_empty and not self.participants and self._on_empty is not None:
                self._on_empty(self)

    def on_published(self, participant: Participant, producer: Producer) -> None:
        """A new producer: announce it and subscribe every other participant."""
        if not participant.hidden:
            self._broadcast(TrackPublished(participant.sid, producer.info()), exclude=participant)
        elif self.on_event is not None:
            self.on_event(TrackPublished(participant.sid, producer.info()), False)
        if producer.kind == "audio":
            self.speakers.start()
        for other in list(self.participants.values()):
            if other is not participant and other.auto_subscribe:
                other.subscribe(producer)

    def on_unpublished(self, participant: Participant, producer: Producer) -> None:
        """A producer closed; its consumers are already gone."""
        if not participant.hidden:
            self._broadcast(TrackUnpublished(participant.sid, producer.id), exclude=participant)
        elif self.on_event is not None:
            self.on_event(TrackUnpublished(participant.sid, producer.id), False)

    def on_muted(
        self, participant: Participant, producer: Producer, *, remote: bool = False
    ) -> None:
        """A producer was muted or unmuted; a ``remote`` (moderator) mute is also sent to the
        publisher itself."""
        self._broadcast(
            TrackMuted(participant.sid, producer.id, producer.paused, remote),
            exclude=None if remote else participant,
        )

    def _broadcast(self, event: RoomEvent, exclude: Participant | None = None) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event, True)
            except Exception:
                logger.exception("room %s: event hook failed", self.name)
        for participant in list(self.participants.values()):
            if participant is exclude:
                continue
            try:
                participant.listener.on_room_event(event)
            except Exception:  # one broken listener must not hurt the others
                logger.exception("listener of %s failed", participant.sid)

    async def close(self, reason: str = "room_closed") -> None:
        """Close every participant (listeners get ``on_closed(reason)``) and the router."""
        if self.closed:
            return
        self.closed = True
        await self.speakers.close()
        for participant in list(self.participants.values()):
            participant.listener.on_closed(reason)
            await self.remove(participant, reason=reason, notify_empty=False)
        await self.router.close()
