"""Participant: one member of a room with a publish and a subscribe WebRtcTransport.

Negotiation follows LiveKit's two-transport model: the client offers on the publish transport
(we answer, creating or closing Producers for m-lines that start or stop sending), and we
offer on the subscribe transport whenever consumers are added or removed (the client
answers). Subscribe offers are serialised: a change while an offer is outstanding triggers one
more offer after the answer, so no glare and no lost update.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from aiortc import sdp as aiortc_sdp

from sfu.codecs import is_rtx, match_codec
from sfu.consumer import Consumer
from sfu.errors import InvalidSdpError, InvalidStateError, LimitExceededError, NotFoundError
from sfu.events import (
    ParticipantInfo,
    PublisherLayers,
    RoomEvent,
    SubscribedTrack,
    TrackBandwidthPaused,
)
from sfu.plane.types import TrackSpec
from sfu.producer import Producer
from sfu.simulcast import SimulcastOffer, answer_simulcast, parse_simulcast_offer
from sfu.tasks import spawn
from sfu.transport import WebRtcTransport

if TYPE_CHECKING:
    from aiortc import RTCRtpTransceiver

    from sfu.room import Room

logger = logging.getLogger(__name__)


class ParticipantListener(Protocol):
    """What the application (the signaling layer) receives for one participant."""

    def send_subscribe_offer(self, sdp: str, tracks: list[SubscribedTrack]) -> None:
        """A subscribe-transport offer to deliver to the client, with the mid map."""

    def on_room_event(self, event: RoomEvent) -> None:
        """Another participant joined, left, published, unpublished or muted."""

    def on_closed(self, reason: str) -> None:
        """The participant was closed by the server (``duplicate_identity``,
        ``transport_failed``, ``room_closed``, ``left``)."""


class NullListener:
    """A listener that drops everything (WHIP publishers, which have no signaling channel)."""

    def send_subscribe_offer(self, sdp: str, tracks: list[SubscribedTrack]) -> None:
        return None

    def on_room_event(self, event: RoomEvent) -> None:
        return None

    def on_closed(self, reason: str) -> None:
        return None


def _bundle_only_flags(sdp: str) -> list[bool]:
    """For each m-section of ``sdp`` in order: does it carry ``a=bundle-only``?"""
    flags: list[bool] = []
    for line in sdp.splitlines():
        line = line.strip()
        if line.startswith("m="):
            flags.append(False)
        elif line == "a=bundle-only" and flags:
            flags[-1] = True
    return flags


def ice_ufrag(sdp: str) -> str | None:
    """The first ``a=ice-ufrag`` of an SDP (RFC 8839 §5.4), or None: it names the ICE agent,
    so one RTCPeerConnection's descriptions all carry the same one until an ICE restart."""
    for line in sdp.splitlines():
        line = line.strip()
        if line.startswith("a=ice-ufrag:"):
            return line[len("a=ice-ufrag:") :]
    return None


def parse_offer_media(sdp: str) -> list[tuple[str, str, bool]]:
    """(mid, kind, sending) for every audio/video m-line of an offer (RFC 8866).

    An m-line is sending when its direction is ``sendonly``/``sendrecv`` and it is not
    disabled: port 0 disables an m-line unless it also carries ``a=bundle-only`` and its mid
    is in the offer's BUNDLE group, which makes it bundled (RFC 8843 §6, §7.5; GStreamer's
    webrtcbin offers every m-line but the first this way with ``max-bundle``).

    Raises:
        InvalidSdpError: when the SDP cannot be parsed or an m-line has no mid.
    """
    if not sdp.lstrip().startswith("v=0"):
        raise InvalidSdpError("SDP must start with v=0 (RFC 8866 §5)")
    try:
        description = aiortc_sdp.SessionDescription.parse(sdp)
    except Exception as exc:
        raise InvalidSdpError(f"cannot parse SDP: {exc}") from exc
    bundle_only = _bundle_only_flags(sdp)
    bundled = {
        mid for group in description.group if group.semantic == "BUNDLE" for mid in group.items
    }
    out = []
    for index, media in enumerate(description.media):
        if media.kind not in ("audio", "video"):
            continue
        mid = media.rtp.muxId
        if not mid:
            raise InvalidSdpError("every m-line needs a mid (RFC 8843 BUNDLE)")
        enabled = media.port != 0 or (
            index < len(bundle_only) and bundle_only[index] and mid in bundled
        )
        sending = enabled and media.direction in ("sendonly", "sendrecv")
        out.append((mid, media.kind, sending))
    return out


class Participant:
    """A member of a :class:`Room`.

    Attributes:
        sid: participant sid (``PA_...``); identity: the authenticated identity; name: display
            name; can_publish / can_subscribe: grants (RFC 7519 claims, LiveKit's shape).
        publish_transport / subscribe_transport: the two :class:`WebRtcTransport` (or None).
        producers: track sid -> Producer this participant publishes.
        subscriptions: producer id -> Consumer of this participant.
    """

    def __init__(
        self,
        room: Room,
        identity: str,
        name: str,
        listener: ParticipantListener,
        *,
        can_publish: bool = True,
        can_subscribe: bool = True,
    ) -> None:
        self.sid = "PA_" + secrets.token_urlsafe(9)
        self.room = room
        self.identity = identity
        self.name = name
        self.listener = listener
        self.can_publish = can_publish
        self.can_subscribe = can_subscribe
        self.auto_subscribe = True  # False for WHEP viewers bound to one publisher
        self.hidden = False
        self.subscribe_kinds: frozenset[str] | None = None
        self.attributes: dict[str, str] = {}
        self.publish_transport: WebRtcTransport | None = None
        self.subscribe_transport: WebRtcTransport | None = None
        self.producers: dict[str, Producer] = {}
        self.subscriptions: dict[str, Consumer] = {}
        self.closed = False
        self._failed = False  # a transport failed and removal is under way
        self._publish_lock = asyncio.Lock()
        self._subscribe_lock = asyncio.Lock()
        self._negotiation_task: asyncio.Task[None] | None = None
        self._renegotiate = False
        self._failed = False  # a transport failed: the participant is being removed
        # Media restart (issue 11): None = a failed transport removes the participant.
        self._restart_notify: Callable[[str, str], None] | None = None
        self._restart_grace_s = 15.0
        self._restart_timers: dict[str, asyncio.TimerHandle] = {}
        self._orphans: dict[str, Producer] = {}  # track sid -> producer awaiting a new m-line
        self._stale_ufrags: set[str] = set()  # ICE ufrags of the client's replaced connections
        self.media_restarts = {"publish": 0, "subscribe": 0}

    def info(self) -> ParticipantInfo:
        """This participant and its tracks as others see them."""
        return ParticipantInfo(
            sid=self.sid,
            identity=self.identity,
            name=self.name,
            tracks=tuple(p.info() for p in self.producers.values() if p.codec is not None),
            attributes=dict(self.attributes),
        )

    def _on_transport_failed(self, transport: WebRtcTransport) -> None:
        """ICE/DTLS of one transport failed or closed. With media restart enabled
        (:meth:`enable_media_restart`) the transport is replaced (:meth:`restart_media`);
        otherwise, or for a transport that is no longer current, tell the listener (the
        signaling session leaves its hubs and tells the client) and remove the participant,
        once."""
        if self._restart_notify is not None and not self.closed and not self._failed:
            side = self._side_of(transport)
            if side is None:
                return  # a transport already replaced
            self._replace_transport(side, "transport_failed")
            return
        if not self.closed and not self._failed:
            self._failed = True
            logger.info("participant %s: transport failed", self.sid)
            try:  # the listener forgets the participant (its session, its WHIP resource)
                self.listener.on_closed("transport_failed")
            except Exception:
                logger.exception("listener of %s failed", self.sid)
            spawn(self.room.remove(self, reason="transport_failed"))

    # -- media restart (issue 11) ---------------------------------------------------------------

    def enable_media_restart(self, notify: Callable[[str, str], None], grace_s: float) -> None:
        """From now on a failed transport does not remove this participant: it is replaced
        and ``notify(side, reason)`` tells the client (``side`` is ``"publish"`` or
        ``"subscribe"``, ``reason`` ``"transport_failed"``), which renegotiates on a new
        RTCPeerConnection. When the replacement is not connected ``grace_s`` seconds later,
        the participant is removed with ``transport_failed`` as before.

        aiortc has no ICE restart (``RTCIceTransport.start()`` runs once), so a new
        WebRtcTransport replaces the old one, as LiveKit's full reconnect does.
        """
        self._restart_notify = notify
        self._restart_grace_s = grace_s

    def _side_of(self, transport: WebRtcTransport) -> str | None:
        if transport is self.publish_transport:
            return "publish"
        if transport is self.subscribe_transport:
            return "subscribe"
        return None

    async def restart_media(self, side: str) -> None:
        """The client lost the media path of its ``side`` transport (``"publish"`` or
        ``"subscribe"``) and made a new RTCPeerConnection for it: replace the server's
        transport as :meth:`enable_media_restart` does on a failure, without notifying.

        Raises:
            InvalidStateError: the participant is closed, or restart is not enabled.
        """
        if self.closed or self._failed or self._restart_notify is None:
            raise InvalidStateError("media restart is not available")
        if side not in ("publish", "subscribe"):
            raise InvalidStateError(f"no {side} transport")
        self._replace_transport(side, None)

    def _replace_transport(self, side: str, reason: str | None) -> None:
        """Replace the ``side`` transport: close the old one, keep this participant's
        producers (publish) or re-consume every producer it consumed on a new transport
        (subscribe), tell the client when ``reason`` is given, and start the grace timer."""
        self.media_restarts[side] += 1
        consumed: list[Producer] = []
        replaced = self.publish_transport if side == "publish" else self.subscribe_transport
        remote = replaced.remote_sdp() if replaced is not None else None
        stale = ice_ufrag(remote) if remote is not None else None
        if stale:  # an offer or answer of the client's old connection may still be in flight
            self._stale_ufrags.add(stale)
        logger.info("participant %s: %s transport replaced (%s)", self.sid, side, reason)
        if side == "publish":
            old = self.publish_transport
            self.publish_transport = None
            if old is not None:
                for producer in old.detach_producers():
                    if not producer.closed:
                        producer.suspend()
                        self._orphans[producer.id] = producer
                spawn(self.room.router.close_transport(old))
        else:
            old = self.subscribe_transport
            self.subscribe_transport = None
            self._renegotiate = False
            consumed = [c.producer for c in self.subscriptions.values() if not c.producer.closed]
            for consumer in list(self.subscriptions.values()):
                consumer.close()
            self.subscriptions.clear()
            if old is not None:
                spawn(self.room.router.close_transport(old))
        if reason is not None and self._restart_notify is not None:
            try:  # before the new subscribe offer, which follows on the same channel
                self._restart_notify(side, reason)
            except Exception:
                logger.exception("media restart listener of %s failed", self.sid)
        if side == "subscribe" and consumed:
            for producer in consumed:
                self.subscribe(producer)
            transport = self.subscribe_transport
            if transport is not None:
                self._watch_restart(side, transport)
        elif side == "publish" and self._orphans:
            self._arm_restart_timer(side)

    def _arm_restart_timer(self, side: str) -> None:
        if side not in self._restart_timers:
            self._restart_timers[side] = asyncio.get_running_loop().call_later(
                self._restart_grace_s, self._on_restart_expired, side
            )

    def _watch_restart(self, side: str, transport: WebRtcTransport) -> None:
        """Wait (at most the grace period) for the new ``side`` transport to connect."""
        self._arm_restart_timer(side)

        def connected(t: WebRtcTransport) -> None:
            if self._side_of(t) == side:
                timer = self._restart_timers.pop(side, None)
                if timer is not None:
                    timer.cancel()
                logger.info("participant %s: new %s transport connected", self.sid, side)

        transport.on_connected(connected)

    def _on_restart_expired(self, side: str) -> None:
        self._restart_timers.pop(side, None)
        if self.closed or self._failed:
            return
        logger.info("participant %s: %s transport not back in time", self.sid, side)
        self._restart_notify = None
        self._failed = True
        try:
            self.listener.on_closed("transport_failed")
        except Exception:
            logger.exception("listener of %s failed", self.sid)
        spawn(self.room.remove(self, reason="transport_failed"))

    def _cancel_restart_timers(self) -> None:
        for timer in self._restart_timers.values():
            timer.cancel()
        self._restart_timers.clear()

    def _take_orphan(self, spec: TrackSpec, kind: str) -> Producer | None:
        """The suspended producer a sending m-line of the first publish offer after a media
        restart continues: by the track sid the client names, else the first of the same
        kind and source, else of the same kind."""
        for sid in [sid for sid, p in self._orphans.items() if p.closed]:
            del self._orphans[sid]  # unpublished meanwhile
        if not self._orphans:
            return None
        orphan = self._orphans.get(spec.sid) if spec.sid else None
        if orphan is None or orphan.kind != kind:
            candidates = [p for p in self._orphans.values() if p.kind == kind]
            same_source = [p for p in candidates if p.source == spec.source]
            pool = same_source or candidates
            orphan = pool[0] if pool else None
        if orphan is not None:
            del self._orphans[orphan.id]
        return orphan

    # -- publishing ----------------------------------------------------------------------------

    async def publish_offer(
        self, sdp: str, tracks: Iterable[TrackSpec] = ()
    ) -> tuple[str, dict[str, str]]:
        """Apply a publish offer; returns (answer SDP, mid -> track sid of every producer).

        M-lines that start sending become Producers (announced to the room and consumed by
        every subscriber); m-lines that stop sending close theirs.

        Raises:
            InvalidSdpError: unparseable or non-negotiable SDP (nothing changes).
            InvalidStateError: the participant is closed or may not publish.
            LimitExceededError: more sending m-lines than the router's
                ``max_producers_per_participant`` (nothing changes).
        """
        if self.closed:
            raise InvalidStateError("participant is closed")
        if not self.can_publish:
            raise InvalidStateError("participant may not publish")
        media = parse_offer_media(sdp)
        simulcast = parse_simulcast_offer(sdp)
        if not media:
            raise InvalidSdpError("the offer has no audio or video m-line")
        if ice_ufrag(sdp) in self._stale_ufrags:
            raise InvalidStateError("the offer is from a connection replaced by a media restart")
        self._check_producer_limit(media)
        specs = {t.mid: t for t in tracks}
        async with self._publish_lock:
            transport = self.publish_transport
            restarting = transport is None and bool(self._orphans)
            if transport is None:
                transport = self.room.router.create_webrtc_transport(self._on_transport_failed)
                self.publish_transport = transport
                if restarting:
                    self._watch_restart("publish", transport)
            await transport.set_remote_offer(sdp)
            added: list[Producer] = []
            removed: list[Producer] = []
            transceivers = {t.mid: t for t in transport.transceivers()}
            for mid, kind, sending in media:
                existing = transport.producers.get(mid)
                if sending and existing is None:
                    spec = specs.get(mid, TrackSpec(mid=mid, kind=kind))
                    if restarting and self._resume_orphan(transport, transceivers, spec, kind):
                        resumed = transport.producers.get(mid)
                        offer = simulcast.get(mid)
                        if resumed is not None and resumed.layers and offer is not None:
                            resumed.rid_ext_id = offer.rid_ext_id
                            resumed.repaired_rid_ext_id = offer.repaired_rid_ext_id
                        continue
                    producer = self.room.router.create_producer(
                        transport,
                        participant_sid=self.sid,
                        mid=mid,
                        kind=kind,
                        source=spec.source,
                        name=spec.name,
                    )
                    transceiver = transceivers.get(mid)
                    if transceiver is not None:
                        try:
                            producer.on_negotiated(transport.remote_receive_parameters(transceiver))
                        except ValueError:
                            producer.close()
                            raise InvalidSdpError(f"no codec negotiated for mid {mid}") from None
                    producer.paused = spec.muted
                    self._setup_simulcast(producer, simulcast.get(mid))
                    self.producers[producer.id] = producer
                    producer.on_close(self._forget_producer)
                    added.append(producer)
                elif not sending and existing is not None:
                    removed.append(existing)
            answer = answer_simulcast(await transport.create_answer(), simulcast)
            if restarting:  # tracks the client did not publish again are gone
                orphans, self._orphans = list(self._orphans.values()), {}
                removed.extend(orphans)
        for producer in removed:
            producer.close()
        for producer in added:
            self.room.on_published(self, producer)
        mids = {p.mid: p.id for p in self.producers.values()}
        return answer, mids

    def _setup_simulcast(self, producer: Producer, offer: SimulcastOffer | None) -> None:
        """Make ``producer`` a simulcast producer when its m-line sends simulcast; dynacast
        changes go to this participant's listener (:class:`PublisherLayers`)."""
        if offer is None or producer.kind != "video" or len(offer.rids) < 2:
            return
        producer.enable_simulcast(offer.rids, offer.rid_ext_id, offer.repaired_rid_ext_id)
        if producer.dynacast is not None:
            producer.dynacast.enabled = self.room.router.dynacast
            producer.dynacast.on_change = self._on_dynacast

    def _on_dynacast(self, producer: Producer, active: tuple[str, ...]) -> None:
        if not self.closed:
            self.listener.on_room_event(PublisherLayers(track=producer.id, active=active))

    def _on_bandwidth_paused(self, consumer: Consumer, paused: bool) -> None:
        if not self.closed:
            producer = consumer.producer
            self.listener.on_room_event(
                TrackBandwidthPaused(
                    participant=producer.participant_sid, track=producer.id, paused=paused
                )
            )

    def set_track_settings(self, track_sid: str, *, visible: bool, width: int | None) -> None:
        """Adaptive stream: the subscriber shows ``track_sid`` in a tile ``width`` CSS pixels
        wide (None: unknown), or not at all (``visible`` False: no video is sent). A simulcast
        track gets the smallest layer at least that wide that its bandwidth allows; a
        one-layer video is paused while hidden.

        Raises:
            NotFoundError: when this participant is not subscribed to ``track_sid``.
        """
        consumer = self.subscriptions.get(track_sid)
        if consumer is None:
            raise NotFoundError(f"not subscribed to {track_sid}")
        logger.debug("participant %s: %s visible=%s width=%s", self.sid, track_sid, visible, width)
        if consumer.layers is not None:
            consumer.layers.set_preference(visible, width)
            consumer.transport.allocator.allocate()
        elif consumer.kind == "video":
            consumer.set_paused(not visible)

    def _resume_orphan(
        self,
        transport: WebRtcTransport,
        transceivers: dict[str | None, RTCRtpTransceiver],
        spec: TrackSpec,
        kind: str,
    ) -> bool:
        """Bind a suspended producer to the sending m-line ``spec.mid`` of the new publish
        transport (same track sid: subscribers see no change); False when none fits."""
        transceiver = transceivers.get(spec.mid)
        orphan = self._take_orphan(spec, kind)
        if orphan is None or transceiver is None:
            if orphan is not None:
                self._orphans[orphan.id] = orphan
            return False
        try:
            rtp = transport.remote_receive_parameters(transceiver)
            orphan.resume(transport, spec.mid, rtp)
        except ValueError as exc:
            logger.info("participant %s: track %s not resumed: %s", self.sid, orphan.id, exc)
            orphan.close()
            return False
        logger.info("participant %s: track %s resumed on mid %s", self.sid, orphan.id, spec.mid)
        return True

    def _check_producer_limit(self, media: list[tuple[str, str, bool]]) -> None:
        """Refuse a publish offer whose sending m-lines (the producers it leaves) exceed the
        router's ``max_producers_per_participant``: each producer adds an m-line to every
        subscriber's SDP, so one publisher must not be able to push theirs past a limit."""
        limit = self.room.router.max_producers_per_participant
        sending = sum(1 for _mid, _kind, is_sending in media if is_sending)
        if sending > limit:
            raise LimitExceededError(
                f"the offer sends {sending} tracks; a participant may publish at most {limit}"
            )

    def _forget_producer(self, producer: Producer) -> None:
        if self.producers.pop(producer.id, None) is not None:
            self.room.on_unpublished(self, producer)

    def set_track_muted(self, track_sid: str, muted: bool, *, remote: bool = False) -> None:
        """Mute or unmute one of this participant's producers (forwarding pauses). A
        ``remote`` mute (by a moderator) is announced to this participant too.

        Raises:
            NotFoundError: when the participant publishes no such track.
        """
        producer = self.producers.get(track_sid)
        if producer is None:
            raise NotFoundError(f"no track {track_sid}")
        if producer.paused != muted:
            producer.set_paused(muted)
            self.room.on_muted(self, producer, remote=remote)

    async def unpublish(self, track_sid: str) -> None:
        """Close one producer (its consumers everywhere are removed).

        Raises:
            NotFoundError: when the participant publishes no such track.
        """
        producer = self.producers.get(track_sid)
        if producer is None:
            raise NotFoundError(f"no track {track_sid}")
        producer.close()

    async def stop_publishing(self) -> None:
        """Close every producer at once (their consumers everywhere go with them) and the
        publish transport; a later publish offer starts a new transport. Used when the
        ``canPublish`` grant is withdrawn."""
        for producer in list(self.producers.values()):
            producer.close()
        self._orphans.clear()  # a media restart of the publish side ends here too
        timer = self._restart_timers.pop("publish", None)
        if timer is not None:
            timer.cancel()
        transport, self.publish_transport = self.publish_transport, None
        if transport is not None:
            async with self._publish_lock:
                await self.room.router.close_transport(transport)

    # -- subscribing ---------------------------------------------------------------------------

    def ensure_subscribe_transport(self) -> WebRtcTransport:
        """The subscribe transport, created on first use."""
        if self.subscribe_transport is None:
            self.subscribe_transport = self.room.router.create_webrtc_transport(
                self._on_transport_failed
            )
            self.subscribe_transport.on_bandwidth_paused = self._on_bandwidth_paused
        return self.subscribe_transport

    def subscribe(self, producer: Producer) -> Consumer | None:
        """Consume ``producer`` (not our own) and schedule a subscribe renegotiation."""
        if (
            self.closed
            or not self.can_subscribe
            or (self.subscribe_kinds is not None and producer.kind not in self.subscribe_kinds)
            or producer.participant_sid == self.sid
            or producer.id in self.subscriptions
            or producer.closed
        ):
            return None
        transport = self.ensure_subscribe_transport()
        try:
            consumer = self.room.router.consume(producer, transport)
        except Exception as exc:
            logger.warning("participant %s cannot consume %s: %s", self.sid, producer.id, exc)
            return None
        self.subscriptions[producer.id] = consumer
        consumer.on_close(self._forget_consumer)
        self.schedule_negotiation()
        return consumer

    def _forget_consumer(self, consumer: Consumer) -> None:
        if self.subscriptions.get(consumer.producer.id) is consumer:
            del self.subscriptions[consumer.producer.id]
            self.schedule_negotiation()

    def schedule_negotiation(self) -> None:
        """Send a new subscribe offer soon (coalescing changes made in the same loop turn)."""
        if self.closed or self.subscribe_transport is None:
            return
        if self._negotiation_task is None or self._negotiation_task.done():
            self._negotiation_task = asyncio.ensure_future(self._negotiate())
        else:
            self._renegotiate = True

    async def _negotiate(self) -> None:
        await asyncio.sleep(0)  # coalesce every change made in this loop iteration
        async with self._subscribe_lock:
            transport = self.subscribe_transport
            if self.closed or transport is None or transport.closed:
                return
            if transport.signaling_state != "stable":
                self._renegotiate = True  # sent after the outstanding answer arrives
                return
            self._renegotiate = False
            try:
                sdp = await transport.create_offer()
            except Exception:
                logger.exception("participant %s: subscribe offer failed", self.sid)
                return
            if transport is not self.subscribe_transport:
                return  # replaced by a media restart meanwhile: its offer goes nowhere
            tracks = [
                SubscribedTrack(
                    mid=c.transceiver.mid,
                    participant=c.producer.participant_sid,
                    track=c.producer.id,
                    kind=c.kind,
                )
                for c in transport.consumers.values()
                if not c.closed and c.transceiver.mid is not None
            ]
            self.listener.send_subscribe_offer(sdp, tracks)

    async def subscribe_answer(self, sdp: str) -> None:
        """Apply the client's answer to our latest subscribe offer.

        Raises:
            InvalidStateError: no offer outstanding; InvalidSdpError: bad answer.
        """
        transport = self.subscribe_transport
        if transport is None:
            raise InvalidStateError("no subscribe offer is outstanding")
        if ice_ufrag(sdp) in self._stale_ufrags:
            return  # the answer of a connection replaced by a media restart: nothing to do
        async with self._subscribe_lock:
            await transport.set_remote_answer(sdp)
        if self._renegotiate:
            self.schedule_negotiation()

    async def add_ice_candidate(
        self, which: str, candidate: str | None, sdp_mid: str | None, index: int | None
    ) -> None:
        """Add a trickled candidate to the ``publish`` or ``subscribe`` transport.

        Raises:
            InvalidStateError: that transport does not exist yet; InvalidSdpError: bad line.
        """
        transport = self.publish_transport if which == "publish" else self.subscribe_transport
        if transport is None:
            raise InvalidStateError(f"no {which} transport yet")
        await transport.add_ice_candidate(candidate, sdp_mid, index)

    # -- close ---------------------------------------------------------------------------------

    async def close(self) -> None:
        """Close both transports (and so every producer and consumer). Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        self._cancel_restart_timers()
        self._orphans.clear()  # still in self.producers: closed below
        task = self._negotiation_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for producer in list(self.producers.values()):
            producer.close()
        for consumer in list(self.subscriptions.values()):
            consumer.close()
        for transport in (self.publish_transport, self.subscribe_transport):
            if transport is not None:
                await self.room.router.close_transport(transport)


async def negotiate_viewer(participant: Participant, sdp: str, producers: list[Producer]) -> str:
    """WHEP playback: apply a viewer's offer of recvonly m-lines and answer with one consumer
    per m-line, matched to ``producers`` by kind (and codec) in order. Returns the answer SDP.

    An m-line for which no producer of its kind has a codec the viewer offered is answered
    ``a=inactive`` (we never transcode), with a log line saying why, instead of promising
    media that would never come.

    Raises:
        InvalidSdpError: unparseable offer, or an offer with no audio/video m-line.
    """
    media = parse_offer_media(sdp)
    if not media:
        raise InvalidSdpError("the offer has no audio or video m-line")
    transport = participant.ensure_subscribe_transport()
    await transport.set_remote_offer(sdp)
    available = list(producers)
    for transceiver in transport.transceivers():
        producer = _viewer_producer(participant, transport, transceiver, available)
        if producer is None:
            transceiver.direction = "inactive"
            continue
        available.remove(producer)
        transceiver.direction = "sendonly"
        consumer = transport.attach_consumer(producer, transceiver)
        participant.subscriptions[producer.id] = consumer
    return await transport.create_answer()


def _viewer_producer(
    participant: Participant,
    transport: WebRtcTransport,
    transceiver: RTCRtpTransceiver,
    available: list[Producer],
) -> Producer | None:
    """The first of ``available`` producers of the viewer m-line's kind whose codec the viewer
    offered on that m-line, or None (logged when a producer of that kind exists)."""
    candidates = [p for p in available if p.kind == transceiver.kind and p.codec is not None]
    if not candidates:
        return None
    offered = transport.remote_receive_parameters(transceiver).codecs
    for producer in candidates:
        assert producer.codec is not None
        if match_codec(offered, producer.codec) is not None:
            return producer
    logger.info(
        "viewer %s: m-line %s answered inactive: the viewer offers %s but the %s producers "
        "send %s (no codec in common; the SFU does not transcode)",
        participant.sid,
        transceiver.mid,
        ", ".join(sorted({c.mimeType for c in offered if not is_rtx(c)})) or "no codec",
        transceiver.kind,
        ", ".join(sorted({p.codec.mime_type for p in candidates if p.codec is not None})),
    )
    return None
