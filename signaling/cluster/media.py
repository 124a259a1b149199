"""Media between the nodes of a cluster: each Producer piped once to each node that needs it
(docs/cluster.md "Media across nodes").

A node that hosts participants of a room *pulls* the Producers the other nodes' stage members
publish there (:meth:`Cluster.remote_tracks`, from their summaries): for node N it opens a
pipe end ``"pull:N"`` in its media plane (a PipeTransport, SRTP AEAD_AES_128_GCM with a
fresh key, bound to its ``SFU_NODE_MEDIA_HOST``) and calls ``pipe`` on N over Redis with
that end's address and key and the track sids it wants. N opens (or reuses) its end
``"push:<puller>"``, connects it, pipes each Producer into it and answers with its own
address and key and one :class:`~sfu.plane.types.PipeProducerParameters` per Producer; the
puller connects and produces them, and the room's local participants subscribe to them with
the same track sid and participant sid (listeners of a podcast room included). Pipe controls
(mute, media gap, close) travel as ``pipe_control`` messages on the other node's channel.

Failover: when N stops sending summaries (dead after 6 s), the puller closes ``"pull:N"``
with ``keep_producers``: its piped Producers stay, suspended, with their consumers. When the
same publisher (identity, kind, source) is pulled again from another node, the new pipe
produces it under the suspended Producer's id, so local subscribers keep their SSRC and
sequence numbers (docs/pipe.md); suspended Producers nobody resumes within
:data:`SUSPENDED_TTL_S` close. A pipe that is up does not need Redis: media keeps flowing
while Redis is lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sfu.errors import SfuError
from sfu.plane import codec
from sfu.plane.types import PipeControl, PipeProducerParameters, PipeTransportParameters
from signaling import keys as app_keys
from signaling import protocol as p
from signaling.cluster import keys

if TYPE_CHECKING:
    from signaling.cluster.node import Cluster

logger = logging.getLogger(__name__)

SUSPENDED_TTL_S = 30.0
"""A piped Producer suspended when its node died closes if no node pipes its publisher's
track again within this long (s)."""

TrackKey = tuple[str, str, str]
"""(publisher identity, kind, source): what finds a suspended Producer again."""


@dataclass(slots=True)
class _Pull:
    """This node's pipe from one node in one room."""

    connected: bool = False
    piped: dict[str, str] = field(default_factory=dict)  # remote track sid -> local track sid
    meta: dict[str, TrackKey] = field(default_factory=dict)  # local track sid -> key
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class MediaPipes:
    """The cross-node pipes of one node (see the module docstring).

    Args:
        cluster: the node's :class:`~signaling.cluster.node.Cluster` (bus, summaries, app).
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.pulls: dict[tuple[str, str], _Pull] = {}  # (room, node) -> pull
        self.pushes: set[tuple[str, str]] = set()  # (room, node) this node sends to
        # room -> (identity, kind, source) -> (local track sid, suspended at, monotonic s)
        self.suspended: dict[str, dict[TrackKey, tuple[str, float]]] = {}
        # (room, node) -> that node's track sids whose publisher moved to another node
        self.stale: dict[tuple[str, str], set[str]] = {}
        # (room, node) -> set once node_gone has closed our pull from node (and suspended its
        # Producers): a pull from another node resumes them only after that
        self._closing: dict[tuple[str, str], asyncio.Event] = {}
        self.piped_total = 0
        """Producers piped in so far (a counter for tests and benchmarks)."""

    @property
    def _media(self) -> Any:
        return self.cluster.app[app_keys.MEDIA]

    @property
    def _host(self) -> str:
        return self.cluster.info.media_host

    def _listener(self, room: str, node: str, side: str) -> Any:
        """Where a pipe end's controls go: node ``node``'s end of the other ``side``."""

        def send(control: PipeControl) -> None:
            pid = control.producer_id
            if side == "push":  # our pull end talks of local ids: name the remote one
                pull = self.pulls.get((room, node))
                if pull is not None:
                    pid = next((r for r, loc in pull.piped.items() if loc == pid), pid)
                    if control.action == "close":  # no subscriber left here: pull it again later
                        pull.piped.pop(pid, None)
            message = {
                "k": "pipe_control",
                "room": room,
                "side": side,
                "control": dataclasses.asdict(dataclasses.replace(control, producer_id=pid)),
            }
            self.cluster._spawn(self._send(node, message))

        return send

    async def _send(self, node: str, message: dict[str, Any]) -> None:
        try:
            await self.cluster.bus.publish(keys.node_channel(node), message)
        except Exception as exc:  # Redis lost: the other end learns it from the pipe's close
            logger.debug("cluster: pipe control to %s not sent: %s", node, exc)

    # -- the pulling node --------------------------------------------------------------------------

    def local(self, room: str) -> bool:
        """This node hosts participants of ``room``."""
        from signaling.stage import STAGES

        return room in self.cluster.app[STAGES].rooms

    def reconcile(self, room: str) -> None:
        """Pull what this node lacks of ``room`` from every other node (spawned)."""
        if not self.local(room):
            self.cluster._spawn(self.close_room(room))
            return
        for node in self.cluster.remote_tracks(room):
            self.cluster._spawn(self.pull(room, node))

    async def pull(self, room: str, node: str) -> None:
        """Pipe every Producer ``node`` lists for ``room`` that this node has not piped yet
        (errors are logged: the next summary or heartbeat retries)."""
        summary = self.cluster.remote.get(room, {}).get(node)
        if summary is None or not self.local(room):
            return
        stale = self.stale.get((room, node), set())
        wanted: dict[str, TrackKey] = {}
        for psid, tracks in summary.tracks.items():
            identity = str(summary.members.get(psid, {}).get("identity", psid))
            for track in tracks:
                if str(track["sid"]) not in stale:
                    key = (identity, str(track["kind"]), str(track["source"]))
                    wanted[str(track["sid"])] = key
        if not wanted:  # nothing (or only tracks whose publisher moved on): no pull end
            return
        current = self.pulls.get((room, node))
        arriving = {k for t, k in wanted.items() if current is None or t not in current.piped}
        for (r, other), elsewhere in list(self.pulls.items()):
            if r != room or other == node:
                continue
            moved = {
                rid for rid, lid in elsewhere.piped.items() if elsewhere.meta.get(lid) in arriving
            }
            if moved:
                # the publisher came back on ``node`` before ``other`` was found dead: one
                # identity publishes in one place, so ``other``'s copy is stale: suspend it
                # (resumed from ``node`` below) and ignore those tracks in ``other``'s
                # summaries from now on
                self.stale.setdefault((room, other), set()).update(moved)
                await self.node_gone(room, other, dead=True)
        # Another pull (or the dead-node sweep) may be closing a pipe of this room right now:
        # its Producers are suspended only when that close is done, and a track arriving here
        # must resume them, not be produced a second time under a new id.
        await self._closed_elsewhere(room, node)
        pull = self.pulls.setdefault((room, node), _Pull())
        async with pull.lock:
            new = [t for t in wanted if t not in pull.piped]
            if not new:
                return
            media = self._media
            peer = f"pull:{node}"
            args: dict[str, Any] = {"room": room, "tracks": new}
            try:
                if not pull.connected:
                    mine = await media.pipe_open(
                        room, peer, self._listener(room, node, "push"), self._host, True
                    )
                    pull.piped.clear()
                    args["transport"] = codec.encode(mine, PipeTransportParameters)
                result = await self.cluster.bus.call(node, "pipe", args)
                if "transport" in args:
                    theirs = codec.decode(result["transport"], PipeTransportParameters)
                    await media.pipe_connect(room, peer, theirs)
                    pull.connected = True
                for raw in result.get("producers", []):
                    params: PipeProducerParameters = codec.decode(raw, PipeProducerParameters)
                    remote_id = params.producer_id
                    track_key = wanted.get(remote_id)
                    local_id = self._resume_id(room, track_key) if track_key else None
                    if local_id is not None:
                        params = dataclasses.replace(params, producer_id=local_id)
                    await media.pipe_produce(room, peer, params)
                    pull.piped[remote_id] = params.producer_id
                    if track_key is not None:
                        pull.meta[params.producer_id] = track_key
                    self.piped_total += 1
            except (p.ProtocolError, SfuError, ValueError, KeyError, OSError) as exc:
                logger.info("cluster: pipe of %s from %s not made now: %s", room, node, exc)
                if "transport" in args and not pull.connected:
                    await self._quiet_close(room, peer, keep=True)
                elif isinstance(exc, p.ProtocolError) and exc.code == p.ErrorCode.NOT_FOUND:
                    pull.connected = False  # the other end lost its side: open a new pipe

    def _resume_id(self, room: str, key: TrackKey) -> str | None:
        entry = self.suspended.get(room, {}).pop(key, None)
        return entry[0] if entry is not None else None

    async def _quiet_close(self, room: str, peer: str, keep: bool = False) -> list[str]:
        try:
            held: list[str] = await self._media.pipe_close(room, peer, keep)
            return held
        except SfuError:
            return []

    async def _closed_elsewhere(self, room: str, node: str) -> None:
        """Wait until no pull of ``room`` from a node other than ``node`` is being closed."""
        pending = [e for (r, n), e in self._closing.items() if r == room and n != node]
        for closing in pending:
            await closing.wait()

    async def node_gone(self, room: str, node: str, *, dead: bool) -> None:
        """``node`` has nothing in ``room`` any more (``dead``: it stopped sending summaries):
        close our ends towards it; a dead node's piped Producers stay suspended for
        :data:`SUSPENDED_TTL_S` so that a publisher reconnecting elsewhere resumes them.
        Returns once they are (also when another call is closing the same pull)."""
        key = (room, node)
        pull = self.pulls.pop(key, None)
        if pull is None:
            closing = self._closing.get(key)
            if closing is not None:
                await closing.wait()
        else:
            done = self._closing[key] = asyncio.Event()
            try:
                async with pull.lock:
                    held = await self._quiet_close(room, f"pull:{node}", keep=dead)
                if dead:
                    now = time.monotonic()
                    for local_id in held:
                        track_key = pull.meta.get(local_id)
                        if track_key is not None:
                            self.suspended.setdefault(room, {})[track_key] = (local_id, now)
            finally:
                done.set()
                if self._closing.get(key) is done:
                    del self._closing[key]
        if (room, node) in self.pushes:
            self.pushes.discard((room, node))
            await self._quiet_close(room, f"push:{node}")

    async def expire_suspended(self) -> None:
        """Close suspended Producers nobody resumed within :data:`SUSPENDED_TTL_S`."""
        now = time.monotonic()
        for room, entries in list(self.suspended.items()):
            stale = [k for k, (_, at) in entries.items() if now - at > SUSPENDED_TTL_S]
            if stale:
                ids = [entries.pop(k)[0] for k in stale]
                try:
                    await self._media.pipe_drop(room, ids)
                except SfuError:
                    pass
            if not entries:
                del self.suspended[room]
        for key in [k for k in self.stale if not self.local(k[0])]:
            del self.stale[key]

    async def close_room(self, room: str) -> None:
        """This node has nobody left in ``room``: close every pipe end of it."""
        for r, node in [k for k in self.pulls if k[0] == room]:
            await self.node_gone(r, node, dead=False)
        for r, node in [k for k in self.pushes if k[0] == room]:
            self.pushes.discard((r, node))
            await self._quiet_close(r, f"push:{node}")
        self.suspended.pop(room, None)
        for key in [k for k in self.stale if k[0] == room]:
            del self.stale[key]

    # -- the sending node --------------------------------------------------------------------------

    async def answer(self, sender: str, args: dict[str, Any]) -> dict[str, Any]:
        """``pipe`` from node ``sender``: open (with ``transport``) and connect our end
        ``"push:<sender>"``, pipe the listed tracks into it; returns our end's parameters
        (when opened) and one ``PipeProducerParameters`` per track we could pipe.

        Raises:
            ProtocolError: ``not_found`` (we host nobody of that room), ``bad_request``
                (malformed parameters)."""
        room = str(args["room"])
        media = self._media
        peer = f"push:{sender}"
        result: dict[str, Any] = {}
        if "transport" not in args and (room, sender) not in self.pushes:
            # our end is gone (closed here): the puller opens a new pipe
            raise p.ProtocolError(p.ErrorCode.NOT_FOUND, f"no pipe of {room} to {sender}")
        try:
            if "transport" in args:
                theirs = codec.decode(args["transport"], PipeTransportParameters)
                mine = await media.pipe_open(
                    room, peer, self._listener(room, sender, "pull"), self._host, True
                )
                await media.pipe_connect(room, peer, theirs)
                self.pushes.add((room, sender))
                result["transport"] = codec.encode(mine, PipeTransportParameters)
        except SfuError as exc:
            raise p.ProtocolError(p.ErrorCode.NOT_FOUND, str(exc)) from None
        except ValueError as exc:
            raise p.ProtocolError(p.ErrorCode.BAD_REQUEST, str(exc)) from None
        producers = []
        for track in args.get("tracks", []):
            try:
                params = await media.pipe_consume(room, peer, str(track))
            except SfuError as exc:  # unpublished meanwhile, not negotiated yet
                logger.info("cluster: %s not piped to %s: %s", track, sender, exc)
                continue
            producers.append(codec.encode(params, PipeProducerParameters))
        result["producers"] = producers
        return result

    async def on_control(self, sender: str, message: dict[str, Any]) -> None:
        """A ``pipe_control`` from ``sender``: apply it to our end of that pipe."""
        try:
            room = str(message["room"])
            side = str(message["side"])
            control = codec.decode(message["control"], PipeControl)
        except (KeyError, SfuError, ValueError):
            logger.warning("cluster: malformed pipe control from %s", sender)
            return
        if side == "pull":
            pull = self.pulls.get((room, sender))
            local_id = pull.piped.get(control.producer_id) if pull is not None else None
            if pull is not None and control.action == "close":
                pull.piped.pop(control.producer_id, None)
            if local_id is not None:
                control = dataclasses.replace(control, producer_id=local_id)
        elif side != "push":
            return
        try:
            await self._media.pipe_control(room, f"{side}:{sender}", control)
        except SfuError:
            pass
