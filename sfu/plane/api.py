"""MediaPlane: every call the edge (``signaling/``) makes into the media plane.

The edge holds ids (participant sid, room name) and the plain dataclasses of
:mod:`sfu.plane.types`, never a Router, WebRtcTransport, Producer or Consumer. Every method
is ``async``, takes and returns values :mod:`sfu.plane.codec` encodes, and raises only the
typed errors of :mod:`sfu.errors` (each with a ``code``). Events about a participant
(:data:`sfu.events.ParticipantEvent`: room events, subscribe offers, media restarts, its
closing) go to the :data:`PlaneListener` given to :meth:`MediaPlane.join`, in order.

Implementations: :class:`sfu.plane.local.LocalMediaPlane` (media in this process); a worker
proxy carries the same calls over a channel (docs/media-plane.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sfu.events import ParticipantEvent, ParticipantInfo
from sfu.plane.types import (
    IceServer,
    JoinResult,
    ParticipantSpec,
    ParticipantState,
    PipeControl,
    PipeProducerParameters,
    PipeTransportParameters,
    PlaneStats,
    PublishAnswer,
    TrackSpec,
)

PlaneListener = Callable[[ParticipantEvent], None]
"""Receives one participant's events, in order; it must not raise or block (a proxy calls
it from its channel reader)."""

PipeListener = Callable[[PipeControl], None]
"""Receives the :class:`~sfu.pipe.PipeControl` calls one pipe end emits (mute, gap, close),
for the other end's :meth:`MediaPlane.pipe_control`; it must not raise or block."""


class MediaPlane(Protocol):
    """The media plane as the edge sees it (docs/media-plane.md)."""

    # -- membership ------------------------------------------------------------------------

    async def join(self, room: str, spec: ParticipantSpec, listener: PlaneListener) -> JoinResult:
        """Add a participant to ``room`` (created on first use) and register ``listener``
        for its events. A participant with the same identity is closed first (its listener
        gets ``ParticipantClosed("duplicate_identity")``). Others see ``ParticipantJoined``
        unless ``spec.hidden``; with ``auto_subscribe`` it consumes every producer of the
        room, and its first ``SubscribeOffer`` follows the return (never precedes it).

        Raises:
            InvalidStateError: the room is closing.
        """
        ...

    async def leave(self, participant: str, reason: str = "left", *, notify: bool = False) -> None:
        """Remove a participant and close its transports, producers and consumers (others
        see ``ParticipantLeft``; the room closes with its last participant). ``notify``: its
        listener first gets ``ParticipantClosed(reason)``. An unknown id is a no-op, so this
        is safe to call twice."""
        ...

    # -- negotiation (RFC 8829 offer/answer, RFC 8838 trickle) -----------------------------

    async def publish_offer(
        self, participant: str, sdp: str, tracks: list[TrackSpec]
    ) -> PublishAnswer:
        """Apply a publish-transport offer: sending m-lines become producers (announced,
        consumed by every subscriber), m-lines that stop sending close theirs.

        Raises:
            NotFoundError: unknown participant; NotAllowedError: no ``canPublish``;
            InvalidSdpError: bad SDP; InvalidStateError: closed, or an offer of a connection a
            media restart replaced; LimitExceededError: too many sending m-lines (nothing
            changed on any error).
        """
        ...

    async def subscribe_answer(self, participant: str, sdp: str) -> None:
        """Apply the client's answer to the latest ``SubscribeOffer``.

        Raises:
            NotFoundError; InvalidStateError: no offer outstanding; InvalidSdpError.
        """
        ...

    async def add_ice_candidate(
        self,
        participant: str,
        side: str,
        candidate: str | None,
        sdp_mid: str | None,
        sdp_mline_index: int | None,
    ) -> None:
        """Add a trickled candidate (RFC 8839 ``candidate:`` line; None or empty: end of
        candidates) to the ``publish`` or ``subscribe`` transport.

        Raises:
            NotFoundError; InvalidStateError: no such transport yet; InvalidSdpError.
        """
        ...

    async def restart_media(self, participant: str, side: str) -> None:
        """The client made a new RTCPeerConnection for ``side``: replace that transport
        (publish: producers keep their sids; subscribe: every consumer is recreated and a new
        ``SubscribeOffer`` follows).

        Raises:
            NotFoundError; InvalidStateError: restart not enabled (``media_restart_grace_s``
                of its ``ParticipantSpec``), or the participant is closing.
        """
        ...

    # -- tracks ----------------------------------------------------------------------------

    async def set_track_muted(
        self, participant: str, track: str, muted: bool, *, remote: bool = False
    ) -> None:
        """Pause or resume forwarding of one producer; the room sees ``TrackMuted`` (the
        publisher too when ``remote``: a moderator's mute).

        Raises:
            NotFoundError: unknown participant or track.
        """
        ...

    async def set_track_settings(
        self, participant: str, track: str, visible: bool, width: int | None
    ) -> None:
        """Adaptive stream: the subscriber ``participant`` shows ``track`` in a tile ``width``
        CSS pixels wide (None: unknown), or not at all (``visible`` False: no video is sent).
        A simulcast track gets the smallest layer at least that wide its bandwidth allows
        (RFC 8853 layers, :mod:`sfu.rtp.layers`); a one-layer video is paused while hidden.

        Raises:
            NotFoundError: unknown participant, or it is not subscribed to ``track``.
        """
        ...

    async def unpublish(self, participant: str, track: str) -> None:
        """Close one producer (its consumers everywhere go; the room sees
        ``TrackUnpublished``).

        Raises:
            NotFoundError: unknown participant or track.
        """
        ...

    # -- grants and visibility (the stage); unknown participants are ignored ------------------

    async def set_can_publish(self, participant: str, allowed: bool) -> None:
        """Grant or withdraw ``canPublish``; withdrawing closes every producer of it and its
        publish transport at once."""
        ...

    async def set_hidden(self, participant: str, hidden: bool) -> None:
        """Move a participant off (``hidden``) or onto the stage: others see it leave or
        join; its media is unchanged."""
        ...

    async def set_attributes(self, participant: str, attributes: dict[str, str]) -> None:
        """Replace its attributes; a visible participant's change is announced
        (``ParticipantUpdated``)."""
        ...

    async def set_subscribe_kinds(self, participant: str, kinds: tuple[str, ...] | None) -> None:
        """Change which producer kinds it takes (None: all): new kinds are subscribed at
        once, dropped kinds' consumers close."""
        ...

    # -- reading ---------------------------------------------------------------------------

    async def participant(self, participant: str) -> ParticipantState:
        """The participant's current state.

        Raises:
            NotFoundError: unknown (or closed) participant.
        """
        ...

    async def find_participant(self, room: str, identity: str) -> ParticipantState | None:
        """The participant of ``room`` with ``identity``, or None (also for no such room)."""
        ...

    async def room_participants(
        self, room: str, exclude: str | None = None
    ) -> list[ParticipantInfo]:
        """Every visible participant of ``room`` but ``exclude`` (empty for no such room)."""
        ...

    # -- WHEP ------------------------------------------------------------------------------

    async def whep_play(self, viewer: str, publisher: str, sdp: str) -> str:
        """WHEP playback: answer viewer ``viewer``'s offer of recvonly m-lines with one
        consumer per m-line, matched by kind (and codec) to the producers of the participant
        with identity ``publisher`` in the viewer's room, of the viewer's subscribe kinds.
        An m-line no producer can fill is answered ``a=inactive``. Returns the answer SDP.

        Raises:
            NotFoundError: unknown viewer or publisher; InvalidSdpError: bad offer.
        """
        ...

    # -- pipes: one room's producers to and from another process or node (docs/pipe.md) ----
    # Keyed by room and ``peer``, a string the caller chooses for the other end (the cluster
    # uses ``"pull:<node id>"`` for what this node receives from a node and
    # ``"push:<node id>"`` for what it sends there).

    async def pipe_open(
        self,
        room: str,
        peer: str,
        listener: PipeListener,
        listen_ip: str = "127.0.0.1",
        enable_srtp: bool = True,
    ) -> PipeTransportParameters:
        """Open this side's PipeTransport of ``room`` towards ``peer`` (an open one is closed
        first, its piped producers suspended), bound to ``listen_ip`` on an ephemeral UDP
        port (plain RTP/RTCP, RFC 3550). Its :class:`~sfu.pipe.PipeControl` calls go to
        ``listener``. Returns where it listens and, with ``enable_srtp``, a fresh
        AEAD_AES_128_GCM key (28 bytes, RFC 7714) for what it sends.

        Raises:
            NotFoundError: no room ``room`` in this media plane; OSError: cannot bind.
        """
        ...

    async def pipe_connect(self, room: str, peer: str, remote: PipeTransportParameters) -> None:
        """Send to, and accept datagrams only from, the other end (its ``pipe_open`` result).

        Raises:
            NotFoundError: no such pipe; InvalidStateError: already connected, or SRTP on
                one end only; ValueError: a bad address, port or key.
        """
        ...

    async def pipe_consume(self, room: str, peer: str, producer: str) -> PipeProducerParameters:
        """Pipe producer ``producer`` (a track sid) of ``room`` to ``peer``: what the other
        end's :meth:`pipe_produce` needs (a producer piped already: the same values).

        Raises:
            NotFoundError: no pipe or producer; InvalidStateError: not negotiated yet.
        """
        ...

    async def pipe_produce(self, room: str, peer: str, params: PipeProducerParameters) -> None:
        """Make the piped producer on this side (track id ``params.producer_id``, participant
        sid ``params.participant_sid``; a suspended producer of that id resumes: its
        consumers keep their SSRC and continue their sequence numbers and timestamps). The
        room's participants subscribe to it by the room's policy.

        Raises:
            NotFoundError: no pipe; ValueError: bad parameters or another codec than the
                suspended producer's; InvalidStateError: that id is a local producer.
        """
        ...

    async def pipe_control(self, room: str, peer: str, control: PipeControl) -> None:
        """Apply a control the other end's listener got (pause, resume, gap, close); no pipe
        or an unknown producer: ignored."""
        ...

    async def pipe_close(self, room: str, peer: str, keep_producers: bool = False) -> list[str]:
        """Close this side's pipe end (no-op without one). ``keep_producers``: its piped
        producers are suspended, not closed (the peer died; a later :meth:`pipe_produce` of
        the same id resumes them). Returns the ids of the piped producers it held."""
        ...

    async def pipe_drop(self, room: str, producers: list[str]) -> None:
        """Close piped producers of ``room`` (suspended ones whose publisher is gone for
        good); unknown ids and local producers are ignored."""
        ...

    # -- rooms and the process -------------------------------------------------------------

    async def close_room(self, room: str, reason: str = "room_closed") -> None:
        """Close a room now: every participant's listener gets ``ParticipantClosed(reason)``;
        a later join of that name starts a new room. No such room: a no-op."""
        ...

    async def ice_servers(self) -> list[IceServer]:
        """The configured STUN/TURN servers, for clients (W3C ``RTCIceServer``)."""
        ...

    async def stats(self) -> PlaneStats:
        """Current counts and monotonic counters of the whole media plane (``/metrics``)."""
        ...

    async def close(self) -> None:
        """Close every room. Safe to call twice."""
        ...
