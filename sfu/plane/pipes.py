"""Pipe endpoints of one process's rooms, keyed by room and a peer id (docs/media-plane.md).

:class:`PipeEndpoints` is what :class:`~sfu.plane.local.LocalMediaPlane` (and a media worker,
which wraps one) uses for the media-plane API's ``pipe_*`` calls: one
:class:`sfu.pipe.PipeTransport` per (room, peer), where ``peer`` is a string the caller
chooses (another node, ``"pull:<node id>"``/``"push:<node id>"`` in the cluster; another
worker). The piped producers it produces are subscribed by the room's local participants by
the room's policy (``auto_subscribe``, ``subscribe_kinds``, ``canSubscribe``), with the same
track id and participant sid as on the sending side.
"""

from __future__ import annotations

import logging

from sfu.errors import NotFoundError
from sfu.pipe import PipeControl, PipeProducerParameters, PipeTransport, PipeTransportParameters
from sfu.plane.api import PipeListener
from sfu.room import Room
from sfu.server import MediaServer

logger = logging.getLogger(__name__)


def subscribe_piped(room: Room, sids: list[str] | None = None) -> None:
    """Subscribe ``room``'s participants (``sids``, or all) to the router's piped producers
    (those a :class:`PipeTransport` feeds), by the room's policy: only participants with
    ``auto_subscribe`` (and ``Participant.subscribe`` checks ``canSubscribe``, the kinds, and
    skips a producer already consumed)."""
    piped = [
        p
        for p in room.router.producers.values()
        if isinstance(p.transport, PipeTransport) and not p.closed
    ]
    if not piped:
        return
    for participant in list(room.participants.values()):
        if (sids is not None and participant.sid not in sids) or not participant.auto_subscribe:
            continue
        for producer in piped:
            participant.subscribe(producer)


class PipeEndpoints:
    """The pipe ends of one :class:`MediaServer`'s rooms, by (room, peer).

    Args:
        server: the process's media server (its rooms and routers).
    """

    def __init__(self, server: MediaServer) -> None:
        self.server = server
        self.pipes: dict[tuple[str, str], PipeTransport] = {}

    def _room(self, room: str) -> Room:
        found = self.server.get_room(room)
        if found is None or found.closed:
            raise NotFoundError(f"no room {room} here")
        return found

    def get(self, room: str, peer: str) -> PipeTransport:
        """The open pipe end of ``room`` towards ``peer``.

        Raises:
            NotFoundError: none (never opened, closed, or its room closed)."""
        pipe = self.pipes.get((room, peer))
        if pipe is None or pipe.closed:
            raise NotFoundError(f"no pipe of {room} to {peer}")
        return pipe

    async def open(
        self,
        room: str,
        peer: str,
        listener: PipeListener,
        *,
        listen_ip: str = "127.0.0.1",
        enable_srtp: bool = True,
    ) -> PipeTransportParameters:
        """A new pipe end of ``room`` towards ``peer`` (an open one is closed first, its
        piped producers suspended, so a later produce resumes them) bound to ``listen_ip``
        on an ephemeral UDP port; its controls go to ``listener``. Returns its parameters
        (with SRTP, a fresh AEAD_AES_128_GCM key, RFC 7714).

        Raises:
            NotFoundError: no room ``room`` here; OSError: the address cannot be bound."""
        media_room = self._room(room)
        old = self.pipes.pop((room, peer), None)
        if old is not None and not old.closed:
            await old.close(keep_producers=True)
        pipe = await media_room.router.create_pipe_transport(
            listen_ip=listen_ip, enable_srtp=enable_srtp
        )
        pipe.on_control(listener)
        self.pipes[(room, peer)] = pipe
        return pipe.local_parameters()

    def connect(self, room: str, peer: str, remote: PipeTransportParameters) -> None:
        """Connect the end to the other end's parameters (:meth:`PipeTransport.connect`).

        Raises:
            NotFoundError: no such pipe; InvalidStateError, ValueError: as ``connect``."""
        self.get(room, peer).connect(remote)

    def consume(self, room: str, peer: str, producer: str) -> PipeProducerParameters:
        """Pipe producer ``producer`` of ``room`` to ``peer``.

        Raises:
            NotFoundError: no pipe or producer; InvalidStateError: not negotiated yet."""
        pipe = self.get(room, peer)
        return pipe.consume(pipe.router.get_producer(producer))

    def produce(self, room: str, peer: str, params: PipeProducerParameters) -> None:
        """The piped producer (id ``params.producer_id``; a suspended one resumes) in
        ``room``; its participants subscribe to it by the room's policy.

        Raises:
            NotFoundError: no pipe; ValueError: bad parameters; InvalidStateError: as
            :meth:`PipeTransport.produce`."""
        pipe = self.get(room, peer)
        pipe.produce(params)
        subscribe_piped(self._room(room))

    def control(self, room: str, peer: str, control: PipeControl) -> None:
        """Apply a control the other end emitted (no pipe: ignored)."""
        pipe = self.pipes.get((room, peer))
        if pipe is not None and not pipe.closed:
            pipe.apply(control)

    async def close(self, room: str, peer: str, *, keep_producers: bool = False) -> list[str]:
        """Close the pipe end (no-op without one); ``keep_producers``: suspend its piped
        producers, their consumers keep their SSRC and sequence numbers. Returns the ids of
        the piped producers it held."""
        pipe = self.pipes.pop((room, peer), None)
        if pipe is None:
            return []
        held = list(pipe.producers)
        await pipe.close(keep_producers=keep_producers)
        return held

    def drop(self, room: str, producers: list[str]) -> None:
        """Close piped producers of ``room`` (suspended ones whose publisher is gone)."""
        media_room = self.server.get_room(room)
        if media_room is None:
            return
        for pid in producers:
            producer = media_room.router.producers.get(pid)
            if (
                producer is not None
                and not producer.closed
                and isinstance(producer.transport, PipeTransport)
            ):
                producer.close()

    async def close_all(self) -> None:
        """Close every pipe end."""
        for pipe in list(self.pipes.values()):
            await pipe.close()
        self.pipes.clear()
