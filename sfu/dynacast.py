"""Dynacast (LiveKit's name): simulcast layers that no subscriber uses are paused at the
publisher, and turned back on as soon as one needs them.

For one simulcast :class:`~sfu.producer.Producer`, :meth:`Dynacast.update` looks at the layer
every consumer forwards or aims at (:class:`sfu.rtp.layers.LayerForwarder`) and keeps the
layers up to the highest of those active (lower layers stay on: a subscriber falling back
needs one at once, and the lowest layer costs little). A layer is turned on at once and off
only after nobody has needed it for :data:`OFF_DELAY_S`, so a subscriber probing up and down
does not make the publisher's encoder flap. The change reaches the publisher through
``on_change`` (the signaling layer sends it; the browser sets ``active`` on the encodings with
``RTCRtpSender.setParameters``, W3C WebRTC §5.2).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sfu.producer import Producer

__all__ = ["OFF_DELAY_S", "Dynacast"]

OFF_DELAY_S = 3.0
"""How long (s) a layer must go unused before the publisher is told to pause it."""


class Dynacast:
    """Which layers of one simulcast producer the publisher should send.

    Attributes:
        producer: the simulcast parent producer.
        enabled: False sends every layer always (the server's ``dynacast`` setting).
        active: the rids the publisher was last told to send (all at first).
        on_change: called with (producer, active rids) when ``active`` changes.
    """

    __slots__ = ("_unused_since", "active", "enabled", "on_change", "producer")

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.enabled = True
        self.active: tuple[str, ...] = tuple(layer.rid or "" for layer in producer.layers)
        self.on_change: Callable[[Producer, tuple[str, ...]], None] | None = None
        self._unused_since: float | None = None

    def needed(self) -> int:
        """Index of the highest layer any consumer forwards or aims at (0 when none)."""
        top = 0
        for consumer in self.producer.consumers:
            forwarder = consumer.layers
            if forwarder is None:
                continue
            for index in (forwarder.target, forwarder.current):
                if index is not None and index > top:
                    top = index
        return top

    def update(self, now_s: float | None = None) -> None:
        """Recompute the active layers (cheap; call after every allocation and periodically)."""
        layers = self.producer.layers
        if not layers or self.producer.closed:
            return
        now = time.monotonic() if now_s is None else now_s
        count = len(layers) if not self.enabled else self.needed() + 1
        if count >= len(self.active):
            self._unused_since = None
        else:
            if self._unused_since is None:
                self._unused_since = now
            if now - self._unused_since < OFF_DELAY_S:
                return
            self._unused_since = None
        wanted = tuple(layer.rid or "" for layer in layers[:count])
        if wanted == self.active:
            return
        self.active = wanted
        if self.on_change is not None:
            self.on_change(self.producer, wanted)
