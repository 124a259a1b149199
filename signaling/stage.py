"""The stage of a room: roles, raised hands, invitations, moderation and the audience count.

A *podcast* room (Twitter Spaces, Clubhouse) has a host, moderators (co-hosts), speakers and an
audience of listeners of any size. Listeners are subscribe-only and *hidden*: no publish
transport, audio only (unless the host shows the stage's video: ``set_stage_video``), never
announced to others. What a listener receives therefore does not
grow with the audience: stage changes (``participant_joined``/``left``/``updated`` of stage
members), an ``audience`` count at most once a second, and audience pages only on request
(``list_audience``). A *conference* room uses the same roles (everyone who may publish is a
speaker, the ``roomAdmin`` holder is the host) with nobody hidden.

Every request is checked here against the caller's live role (never the client's word):

==================  ==========================================================
request             who may send it
==================  ==========================================================
raise_hand          a podcast listener, anyone in a conference; with ``participant``
                    (lowering someone else's hand): host, moderator
respond_invite      a listener with a pending invitation (declining tells the host and
                    moderators: ``invite_declined``)
set_role            host (any role but host), moderator (listener <-> speaker),
                    anyone stepping down (to a lower role)
invite_to_stage     host, moderator (the target must be a listener)
mute_participant    host (anyone), moderator (speakers); only the speaker unmutes
remove_participant  host (anyone), moderator (speakers and listeners); ``revoke_invite``
                    also revokes the invite that admitted the target
transfer_host       host
end_room            host
list_audience       host, moderator
set_stage_video     host, moderator
set_listener_sharing host, moderator
lock_room           host, moderator
set_waiting_room    host, moderator
respond_knock       host, moderator
==================  ==========================================================

Raised hands: a podcast's hand queue goes to the host and moderators only; in a conference
everyone sees who raised a hand (the same ``hands`` event), and raising does not need a role.

The host's gates (:meth:`Stage.gate`, called by :func:`signaling.admission.admit`): a *locked*
room admits nobody new: only the host and moderators, and identities already in this meeting
(a reconnect), are let in; others get ``forbidden`` with reason ``locked``. With the *waiting
room* on, such a newcomer knocks instead (:meth:`Stage.knock`): its socket gets ``waiting`` and no
media, the host and moderators get ``knock`` and answer with ``respond_knock``; admitted, the
join goes on; denied, the ``join`` fails with reason ``denied``. A knock lasts at most
:data:`KNOCK_TIMEOUT_S`, a room holds at most :data:`MAX_KNOCKS`; turning the waiting room off
admits everyone waiting and ending the room turns everyone waiting away. Both flags are
persisted (``room_flags``) and cleared when the host ends the room.

A podcast listener neither draws on the whiteboard nor uploads files (:meth:`Stage.may_share`)
unless the host or a moderator allows it (``set_listener_sharing``).

Role changes apply to the media plane at once: a promotion grants ``canPublish`` (the client
publishes on the same session, no reconnect) and takes the participant onto the stage; a
demotion closes its producers and publish transport and hides it again. The live role of an
identity is remembered while the room lives, so a reconnect keeps a promotion or demotion.

What must outlive a restart is kept in MongoDB (:mod:`signaling.store.stage`, loaded at start-up
by :func:`stage_ctx`, written through on every change): the roles given by ``set_role``,
``transfer_host`` and accepted invitations, the bans of ``remove_participant`` and the rooms a
host ended. A removal bars the person for the room's life (bounded by
``SFU_STAGE_STATE_TTL_S``): its identity (the account id when signed in) and the
device key of the browser that redeemed the invite (``video.device``); the redemption itself
(``POST /api/join/{code}``) refuses them too, and ``revoke_invite`` revokes the invite code.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple, Protocol

from aiohttp import web
from pydantic import BaseModel

from sfu.errors import NotFoundError
from signaling import keys
from signaling import protocol as p
from signaling.auth.tokens import AccessClaims, VideoGrant
from signaling.store.mongo import PresenceEvent
from signaling.store.stage import StageState, StageStore

if TYPE_CHECKING:
    from sfu.plane.api import MediaPlane
    from sfu.plane.types import ParticipantRef

logger = logging.getLogger(__name__)

AUDIENCE_INTERVAL_S = 1.0
"""At most one ``audience`` count message per this many seconds."""
HANDS_INTERVAL_S = 0.25
"""At most one ``hands`` queue message to moderators per this many seconds."""
HANDS_SHOWN = 100
"""The ``hands`` event lists at most this many hands (``total`` counts them all)."""
RANK: dict[p.Role, int] = {"listener": 0, "speaker": 1, "moderator": 2, "host": 3}
ENDED_FOR_ADMIN = (
    "This room has ended. To meet here again, reopen it from your lobby (Reopen room)."
)
"""The refusal a ``roomAdmin`` token gets for an ended room: reopening is explicit."""
KNOCK_TIMEOUT_S = 600.0
"""How long a knock on a waiting room waits for an answer (seconds) before the join fails
with reason ``waiting_timeout``."""
MAX_KNOCKS = 100
"""The most people waiting in one room's waiting room; more are refused (``waiting_room_full``)."""


class StageCluster(Protocol):
    """What the stage needs of a cluster (``signaling.cluster.node.Cluster``): the other
    nodes' listeners and raised hands of a room, and a call when this node's stage changed."""

    def remote_audience(self, room: str) -> int:
        """Listeners of ``room`` hosted by the other nodes."""

    def remote_hands(self, room: str) -> list[tuple[float, p.AudienceMember]]:
        """Raised hands of ``room`` on the other nodes: (Unix time raised, listener)."""

    def remote_hands_total(self, room: str) -> int:
        """How many hands are raised in ``room`` on the other nodes (``remote_hands`` may
        list only the first of them)."""

    def remote_host(self, room: str) -> str | None:
        """The identity of ``room``'s host when it is on another node."""

    def changed(self, room: str) -> None:
        """This node's stage of ``room`` changed (members, roles, hands)."""

    def relay(self, room: str, message: BaseModel, *, admins_only: bool) -> None:
        """Deliver a stage event (``stage_settings``, ``knock``, ``knock_resolved``) to the
        room's members (``admins_only``: hosts and moderators) on the other nodes."""


class StageSession(Protocol):
    """What the stage needs of a signaling session (``signaling.ws.Session``)."""

    participant: ParticipantRef | None
    grants: VideoGrant
    claims: AccessClaims | None

    def send(self, message: BaseModel) -> None:
        """Queue one server message for this client."""


def token_role(grants: VideoGrant) -> p.Role:
    """The role a token starts with: its ``role``, else host (``roomAdmin``), speaker
    (``canPublish``) or listener."""
    if grants.role is not None:
        return grants.role
    if grants.roomAdmin:
        return "host"
    return "speaker" if grants.canPublish else "listener"


def permissions(role: p.Role, grants: VideoGrant) -> p.Permissions:
    """The live grants of ``role``: every stage member publishes, host and moderators are
    room admins; subscribing and data come from the token."""
    return p.Permissions(
        canPublish=role != "listener",
        canSubscribe=grants.canSubscribe,
        canPublishData=grants.canPublishData,
        roomAdmin=role in ("host", "moderator"),
    )


class MediaOptions(NamedTuple):
    """``ParticipantSpec`` fields (``MediaPlane.join``) for one role."""

    can_publish: bool
    hidden: bool
    subscribe_kinds: tuple[str, ...] | None
    attributes: dict[str, str]


class Member:
    """One session in the stage: its role, hand and pending invitation."""

    __slots__ = ("hand_raised_at", "invited_by", "role", "session")

    def __init__(self, session: StageSession, role: p.Role) -> None:
        self.session = session
        self.role: p.Role = role
        self.hand_raised_at: float | None = None
        self.invited_by: str | None = None

    @property
    def participant(self) -> ParticipantRef:
        participant = self.session.participant
        assert participant is not None
        return participant

    def audience_member(self) -> p.AudienceMember:
        participant = self.participant
        return p.AudienceMember(
            sid=participant.sid,
            identity=participant.identity,
            name=participant.name,
            hand_raised=self.hand_raised_at is not None,
        )


class Knock:
    """One person waiting in a room's waiting room: its ``id`` (the ``knock`` of the
    protocol), identity and display name, and the ``outcome`` future the host settles."""

    __slots__ = ("id", "identity", "name", "outcome")

    def __init__(self, identity: str, name: str) -> None:
        self.id = secrets.token_urlsafe(9)
        self.identity = identity
        self.name = name
        self.outcome: asyncio.Future[KnockResult] = asyncio.get_running_loop().create_future()

    def event(self) -> p.KnockEvent:
        return p.KnockEvent(knock=self.id, identity=self.identity, name=self.name)


KnockResult = p.KnockOutcome


class Stage:
    """Roles, hands and audience of one room (see the module docstring).

    Args:
        room: the room name; kind: ``conference`` or ``podcast``.
        on_empty: called when the last member leaves (the registry drops the stage).
    """

    def __init__(
        self,
        room: str,
        kind: p.RoomKind,
        on_empty: Callable[[Stage], None] | None = None,
        registry: Stages | None = None,
    ) -> None:
        self.room = room
        self.kind: p.RoomKind = kind
        self.members: dict[str, Member] = {}  # participant sid -> member, in join order
        self.roles: dict[str, p.Role] = {}  # identity -> live role, kept while the room lives
        self.host: str | None = None  # identity of the host
        self.registry = registry
        # Ban keys (``id:<identity>``, ``dev:<device>``), shared with the registry: they stay.
        self.banned: set[str] = registry.bans(room) if registry is not None else set()
        self.pending_joins = 0
        self.ended = False
        self.video = False  # True: listeners also receive the stage's video
        self.listener_sharing = False  # True: podcast listeners may draw and upload files
        self.knocks: dict[str, Knock] = {}  # knock id -> person waiting, in knock order
        self._flags: set[p.RoomFlag] = set()  # without a registry (tests): the host's flags
        self._on_empty = on_empty
        self._audience_sent = 0
        self._audience_task: asyncio.Task[None] | None = None
        self._hands_task: asyncio.Task[None] | None = None
        self._last_audience_at = 0.0
        self._last_hands_at = 0.0

    @property
    def plane(self) -> MediaPlane:
        """The media plane (``Stages.plane``, set when the app starts).

        Raises:
            RuntimeError: the stage has no registry or the app's media plane is not up.
        """
        plane = self.registry.plane if self.registry is not None else None
        if plane is None:
            raise RuntimeError("the stage has no media plane")
        return plane

    # -- membership ----------------------------------------------------------------------------

    def role_for(self, identity: str, grants: VideoGrant, *, viewer: bool = False) -> p.Role:
        """The role ``identity`` joins with: the one it last had here, else its token's; a
        second host becomes a moderator. A ``viewer`` (WHEP playback) is always a listener
        and claims nothing (no host seat).

        Raises:
            ProtocolError: ``forbidden`` when the identity was removed from this room.
        """
        if any(key in self.banned for key in ban_keys(identity, grants)):
            raise p.ProtocolError(p.ErrorCode.FORBIDDEN, "you were removed from this room")
        if viewer:
            return "listener"
        saved = self.registry.saved_role(self.room, identity) if self.registry else None
        role = self.roles.get(identity) or saved or token_role(grants)
        if role == "host":
            cluster = self._cluster()
            elsewhere = cluster.remote_host(self.room) if cluster is not None else None
            if elsewhere not in (None, identity):  # the host seat is taken on another node
                role = "moderator"
            elif self.host is None:
                self.host = identity
            elif self.host != identity:
                role = "moderator"
        elif self.host == identity:
            role = "host"
        return role

    def media_options(self, role: p.Role) -> MediaOptions:
        """How a member of ``role`` joins the media room: a podcast listener is hidden and
        takes audio only; only stage members publish."""
        listener = self.kind == "podcast" and role == "listener"
        return MediaOptions(
            can_publish=role != "listener",
            hidden=listener,
            subscribe_kinds=self._listener_kinds() if listener else None,
            attributes={"role": role},
        )

    def _listener_kinds(self) -> tuple[str, ...] | None:
        """What podcast listeners subscribe to: audio, or everything when video is shown."""
        return None if self.video else ("audio",)

    def add(self, session: StageSession, role: p.Role, *, remember: bool = True) -> Member:
        """Register a joined session (its participant exists); ``remember`` keeps its role
        for the identity's next join (not for a WHEP viewer, whose role is always listener)."""
        member = Member(session, role)
        participant = member.participant
        self.members[participant.sid] = member
        if remember:
            self.roles[participant.identity] = role
        session.grants = _with_permissions(session.grants, permissions(role, session.grants))
        if role == "listener":
            self._schedule_audience()
        self._changed()
        return member

    def welcome(self, member: Member) -> None:
        """After ``joined``: a host or moderator gets the current hand queue (everyone does in
        a conference) and the people waiting; everyone learns the settings that are not the
        default (listeners may share, locked, waiting room)."""
        admin = RANK[member.role] >= RANK["moderator"]
        if admin or self.kind == "conference":
            member.session.send(self._hands_event())
        if admin:
            for knock in list(self.knocks.values()):
                member.session.send(knock.event())
        if self.listener_sharing or self.locked or self.waiting_room:
            member.session.send(self._settings_event())

    def _settings_event(self) -> p.StageSettingsEvent:
        return p.StageSettingsEvent(
            video=self.video,
            listener_sharing=self.listener_sharing,
            locked=self.locked,
            waiting_room=self.waiting_room,
        )

    # -- the host's gates: lock and waiting room -----------------------------------------------

    def _flag(self, flag: p.RoomFlag) -> bool:
        if self.registry is None:
            return flag in self._flags
        return self.room in self.registry.state.flags[flag]

    @property
    def locked(self) -> bool:
        """True when the host locked the room (persisted)."""
        return self._flag("locked")

    @property
    def waiting_room(self) -> bool:
        """True when newcomers knock and wait for the host (persisted)."""
        return self._flag("waiting_room")

    async def _set_flag(self, flag: p.RoomFlag, on: bool) -> None:
        if self.registry is not None:
            await self.registry.set_flag(self.room, flag, on)
        elif on:
            self._flags.add(flag)
        else:
            self._flags.discard(flag)

    def _newcomer(self, identity: str, role: p.Role) -> bool:
        """Whether the gates apply to ``identity`` joining with ``role``: not the host or a
        moderator, and not already in this meeting (a reconnect)."""
        return RANK[role] < RANK["moderator"] and identity not in self.roles

    def gate(self, identity: str, role: p.Role) -> bool:
        """Check the lock for ``identity`` joining with ``role``; True when it must knock
        (the waiting room is on and it is a newcomer).

        Raises:
            ProtocolError: ``forbidden`` (reason ``locked``) when the room is locked.
        """
        if not self._newcomer(identity, role):
            return False
        if self.locked:
            raise p.ProtocolError(
                p.ErrorCode.FORBIDDEN, "This meeting is locked by the host.", reason="locked"
            )
        return self.waiting_room

    async def knock(
        self, identity: str, name: str, wait: Callable[[Knock], Awaitable[None]]
    ) -> None:
        """Wait in the waiting room until the host or a moderator lets ``identity`` in.

        ``wait(knock)`` is the session's part: it tells the joiner (``waiting``) and returns
        when ``knock.outcome`` is settled or when the joiner gave up (its socket closed, it
        sent ``leave``). The host and moderators get ``knock`` now and ``knock_resolved``
        when it is over. Returns when admitted.

        Raises:
            ProtocolError: ``forbidden`` with reason ``denied`` (the host did not let you in),
                ``waiting_timeout`` (no answer within :data:`KNOCK_TIMEOUT_S`),
                ``waiting_room_full`` (:data:`MAX_KNOCKS` already wait), ``room_ended``;
                ``not_joined`` with reason ``left`` when the joiner gave up.
        """
        if len(self.knocks) >= MAX_KNOCKS:
            raise p.ProtocolError(
                p.ErrorCode.FORBIDDEN,
                "The waiting room is full. Try again later.",
                reason="waiting_room_full",
            )
        knock = Knock(identity, name)
        self.knocks[knock.id] = knock
        self._broadcast(knock.event(), admins_only=True)
        self._relay(knock.event(), admins_only=True)
        try:
            await asyncio.wait_for(wait(knock), KNOCK_TIMEOUT_S)
        except TimeoutError:
            self.settle(knock, "timeout", None)
        finally:
            self.settle(knock, "left", None)  # no-op once settled
        outcome = knock.outcome.result()
        if outcome == "admitted" and not self.ended:
            return
        refusals: dict[p.KnockOutcome, tuple[p.ErrorCode, str]] = {
            "denied": (p.ErrorCode.FORBIDDEN, "The host did not let you in."),
            "timeout": (p.ErrorCode.FORBIDDEN, "Nobody let you in. Try again later."),
            "left": (p.ErrorCode.NOT_JOINED, "You left the waiting room."),
        }
        code, message = refusals.get(outcome, (p.ErrorCode.FORBIDDEN, "The meeting has ended."))
        reason = {"denied": "denied", "timeout": "waiting_timeout", "left": "left"}.get(
            outcome, "room_ended"
        )
        raise p.ProtocolError(code, message, reason=reason)

    def settle(self, knock: Knock, outcome: p.KnockOutcome, by: Member | None) -> None:
        """End ``knock`` with ``outcome`` (once): the waiting joiner goes on or is refused,
        and the host and moderators get ``knock_resolved``."""
        if knock.outcome.done():
            return
        knock.outcome.set_result(outcome)
        self.knocks.pop(knock.id, None)
        resolved = p.KnockResolvedEvent(
            knock=knock.id, outcome=outcome, by=by.participant.sid if by is not None else None
        )
        self._broadcast(resolved, admins_only=True)
        self._relay(resolved, admins_only=True)

    def may_share(self, identity: str, grants: VideoGrant) -> bool:
        """Whether ``identity`` may draw on the whiteboard and upload files, by its live role:
        a podcast listener only while the host allows it (``canPublishData`` is checked
        separately)."""
        if self.kind != "podcast" or self.listener_sharing:
            return True
        saved = self.registry.saved_role(self.room, identity) if self.registry else None
        role = self.roles.get(identity) or saved or token_role(grants)
        return role != "listener"

    def remove(self, session: StageSession, sid: str) -> None:
        """Forget a session that left (its hand and invitation go with it)."""
        member = self.members.get(sid)
        if member is None or member.session is not session:
            return
        del self.members[sid]
        if member.hand_raised_at is not None:
            self._schedule_hands()
        if member.role == "listener":
            self._schedule_audience()
        self._changed()
        self._maybe_empty()

    def _maybe_empty(self) -> None:
        if not self.members and self.pending_joins == 0 and self._on_empty is not None:
            self._cancel_timers()
            self._on_empty(self)

    def _cancel_timers(self) -> None:
        for task in (self._audience_task, self._hands_task):
            if task is not None and not task.done():
                task.cancel()

    def audience_count(self) -> int:
        """How many listeners are in the room (on this node)."""
        return sum(1 for m in self.members.values() if m.role == "listener")

    def audience_total(self) -> int:
        """How many listeners are in the room, on every node of a cluster."""
        cluster = self._cluster()
        return self.audience_count() + (cluster.remote_audience(self.room) if cluster else 0)

    # -- batched broadcasts --------------------------------------------------------------------

    def _broadcast(self, message: BaseModel, *, admins_only: bool = False) -> None:
        for member in list(self.members.values()):
            if admins_only and RANK[member.role] < RANK["moderator"]:
                continue
            member.session.send(message)

    def _relay(self, message: BaseModel, *, admins_only: bool) -> None:
        if (cluster := self._cluster()) is not None:
            cluster.relay(self.room, message, admins_only=admins_only)

    def _settings_changed(self) -> None:
        """Tell every member here and on the other nodes the room's settings."""
        event = self._settings_event()
        self._broadcast(event)
        self._relay(event, admins_only=False)

    async def apply_settings(self, event: p.StageSettingsEvent) -> None:
        """Another node changed the room's settings (cluster): take them (video shown to this
        node's listeners, listener sharing, lock and waiting room as the store has them: the
        flags are not written again), let in whoever waits when the waiting room is off, and
        tell the members here."""
        if self.registry is not None:
            flags: tuple[tuple[p.RoomFlag, bool], ...] = (
                ("locked", event.locked),
                ("waiting_room", event.waiting_room),
            )
            for flag, on in flags:
                rooms = self.registry.state.flags[flag]
                if on:
                    rooms.add(self.room)
                else:
                    rooms.discard(self.room)
        if not event.waiting_room:
            for knock in list(self.knocks.values()):
                self.settle(knock, "admitted", None)
        self.listener_sharing = event.listener_sharing
        await self._show_video(event.video)
        self._broadcast(self._settings_event())

    async def _show_video(self, enabled: bool) -> bool:
        """Show (or hide) stage video to this node's listeners of a podcast room: their
        subscriptions take (or drop) video. False when it was already so."""
        if enabled == self.video:
            return False
        self.video = enabled
        if self.kind == "podcast":
            for member in list(self.members.values()):
                participant = member.session.participant
                if member.role == "listener" and participant is not None:
                    await self.plane.set_subscribe_kinds(participant.sid, self._listener_kinds())
        return True

    def _cluster(self) -> StageCluster | None:
        return self.registry.cluster if self.registry is not None else None

    def _changed(self) -> None:
        if (cluster := self._cluster()) is not None:
            cluster.changed(self.room)

    def remote_changed(self, *, audience: bool = True, hands: bool = True) -> None:
        """Another node's part of this room changed (cluster): recount the audience and/or
        resend the hand queue."""
        # (not through _schedule_*: those also announce a local change to the other nodes)
        if audience and (self._audience_task is None or self._audience_task.done()):
            self._audience_task = asyncio.ensure_future(self._flush_audience())
        if hands and (self._hands_task is None or self._hands_task.done()):
            self._hands_task = asyncio.ensure_future(self._flush_hands())

    def _schedule_audience(self) -> None:
        self._changed()
        if self._audience_task is None or self._audience_task.done():
            self._audience_task = asyncio.ensure_future(self._flush_audience())

    async def _flush_audience(self) -> None:
        wait = self._last_audience_at + AUDIENCE_INTERVAL_S - time.monotonic()
        await asyncio.sleep(max(wait, 0.05))  # coalesce a burst of joins into one message
        count = self.audience_total()
        if count != self._audience_sent:
            self._audience_sent = count
            self._last_audience_at = time.monotonic()
            self._broadcast(p.AudienceEvent(count=count))

    def _hands_event(self) -> p.HandsEvent:
        raised = sorted(
            (m for m in self.members.values() if m.hand_raised_at is not None),
            key=lambda m: m.hand_raised_at or 0.0,
        )
        cluster = self._cluster()
        if cluster is not None:  # every node's hands, by (wall-clock) time raised
            wall = time.time() - time.monotonic()
            local = [(wall + (m.hand_raised_at or 0.0), m.audience_member()) for m in raised]
            merged = sorted(local + cluster.remote_hands(self.room), key=lambda h: h[0])
            queue = [member for _, member in merged]
            total = len(raised) + cluster.remote_hands_total(self.room)
            return p.HandsEvent(queue=queue[:HANDS_SHOWN], total=total)
        return p.HandsEvent(
            queue=[m.audience_member() for m in raised[:HANDS_SHOWN]], total=len(raised)
        )

    def _schedule_hands(self) -> None:
        self._changed()
        if self._hands_task is None or self._hands_task.done():
            self._hands_task = asyncio.ensure_future(self._flush_hands())

    async def _flush_hands(self) -> None:
        wait = self._last_hands_at + HANDS_INTERVAL_S - time.monotonic()
        await asyncio.sleep(max(wait, 0.0))
        self._last_hands_at = time.monotonic()
        self._broadcast(self._hands_event(), admins_only=self.kind == "podcast")

    # -- lookups and checks --------------------------------------------------------------------

    def _caller(self, session: StageSession, ref: str | None) -> Member:
        participant = session.participant
        member = self.members.get(participant.sid) if participant else None
        if member is None or member.session is not session:
            raise p.ProtocolError(p.ErrorCode.NOT_JOINED, "send join first", ref)
        return member

    def _target(self, sid: str, ref: str | None) -> Member:
        member = self.members.get(sid)
        if member is None:
            raise p.ProtocolError(p.ErrorCode.NOT_FOUND, f"no participant {sid}", ref)
        return member

    @staticmethod
    def _forbid(message: str, ref: str | None) -> p.ProtocolError:
        return p.ProtocolError(p.ErrorCode.FORBIDDEN, message, ref)

    @staticmethod
    def _may_moderate(actor: Member, target: Member) -> bool:
        """Host: anyone but itself; moderator: speakers and listeners."""
        if actor is target:
            return False
        if actor.role == "host":
            return True
        return actor.role == "moderator" and RANK[target.role] <= RANK["speaker"]

    # -- role changes --------------------------------------------------------------------------

    async def set_role(self, member: Member, role: p.Role, by: Member | None) -> None:
        """Apply a role change to the stage, the grants and the media plane."""
        old = member.role
        if old == role:
            return
        participant = member.participant
        plane = self.plane
        member.role = role
        self.roles[participant.identity] = role
        if self.registry is not None:
            await self.registry.save_role(self.room, participant.identity, role)
        if role == "host":
            self.host = participant.identity
        elif old == "host" and self.host == participant.identity:
            self.host = None
        grants = permissions(role, member.session.grants)
        member.session.grants = _with_permissions(member.session.grants, grants)
        hidden = self.kind == "podcast" and role == "listener"
        try:
            current = (await plane.participant(participant.sid)).info.attributes
        except NotFoundError:  # closed meanwhile: the setters below ignore it
            current = {}
        attributes = {**current, "role": role}
        sid = participant.sid
        if not grants.canPublish:  # producers close first: everyone sees them unpublished
            await plane.set_can_publish(sid, False)
        if hidden:  # then leave the stage: others see it go, then nothing more
            await plane.set_hidden(sid, True)
            await plane.set_attributes(sid, attributes)
        else:
            await plane.set_attributes(sid, attributes)
            await plane.set_hidden(sid, False)
        if grants.canPublish:
            await plane.set_can_publish(sid, True)
        if self.kind == "podcast":
            await plane.set_subscribe_kinds(sid, self._listener_kinds() if hidden else None)
        if member.hand_raised_at is not None and role != "listener" and self.kind == "podcast":
            member.hand_raised_at = None
            member.session.send(p.HandEvent(raised=False))
            self._schedule_hands()
        member.invited_by = None
        member.session.send(
            p.RoleChangedEvent(
                role=role, permissions=grants, by=by.participant.sid if by is not None else None
            )
        )
        if "listener" in (old, role):
            self._schedule_audience()
        if RANK[role] >= RANK["moderator"] > RANK[old]:
            member.session.send(self._hands_event())
        self._changed()

    # -- requests ------------------------------------------------------------------------------

    async def handle(self, app: web.Application, session: StageSession, request: p.Request) -> None:
        """Handle one stage request from ``session`` (see the module docstring's table).

        Raises:
            ProtocolError: ``forbidden`` when the caller's role does not allow it,
                ``not_found`` for an unknown participant or track, ``out_of_order`` for
                ``respond_invite`` with no invitation or ``raise_hand`` by a stage member.
        """
        ref = request.id
        actor = self._caller(session, ref)
        if isinstance(request, p.RaiseHandRequest):
            if request.participant is not None and request.participant != actor.participant.sid:
                target = self._target(request.participant, ref)
                if RANK[actor.role] < RANK["moderator"] or request.raised:
                    raise self._forbid("only the host and moderators lower others' hands", ref)
                if target.hand_raised_at is not None:
                    target.hand_raised_at = None
                    target.session.send(p.HandEvent(raised=False))
                    self._schedule_hands()
                session.send(p.OkResponse(ref=ref))
                return
            if self.kind == "podcast" and actor.role != "listener":
                raise p.ProtocolError(
                    p.ErrorCode.OUT_OF_ORDER, "only listeners raise hands; you are on stage", ref
                )
            raised = actor.hand_raised_at is not None
            if request.raised != raised:
                actor.hand_raised_at = time.monotonic() if request.raised else None
                self._schedule_hands()
            session.send(p.HandEvent(raised=request.raised))
        elif isinstance(request, p.SetRoleRequest):
            target = self._target(request.participant, ref)
            if target is actor:
                if RANK[request.role] >= RANK[actor.role] or actor.role == "host":
                    raise self._forbid("you may only step down (the host hands over)", ref)
            elif request.role == "host":
                raise self._forbid("use transfer_host to hand over hosting", ref)
            elif actor.role == "host":
                pass
            elif actor.role == "moderator":
                if RANK[target.role] > RANK["speaker"] or RANK[request.role] > RANK["speaker"]:
                    raise self._forbid("moderators promote and demote listeners/speakers", ref)
            else:
                raise self._forbid("only the host and moderators change roles", ref)
            await self.set_role(target, request.role, actor)
            await _history(app, self.room, target, "role_changed")
        elif isinstance(request, p.InviteToStageRequest):
            target = self._target(request.participant, ref)
            if RANK[actor.role] < RANK["moderator"]:
                raise self._forbid("only the host and moderators invite speakers", ref)
            if target.role != "listener":
                raise p.ProtocolError(p.ErrorCode.OUT_OF_ORDER, "already on stage", ref)
            target.invited_by = actor.participant.sid
            target.session.send(
                p.StageInviteEvent(by=actor.participant.sid, name=actor.participant.name)
            )
        elif isinstance(request, p.RespondInviteRequest):
            if actor.invited_by is None or actor.role != "listener":
                raise p.ProtocolError(p.ErrorCode.OUT_OF_ORDER, "no invitation is pending", ref)
            inviter = self.members.get(actor.invited_by)
            actor.invited_by = None
            if request.accept:
                await self.set_role(actor, "speaker", inviter)
                await _history(app, self.room, actor, "role_changed")
            else:
                self._declined(actor, inviter)
        elif isinstance(request, p.MuteParticipantRequest):
            target = self._target(request.participant, ref)
            if not self._may_moderate(actor, target):
                raise self._forbid("you may not mute this participant", ref)
            plane = self.plane
            state = await plane.participant(target.participant.sid)
            producers = {track.sid: track for track in state.producers}
            if request.track is not None:
                if request.track not in producers:
                    raise p.ProtocolError(p.ErrorCode.NOT_FOUND, f"no track {request.track}", ref)
                tracks = [request.track]
            else:
                tracks = [sid for sid, track in producers.items() if track.kind == "audio"]
            for track in tracks:
                await plane.set_track_muted(target.participant.sid, track, True, remote=True)
        elif isinstance(request, p.RemoveParticipantRequest):
            target = self._target(request.participant, ref)
            if not self._may_moderate(actor, target):
                raise self._forbid("you may not remove this participant", ref)
            await self.remove_member(app, target, revoke_invite=request.revoke_invite)
        elif isinstance(request, p.TransferHostRequest):
            target = self._target(request.participant, ref)
            if actor.role != "host":
                raise self._forbid("only the host hands over hosting", ref)
            if target is actor:
                raise p.ProtocolError(p.ErrorCode.BAD_REQUEST, "you are the host already", ref)
            await self.set_role(actor, "moderator", actor)
            await self.set_role(target, "host", actor)
            await _history(app, self.room, target, "role_changed")
        elif isinstance(request, p.EndRoomRequest):
            if actor.role != "host":
                raise self._forbid("only the host ends the room", ref)
            session.send(p.OkResponse(ref=ref))
            await self.end(app, actor)
            return
        elif isinstance(request, p.SetStageVideoRequest):
            if RANK[actor.role] < RANK["moderator"]:
                raise self._forbid("only the host and moderators show video", ref)
            if await self._show_video(request.enabled):
                self._settings_changed()
        elif isinstance(request, p.SetListenerSharingRequest):
            if RANK[actor.role] < RANK["moderator"]:
                raise self._forbid("only the host and moderators let listeners share", ref)
            if request.enabled != self.listener_sharing:
                self.listener_sharing = request.enabled
                self._settings_changed()
        elif isinstance(request, p.LockRoomRequest | p.SetWaitingRoomRequest):
            if RANK[actor.role] < RANK["moderator"]:
                raise self._forbid("only the host and moderators lock the room", ref)
            if isinstance(request, p.LockRoomRequest):
                if request.locked != self.locked:
                    await self._set_flag("locked", request.locked)
                    self._settings_changed()
            elif request.enabled != self.waiting_room:
                await self._set_flag("waiting_room", request.enabled)
                if not request.enabled:  # everyone waiting comes in
                    for knock in list(self.knocks.values()):
                        self.settle(knock, "admitted", actor)
                self._settings_changed()
        elif isinstance(request, p.RespondKnockRequest):
            if RANK[actor.role] < RANK["moderator"]:
                raise self._forbid("only the host and moderators let people in", ref)
            waiting = self.knocks.get(request.knock)
            if waiting is None:
                raise p.ProtocolError(
                    p.ErrorCode.NOT_FOUND, "nobody is waiting with that knock", ref
                )
            self.settle(waiting, "admitted" if request.admit else "denied", actor)
        elif isinstance(request, p.ListAudienceRequest):
            if RANK[actor.role] < RANK["moderator"]:
                raise self._forbid("only the host and moderators list the audience", ref)
            listeners = [m for m in self.members.values() if m.role == "listener"]
            page = listeners[request.offset : request.offset + request.limit]
            session.send(
                p.AudiencePageResponse(
                    ref=ref,
                    total=len(listeners),
                    offset=request.offset,
                    listeners=[m.audience_member() for m in page],
                )
            )
            return
        session.send(p.OkResponse(ref=ref))

    def _declined(self, actor: Member, inviter: Member | None) -> None:
        """``respond_invite`` with ``accept: false``: the host and moderators (the inviter
        among them) get ``invite_declined`` naming the listener and who invited them."""
        participant = actor.participant
        self._broadcast(
            p.InviteDeclinedEvent(
                participant=participant.sid,
                name=participant.name,
                by=inviter.participant.sid if inviter is not None else None,
            ),
            admins_only=True,
        )

    def counts(self) -> tuple[int, int]:
        """(everyone in the room, of whom listeners): stage members plus the audience."""
        return len(self.members), self.audience_count()

    async def remove_member(
        self, app: web.Application, target: Member, *, revoke_invite: bool = False
    ) -> None:
        """Disconnect ``target`` (reason ``removed``), revoke its room token and bar it from
        this room for the room's life: its identity (an account id when signed in) and its
        browser device key, persisted. ``revoke_invite``: also revoke the invite code that
        admitted it (``video.invite``), so nobody redeems that link again."""
        participant = target.participant
        claims = target.session.claims
        grants = claims.video if claims is not None else target.session.grants
        keys_ = ban_keys(participant.identity, grants)
        self.banned.update(keys_)
        self.roles.pop(participant.identity, None)
        if self.registry is not None:
            await self.registry.ban(self.room, participant.identity, keys_)
        if claims is not None:
            await _revoke(app, claims)
        if revoke_invite and grants.invite is not None:
            await _revoke_invite(app, grants.invite)
        await _history(app, self.room, target, "removed")
        await self.plane.leave(participant.sid, reason="removed", notify=True)

    async def end(self, app: web.Application, by: Member | None) -> None:
        """End the room: ``room_ended`` to everyone, then every participant is closed.
        ``by`` None: the owner ended it from outside (deleting the room)."""
        self.ended = True
        for knock in list(self.knocks.values()):
            self.settle(knock, "ended", by)
        if self.registry is not None:
            await self.registry.end(self.room)
        self._broadcast(p.RoomEndedEvent(by=by.participant.sid if by is not None else None))
        if by is not None:
            await _history(app, self.room, by, "room_ended")
        self._cancel_timers()
        await app[keys.MEDIA].close_room(self.room, reason="room_ended")


def ban_keys(identity: str, grants: VideoGrant) -> list[str]:
    """What a removal bars: ``id:<identity>`` and, for a token from an invite, the browser's
    ``dev:<device key>``."""
    keys_ = [f"id:{identity}"]
    if grants.device is not None:
        keys_.append(f"dev:{grants.device}")
    return keys_


def _with_permissions(grants: VideoGrant, perms: p.Permissions) -> VideoGrant:
    return grants.model_copy(update={"canPublish": perms.canPublish, "roomAdmin": perms.roomAdmin})


async def _history(app: web.Application, room: str, member: Member, event: PresenceEvent) -> None:
    from signaling.accounts import record_presence

    participant = member.participant
    await record_presence(app, room, participant.identity, event, participant.name)


async def _revoke(app: web.Application, claims: AccessClaims) -> None:
    from signaling.accounts import STORE

    store = app.get(STORE)
    if store is None:
        return
    try:
        await store.revoke_jti(claims.jti, datetime.fromtimestamp(claims.exp, UTC))
    except Exception:
        logger.warning("could not revoke token %s", claims.jti, exc_info=True)


async def _revoke_invite(app: web.Application, code: str) -> None:
    from signaling.accounts import STORE

    store = app.get(STORE)
    if store is None:
        return
    try:
        await store.revoke_invite(code)
    except Exception:
        logger.warning("could not revoke invite %s", code, exc_info=True)


class Stages:
    """Every live room's :class:`Stage`, by room name, plus what outlives a room: the rooms a
    host ended, the roles and the bans (written through to ``store`` when there is one)."""

    def __init__(self) -> None:
        self.rooms: dict[str, Stage] = {}
        self.state = StageState()
        self.ended: set[str] = self.state.ended
        self.store: StageStore | None = None
        self.plane: MediaPlane | None = None  # the app's media plane (``stage_ctx``)
        self.cluster: StageCluster | None = None  # set by signaling.cluster when clustered

    async def attach(self, store: StageStore) -> None:
        """Load the persisted state from ``store`` and write every later change to it."""
        self.state = await store.load()
        self.ended = self.state.ended
        self.store = store
        for stage in self.rooms.values():
            self.state.bans.setdefault(stage.room, set()).update(stage.banned)
            stage.banned = self.state.bans[stage.room]

    def may_share(self, room: str, identity: str, grants: VideoGrant) -> bool:
        """:meth:`Stage.may_share` of the live room, else by the remembered or token role."""
        stage = self.rooms.get(room)
        if stage is not None:
            return stage.may_share(identity, grants)
        role = self.saved_role(room, identity) or token_role(grants)
        return grants.roomKind != "podcast" or role != "listener"

    def bans(self, room: str) -> set[str]:
        """The ban keys of ``room`` (a live set: adding to it bars at once)."""
        return self.state.bans.setdefault(room, set())

    def saved_role(self, room: str, identity: str) -> p.Role | None:
        """The remembered role of ``identity`` in ``room``, if any."""
        return self.state.roles.get(room, {}).get(identity)

    async def save_role(self, room: str, identity: str, role: p.Role) -> None:
        """Remember a role change (store errors are logged: the change applies anyway)."""
        self.state.roles.setdefault(room, {})[identity] = role
        await self._write(self.store.set_role(room, identity, role) if self.store else None)

    async def ban(self, room: str, identity: str, keys_: list[str]) -> None:
        """Bar ``keys_`` from ``room`` and forget ``identity``'s role there."""
        self.bans(room).update(keys_)
        self.state.roles.get(room, {}).pop(identity, None)
        if self.store is not None:
            await self._write(self.store.ban(room, keys_))
            await self._write(self.store.forget_role(room, identity))

    async def end(self, room: str) -> None:
        """The host ended ``room``: it stays ended (until its owner reopens it: :meth:`reopen`)
        and its roles, lock and waiting room are forgotten."""
        self.ended.add(room)
        self.state.roles.pop(room, None)
        if self.store is not None:
            await self._write(self.store.end(room))
            await self._write(self.store.clear_roles(room))
        flags: tuple[p.RoomFlag, ...] = ("locked", "waiting_room")
        for flag in flags:
            if room in self.state.flags[flag]:
                await self.set_flag(room, flag, False)

    async def set_flag(self, room: str, flag: p.RoomFlag, on: bool) -> None:
        """Set or clear the host's ``flag`` (``locked``, ``waiting_room``) on ``room``."""
        rooms = self.state.flags[flag]
        if on:
            rooms.add(room)
        else:
            rooms.discard(room)
        await self._write(self.store.set_flag(room, flag, on) if self.store else None)

    @staticmethod
    async def _write(operation: Awaitable[object] | None) -> None:
        if operation is None:
            return
        try:
            await operation
        except Exception:
            logger.warning("could not persist the stage state", exc_info=True)

    async def reopen(self, room: str) -> bool:
        """Open an ended ``room`` again (the owner's explicit ``POST /api/rooms/{room}/reopen``);
        False when it was not ended."""
        if room not in self.ended:
            return False
        self.ended.discard(room)
        if self.store is not None:
            await self._write(self.store.reopen(room))
        return True

    def counts(self, room: str) -> tuple[int, int]:
        """(participants, listeners) live in ``room`` now; (0, 0) when nobody is in it."""
        stage = self.rooms.get(room)
        if stage is None or stage.ended:
            return 0, 0
        return stage.counts()

    async def end_room(self, app: web.Application, room: str) -> None:
        """End ``room`` from outside (its owner deletes it): a live room's participants get
        ``room_ended`` and are disconnected; either way it stays ended."""
        stage = self.rooms.get(room)
        if stage is not None and not stage.ended:
            await stage.end(app, None)
        else:
            await self.end(room)

    def enter(self, room: str, grants: VideoGrant) -> Stage:
        """The stage of ``room`` (created with the token's kind), counting a pending join
        until :meth:`joined` or :meth:`abandon`.

        Raises:
            ProtocolError: ``forbidden`` when the host ended the room: nobody enters, not even
                a ``roomAdmin`` token, until its owner reopens it (:meth:`reopen`).
        """
        if room in self.ended:
            if grants.roomAdmin:
                raise p.ProtocolError(p.ErrorCode.FORBIDDEN, ENDED_FOR_ADMIN)
            raise p.ProtocolError(p.ErrorCode.FORBIDDEN, "the host ended this room")
        stage = self.rooms.get(room)
        if stage is None or stage.ended:
            stage = Stage(room, grants.roomKind or "conference", on_empty=self._drop, registry=self)
            self.rooms[room] = stage
        stage.pending_joins += 1
        return stage

    def abandon(self, stage: Stage) -> None:
        """A join that :meth:`enter` counted failed."""
        stage.pending_joins -= 1
        stage._maybe_empty()

    def joined(self, stage: Stage) -> None:
        """A join that :meth:`enter` counted succeeded (call after :meth:`Stage.add`)."""
        stage.pending_joins -= 1

    def _drop(self, stage: Stage) -> None:
        if stage.ended:
            self.ended.add(stage.room)
        if not self.state.bans.get(stage.room):
            self.state.bans.pop(stage.room, None)  # nobody barred: keep no empty set
        if self.rooms.get(stage.room) is stage:
            del self.rooms[stage.room]


STAGES: web.AppKey[Stages] = web.AppKey("stages", Stages)


def install(app: web.Application) -> None:
    """Create the stage registry of ``app``."""
    app[STAGES] = Stages()


async def stage_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx`` (after the accounts store): load the persisted roles, bans and ended
    rooms and write later changes through (:mod:`signaling.store.stage`)."""
    from signaling.accounts import STORE

    app[STAGES].plane = app.get(keys.MEDIA)
    store = app.get(STORE)
    if store is not None:
        stage_store = StageStore(store.db, timedelta(seconds=app[keys.SETTINGS].stage_state_ttl_s))
        await stage_store.ensure_indexes()
        await app[STAGES].attach(stage_store)
    yield
