"""The WebSocket signaling protocol: one request union, one response union, a version.

Every message is a JSON object with a ``type`` discriminator. Client requests may carry an
``id`` (a client-chosen string, at most 64 chars); the direct reply to that request (``answer``,
``joined``, ``error``, ``pong``, ``ok``) echoes it as ``ref``. Server events (``offer``,
``participant_joined`` ...) have no ``ref``. ``docs/protocol.md`` documents every message.

Negotiation follows LiveKit's two-transport design: each participant has a *publish*
RTCPeerConnection (the client offers, the server answers) and a *subscribe* RTCPeerConnection
(the server offers, the client answers), so neither side ever has to resolve glare.

Errors raised: :class:`ProtocolError` (with a stable ``code``) for anything that cannot be
parsed into a :data:`Request`.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

PROTOCOL_VERSION = 1
"""Current protocol version. A ``join`` with another version gets ``unsupported_version``."""

MAX_SDP_CHARS = 64 * 1024
"""Largest accepted SDP blob (characters)."""


class ErrorCode(StrEnum):
    """Stable error codes carried by :class:`ErrorResponse`."""

    BAD_REQUEST = "bad_request"  # not JSON, not an object, or a field fails validation
    UNKNOWN_TYPE = "unknown_type"  # ``type`` names no request
    UNSUPPORTED_VERSION = "unsupported_version"
    TOO_LARGE = "too_large"  # message over the size limit
    INVALID_SDP = "invalid_sdp"  # SDP that aiortc cannot parse or negotiate
    OUT_OF_ORDER = "out_of_order"  # e.g. an answer with no offer outstanding
    NOT_JOINED = "not_joined"  # a request that needs ``join`` first
    ALREADY_JOINED = "already_joined"
    UNAUTHORIZED = "unauthorized"  # missing, invalid, expired or revoked token
    FORBIDDEN = "forbidden"  # token lacks the grant (e.g. canPublish)
    NOT_FOUND = "not_found"  # unknown track or participant
    RATE_LIMITED = "rate_limited"
    RESUME_FAILED = "resume_failed"  # unknown or expired resume token, or missed messages gone
    UNAVAILABLE = "unavailable"  # cluster: Redis unreachable, node full or draining (reason)
    INTERNAL = "internal"


class ProtocolError(Exception):
    """A request that cannot be accepted; becomes an :class:`ErrorResponse`.

    Attributes: ``code`` (:class:`ErrorCode`), ``message`` (human readable), ``ref`` (the
    request ``id`` if it could be read), ``reason`` (a stable word for the client to explain a
    refused ``join``: ``locked``, ``denied``, ``waiting_timeout``, ...; see
    :attr:`ErrorResponse.reason`).
    """

    def __init__(
        self, code: ErrorCode, message: str, ref: str | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref
        self.reason = reason


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


RequestId = Annotated[str, Field(max_length=64)]
Sdp = Annotated[str, Field(min_length=1, max_length=MAX_SDP_CHARS)]
TransportName = Literal["publish", "subscribe"]
TrackKind = Literal["audio", "video"]
TrackSource = Literal["microphone", "camera", "screen", "screen_audio", "unknown"]
RoomKind = Literal["conference", "podcast"]
Role = Literal["host", "moderator", "speaker", "listener"]
"""Stage roles. host: one per room, may end it and hand hosting over; moderator (co-host):
mutes, removes, promotes and demotes; speaker: publishes; listener: subscribe-only."""
Sid = Annotated[str, Field(min_length=1, max_length=64)]


class IceCandidate(_Msg):
    """An ICE candidate as the W3C ``RTCIceCandidateInit`` dictionary."""

    candidate: Annotated[str, Field(max_length=1024)]
    sdpMid: Annotated[str, Field(max_length=32)] | None = None
    sdpMLineIndex: Annotated[int, Field(ge=0, le=1024)] | None = None


class TrackDescription(_Msg):
    """Metadata for one track a client publishes: its ``mid`` in the publish offer."""

    mid: Annotated[str, Field(min_length=1, max_length=32)]
    kind: TrackKind
    source: TrackSource = "unknown"
    name: Annotated[str, Field(max_length=128)] = ""
    muted: bool = False
    sid: Sid | None = None
    """After a media restart: the track sid this m-line continues (the server keeps it)."""


# --- requests (client -> server) -------------------------------------------------------


class JoinRequest(_Msg):
    """Join a room. ``token`` is a JWT access token once auth is enabled."""

    type: Literal["join"]
    id: RequestId | None = None
    v: int = PROTOCOL_VERSION
    room: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")]
    name: Annotated[str, Field(max_length=128)] = ""
    identity: Annotated[str, Field(max_length=128)] | None = None
    token: Annotated[str, Field(max_length=8192)] | None = None
    subscribe: bool = True


class OfferRequest(_Msg):
    """An SDP offer for the *publish* transport, with one description per sending track.

    Tracks whose mid is absent from ``tracks`` but present as a sending m-line are published
    with ``source="unknown"``; a mid that stops sending is unpublished.
    """

    type: Literal["offer"]
    id: RequestId | None = None
    sdp: Sdp
    tracks: Annotated[list[TrackDescription], Field(max_length=32)] = []


class AnswerRequest(_Msg):
    """The client's SDP answer to the server's *subscribe* offer."""

    type: Literal["answer"]
    id: RequestId | None = None
    sdp: Sdp


class TrickleRequest(_Msg):
    """A trickled ICE candidate for one transport; ``candidate`` null ends gathering."""

    type: Literal["trickle"]
    id: RequestId | None = None
    transport: TransportName
    candidate: IceCandidate | None = None


class MuteRequest(_Msg):
    """Mute or unmute one of the caller's own published tracks (forwarding pauses)."""

    type: Literal["mute"]
    id: RequestId | None = None
    track: Annotated[str, Field(max_length=64)]
    muted: bool


class TrackSettingsRequest(_Msg):
    """Adaptive stream (LiveKit's ``UpdateTrackSettings``): how the caller shows a track it is
    subscribed to. ``visible`` False: no video is sent; ``width``/``height``: the tile's size in
    CSS pixels, so a simulcast track is sent in the smallest layer at least that large (that
    the subscriber's bandwidth allows). Answered with ``ok``; ``not_found`` when not
    subscribed to ``track``."""

    type: Literal["track_settings"]
    id: RequestId | None = None
    track: Annotated[str, Field(max_length=64)]
    visible: bool = True
    width: Annotated[int, Field(ge=0, le=16384)] | None = None
    height: Annotated[int, Field(ge=0, le=16384)] | None = None


# --- whiteboard: requests and events (docs/protocol.md, "Whiteboard") -------------------

BOARD_WIDTH = 1600
"""Width of the logical whiteboard: every coordinate and width is in these board pixels."""
BOARD_HEIGHT = 900
"""Height of the logical whiteboard (board pixels); clients scale 1600x900 to their canvas."""
MAX_STROKE_POINTS = 2000
"""Most points in one stroke."""
MAX_PART_POINTS = 200
"""Most points in one ``board_stroke_part`` (a 50 ms batch holds a dozen)."""

_BoardX = Annotated[float, Field(ge=0, le=BOARD_WIDTH, strict=True, allow_inf_nan=False)]
_BoardY = Annotated[float, Field(ge=0, le=BOARD_HEIGHT, strict=True, allow_inf_nan=False)]


class Stroke(_Msg):
    """One whiteboard stroke, in board pixels (see :data:`BOARD_WIDTH`).

    ``id`` is chosen by the client (1-32 of ``A-Z a-z 0-9 _ -``), unique among its author's
    strokes on the board. ``tool`` ``eraser`` erases what is under it (only strokes drawn
    before it). ``color`` is ``#rrggbb`` (normalised to lower case), ``width`` the line width
    (1-64 board px), ``points`` 1-2000 ``[x, y]`` pairs with 0 <= x <= 1600, 0 <= y <= 900,
    finite numbers only, rounded to 0.1 board px.
    """

    id: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_\-]+$")]
    tool: Literal["pen", "eraser"] = "pen"
    color: Annotated[str, Field(pattern=r"^#[0-9A-Fa-f]{6}$")] = "#000000"
    width: Annotated[float, Field(ge=1, le=64, strict=True, allow_inf_nan=False)] = 4.0
    points: Annotated[
        list[tuple[_BoardX, _BoardY]], Field(min_length=1, max_length=MAX_STROKE_POINTS)
    ]

    @field_validator("color")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()

    @field_validator("width")
    @classmethod
    def _round_width(cls, value: float) -> float:
        return round(float(value), 1)

    @field_validator("points")
    @classmethod
    def _round_points(cls, value: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return [(round(float(x), 1), round(float(y), 1)) for x, y in value]


class BoardStrokeRequest(_Msg):
    """Add a finished stroke to the room's board (stored; needs ``canPublishData``)."""

    type: Literal["board_stroke"]
    id: RequestId | None = None
    stroke: Stroke


class BoardStrokePartRequest(_Msg):
    """Live progress of a stroke being drawn: ``stroke.points`` holds only the points added
    since the previous part. Relayed to the others, never stored; the finished stroke follows
    as ``board_stroke`` with all its points (needs ``canPublishData``)."""

    type: Literal["board_stroke_part"]
    id: RequestId | None = None
    stroke: Stroke

    @field_validator("stroke")
    @classmethod
    def _batch(cls, value: Stroke) -> Stroke:
        if len(value.points) > MAX_PART_POINTS:
            raise ValueError(f"a stroke part holds at most {MAX_PART_POINTS} points")
        return value


class BoardUndoRequest(_Msg):
    """Remove the caller's own latest stroke (by identity) from the board."""

    type: Literal["board_undo"]
    id: RequestId | None = None


class BoardClearRequest(_Msg):
    """Remove every stroke from the board (needs the ``roomAdmin`` grant)."""

    type: Literal["board_clear"]
    id: RequestId | None = None


BOARD_REQUEST_TYPES = frozenset({"board_stroke", "board_stroke_part", "board_undo", "board_clear"})


class BoardItem(_Msg):
    """A stroke on the board, with who drew it (``participant`` is the sid at the time)."""

    stroke: Stroke
    participant: str
    identity: str


class BoardStrokeEvent(_Msg):
    """A stroke was added to the board (sent to everyone, the author included)."""

    type: Literal["board_stroke"] = "board_stroke"
    stroke: Stroke
    participant: str
    identity: str


class BoardStrokePartEvent(_Msg):
    """Points of a stroke still being drawn (sent to everyone but the author)."""

    type: Literal["board_stroke_part"] = "board_stroke_part"
    stroke: Stroke
    participant: str
    identity: str


class BoardUndoEvent(_Msg):
    """``identity``'s stroke ``stroke_id`` was removed from the board."""

    type: Literal["board_undo"] = "board_undo"
    stroke_id: str
    identity: str
    participant: str


class BoardClearedEvent(_Msg):
    """The board was cleared by participant ``by`` (a sid)."""

    type: Literal["board_cleared"] = "board_cleared"
    by: str


class BoardStateEvent(_Msg):
    """The whole board, oldest stroke first, sent right after ``joined``; ``can_draw`` and
    ``can_clear`` say what this participant's grants allow."""

    type: Literal["board_state"] = "board_state"
    strokes: list[BoardItem]
    can_draw: bool
    can_clear: bool


MAX_CHAT_BYTES = 2048
"""Largest chat message (UTF-8 bytes)."""


class ChatRequest(_Msg):
    """Send a chat message to the room (plain text, at most 2 KB of UTF-8; needs the
    ``canPublishData`` grant; rate-limited per participant)."""

    type: Literal["chat"]
    id: RequestId | None = None
    text: Annotated[str, Field(min_length=1, max_length=MAX_CHAT_BYTES)]

    @field_validator("text")
    @classmethod
    def _size(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text must not be blank")
        if len(value.encode("utf-8")) > MAX_CHAT_BYTES:
            raise ValueError(f"text is longer than {MAX_CHAT_BYTES} bytes")
        return value


class ReactionRequest(_Msg):
    """Send an emoji reaction (1-8 characters, no control characters); reactions are
    broadcast in batches."""

    type: Literal["reaction"]
    id: RequestId | None = None
    emoji: Annotated[str, Field(min_length=1, max_length=8)]

    @field_validator("emoji")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable() or value.strip() != value:
            raise ValueError("emoji must be printable, without spaces")
        return value


class RaiseHandRequest(_Msg):
    """Raise (``raised`` true) or lower one's hand: a podcast listener (moderators see the
    queue) or anyone in a conference (everyone sees it). With ``participant`` the host or a
    moderator lowers someone else's hand (``raised`` must be false)."""

    type: Literal["raise_hand"]
    id: RequestId | None = None
    raised: bool = True
    participant: Sid | None = None


class SetRoleRequest(_Msg):
    """Change another participant's role (moderators: listener <-> speaker; the host also
    makes and unmakes moderators). Promoting grants ``canPublish`` live; demoting to
    listener closes the participant's producers at once. A speaker may step down itself."""

    type: Literal["set_role"]
    id: RequestId | None = None
    participant: Sid
    role: Role


class InviteToStageRequest(_Msg):
    """A moderator invites a listener (hand raised or not) to speak; the listener gets
    ``stage_invite`` and answers with ``respond_invite``."""

    type: Literal["invite_to_stage"]
    id: RequestId | None = None
    participant: Sid


class RespondInviteRequest(_Msg):
    """A listener accepts (becomes a speaker) or declines a pending stage invitation."""

    type: Literal["respond_invite"]
    id: RequestId | None = None
    accept: bool


class MuteParticipantRequest(_Msg):
    """A moderator mutes another participant's track (``track`` omitted: every audio
    track). Forwarding stops and the speaker is told; only the speaker may unmute."""

    type: Literal["mute_participant"]
    id: RequestId | None = None
    participant: Sid
    track: Annotated[str, Field(max_length=64)] | None = None


class RemoveParticipantRequest(_Msg):
    """A moderator removes a participant; its room token is revoked (it cannot rejoin
    with it) and it is barred from the room for the room's life (its identity or account,
    and the browser that redeemed its invite). ``revoke_invite``: also revoke the invite
    code that admitted it."""

    type: Literal["remove_participant"]
    id: RequestId | None = None
    participant: Sid
    revoke_invite: bool = False


class TransferHostRequest(_Msg):
    """The host hands hosting to another participant (who becomes host; the old host
    becomes a moderator)."""

    type: Literal["transfer_host"]
    id: RequestId | None = None
    participant: Sid


class EndRoomRequest(_Msg):
    """The host ends the room: everyone gets ``room_ended`` and is disconnected."""

    type: Literal["end_room"]
    id: RequestId | None = None


class SetStageVideoRequest(_Msg):
    """The host or a moderator shows the stage's video to the audience (``enabled``) or
    goes back to audio only (the default): listeners' video subscriptions follow at once."""

    type: Literal["set_stage_video"]
    id: RequestId | None = None
    enabled: bool


class SetListenerSharingRequest(_Msg):
    """The host or a moderator lets podcast listeners draw on the whiteboard and upload files
    (``enabled``), or not (the default)."""

    type: Literal["set_listener_sharing"]
    id: RequestId | None = None
    enabled: bool


MAX_AUDIENCE_PAGE = 100


class LockRoomRequest(_Msg):
    """The host or a moderator locks the room (``locked``: nobody new joins; the host, the
    moderators and people already in this meeting still do) or unlocks it. Persisted."""

    type: Literal["lock_room"]
    id: RequestId | None = None
    locked: bool


class SetWaitingRoomRequest(_Msg):
    """The host or a moderator turns the waiting room on (newcomers knock and wait for
    ``respond_knock``) or off (everyone waiting is let in). Persisted."""

    type: Literal["set_waiting_room"]
    id: RequestId | None = None
    enabled: bool


class RespondKnockRequest(_Msg):
    """The host or a moderator lets in (``admit`` true) or turns away one person waiting
    (``knock``: the id from the ``knock`` event)."""

    type: Literal["respond_knock"]
    id: RequestId | None = None
    knock: Annotated[str, Field(min_length=1, max_length=64)]
    admit: bool


class ListAudienceRequest(_Msg):
    """One page of the audience (listeners), in join order; answered by ``audience_page``."""

    type: Literal["list_audience"]
    id: RequestId | None = None
    offset: Annotated[int, Field(ge=0, le=10_000_000)] = 0
    limit: Annotated[int, Field(ge=1, le=MAX_AUDIENCE_PAGE)] = 50


class LeaveRequest(_Msg):
    """Leave the room; the server closes every transport, producer and consumer."""

    type: Literal["leave"]
    id: RequestId | None = None


class ResumeRequest(_Msg):
    """Resume a session whose socket dropped, on a new socket, instead of ``join``.
    ``token`` is the ``resume_token`` of ``joined``; ``last_seq`` the ``seq`` of the last
    message the client read (0: none after ``joined``). Answered by the missed messages
    (seq > ``last_seq``, in order) and then ``resumed``, or ``error`` ``resume_failed``."""

    type: Literal["resume"]
    id: RequestId | None = None
    token: Annotated[str, Field(min_length=1, max_length=128)]
    last_seq: Annotated[int, Field(ge=0)]


class PingRequest(_Msg):
    """Application-level keepalive; answered with :class:`PongResponse`."""

    type: Literal["ping"]
    id: RequestId | None = None


class RestartMediaRequest(_Msg):
    """The client lost the media path of one of its transports (its RTCPeerConnection went
    ``failed``, or stayed ``disconnected``) and made a new RTCPeerConnection for it: the server
    replaces that transport. ``publish``: the client then sends a publish ``offer`` naming its
    tracks' sids; ``subscribe``: a new ``offer`` event follows. Answered with ``ok``."""

    type: Literal["restart_media"]
    id: RequestId | None = None
    side: TransportName


Request = Annotated[
    JoinRequest
    | OfferRequest
    | AnswerRequest
    | TrickleRequest
    | MuteRequest
    | TrackSettingsRequest
    | LeaveRequest
    | PingRequest
    | ResumeRequest
    | RestartMediaRequest
    | ChatRequest
    | ReactionRequest
    | RaiseHandRequest
    | SetRoleRequest
    | InviteToStageRequest
    | RespondInviteRequest
    | MuteParticipantRequest
    | RemoveParticipantRequest
    | TransferHostRequest
    | EndRoomRequest
    | ListAudienceRequest
    | SetStageVideoRequest
    | SetListenerSharingRequest
    | LockRoomRequest
    | SetWaitingRoomRequest
    | RespondKnockRequest
    | BoardStrokeRequest
    | BoardStrokePartRequest
    | BoardUndoRequest
    | BoardClearRequest,
    Field(discriminator="type"),
]
STAGE_REQUEST_TYPES = frozenset(
    {
        "raise_hand",
        "set_role",
        "invite_to_stage",
        "respond_invite",
        "mute_participant",
        "remove_participant",
        "transfer_host",
        "end_room",
        "list_audience",
        "set_stage_video",
        "set_listener_sharing",
        "lock_room",
        "set_waiting_room",
        "respond_knock",
    }
)
MEDIA_REQUEST_TYPES = frozenset({"restart_media", "track_settings"})
REQUEST_TYPES = (
    frozenset({"join", "offer", "answer", "trickle", "mute", "leave", "ping", "chat", "reaction"})
    | frozenset({"resume"})
    | MEDIA_REQUEST_TYPES
    | STAGE_REQUEST_TYPES
    | BOARD_REQUEST_TYPES
)
_request_adapter: TypeAdapter[Request] = TypeAdapter(Request)


# --- responses and events (server -> client) ---------------------------------------------


class TrackInfo(_Msg):
    """A published track (a Producer) as other participants see it."""

    sid: str
    kind: TrackKind
    source: TrackSource
    name: str = ""
    muted: bool = False


class ParticipantInfo(_Msg):
    """A participant as other participants see it (``role`` is its stage role)."""

    sid: str
    identity: str
    name: str
    tracks: list[TrackInfo] = []
    role: Role = "speaker"


class Permissions(_Msg):
    """The caller's live grants (they change with its role)."""

    canPublish: bool
    canSubscribe: bool
    canPublishData: bool
    roomAdmin: bool


class JoinedResponse(_Msg):
    """Reply to ``join``: who I am, who is already there (in a podcast room: the stage
    only), the room kind, my role and grants, the audience size and the ICE servers."""

    type: Literal["joined"] = "joined"
    ref: str | None = None
    v: int = PROTOCOL_VERSION
    room: str
    participant: ParticipantInfo
    participants: list[ParticipantInfo]
    ice_servers: list[dict[str, Any]]
    kind: RoomKind = "conference"
    role: Role = "speaker"
    permissions: Permissions | None = None
    audience: int = 0
    stage_video: bool = False
    resume_token: str | None = None
    """Resumes this session on a new socket (``resume``) while it is held after a drop."""
    resume_grace_s: float = 0.0
    """How long (seconds) the session is held after its socket drops (0: never)."""


class ResumedResponse(_Msg):
    """Reply to ``resume``, sent after the replayed messages: the session goes on with the
    same participant, media, stage role, chat and board. ``last_seq`` is the newest
    message's ``seq``; ``replayed`` how many were sent again; ``ice_servers`` are fresh (TURN
    credentials)."""

    type: Literal["resumed"] = "resumed"
    ref: str | None = None
    participant: ParticipantInfo
    last_seq: int
    replayed: int
    ice_servers: list[dict[str, Any]]
    resume_grace_s: float


class AnswerResponse(_Msg):
    """The server's SDP answer to a publish ``offer``; ``tracks`` maps mids to track sids."""

    type: Literal["answer"] = "answer"
    ref: str | None = None
    sdp: str
    tracks: dict[str, str] = {}


class SubscribedTrack(_Msg):
    """One m-line of a subscribe offer: which producer this ``mid`` carries."""

    mid: str
    participant: str
    track: str
    kind: TrackKind


class OfferEvent(_Msg):
    """A server-initiated SDP offer for the *subscribe* transport (answer with ``answer``)."""

    type: Literal["offer"] = "offer"
    sdp: str
    tracks: list[SubscribedTrack]


class MediaRestartEvent(_Msg):
    """The media path of one of my transports failed (ICE failed, consent lost, a network
    change, or nothing heard for ``SFU_MEDIA_TIMEOUT_S``) and the server replaced it; I stay
    joined. ``publish``: make a new publish RTCPeerConnection, add the same tracks and send a
    publish ``offer`` with each track's ``sid`` (the server keeps the track sids, so
    subscribers see no change). ``subscribe``: close the subscribe RTCPeerConnection; the next
    ``offer`` is for a new one and carries the same tracks. Without a new connection within
    ``SFU_MEDIA_RESTART_GRACE_S`` the server removes me (``not_joined``, ``transport_failed``).
    """

    type: Literal["media_restart"] = "media_restart"
    side: TransportName
    reason: Literal["transport_failed"] = "transport_failed"


class ReconnectEvent(_Msg):
    """The media worker holding my participant died (issue 12): my session is over (a
    ``resume`` fails with ``resume_failed``) and the server closes the socket (code 1012,
    service restart). Join again with the same token and publish the same tracks: the join
    lands on a live worker (LiveKit's full reconnect)."""

    type: Literal["reconnect"] = "reconnect"
    reason: Literal["worker_lost"] = "worker_lost"


class ParticipantJoinedEvent(_Msg):
    type: Literal["participant_joined"] = "participant_joined"
    participant: ParticipantInfo


class ParticipantLeftEvent(_Msg):
    type: Literal["participant_left"] = "participant_left"
    participant: str


class ParticipantUpdatedEvent(_Msg):
    """A visible participant changed (its role)."""

    type: Literal["participant_updated"] = "participant_updated"
    participant: ParticipantInfo


class TrackPublishedEvent(_Msg):
    type: Literal["track_published"] = "track_published"
    participant: str
    track: TrackInfo


class TrackUnpublishedEvent(_Msg):
    type: Literal["track_unpublished"] = "track_unpublished"
    participant: str
    track: str


class TrackMutedEvent(_Msg):
    """``remote``: a moderator muted the track (then the publisher gets this event too)."""

    type: Literal["track_muted"] = "track_muted"
    participant: str
    track: str
    muted: bool
    remote: bool = False


class TrackPausedForBandwidthEvent(_Msg):
    """To one subscriber: its video of ``track`` (published by ``participant``) is paused
    because not even the lowest simulcast layer fits its downlink (``paused`` True), or flows
    again (False). Audio is never paused for bandwidth."""

    type: Literal["track_paused_for_bandwidth"] = "track_paused_for_bandwidth"
    participant: str
    track: str
    paused: bool


class PublisherLayersEvent(_Msg):
    """To a publisher (dynacast): send only the simulcast encodings whose rids are in
    ``active`` for its track ``track``; nobody receives the others. The client sets
    ``active`` on each encoding with ``RTCRtpSender.setParameters``."""

    type: Literal["publisher_layers"] = "publisher_layers"
    track: str
    active: list[str]


class RoleChangedEvent(_Msg):
    """My role changed (promoted, demoted, made host or moderator) with my new grants.
    On a promotion to speaker the client may now publish on the same session."""

    type: Literal["role_changed"] = "role_changed"
    role: Role
    permissions: Permissions
    by: str | None = None


class AudienceMember(_Msg):
    """A listener as moderators see it in the hand queue or an audience page."""

    sid: str
    identity: str
    name: str
    hand_raised: bool = False


class HandsEvent(_Msg):
    """The raised hands, in the order they were raised (to the host and moderators only;
    at most 4 messages a second). ``total`` counts every raised hand; ``queue`` holds at
    most the first 100."""

    type: Literal["hands"] = "hands"
    queue: list[AudienceMember]
    total: int


class HandEvent(_Msg):
    """My own hand state (after raise/lower, or lowered by a promotion)."""

    type: Literal["hand"] = "hand"
    raised: bool


class AudienceEvent(_Msg):
    """The audience size (listeners), sent to everyone when it changes, at most once a
    second, instead of one message per listener join or leave."""

    type: Literal["audience"] = "audience"
    count: int


class AudiencePageResponse(_Msg):
    """Reply to ``list_audience``."""

    type: Literal["audience_page"] = "audience_page"
    ref: str | None = None
    total: int
    offset: int
    listeners: list[AudienceMember]


class StageInviteEvent(_Msg):
    """A moderator invites me to speak; answer with ``respond_invite``."""

    type: Literal["stage_invite"] = "stage_invite"
    by: str
    name: str


class InviteDeclinedEvent(_Msg):
    """To the host and moderators: listener ``participant`` (sid, display ``name``) declined
    the invitation to speak sent by ``by`` (a sid; None when the inviter left)."""

    type: Literal["invite_declined"] = "invite_declined"
    participant: str
    name: str
    by: str | None = None


class StageSettingsEvent(_Msg):
    """The stage's settings changed: ``video`` true when the audience receives video,
    ``listener_sharing`` true when podcast listeners may draw and upload files, ``locked``
    when nobody new may join, ``waiting_room`` when newcomers knock first."""

    type: Literal["stage_settings"] = "stage_settings"
    video: bool
    listener_sharing: bool = False
    locked: bool = False
    waiting_room: bool = False


class WaitingEvent(_Msg):
    """To a joiner: the room has a waiting room and the host was asked to let you in. The
    ``join`` is answered later (``joined``, or ``error`` ``forbidden`` with reason ``denied``
    or ``waiting_timeout``); no media is set up meanwhile. ``timeout_s``: how long the server
    keeps the knock (seconds)."""

    type: Literal["waiting"] = "waiting"
    room: str
    timeout_s: float


class KnockEvent(_Msg):
    """To the host and moderators: someone is waiting to join; answer with
    ``respond_knock``."""

    type: Literal["knock"] = "knock"
    knock: str
    identity: str
    name: str


KnockOutcome = Literal["admitted", "denied", "left", "timeout", "ended"]
RoomFlag = Literal["locked", "waiting_room"]
"""The host's persisted room settings: ``lock_room`` and ``set_waiting_room``."""


class KnockResolvedEvent(_Msg):
    """To the host and moderators: a knock is over (``by``: the sid who admitted, denied, or
    ended the room; null when the person left or waited too long)."""

    type: Literal["knock_resolved"] = "knock_resolved"
    knock: str
    outcome: KnockOutcome
    by: str | None = None


class RoomEndedEvent(_Msg):
    """The host ended the room; the server closes the socket right after."""

    type: Literal["room_ended"] = "room_ended"
    by: str | None = None


class SpeakerInfo(_Msg):
    """One active speaker: ``level`` is the smoothed loudness in dBov (0 loudest, -127)."""

    participant: str
    track: str
    level: int


class ActiveSpeakersEvent(_Msg):
    """The active speakers, loudest first, sent when the set or order changes (at most five
    times a second); an empty list means nobody is speaking."""

    type: Literal["active_speakers"] = "active_speakers"
    speakers: list[SpeakerInfo]


class ChatFile(_Msg):
    """A file attached to a chat message (``size`` in bytes); download it with
    ``GET /api/rooms/{room}/files/{id}`` (docs/files.md)."""

    id: str
    name: str
    size: int
    content_type: str


class ChatMessage(_Msg):
    """A chat message as stored: ``at`` is the server's time (ISO 8601, UTC); ``file`` is set
    when the message announces a shared file."""

    id: str
    participant: str
    identity: str
    name: str
    text: str
    at: str
    file: ChatFile | None = None


class ChatEvent(_Msg):
    """A new chat message, sent to everyone in the room (the sender included)."""

    type: Literal["chat"] = "chat"
    message: ChatMessage


class ChatHistoryEvent(_Msg):
    """The room's last 50 chat messages, oldest first, sent right after ``joined``."""

    type: Literal["chat_history"] = "chat_history"
    messages: list[ChatMessage]


class ReactionCount(_Msg):
    """How many times ``participant`` sent ``emoji`` in the batch."""

    participant: str
    emoji: str
    count: int


class ReactionsEvent(_Msg):
    """Reactions of the last quarter second, batched (at most four messages a second)."""

    type: Literal["reactions"] = "reactions"
    reactions: list[ReactionCount]


class RedirectEvent(_Msg):
    """Go to another node of the cluster (docs/cluster.md): ``url`` is that node's base URL
    (open ``<url>/ws`` and ``join`` there with the same token). With ``ref``: the reply to a
    ``join`` this node did not take (``reason`` ``capacity`` or ``draining``); without: this
    node is draining (SIGTERM) and closes the session after this message."""

    type: Literal["redirect"] = "redirect"
    ref: str | None = None
    url: str
    reason: Literal["capacity", "draining"]


class OkResponse(_Msg):
    """Acknowledges a request that has no other reply (``trickle``, ``mute``, ``leave``)."""

    type: Literal["ok"] = "ok"
    ref: str | None = None


class PongResponse(_Msg):
    type: Literal["pong"] = "pong"
    ref: str | None = None


class ErrorResponse(_Msg):
    """A typed error. The connection and the room go on unless the code says otherwise."""

    type: Literal["error"] = "error"
    ref: str | None = None
    code: ErrorCode
    message: str
    reason: str | None = None
    """On the ``not_joined`` error sent when the server removes the participant on its own:
    ``transport_failed``, ``duplicate_identity``, ``removed``, ``room_ended`` ... (the socket
    is then closed); on a refused ``join``: ``locked`` (the room is locked), ``denied`` (the
    host did not let you in), ``waiting_timeout``, ``waiting_room_full``, ``room_ended``."""


Response = Annotated[
    JoinedResponse
    | ResumedResponse
    | AnswerResponse
    | OfferEvent
    | MediaRestartEvent
    | ReconnectEvent
    | ParticipantJoinedEvent
    | ParticipantLeftEvent
    | ParticipantUpdatedEvent
    | TrackPublishedEvent
    | TrackUnpublishedEvent
    | TrackMutedEvent
    | TrackPausedForBandwidthEvent
    | PublisherLayersEvent
    | ActiveSpeakersEvent
    | ChatEvent
    | ChatHistoryEvent
    | ReactionsEvent
    | RoleChangedEvent
    | HandsEvent
    | HandEvent
    | AudienceEvent
    | AudiencePageResponse
    | StageInviteEvent
    | InviteDeclinedEvent
    | RoomEndedEvent
    | StageSettingsEvent
    | WaitingEvent
    | KnockEvent
    | KnockResolvedEvent
    | RedirectEvent
    | OkResponse
    | PongResponse
    | ErrorResponse
    | BoardStrokeEvent
    | BoardStrokePartEvent
    | BoardUndoEvent
    | BoardClearedEvent
    | BoardStateEvent,
    Field(discriminator="type"),
]
_response_adapter: TypeAdapter[Response] = TypeAdapter(Response)


def parse_request(raw: str | bytes, allowed: frozenset[str] | None = None) -> Request:
    """Parse one WebSocket text frame into a :data:`Request`; with ``allowed`` (the types a
    socket that has not joined may send), any other known type is refused before validation.

    Raises:
        ProtocolError: ``bad_request`` for invalid JSON (or JSON nested deeper than the
            interpreter's recursion limit), a non-object, a ``type`` that is not a string, or
            a field that fails validation; ``unknown_type`` for an unknown ``type``;
            ``not_joined`` for a known type outside ``allowed``.
    """
    try:
        obj = json.loads(raw)
    except RecursionError:  # json's C decoder gives up past the interpreter's recursion limit
        raise ProtocolError(ErrorCode.BAD_REQUEST, "message is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"message is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "message must be a JSON object")
    ref = obj.get("id") if isinstance(obj.get("id"), str) else None
    ref = ref[:64] if ref else None
    kind = obj.get("type")
    if not isinstance(kind, str):  # a list or object is not even hashable
        raise ProtocolError(ErrorCode.BAD_REQUEST, "type must be a string", ref)
    if kind not in REQUEST_TYPES:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind!r}", ref)
    if allowed is not None and kind not in allowed:
        raise ProtocolError(ErrorCode.NOT_JOINED, "send join first", ref)
    try:
        return _request_adapter.validate_python(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "message"
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"{where}: {first['msg']}", ref) from None


def parse_response(raw: str | bytes) -> Response:
    """Parse a server message (used by the Python client and tests).

    Every message after ``joined`` also carries ``seq`` (docs/protocol.md "Resume"); it is
    not part of the models and is left out here (read it from the JSON).

    Raises: pydantic.ValidationError or ValueError for a malformed message.
    """
    obj = json.loads(raw)
    if isinstance(obj, dict):
        obj.pop("seq", None)
    return _response_adapter.validate_python(obj)


def dump(message: BaseModel) -> str:
    """Serialise a message to the JSON text sent on the WebSocket."""
    return message.model_dump_json()
