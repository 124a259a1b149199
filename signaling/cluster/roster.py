"""Stage members hosted by other nodes, as this node's participants see them (issue 13).

A node's summary of a room (``signaling.cluster.node.Summary``) lists its stage members
(hosts, moderators, speakers; never the audience) with their identity, name and role, and the
Producers they publish. This module turns one node's summary into protocol
:class:`~signaling.protocol.ParticipantInfo` entries and two successive summaries into the
``participant_joined`` / ``participant_updated`` / ``participant_left`` events a local member
would have produced (docs/protocol.md), so a listener on node C sees the host publishing on
node A by name with its tracks. Listeners stay counts only (``audience``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

from pydantic import BaseModel

from signaling import protocol as p

ROLES = frozenset({"host", "moderator", "speaker"})
"""The roles announced across nodes (the audience is never announced)."""

Members = Mapping[str, Mapping[str, str]]
Tracks = Mapping[str, Sequence[Mapping[str, str]]]


def _track(track: Mapping[str, str]) -> p.TrackInfo | None:
    kind, source = track.get("kind"), track.get("source", "")
    if kind not in ("audio", "video") or not isinstance(track.get("sid"), str):
        return None
    try:
        return p.TrackInfo(
            sid=track["sid"],
            kind=cast(p.TrackKind, kind),
            source=cast(p.TrackSource, source or ("microphone" if kind == "audio" else "camera")),
            name=str(track.get("name", "")),
            muted=str(track.get("muted", "")) == "1",
        )
    except ValueError:  # an unknown source from a newer node: leave the track out
        return None


def stage_view(members: Members, tracks: Tracks) -> dict[str, p.ParticipantInfo]:
    """One node's stage members: participant sid -> ParticipantInfo (identity, name, role,
    published tracks). Malformed entries and listeners are left out."""
    view: dict[str, p.ParticipantInfo] = {}
    for sid, member in members.items():
        role = member.get("role")
        if role not in ROLES:
            continue
        published = [t for t in (_track(t) for t in tracks.get(sid, ())) if t is not None]
        try:
            view[sid] = p.ParticipantInfo(
                sid=sid,
                identity=str(member["identity"]),
                name=str(member.get("name", "")),
                tracks=published,
                role=cast(p.Role, role),
            )
        except (KeyError, ValueError):
            continue
    return view


def roster_events(
    before: Mapping[str, p.ParticipantInfo], after: Mapping[str, p.ParticipantInfo]
) -> list[BaseModel]:
    """What changed between two views of one node's stage, as the events a local member's
    change produces: ``participant_joined`` (new sid), ``participant_updated`` (role, name or
    tracks changed), ``participant_left`` (sid gone)."""
    events: list[BaseModel] = []
    for sid, info in after.items():
        old = before.get(sid)
        if old is None:
            events.append(p.ParticipantJoinedEvent(participant=info))
        elif old != info:
            events.append(p.ParticipantUpdatedEvent(participant=info))
    events.extend(p.ParticipantLeftEvent(participant=sid) for sid in before if sid not in after)
    return events
