"""Room: the participants of one conference and its subscription policy.

A conference room subscribes every participant (with the ``canSubscribe`` grant) to every
other participant's producers. Events (joined, left, published, unpublished, muted) go to
every other participant's listener; active-speaker changes (at most 5 a second) go to all.
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
        self.speakers = ActiveSpeakerObserver(self._audio_producers, self._on_speakers)

    def _audio_producers(self) -> list[Producer]:
        return [p for p in self.router.producers.values() if p.kind == "audio"]

    def _on_speakers(self, speakers: list[SpeakerLevel]) -> None:
        self._broadcast(ActiveSpeakersChanged(tuple(speakers)))

    def participant_infos(self, exclude: Participant | None = None) -> list[ParticipantInfo]:
        """Everyone in the room (but ``exclude``) with their tracks."""
        return [p.info() for p in self.participants.values() if p is not exclude]

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
    ) -> Participant:
        """Add a participant. An existing participant with the same identity is closed first
        (reason ``duplicate_identity``), as LiveKit does.

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
        self.participants[participant.sid] = participant
        self._broadcast(ParticipantJoined(participant.info()), exclude=participant)
        if can_subscribe and auto_subscribe:
            for other in list(self.participants.values()):
                if other is participant:
                    continue
                for producer in list(other.producers.values()):
                    participant.subscribe(producer)
        return participant

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
            self._broadcast(ParticipantLeft(participant.sid), exclude=participant)
            logger.info("room %s: %s left (%s)", self.name, participant.identity, reason)
            if notify_empty and not self.participants and self._on_empty is not None:
                self._on_empty(self)

    def on_published(self, participant: Participant, producer: Producer) -> None:
        """A new producer: announce it and subscribe every other participant."""
        self._broadcast(TrackPublished(participant.sid, producer.info()), exclude=participant)
        if producer.kind == "audio":
            self.speakers.start()
        for other in list(self.participants.values()):
            if other is not participant and other.auto_subscribe:
                other.subscribe(producer)

    def on_unpublished(self, participant: Participant, producer: Producer) -> None:
        """A producer closed; its consumers are already gone."""
        self._broadcast(TrackUnpublished(participant.sid, producer.id), exclude=participant)

    def on_muted(self, participant: Participant, producer: Producer) -> None:
        """A producer was muted or unmuted."""
        self._broadcast(
            TrackMuted(participant.sid, producer.id, producer.paused), exclude=participant
        )

    def _broadcast(self, event: RoomEvent, exclude: Participant | None = None) -> None:
        for participant in list(self.participants.values()):
            if participant is exclude:
                continue
            try:
                participant.listener.on_room_event(event)
            except Exception:  # one broken listener must not hurt the others
                logger.exception("listener of %s failed", participant.sid)

    async def close(self) -> None:
        """Close every participant (reason ``room_closed``) and the router."""
        if self.closed:
            return
        self.closed = True
        await self.speakers.close()
        for participant in list(self.participants.values()):
            participant.listener.on_closed("room_closed")
            await self.remove(participant, reason="room_closed", notify_empty=False)
        await self.router.close()
