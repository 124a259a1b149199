"""Typed room events the media plane reports to the application (the signaling layer).

These are plain frozen dataclasses; the signaling layer turns them into protocol messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TrackInfo:
    """A published track (Producer): ``sid``, ``kind`` (audio/video), ``source``
    (microphone/camera/screen/screen_audio/unknown), ``name`` and ``muted``."""

    sid: str
    kind: str
    source: str
    name: str = ""
    muted: bool = False


@dataclass(frozen=True, slots=True)
class ParticipantInfo:
    """A participant as others see it. ``attributes`` are application key/value strings
    (LiveKit's participant attributes; the signaling layer keeps the stage role there)."""

    sid: str
    identity: str
    name: str
    tracks: tuple[TrackInfo, ...] = field(default_factory=tuple)
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SubscribedTrack:
    """One m-line of a subscribe offer: which producer ``mid`` carries."""

    mid: str
    participant: str
    track: str
    kind: str


@dataclass(frozen=True, slots=True)
class ParticipantJoined:
    participant: ParticipantInfo


@dataclass(frozen=True, slots=True)
class ParticipantLeft:
    participant: str


@dataclass(frozen=True, slots=True)
class ParticipantUpdated:
    """A visible participant's attributes changed (e.g. its stage role)."""

    participant: ParticipantInfo


@dataclass(frozen=True, slots=True)
class TrackPublished:
    participant: str
    track: TrackInfo


@dataclass(frozen=True, slots=True)
class TrackUnpublished:
    participant: str
    track: str


@dataclass(frozen=True, slots=True)
class TrackMuted:
    """``remote`` is True when a moderator muted the track (the publisher is told too)."""

    participant: str
    track: str
    muted: bool
    remote: bool = False


@dataclass(frozen=True, slots=True)
class SpeakerLevel:
    """An active speaker: participant sid, track sid and smoothed loudness (dBov, <= 0)."""

    participant: str
    track: str
    level_dbov: int


@dataclass(frozen=True, slots=True)
class ActiveSpeakersChanged:
    """The active speakers, loudest first (empty when nobody speaks)."""

    speakers: tuple[SpeakerLevel, ...]


@dataclass(frozen=True, slots=True)
class TrackBandwidthPaused:
    """Sent to one subscriber: its video of ``track`` paused (``paused``) because not even the
    lowest simulcast layer fits its bandwidth, or resumed. Its audio continues."""

    participant: str
    track: str
    paused: bool


@dataclass(frozen=True, slots=True)
class PublisherLayers:
    """Sent to one publisher (dynacast): send only the simulcast layers ``active`` (rids) of
    ``track``; the others are paused because no subscriber uses them."""

    track: str
    active: tuple[str, ...]


RoomEvent = (
    ParticipantJoined
    | ParticipantLeft
    | ParticipantUpdated
    | TrackPublished
    | TrackUnpublished
    | TrackMuted
    | ActiveSpeakersChanged
    | TrackBandwidthPaused
    | PublisherLayers
)


@dataclass(frozen=True, slots=True)
class SubscribeOffer:
    """A subscribe-transport offer (RFC 8829) to deliver to the participant's client, with
    the mid map of its m-lines; the client answers through ``MediaPlane.subscribe_answer``."""

    sdp: str
    tracks: tuple[SubscribedTrack, ...]


@dataclass(frozen=True, slots=True)
class ParticipantClosed:
    """The media plane closed the participant (``duplicate_identity``, ``transport_failed``,
    ``room_closed``, ``room_ended``, ``removed`` ...); its id is no longer valid."""

    reason: str


@dataclass(frozen=True, slots=True)
class MediaRestarted:
    """The ``side`` (``publish``/``subscribe``) transport's media path failed and the media
    plane replaced it (``reason``: ``transport_failed``); the client renegotiates that side
    on a new RTCPeerConnection. Only after ``MediaPlane.enable_media_restart``."""

    side: str
    reason: str


ParticipantEvent = RoomEvent | SubscribeOffer | ParticipantClosed | MediaRestarted
"""Everything the media plane tells the edge about one participant."""
