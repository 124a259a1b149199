"""One node of a cluster: registry heartbeats, room origins, room events, stage relays,
placement and drain (docs/cluster.md).

The :class:`Cluster` lives in the app (``app[CLUSTER]``) only when ``SFU_REDIS_URL`` is set.
Signaling calls it at a few points (``signaling/ws.py``, ``signaling/stage.py``,
``signaling/chat.py``):

* ``join``: :meth:`Cluster.placement` (redirect when full or draining), then
  :meth:`Cluster.prepare_room` (follow the room's channel, resume its stage state from the
  store, try to become its origin);
* a stage request naming a participant this node does not host: :meth:`Cluster.relay_stage`
  sends it to the room's origin, which sends it (with its fencing epoch) to the node hosting
  that participant; after any stage request, :meth:`Cluster.after_stage` tells the other
  nodes to reload the room's persisted state (or that the room ended);
* chat and reaction batches are published to the room's channel (``ChatHub.relay``);
* the local stage's summary (audience count, stage members, raised hands) is published on
  change and every heartbeat (``Stages.cluster``: :meth:`Cluster.changed`), and the stage
  adds the other nodes' summaries to its counts and hand queue
  (:meth:`Cluster.remote_audience`, :meth:`Cluster.remote_hands`).

Redis lost: local rooms go on (joins are admitted here, chat reaches this node's members);
cross-node requests fail with ``unavailable`` (reason ``cluster_unreachable``); the node
registers again, follows its rooms again and takes or renews its leases when Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from aiohttp import web
from pydantic import BaseModel
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from sfu.errors import NotFoundError
from sfu.plane.types import ParticipantRef
from signaling import keys as app_keys
from signaling import protocol as p
from signaling.auth.tokens import AccessClaims, VideoGrant
from signaling.chat import CHAT
from signaling.cluster import keys
from signaling.cluster.bus import Bus, unavailable
from signaling.cluster.lease import Lease, Leases
from signaling.cluster.media import MediaPipes
from signaling.cluster.registry import (
    DEAD_AFTER_S,
    HEARTBEAT_S,
    NodeInfo,
    deregister,
    least_loaded,
    live_nodes,
    now_unix_ms,
    register,
)
from signaling.cluster.roster import roster_events, stage_view
from signaling.settings import Settings
from signaling.stage import HANDS_SHOWN, STAGES, Member, Stage

logger = logging.getLogger(__name__)

SUMMARY_TTL_MS = 10_000
"""A room's hash of summaries expires this long after its last refresh (ms)."""
DRAIN_BATCH = 200
"""At most this many participants are told to go elsewhere per second while draining."""
RELAYED_EVENTS = frozenset({"chat", "reactions"})
"""Room events relayed to the other nodes' members as they are."""
PERSISTED_REQUESTS = frozenset(
    {"set_role", "respond_invite", "remove_participant", "lock_room", "set_waiting_room"}
)
"""Stage requests that change what the store keeps: the other nodes reload the room."""


@dataclass(slots=True)
class Summary:
    """What one node hosts of a room: its listener count, stage members and raised hands
    (``hands``: (Unix time raised, listener), the first :data:`HANDS_SHOWN`; ``hands_total``:
    all of them); ``tracks``: the Producers its stage members publish, by participant sid
    (``sid``, ``kind``, ``source``: what a cross-node media pipe needs to know); ``at``:
    monotonic time received."""

    audience: int
    members: dict[str, dict[str, str]]
    hands: list[tuple[float, p.AudienceMember]]
    hands_total: int = 0
    tracks: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)


class _RemoteActor:
    """The stage session of a participant hosted by another node, for one relayed request
    (``signaling.stage.StageSession``): it collects what the stage sends it."""

    def __init__(self, room: str, actor: dict[str, str]) -> None:
        self.participant: ParticipantRef | None = ParticipantRef(
            sid=actor["sid"], room=room, identity=actor["identity"], name=actor["name"]
        )
        role = actor.get("role", "listener")
        self.grants = VideoGrant(
            roomAdmin=role in ("host", "moderator"), canPublish=role != "listener"
        )
        self.claims: AccessClaims | None = None
        self.sent: list[BaseModel] = []

    def send(self, message: BaseModel) -> None:
        self.sent.append(message)


class Cluster:
    """This node's part of the cluster (see the module docstring).

    Args:
        app: the application (its stages, chat hub and settings); settings: with
            ``redis_url`` set.
    """

    def __init__(self, app: web.Application, settings: Settings) -> None:
        assert settings.redis_url
        self.app = app
        self.node_id = settings.node_id or secrets.token_hex(6)
        self.info = NodeInfo(
            id=self.node_id,
            url=(settings.node_url or f"http://{settings.host}:{settings.port}").rstrip("/"),
            media_host=settings.node_media_host or settings.host,
            workers=int(getattr(settings, "workers", 0) or 0),
            participants=0,
            capacity=settings.max_participants,
            state="serving",
            last_seen=0,
        )
        self.drain_timeout_s = settings.drain_timeout_s
        self.redis: Redis = Redis.from_url(
            settings.redis_url,
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self.leases = Leases(self.redis)
        self.bus = Bus(self.redis, self.node_id, self._on_message, self._on_link)
        self.held: dict[str, Lease] = {}  # rooms this node is the origin of
        self.remote: dict[str, dict[str, Summary]] = {}  # room -> node id -> summary
        self.knocks: dict[str, dict[str, str]] = {}  # room -> knock id -> node it waits on
        self.available = False  # Redis answered the last heartbeat
        self.linked = False  # the pub/sub connection is subscribed
        self.draining = False
        self.drained = asyncio.Event()
        self._dirty: set[str] = set()
        self._flush: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        # Cross-node media (signaling/cluster/media.py); its hook is called with (room, node
        # id) when the Producers that node hosts in the room changed (:meth:`remote_tracks`).
        self.media = MediaPipes(self)
        self.on_remote_tracks: Callable[[str, str], None] | None = self._remote_tracks_changed
        # How a finished drain stops the process: SIGINT to itself, which aiohttp's handler
        # turns into a graceful shutdown (replaced in tests).
        self.stop_process: Callable[[], None] = lambda: os.kill(os.getpid(), signal.SIGINT)

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Register (if Redis answers) and start the heartbeat and the listener."""
        self.app[STAGES].cluster = self
        if (hub := self.app.get(CHAT)) is not None:
            hub.relay = self.relay_event
        await self._heartbeat()
        self.bus.start()
        self._tasks.append(asyncio.ensure_future(self._heartbeats()))

    async def close(self) -> None:
        """Release the leases, deregister, stop and close the client."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.available:
            with contextlib.suppress(RedisError, OSError):
                await self._release_all()
                await deregister(self.redis, self.node_id)
        await self.bus.close()
        with contextlib.suppress(Exception):
            await self.redis.aclose()

    def _remote_tracks_changed(self, room: str, node: str) -> None:
        if self.media.local(room):
            self._spawn(self.media.pull(room, node))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _lost(self, exc: BaseException) -> None:
        if self.available:
            logger.warning("cluster: Redis unreachable (%s); rooms go on locally", exc)
        self.available = False

    def _on_link(self, up: bool) -> None:
        self.linked = up
        if not up:
            self._lost(ConnectionError("pub/sub connection lost"))
        if up:  # (re)subscribed: tell the rooms we are here and ask for their summaries
            for room in list(self.bus.rooms):
                self._spawn(self._publish_room(room, {"k": "sync"}))
                self.changed(room)

    # -- heartbeats: registry, leases, summaries ------------------------------------------------

    def local_participants(self) -> int:
        """Sessions admitted on this node (every room)."""
        return sum(len(stage.members) for stage in self.app[STAGES].rooms.values())

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            await self._heartbeat()

    async def _heartbeat(self) -> None:
        self.info.participants = self.local_participants()
        self.info.state = "draining" if self.draining else "serving"
        try:
            await register(self.redis, self.info)
        except (RedisError, OSError) as exc:
            self._lost(exc)
            return
        if not self.available:
            logger.info("cluster: node %s registered (%s)", self.node_id, self.info.url)
            # Redis was lost: the other nodes' summaries are old because nothing could carry
            # them, not because the nodes died; give them a heartbeat window to come back
            # before their pipes are treated as dead (media kept flowing meanwhile).
            now = time.monotonic()
            for summaries in self.remote.values():
                for summary in summaries.values():
                    summary.at = max(summary.at, now - HEARTBEAT_S)
        self.available = True
        try:
            await self._tend_rooms()
        except (RedisError, OSError) as exc:
            self._lost(exc)
        self._expire_summaries()
        for room in list(self.app[STAGES].rooms):
            self.media.reconcile(room)
        await self.media.expire_suspended()

    async def _tend_rooms(self) -> None:
        """Renew or take the leases of the rooms with local members, release the others,
        publish every local summary."""
        local = set(self.app[STAGES].rooms)
        for room in list(self.held):
            if room not in local or self.draining:
                await self.leases.release(room, self.held.pop(room))
        for room in local:
            await self.bus.follow(room)
            if not self.draining:
                await self._take_or_renew(room)
            self.changed(room)
        for room in list(self.bus.rooms - local):
            await self._publish_summary(room)  # we left: zero
            await self.bus.unfollow(room)
            self.remote.pop(room, None)
            self.knocks.pop(room, None)
            await self.media.close_room(room)

    async def _take_or_renew(self, room: str) -> None:
        lease = self.held.get(room)
        if lease is not None:
            if await self.leases.renew(room, lease):
                return
            logger.warning("cluster: lost the origin lease of %s (epoch %d)", room, lease.epoch)
            del self.held[room]
        holder = await self.leases.acquire(room, self.node_id)
        if holder is not None and holder.node == self.node_id:
            self.held[room] = holder
            logger.info("cluster: origin of %s, epoch %d", room, holder.epoch)
            await self.reload_room(room)  # a new origin resumes the room from the store

    def _expire_summaries(self) -> None:
        now = time.monotonic()
        for room, nodes in list(self.remote.items()):
            for node_id, summary in list(nodes.items()):
                if now - summary.at > DEAD_AFTER_S:
                    del nodes[node_id]
                    self._announce(room, summary, None)
                    self._remote_changed(room)
                    self._spawn(self.media.node_gone(room, node_id, dead=True))

    async def _release_all(self) -> None:
        for room, lease in list(self.held.items()):
            await self.leases.release(room, lease)
            await self._publish_room(room, {"k": "released"})
        self.held.clear()

    # -- the stage's view (Stages.cluster) -------------------------------------------------------

    def remote_audience(self, room: str) -> int:
        """Listeners of ``room`` on the other nodes (from their summaries)."""
        return sum(s.audience for s in self.remote.get(room, {}).values())

    def remote_hands(self, room: str) -> list[tuple[float, p.AudienceMember]]:
        """Raised hands of ``room`` on the other nodes: (Unix time raised, listener)."""
        return [h for s in self.remote.get(room, {}).values() for h in s.hands]

    def remote_tracks(self, room: str) -> dict[str, dict[str, list[dict[str, str]]]]:
        """The Producers of ``room`` on the other nodes: node id -> participant sid -> tracks
        (``sid``, ``kind``, ``source``), as of their last summary (at most
        :data:`~signaling.cluster.registry.HEARTBEAT_S` old). The cross-node media pipe starts
        here: a producer listed for node N that this node's subscribers need is piped from N
        (whose ``media_host`` is in the registry)."""
        return {node: s.tracks for node, s in self.remote.get(room, {}).items() if s.tracks}

    def remote_host(self, room: str) -> str | None:
        """The identity of ``room``'s host if another node hosts it (from the summaries)."""
        for summary in self.remote.get(room, {}).values():
            for member in summary.members.values():
                if member.get("role") == "host":
                    return member.get("identity")
        return None

    def remote_hands_total(self, room: str) -> int:
        """How many hands are raised in ``room`` on the other nodes."""
        return sum(s.hands_total for s in self.remote.get(room, {}).values())

    def changed(self, room: str) -> None:
        """The local stage of ``room`` changed: publish its summary soon (coalesced)."""
        self._dirty.add(room)
        if self._flush is None or self._flush.done():
            self._flush = asyncio.ensure_future(self._flush_summaries())

    async def _flush_summaries(self) -> None:
        await asyncio.sleep(0.05)
        rooms, self._dirty = self._dirty, set()
        for room in rooms:
            if room in self.bus.rooms:
                await self._publish_summary(room)
            self.media.reconcile(room)  # a member arrived or left here: pipes follow

    async def _publish_summary(self, room: str) -> None:
        """Store this node's summary of ``room`` in the room's hash and publish it."""
        message = {**(await self._summary_message(room)), "room": room, "from": self.node_id}
        key = keys.summaries(room)
        try:
            pipe = self.redis.pipeline(transaction=False)
            if message["audience"] or message["members"] or message["hands_total"]:
                pipe.hset(key, self.node_id, json.dumps(message))
                pipe.pexpire(key, SUMMARY_TTL_MS)
            else:
                pipe.hdel(key, self.node_id)
            pipe.publish(keys.room_channel(room), json.dumps(message))
            await pipe.execute()
        except (RedisError, OSError) as exc:
            self._lost(exc)

    async def _load_summaries(self, room: str) -> None:
        """Read the other nodes' stored summaries of ``room`` (a node arriving in a room)."""
        stored = await self.redis.hgetall(keys.summaries(room))
        now = now_unix_ms()
        for node_id, raw in stored.items():
            try:
                message = json.loads(raw)
                fresh = now - int(message.get("at_ms", 0)) < DEAD_AFTER_S * 1000
            except (TypeError, ValueError):
                continue
            if node_id != self.node_id and fresh and isinstance(message, dict):
                self._on_summary(room, str(node_id), message)

    async def _summary_message(self, room: str) -> dict[str, Any]:
        stage = self.app[STAGES].rooms.get(room)
        members: dict[str, dict[str, str]] = {}
        tracks: dict[str, list[dict[str, str]]] = {}
        hands: list[dict[str, Any]] = []
        audience = 0
        if stage is not None:
            now_wall, now_mono = time.time(), time.monotonic()
            for sid, member in stage.members.items():
                participant = member.session.participant
                if participant is None:
                    continue
                entry = {"identity": participant.identity, "name": participant.name}
                if member.role != "listener":
                    members[sid] = {**entry, "role": member.role}
                    try:
                        state = await self.app[app_keys.MEDIA].participant(participant.sid)
                    except NotFoundError:  # left meanwhile
                        continue
                    published = state.info.tracks
                    if published:
                        tracks[sid] = [
                            {
                                "sid": t.sid,
                                "kind": t.kind,
                                "source": t.source,
                                "name": t.name,
                                "muted": "1" if t.muted else "",
                            }
                            for t in published
                        ]
                else:
                    audience += 1
                if member.hand_raised_at is not None:
                    at = now_wall - (now_mono - member.hand_raised_at)
                    hands.append({"sid": sid, **entry, "at": at})
        hands.sort(key=lambda h: float(h["at"]))
        return {
            "k": "summary",
            "audience": audience,
            "members": members,
            "hands": hands[:HANDS_SHOWN],
            "hands_total": len(hands),
            "tracks": tracks,
            "at_ms": now_unix_ms(),
        }

    def _remote_changed(self, room: str, *, audience: bool = True, hands: bool = True) -> None:
        stage = self.app[STAGES].rooms.get(room)
        if stage is not None:
            stage.remote_changed(audience=audience, hands=hands)

    # -- room events -----------------------------------------------------------------------------

    async def _publish_room(self, room: str, message: dict[str, Any]) -> None:
        try:
            await self.bus.publish(keys.room_channel(room), {**message, "room": room})
        except (RedisError, OSError) as exc:
            self._lost(exc)

    def relay_event(self, room: str, event: BaseModel) -> None:
        """``ChatHub.relay``: a chat message or reaction batch delivered here goes to the
        room's members on the other nodes (not when Redis is unreachable)."""
        if room in self.bus.rooms and self.available:
            self._spawn(
                self._publish_room(room, {"k": "event", "event": event.model_dump(mode="json")})
            )

    async def _on_message(self, channel: str, message: dict[str, Any]) -> None:
        sender = str(message.get("from"))
        if sender == self.node_id:
            return
        kind = message.get("k")
        if kind == "call":
            self._spawn(self._answer(sender, message))
            return
        if kind == "pipe_control" and channel == self.bus.channel:
            await self.media.on_control(sender, message)
            return
        room = message.get("room")
        if not isinstance(room, str) or channel != keys.room_channel(room):
            return
        if kind == "summary":
            self._on_summary(room, sender, message)
        elif kind == "sync":
            self.changed(room)
        elif kind == "event":
            self._deliver(room, message.get("event"))
        elif kind == "stage_event":
            await self._on_stage_event(room, sender, message)
        elif kind == "reload":
            await self.reload_room(room)
        elif kind == "ended":
            await self.reload_room(room)
            stage = self.app[STAGES].rooms.get(room)
            if stage is not None and not stage.ended:
                await stage.end(self.app, None)
        elif kind == "released" and not self.draining and room in self.app[STAGES].rooms:
            with contextlib.suppress(RedisError, OSError):
                await self._take_or_renew(room)

    def _on_summary(self, room: str, sender: str, message: dict[str, Any]) -> None:
        nodes = self.remote.setdefault(room, {})
        try:
            hands = [
                (
                    float(h["at"]),
                    p.AudienceMember(
                        sid=h["sid"], identity=h["identity"], name=h["name"], hand_raised=True
                    ),
                )
                for h in message.get("hands", [])
            ]
            summary = Summary(
                int(message.get("audience", 0)),
                dict(message["members"]),
                hands[:HANDS_SHOWN],
                int(message.get("hands_total", len(hands))),
                dict(message.get("tracks", {})),
            )
        except (KeyError, TypeError, ValueError):
            logger.warning("cluster: malformed summary from %s", sender)
            return
        before = nodes.get(sender)
        if summary.audience == 0 and not summary.members and not summary.hands_total:
            if nodes.pop(sender, None) is not None:
                self._spawn(self.media.node_gone(room, sender, dead=False))
            self._announce(room, before, None)
        else:
            nodes[sender] = summary
            self._announce(room, before, summary)
        # Only a change reaches the members (a heartbeat's unchanged summary sends nothing).
        audience = (before.audience if before else 0) != summary.audience
        old_hands = [h.sid for _, h in before.hands] if before else []
        hands_changed = old_hands != [h.sid for _, h in summary.hands] or (
            (before.hands_total if before else 0) != summary.hands_total
        )
        if audience or hands_changed:
            self._remote_changed(room, audience=audience, hands=hands_changed)
        if (before.tracks if before else {}) != summary.tracks and self.on_remote_tracks:
            self.on_remote_tracks(room, sender)

    def remote_participants(self, room: str) -> list[p.ParticipantInfo]:
        """The stage members of ``room`` on the other nodes (hosts, moderators, speakers, with
        their tracks; never the audience), for a local joiner's ``joined``."""
        return [
            info
            for summary in self.remote.get(room, {}).values()
            for info in stage_view(summary.members, summary.tracks).values()
        ]

    def _announce(self, room: str, before: Summary | None, after: Summary | None) -> None:
        """Tell this node's members of ``room`` who joined, changed or left the stage on the
        node whose summary went from ``before`` to ``after`` (None: none, or the node is
        gone), with the events a local member's change produces."""
        stage = self.app[STAGES].rooms.get(room)
        if stage is None:
            return
        old = stage_view(before.members, before.tracks) if before is not None else {}
        new = stage_view(after.members, after.tracks) if after is not None else {}
        events = roster_events(old, new)
        if not events:
            return
        for member in list(stage.members.values()):
            for event in events:
                member.session.send(event)

    def relay(self, room: str, message: BaseModel, *, admins_only: bool) -> None:
        """``StageCluster.relay``: a stage event delivered here (``stage_settings``, ``knock``,
        ``knock_resolved``) goes to the room's members (``admins_only``: hosts and
        moderators) on the other nodes (not when Redis is unreachable)."""
        if room in self.bus.rooms and self.available:
            payload = {"k": "stage_event", "admins": admins_only}
            payload["event"] = message.model_dump(mode="json")
            self._spawn(self._publish_room(room, payload))

    async def _on_stage_event(self, room: str, sender: str, message: dict[str, Any]) -> None:
        try:
            event = p.parse_response(json.dumps(message.get("event")))
        except ValueError:
            logger.warning("cluster: malformed stage event from %s", sender)
            return
        knocks = self.knocks.setdefault(room, {})
        if isinstance(event, p.KnockEvent):
            knocks[event.knock] = sender  # a respond_knock from here goes to ``sender``
        elif isinstance(event, p.KnockResolvedEvent):
            knocks.pop(event.knock, None)
        stage = self.app[STAGES].rooms.get(room)
        if stage is None:
            return
        if isinstance(event, p.StageSettingsEvent):
            await stage.apply_settings(event)
            return
        for member in list(stage.members.values()):
            if not message.get("admins") or member.role in ("host", "moderator"):
                member.session.send(event)

    def _deliver(self, room: str, event: object) -> None:
        if not isinstance(event, dict) or event.get("type") not in RELAYED_EVENTS:
            return
        hub = self.app.get(CHAT)
        if hub is None:
            return
        message = p.parse_response(json.dumps(event))
        for member in list(hub.rooms.get(room, ())):
            member.send(message)

    # -- joins -------------------------------------------------------------------------------------

    async def placement(self) -> p.RedirectEvent | None:
        """Where a new join goes: None (here), or a redirect to the least-loaded serving node
        when this node is draining or full (``SFU_MAX_PARTICIPANTS``).

        Raises:
            ProtocolError: ``unavailable`` (reason ``draining`` or ``full``) when this node
                must refuse and no other node can take the join.
        """
        capacity = self.info.capacity
        if self.draining:
            reason = "draining"
        elif capacity and self.local_participants() >= capacity:
            reason = "capacity"
        else:
            return None
        target = await self._elsewhere()
        if target is None:
            raise unavailable(
                "this node is draining" if self.draining else "every node is full",
                "draining" if self.draining else "full",
            )
        return p.RedirectEvent(url=target.url, reason=reason)  # type: ignore[arg-type]

    async def _elsewhere(self) -> NodeInfo | None:
        try:
            nodes = await live_nodes(self.redis)
        except (RedisError, OSError) as exc:
            self._lost(exc)
            return None
        return least_loaded(nodes, exclude=self.node_id)

    async def prepare_room(self, room: str) -> None:
        """Before a join to ``room``: the first local member makes this node follow the room,
        resume its persisted stage state and try to become its origin (Redis errors are
        logged: the join goes on locally)."""
        if room in self.app[STAGES].rooms:
            return
        await self.reload_room(room)
        if not self.available:
            return
        try:
            await self.bus.follow(room)
            await self._load_summaries(room)
            if not self.draining:
                await self._take_or_renew(room)
        except (RedisError, OSError) as exc:
            self._lost(exc)

    async def reload_room(self, room: str) -> None:
        """Replace what this node knows of ``room``'s persisted stage state (roles, bans,
        ended, lock and waiting room) with the store's."""
        stages = self.app[STAGES]
        if stages.store is None:
            return
        try:
            state = await stages.store.load_room(room)
        except Exception:
            logger.warning("cluster: could not reload the stage of %s", room, exc_info=True)
            return
        stages.state.roles[room] = dict(state.roles.get(room, {}))
        bans = stages.bans(room)
        bans.clear()
        bans.update(state.bans.get(room, set()))
        if room in state.ended:
            stages.ended.add(room)
        else:
            stages.ended.discard(room)
        for flag, rooms in stages.state.flags.items():
            if room in state.flags[flag]:
                rooms.add(room)
            else:
                rooms.discard(room)

    # -- stage requests across nodes ------------------------------------------------------------

    def _locate(self, room: str, sid: str) -> str | None:
        stage = self.app[STAGES].rooms.get(room)
        if stage is not None and sid in stage.members:
            return self.node_id
        for node_id, summary in self.remote.get(room, {}).items():
            if sid in summary.members or any(h.sid == sid for _, h in summary.hands):
                return node_id
        return None

    async def relay_stage(self, session: Any, request: p.Request) -> bool:
        """Handle a stage request that names a participant hosted by another node: send it
        to the room's origin (which applies it on that participant's node) and deliver the
        replies to ``session``. False when the request is for this node's stage.

        Raises:
            ProtocolError: ``unavailable`` (reason ``cluster_unreachable``) when Redis or the
                origin cannot be reached, ``stale_origin`` when the origin lost its lease; the
                target node's own errors (``forbidden``, ``not_found``...).
        """
        stage: Stage | None = session.stage
        participant = session.participant
        target = getattr(request, "participant", None)
        if stage is None or participant is None:
            return False
        if isinstance(request, p.RespondKnockRequest):  # the knock waits on another node?
            if request.knock in stage.knocks:
                return False
            home = self.knocks.get(stage.room, {}).get(request.knock)
            if home is None:
                return False  # nobody knows it: the local stage answers not_found
            if not self.available:
                raise unavailable("the cluster is unreachable: cross-node requests fail for now")
        elif not isinstance(target, str) or target in stage.members:
            return False
        elif not self.available:
            raise unavailable("the cluster is unreachable: cross-node requests fail for now")
        else:
            home = self._locate(stage.room, target)
        if home is None:
            return False  # nobody knows it: the local stage answers not_found
        if isinstance(request, p.TransferHostRequest):
            raise p.ProtocolError(
                p.ErrorCode.BAD_REQUEST, "transfer_host to a participant on another node"
            )
        actor = stage.members[participant.sid]
        args = {
            "room": stage.room,
            "actor": {
                "sid": participant.sid,
                "identity": participant.identity,
                "name": participant.name,
                "role": actor.role,
            },
            "home": home,
            "request": request.model_dump(mode="json"),
        }
        try:
            lease = await self.leases.holder(stage.room)
        except (RedisError, OSError) as exc:
            self._lost(exc)
            raise unavailable("the cluster is unreachable (Redis)") from None
        if lease is None:
            raise unavailable("the room has no origin right now; retry")
        if lease.node == self.node_id:
            result = await self._as_origin(args)
        else:
            result = await self.bus.call(lease.node, "stage", args)
        for message in result.get("messages", []):
            session.send(p.parse_response(json.dumps(message)))
        return True

    async def after_stage(self, room: str, request: p.Request) -> None:
        """After a stage request was applied on this node: the other nodes reload what it
        changed in the store, or end the room."""
        if room not in self.bus.rooms or not self.available:
            return
        if isinstance(request, p.EndRoomRequest):
            await self._publish_room(room, {"k": "ended"})
        elif request.type in PERSISTED_REQUESTS:
            await self._publish_room(room, {"k": "reload"})

    async def _answer(self, sender: str, message: dict[str, Any]) -> None:
        call_id = str(message.get("id"))
        args = message.get("args")
        try:
            if not isinstance(args, dict):
                raise p.ProtocolError(p.ErrorCode.BAD_REQUEST, "malformed call")
            if message.get("method") == "stage":
                result = await self._as_origin(args)
            elif message.get("method") == "apply":
                result = await self._apply(args)
            elif message.get("method") == "pipe":
                result = await self.media.answer(sender, args)
            else:
                raise p.ProtocolError(p.ErrorCode.BAD_REQUEST, "unknown method")
        except p.ProtocolError as exc:
            await self.bus.reply(sender, call_id, error=exc)
            return
        except Exception:
            logger.exception("cluster: call %s failed", message.get("method"))
            error = p.ProtocolError(p.ErrorCode.INTERNAL, "internal error")
            await self.bus.reply(sender, call_id, error=error)
            return
        await self.bus.reply(sender, call_id, result)

    async def _as_origin(self, args: dict[str, Any]) -> dict[str, Any]:
        """The origin's part: check it still holds the lease, then apply the request on the
        target's node with its epoch."""
        room = str(args["room"])
        lease = self.held.get(room)
        if lease is None:
            raise unavailable("this node is no longer the room's origin", "stale_origin")
        home = self._locate(room, str(args["request"].get("participant"))) or str(args["home"])
        applied = {**args, "epoch": lease.epoch}
        if home == self.node_id:
            return await self._apply(applied)
        return await self.bus.call(home, "apply", applied)

    async def _apply(self, args: dict[str, Any]) -> dict[str, Any]:
        """The target node's part: refuse a stale epoch, then run the request through the local
        stage as the remote actor."""
        room = str(args["room"])
        try:
            current = await self.leases.check_epoch(room, int(args["epoch"]))
        except (RedisError, OSError) as exc:
            self._lost(exc)
            raise unavailable("the cluster is unreachable (Redis)") from None
        if not current:
            raise unavailable("the request came from a stale origin", "stale_origin")
        stage = self.app[STAGES].rooms.get(room)
        request = p.parse_request(json.dumps(args["request"]))
        if isinstance(request, p.RespondKnockRequest):
            if stage is None or request.knock not in stage.knocks:
                raise p.ProtocolError(p.ErrorCode.NOT_FOUND, "nobody is waiting with that knock")
        elif stage is None or (target := getattr(request, "participant", None)) not in (
            stage.members
        ):
            raise p.ProtocolError(p.ErrorCode.NOT_FOUND, f"no participant {target}")
        actor = _RemoteActor(room, args["actor"])
        sid = str(args["actor"]["sid"])
        if sid in stage.members:
            raise p.ProtocolError(p.ErrorCode.BAD_REQUEST, "the actor is on this node")
        member = Member(actor, cast(p.Role, args["actor"].get("role", "listener")))
        stage.members[sid] = member
        try:
            await stage.handle(self.app, actor, request)
        finally:
            stage.remove(actor, sid)  # (the stage may be empty now: then it is dropped)
        await self.after_stage(room, request)
        replies = [m for m in actor.sent if getattr(m, "ref", None) == request.id]
        return {"messages": [m.model_dump(mode="json") for m in replies]}

    # -- drain -----------------------------------------------------------------------------------

    async def drain(self) -> None:
        """SIGTERM: stop taking joins, hand the origin leases over, tell this node's
        participants (at most :data:`DRAIN_BATCH` a second) to reconnect to the least-loaded
        serving node, and stop the process when nobody is left or after ``drain_timeout_s``."""
        if self.draining:
            return
        self.draining = True
        logger.info("cluster: draining (at most %.0f s)", self.drain_timeout_s)
        deadline = time.monotonic() + self.drain_timeout_s
        with contextlib.suppress(RedisError, OSError):
            await self._heartbeat()
            await self._release_all()
        told: set[int] = set()
        while time.monotonic() < deadline:
            sessions = [
                m.session
                for stage in self.app[STAGES].rooms.values()
                for m in stage.members.values()
            ]
            if not sessions:
                break
            target = await self._elsewhere()
            if target is not None:
                batch = 0
                for session in sessions:
                    redirect = getattr(session, "redirect", None)
                    if redirect is None or id(session) in told:
                        continue
                    told.add(id(session))
                    redirect(target.url, "draining")
                    batch += 1
                    if batch >= DRAIN_BATCH:
                        break
            await asyncio.sleep(min(1.0, max(deadline - time.monotonic(), 0.0)))
        logger.info("cluster: drained; stopping")
        self.drained.set()
        self.stop_process()


CLUSTER: web.AppKey[Cluster] = web.AppKey("cluster", Cluster)


async def cluster_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx`` (after the stage and chat contexts): the node's :class:`Cluster` when
    ``SFU_REDIS_URL`` is set; nothing otherwise."""
    settings = app[app_keys.SETTINGS]
    if not settings.redis_url:
        yield
        return
    cluster = Cluster(app, settings)
    app[CLUSTER] = cluster
    await cluster.start()
    yield
    await cluster.close()


async def install_drain_on_sigterm(app: web.Application) -> None:
    """``on_startup`` of ``sfu serve`` in a cluster: SIGTERM drains (:meth:`Cluster.drain`)
    instead of stopping at once (replaces aiohttp's SIGTERM handler)."""
    cluster = app.get(CLUSTER)
    if cluster is None:
        return
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: cluster._spawn(cluster.drain()))
