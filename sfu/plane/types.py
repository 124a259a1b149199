"""The plain dataclasses of the media-plane API (:mod:`sfu.plane.api`).

Every field is a str, int, float, bool, None, a tuple/list/dict of those or another of these
dataclasses, so every value crosses a process boundary through :mod:`sfu.plane.codec`.

The pipe calls' values are :mod:`sfu.pipe`'s own dataclasses, re-exported here for the edge:
:class:`PipeTransportParameters` (where a pipe end listens and its SRTP send key, bytes),
:class:`PipeProducerParameters` (one piped producer) and :class:`PipeControl`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sfu.events import ParticipantInfo, TrackInfo
from sfu.pipe import PipeControl, PipeProducerParameters, PipeTransportParameters

__all__ = [
    "IceServer",
    "JoinResult",
    "ParticipantRef",
    "ParticipantSpec",
    "ParticipantState",
    "PipeControl",
    "PipeProducerParameters",
    "PipeTransportParameters",
    "PlaneStats",
    "PublishAnswer",
    "TrackSpec",
    "WorkerInfo",
]


@dataclass(frozen=True, slots=True)
class TrackSpec:
    """Client-supplied metadata for the track on m-line ``mid`` of a publish offer.

    ``kind``: ``audio``/``video``; ``source``: microphone/camera/screen/screen_audio/unknown;
    ``muted``: the producer starts paused; ``sid``: the track sid this m-line continues after
    a media restart (None: a new track)."""

    mid: str
    kind: str
    source: str = "unknown"
    name: str = ""
    muted: bool = False
    sid: str | None = None


@dataclass(frozen=True, slots=True)
class ParticipantSpec:
    """How a participant joins a room (``MediaPlane.join``).

    Attributes:
        identity: the authenticated identity (a second join with it closes the first,
            reason ``duplicate_identity``); name: display name.
        can_publish / can_subscribe: the grants (RFC 7519 claims, LiveKit's shape).
        auto_subscribe: subscribe to every other participant's producers (False for a WHEP
            viewer, bound to one publisher by ``MediaPlane.whep_play``).
        hidden: never announced to the room (a podcast audience member).
        subscribe_kinds: the producer kinds it takes (``audio``/``video``); None: all.
        attributes: application key/value strings (the stage role lives in ``role``).
        media_restart_grace_s: not None: a failed transport is replaced instead of closing
            the participant; its listener gets ``MediaRestarted(side, "transport_failed")``
            and a replacement not connected this many seconds (s) later closes it
            (``transport_failed``). aiortc has no ICE restart, so a new transport replaces
            the old one, as LiveKit's full reconnect does.
        sid / resume_tracks: set only by :class:`sfu.plane.workers.WorkerMediaPlane` for a
            publisher whose worker died and who joins again (issue 12): the participant keeps
            its sid ``sid`` and its first producer of each ``(kind, source)`` in
            ``resume_tracks`` (``(kind, source, track sid)`` triples) keeps that track sid,
            so the other workers resume their suspended piped producers (docs/pipe.md). The
            edge never sets them.
    """

    identity: str
    name: str
    can_publish: bool = True
    can_subscribe: bool = True
    auto_subscribe: bool = True
    hidden: bool = False
    subscribe_kinds: tuple[str, ...] | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    media_restart_grace_s: float | None = None
    sid: str | None = None
    resume_tracks: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ParticipantRef:
    """What the edge keeps of a joined participant: its ids, never its objects.

    ``sid``: the participant id every later call takes (``PA_...``); ``room``: the room name;
    ``identity`` and ``name`` as joined."""

    sid: str
    room: str
    identity: str
    name: str


@dataclass(frozen=True, slots=True)
class JoinResult:
    """``MediaPlane.join``: the new participant, as others see it (``info``), and every
    other visible participant of the room (``others``)."""

    participant: ParticipantRef
    info: ParticipantInfo
    others: tuple[ParticipantInfo, ...]


@dataclass(frozen=True, slots=True)
class ParticipantState:
    """A participant's current state (``MediaPlane.participant``).

    ``info``: as others see it (tracks with a negotiated codec only); ``producers``: every
    track it publishes, negotiated or not; ``subscribe_kinds``: None means every kind."""

    participant: ParticipantRef
    info: ParticipantInfo
    hidden: bool
    can_publish: bool
    can_subscribe: bool
    subscribe_kinds: tuple[str, ...] | None
    producers: tuple[TrackInfo, ...]


@dataclass(frozen=True, slots=True)
class PublishAnswer:
    """``MediaPlane.publish_offer``: the answer SDP and ``tracks``, mid -> track sid of every
    producer the participant now publishes."""

    sdp: str
    tracks: dict[str, str]


@dataclass(frozen=True, slots=True)
class IceServer:
    """One W3C ``RTCIceServer`` (one STUN/TURN URL and, for TURN, static credentials)."""

    urls: str
    username: str | None = None
    credential: str | None = None

    def as_w3c(self) -> dict[str, object]:
        """The ``RTCIceServer`` dictionary a browser takes: ``{urls, username?,
        credential?}``."""
        entry: dict[str, object] = {"urls": self.urls}
        if self.username:
            entry["username"] = self.username
            entry["credential"] = self.credential
        return entry


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One media worker process, for ``/metrics`` (issue 12: ``sfu_worker_up`` ...).

    ``index``: the worker's slot (0..N-1, the ``worker`` label); ``pid``: its current process
    (None while down); ``up``: it answers; ``restarts``: times it was started again after its
    first start; ``cpu_seconds``: user + system CPU (s) of every process that held the slot
    (monotonic); ``rss_bytes``: resident memory of the current process (bytes, 0 while
    down); ``counters``: its own media counters (:data:`sfu.stats.COUNTER_NAMES`)."""

    index: int
    pid: int | None = None
    up: bool = False
    restarts: int = 0
    cpu_seconds: float = 0.0
    rss_bytes: int = 0
    counters: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PlaneStats:
    """Gauges (rooms, participants, producers, consumers: current counts) and ``counters``,
    the monotonic media counters of :data:`sfu.stats.COUNTER_NAMES` (packets, bytes, ...),
    summed over the whole media plane; ``workers``: one entry per media worker process
    (empty when the media runs in the control process)."""

    rooms: int
    participants: int
    producers: int
    consumers: int
    counters: dict[str, int] = field(default_factory=dict)
    workers: tuple[WorkerInfo, ...] = ()
