"""Admission to a room: the one check every session passes, ``/ws``, WHIP and WHEP alike.

A session holds a verified room token (``signaling.accounts.authorize_join``). Admitting it:

1. the room must not have been ended by its host (``Stages.enter``; only a ``roomAdmin`` token
   opens it again);
2. the identity must not have been removed from the room, and its role is the *live* one: the
   role it last had in this room, else its token's (``Stage.role_for``);
3. the host's gates (``Stage.gate``): a locked room refuses a newcomer (``forbidden``, reason
   ``locked``); with the waiting room on, a newcomer knocks and waits for the host
   (``Stage.knock``; only a ``/ws`` member can wait: WHIP and WHEP are refused);
4. the media participant is created with that role's options (``Stage.media_options``: a
   podcast listener is hidden, publishes nothing and takes audio only);
5. the session becomes a stage :class:`~signaling.stage.Member`, so the host can mute, demote
   and remove it and ``end_room`` closes it.

The three kinds of session differ only in what they may be:

==========  ==================================================================
mode        role
==========  ==================================================================
member      ``/ws``: any role
publisher   WHIP (RFC 9725): a stage role; a listener is refused (``forbidden``)
viewer      WHEP: always a listener (hidden in podcast rooms); its role is not
            remembered for the identity and it never takes the host seat
==========  ==================================================================
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from aiohttp import web

from sfu.events import ParticipantEvent
from sfu.plane.types import JoinResult, ParticipantSpec
from signaling import keys
from signaling import protocol as p
from signaling.auth.tokens import AccessClaims
from signaling.stage import STAGES, Knock, Member, Stage, StageSession

Mode = Literal["member", "publisher", "viewer"]


class AdmittedSession(StageSession, Protocol):
    """A stage session that is also its participant's media-plane listener
    (``signaling.ws.Session``, ``signaling.whip.HttpSession``)."""

    def on_plane_event(self, event: ParticipantEvent) -> None:
        """An event of its participant (``sfu.plane.api.PlaneListener``)."""


@dataclass(frozen=True, slots=True)
class Admission:
    """An admitted session: its stage, its stage member, the role it joined with and what
    the media plane answered (its participant and the room's visible participants)."""

    stage: Stage
    member: Member
    role: p.Role
    joined: JoinResult


async def admit(
    app: web.Application,
    session: AdmittedSession,
    claims: AccessClaims,
    *,
    room: str,
    name: str,
    can_subscribe: bool,
    mode: Mode = "member",
    auto_subscribe: bool = True,
    wait: Callable[[Knock], Awaitable[None]] | None = None,
    media_restart_grace_s: float | None = None,
) -> Admission:
    """Admit ``session`` (identity ``claims.sub``) to ``room`` (see the module docstring).

    On success the session's ``participant``, ``grants`` and ``claims`` are set and it is a
    member of the stage. ``can_subscribe``/``auto_subscribe`` are passed to ``MediaPlane.join``.
    ``wait``: how the session waits in the waiting room (:meth:`Stage.knock`); without it a
    newcomer to a room with the waiting room on is refused. ``media_restart_grace_s``: see
    ``ParticipantSpec`` (None: a failed transport closes the participant).

    Raises:
        ProtocolError: ``forbidden`` for a room its host ended, an identity removed from the
            room, or a ``publisher`` whose live role is listener (nothing was created); for a
            locked room (reason ``locked``) or one whose host did not let it in (``denied``,
            see :meth:`Stage.knock` for the others).
        InvalidStateError: the media room is closing.
    """
    grants = claims.video
    identity = claims.sub
    stages = app[STAGES]
    stage = stages.enter(room, grants)
    try:
        role = stage.role_for(identity, grants, viewer=mode == "viewer")
        if mode == "publisher" and role == "listener":
            raise p.ProtocolError(
                p.ErrorCode.FORBIDDEN, "a listener does not publish (the host invites speakers)"
            )
        if stage.gate(identity, role):
            if wait is None:
                raise p.ProtocolError(
                    p.ErrorCode.FORBIDDEN,
                    "This room has a waiting room: join from the browser.",
                    reason="waiting_room",
                )
            await stage.knock(identity, name, wait)
        options = stage.media_options(role)
        joined = await app[keys.MEDIA].join(
            room,
            ParticipantSpec(
                identity=identity,
                name=name,
                can_publish=options.can_publish,
                can_subscribe=can_subscribe,
                auto_subscribe=auto_subscribe,
                hidden=options.hidden,
                subscribe_kinds=options.subscribe_kinds,
                attributes=options.attributes,
                media_restart_grace_s=media_restart_grace_s,
            ),
            session.on_plane_event,
        )
    except BaseException:
        stages.abandon(stage)
        raise
    session.participant = joined.participant
    session.grants = grants
    session.claims = claims
    member = stage.add(session, role, remember=mode != "viewer")
    stages.joined(stage)
    return Admission(stage, member, role, joined)
