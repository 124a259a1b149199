"""MediaServer: the rooms of one process, and the process-wide ICE settings."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sfu import _aiortc_adapter as adapter
from sfu import fastpath
from sfu.room import Room
from sfu.router import Router
from sfu.stats import Totals
from sfu.tasks import spawn
from sfu.udp_mux import UdpMux


@dataclass(frozen=True, slots=True)
class MediaSettings:
    """Media-plane settings.

    Attributes:
        ice_hosts: addresses for ICE host candidates; empty = aioice's own enumeration
            (which skips 127.0.0.1).
        ice_servers: STUN/TURN URLs (explicit; empty means none, never a public default).
        keyframe_min_interval_ms: per-producer keyframe request throttle (ms).
        nack_buffer_packets: per video consumer retransmission buffer (packets).
        max_publish_bitrate_bps: cap of the REMB sent to each video publisher (bits/s).
        ice_connect_timeout_s: a transport not connected this many seconds after its creation
            fails (s); None never times out.
        max_producers_per_participant: most producers (sending m-lines) one participant may
            publish at once; more get :class:`sfu.errors.LimitExceededError`.
        media_timeout_s: a connected transport whose peer is silent this long fails (s);
            None disables the liveness watchdog.
        dynacast: pause unused simulcast layers at the publisher (:mod:`sfu.dynacast`).
        audio_loss_proxying: the receiver reports sent to an Opus publisher carry the worst
            fraction lost its subscribers report, so its encoder adds in-band FEC.
        rtc_port: when set, every WebRtcTransport of this process receives its media on this
            one UDP port (:mod:`sfu.udp_mux`); None gives each transport ephemeral ports.
        rtc_announced_address: with ``rtc_port``, the address put in the ICE host candidates
            instead of the bound ICE host address (NAT, container with a published port).
        fast_path: forward with the compiled fan-out (:mod:`sfu.fastpath`) when it is built;
            False selects the pure-Python path.
    """

    ice_hosts: list[str] = field(default_factory=list)
    ice_servers: list[str] = field(default_factory=list)
    keyframe_min_interval_ms: int = 500
    nack_buffer_packets: int = 512
    max_publish_bitrate_bps: int = 3_000_000
    ice_connect_timeout_s: float | None = 30.0
    max_producers_per_participant: int = 8
    media_timeout_s: float | None = None
    audio_loss_proxying: bool = True
    rtc_port: int | None = None
    rtc_announced_address: str | None = None
    fast_path: bool = True
    dynacast: bool = True


class MediaServer:
    """All rooms of this process.

    Attributes:
        udp_mux: the shared UDP port's sockets when ``settings.rtc_port`` is set, else None.

    Raises (constructor):
        RuntimeError: when the installed aiortc is not the pinned version.
        OSError: when ``settings.rtc_port`` cannot be bound on an ICE host address.
    """

    def __init__(self, settings: MediaSettings | None = None) -> None:
        adapter.check_aiortc_version()
        self.settings = settings or MediaSettings()
        adapter.set_ice_host_addresses(self.settings.ice_hosts)
        self.udp_mux: UdpMux | None = None
        if self.settings.rtc_port is not None:
            self.udp_mux = adapter.open_udp_mux(
                self.settings.rtc_port, self.settings.rtc_announced_address
            )
        fastpath.configure(self.settings.fast_path)
        self.rooms: dict[str, Room] = {}
        self.totals = Totals()
        self.closed = False

    def room(self, name: str) -> Room:
        """The room ``name``, created on first use."""
        room = self.rooms.get(name)
        if room is None or room.closed:
            router = Router(
                ice_servers=self.settings.ice_servers,
                keyframe_min_interval_ms=self.settings.keyframe_min_interval_ms,
                nack_buffer_packets=self.settings.nack_buffer_packets,
                max_publish_bitrate_bps=self.settings.max_publish_bitrate_bps,
                ice_connect_timeout_s=self.settings.ice_connect_timeout_s,
                max_producers_per_participant=self.settings.max_producers_per_participant,
                totals=self.totals,
                media_timeout_s=self.settings.media_timeout_s,
                audio_loss_proxying=self.settings.audio_loss_proxying,
                udp_mux=self.udp_mux,
                dynacast=self.settings.dynacast,
            )
            room = Room(name, router, on_empty=self._on_room_empty)
            self.rooms[name] = room
        return room

    def get_room(self, name: str) -> Room | None:
        """The room ``name`` if it exists."""
        return self.rooms.get(name)

    async def close_room(self, name: str, reason: str = "room_closed") -> None:
        """Close a room now (every participant's listener gets ``on_closed(reason)``); a
        later join of the same name starts a new, empty room."""
        room = self.rooms.pop(name, None)
        if room is not None:
            await room.close(reason)

    def _on_room_empty(self, room: Room) -> None:
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
        spawn(room.close())

    def ice_servers(self) -> list[dict[str, object]]:
        """The ICE servers as W3C ``RTCIceServer`` dictionaries for clients."""
        out: list[dict[str, object]] = []
        for server in adapter.make_configuration(self.settings.ice_servers).iceServers or []:
            entry: dict[str, object] = {"urls": server.urls}
            if server.username:
                entry["username"] = server.username
                entry["credential"] = server.credential
            out.append(entry)
        return out

    def stats(self) -> dict[str, int]:
        """Counts of rooms, participants, producers and consumers."""
        participants = producers = consumers = 0
        for room in self.rooms.values():
            participants += len(room.participants)
            producers += len(room.router.producers)
            for p in room.router.producers.values():
                consumers += len(p.consumers)
        return {
            "rooms": len(self.rooms),
            "participants": participants,
            "producers": producers,
            "consumers": consumers,
        }

    def counters(self) -> dict[str, int]:
        """Process-wide monotonic media counters (:data:`sfu.stats.COUNTER_NAMES`): every
        closed object plus the live ones."""
        live: list[dict[str, int]] = []
        for room in list(self.rooms.values()):
            for transport in list(room.router.transports):
                live.append(transport.counters())
                live.extend(p.counters() for p in list(transport.producers.values()))
                live.extend(c.counters() for c in list(transport.consumers.values()))
            for pipe in list(room.router.pipe_transports):
                live.append(pipe.counters())
                live.extend(p.counters() for p in list(pipe.producers.values()))
                live.extend(c.counters() for c in list(pipe.consumers.values()))
        return self.totals.snapshot(live)

    async def close(self) -> None:
        """Close every room."""
        if self.closed:
            return
        self.closed = True
        rooms = list(self.rooms.values())
        self.rooms.clear()
        await asyncio.gather(*(room.close() for room in rooms), return_exceptions=True)
        if self.udp_mux is not None:
            self.udp_mux.close()
