"""Simulcast layer selection for one Consumer (mediasoup ``SimulcastConsumer``, LiveKit
``forwarder.go``): which spatial layer (RFC 8853 simulcast stream, one rid) the subscriber gets.

A simulcast :class:`~sfu.producer.Producer` has one child producer per layer (``layers``,
lowest resolution first); each child forwards its packets to the objects in its ``consumers``
list. A :class:`LayerForwarder` puts a small tap there for its *current* layer and, while a
switch is pending, for its *target* layer. The switch happens on the first keyframe of the
target layer (requested with PLI): from that packet on the consumer gets the new layer, and

* its RTP munger continues the subscriber's sequence numbers (no gap) and its timestamps
  advance by the real time between the two layers' packets, aligned through the layers' RTCP
  sender reports (RFC 3550 §6.4.1; each layer has its own random timestamp base), else by one
  frame interval;
* for VP8 (RFC 7741 §4.2) the picture id and TL0PICIDX continue too, so the subscriber's
  decoder sees one stream (mediasoup ``VP8::EncodingContext``, LiveKit ``vp8munger``).

A target of None pauses the video (hidden tile, or not even the lowest layer fits the
subscriber's bandwidth); the consumer marks a gap and resumes on a keyframe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from sfu.consumer import Consumer
    from sfu.producer import Producer

__all__ = ["ALL_TEMPORAL", "LayerForwarder", "VP8Rewriter", "vp8_keyframe_size", "vp8_temporal"]

_TS_MASK = 0xFFFFFFFF

ALL_TEMPORAL = 3
"""The highest VP8 temporal layer id (TID is 2 bits, RFC 7741 §4.2): a temporal target of
this forwards every temporal layer."""

DEFAULT_TEMPORAL_SHARES = {2: (0.6, 1.0), 3: (0.4, 0.6, 1.0)}
"""Fraction of a layer's bitrate carried by temporal layers 0..t (cumulative) while not yet
measured: libwebrtc's VP8 rate split for two and three temporal layers."""


def vp8_temporal(payload: bytes) -> tuple[int, int, bool, bool] | None:
    """(picture id or -1, TID, layer sync Y, starts a picture) from a VP8 RTP payload
    descriptor (RFC 7741 §4.2: X, I/L/T/K, PictureID, TL0PICIDX, TID|Y|KEYIDX), or None when
    it carries no TID (no temporal layers) or is truncated."""
    n = len(payload)
    if n < 2 or not payload[0] & 0x80:
        return None
    x = payload[1]
    if not x & 0x20:
        return None
    pos = 2
    pid = -1
    if x & 0x80:
        if pos >= n:
            return None
        if payload[pos] & 0x80:
            if pos + 1 >= n:
                return None
            pid = ((payload[pos] & 0x7F) << 8) | payload[pos + 1]
            pos += 2
        else:
            pid = payload[pos] & 0x7F
            pos += 1
    if x & 0x40:
        pos += 1
    if pos >= n:
        return None
    tk = payload[pos]
    start = bool(payload[0] & 0x10) and payload[0] & 0x07 == 0
    return pid, tk >> 6, bool(tk & 0x20), start


def vp8_keyframe_size(payload: bytes) -> tuple[int, int] | None:
    """(width, height) in pixels from the first RTP packet of a VP8 keyframe (RFC 7741 §4.2
    descriptor, then the RFC 6386 §9.1 frame tag, start code ``9d 01 2a`` and 14-bit sizes), or
    None when ``payload`` does not start a keyframe."""
    n = len(payload)
    if n < 1 or payload[0] & 0x17 != 0x10:
        return None
    pos = 1
    if payload[0] & 0x80:
        if n < 2:
            return None
        x = payload[1]
        pos = 2
        if x & 0x80:
            if pos >= n:
                return None
            pos += 2 if payload[pos] & 0x80 else 1
        if x & 0x40:
            pos += 1
        if x & 0x30:
            pos += 1
    if n < pos + 10 or payload[pos] & 0x01:
        return None
    if payload[pos + 3 : pos + 6] != b"\x9d\x01\x2a":
        return None
    width = (payload[pos + 6] | (payload[pos + 7] << 8)) & 0x3FFF
    height = (payload[pos + 8] | (payload[pos + 9] << 8)) & 0x3FFF
    return width, height


class VP8Rewriter:
    """Keeps the VP8 picture id (15 bits, or 7) and TL0PICIDX (8 bits) of one subscriber's
    stream continuous across layer switches (RFC 7741 §4.2): after :meth:`rebase` the next
    packet's values continue from the last ones written."""

    __slots__ = ("_dropped_pid", "_pid_offset", "_rebase", "_tl0_offset", "last_pid", "last_tl0")

    def __init__(self) -> None:
        self._dropped_pid = -1
        self._pid_offset = 0
        self._tl0_offset = 0
        self._rebase = False
        self.last_pid: int | None = None
        self.last_tl0: int | None = None

    def rebase(self) -> None:
        """The next packet comes from another layer: continue our numbering from it."""
        self._rebase = True

    def drop(self, pid: int) -> None:
        """The picture ``pid`` (its packets) is not forwarded (a temporal layer above the
        subscriber's): the pictures after it move down by one, so the subscriber's picture ids
        stay continuous (LiveKit ``vp8munger``). TL0PICIDX needs nothing: temporal layer 0 is
        never dropped alone."""
        if pid < 0 or pid == self._dropped_pid:
            return
        self._dropped_pid = pid
        self._pid_offset = (self._pid_offset - 1) & 0x7FFF

    def rewrite(self, payload: bytes) -> bytes:
        """``payload`` with its picture id and TL0PICIDX shifted by the current offsets."""
        n = len(payload)
        if n < 2 or not payload[0] & 0x80:
            return payload
        x = payload[1]
        pos = 2
        pid_pos = tl0_pos = -1
        wide = False
        if x & 0x80:
            if pos >= n:
                return payload
            pid_pos = pos
            wide = bool(payload[pos] & 0x80)
            pos += 2 if wide else 1
        if x & 0x40:
            if pos >= n:
                return payload
            tl0_pos = pos
        if pid_pos < 0 and tl0_pos < 0:
            return payload
        if wide and pid_pos + 1 >= n:
            return payload
        pid = -1
        if pid_pos >= 0:
            if wide:
                pid = ((payload[pid_pos] & 0x7F) << 8) | payload[pid_pos + 1]
            else:
                pid = payload[pid_pos] & 0x7F
        tl0 = payload[tl0_pos] if tl0_pos >= 0 else -1
        if self._rebase:
            self._rebase = False
            if pid >= 0 and self.last_pid is not None:
                self._pid_offset = (self.last_pid + 1 - pid) & 0x7FFF
            if tl0 >= 0 and self.last_tl0 is not None:
                self._tl0_offset = (self.last_tl0 + 1 - tl0) & 0xFF
        out = bytearray(payload)
        if pid >= 0:
            if wide:
                new = (pid + self._pid_offset) & 0x7FFF
                out[pid_pos] = 0x80 | (new >> 8)
                out[pid_pos + 1] = new & 0xFF
            else:
                new = (pid + self._pid_offset) & 0x7F
                out[pid_pos] = new
            self.last_pid = new
        if tl0 >= 0:
            new_tl0 = (tl0 + self._tl0_offset) & 0xFF
            out[tl0_pos] = new_tl0
            self.last_tl0 = new_tl0
        return bytes(out)


class _LayerTap:
    """What a layer's child producer forwards to: the layer index and its forwarder."""

    __slots__ = ("forwarder", "index")

    def __init__(self, forwarder: LayerForwarder, index: int) -> None:
        self.forwarder = forwarder
        self.index = index

    def forward(
        self,
        marker: bool,
        seq: int,
        ts: int,
        payload: bytes,
        extra: bytes | None,
        keyframe: bool,
    ) -> None:
        self.forwarder.on_packet(self.index, marker, seq, ts, payload, extra, keyframe)

    def close(self) -> None:
        """A child producer closing does not close the consumer (the parent does)."""


class LayerForwarder:
    """The layer state of one simulcast Consumer.

    Attributes:
        consumer: the :class:`Consumer`; producer: the simulcast parent :class:`Producer`.
        current: index of the layer being forwarded (None: none yet, or paused).
        target: index wanted (None: paused); differs from ``current`` while a switch waits
            for the target layer's keyframe.
        max_layer: highest layer the subscriber asked for (adaptive stream); visible: False
            for a hidden tile (no video at all).
        paused_for_bandwidth: True while even the lowest layer does not fit (set by the
            allocator).
        switches: completed layer switches (monitoring and tests).
        temporal_target: highest VP8 temporal layer (TID) wanted (:data:`ALL_TEMPORAL`: all);
            temporal: the highest one forwarded now (changes at picture starts: down at once,
            up on a layer-sync (Y) picture of the next layer or a keyframe).
        temporal_layers: temporal layers seen in the current layer's packets (1: none).
        temporal_dropped: packets not forwarded for being above ``temporal``.
    """

    __slots__ = (
        "_taps",
        "_tid_bytes",
        "consumer",
        "current",
        "max_layer",
        "paused_for_bandwidth",
        "producer",
        "switches",
        "target",
        "temporal",
        "temporal_dropped",
        "temporal_layers",
        "temporal_target",
        "visible",
        "vp8",
    )

    def __init__(self, consumer: Consumer, producer: Producer) -> None:
        self.consumer = consumer
        self.producer = producer
        self.current: int | None = None
        self.target: int | None = None
        self.max_layer: int | None = None
        self.visible = True
        self.paused_for_bandwidth = False
        self.switches = 0
        codec = producer.codec
        self.vp8: VP8Rewriter | None = (
            VP8Rewriter() if codec is not None and codec.name == "VP8" else None
        )
        self._taps: dict[int, _LayerTap] = {}
        self.temporal_target = ALL_TEMPORAL
        self.temporal = ALL_TEMPORAL
        self.temporal_layers = 1
        self.temporal_dropped = 0
        self._tid_bytes = [0, 0, 0, 0]

    @property
    def layers(self) -> list[Producer]:
        """The producer's layers (child producers), lowest resolution first."""
        return self.producer.layers

    # -- targets -------------------------------------------------------------------------------

    def wanted_max(self) -> int | None:
        """The highest layer the subscriber's tile can use (None: hidden, wants no video)."""
        if not self.visible or not self.layers:
            return None
        top = len(self.layers) - 1
        return top if self.max_layer is None else min(self.max_layer, top)

    def set_preference(self, visible: bool, width: int | None) -> None:
        """Adaptive stream: the tile is ``visible`` and ``width`` CSS pixels wide (None: no
        limit). The highest useful layer is the smallest one at least that wide (layer sizes
        read from VP8 keyframes, else assumed to halve per layer below 1280 pixels)."""
        self.visible = visible
        if width is None or width <= 0:
            self.max_layer = None
            return
        layers = self.layers
        chosen = len(layers) - 1
        for index, layer in enumerate(layers):
            known = layer.frame_width or (1280 >> (len(layers) - 1 - index))
            if known >= width:
                chosen = index
                break
        self.max_layer = chosen

    def set_target(self, index: int | None) -> None:
        """Aim at layer ``index`` (None pauses the video). A different layer is switched to
        at its next keyframe, which is requested; until then the current layer continues."""
        if index is not None and not 0 <= index < len(self.layers):
            raise ValueError(f"no layer {index}")
        if index == self.target:
            return
        old = self.target
        self.target = index
        if old is not None and old != self.current:
            self._untap(old)
        if index is None:
            if self.current is not None:
                self._untap(self.current)
                self.current = None
                self.consumer.on_producer_gap(True)
            return
        if index == self.current:
            return
        self._tap(index)
        self.layers[index].request_keyframe()

    def set_temporal(self, tid: int) -> None:
        """Forward VP8 temporal layers 0..``tid`` only (:data:`ALL_TEMPORAL`: all); applied at
        the next picture start (see the class attributes)."""
        if not 0 <= tid <= ALL_TEMPORAL:
            raise ValueError(f"no temporal layer {tid}")
        self.temporal_target = tid

    def temporal_share(self, tid: int) -> float:
        """Fraction (0..1] of the current layer's bitrate in temporal layers 0..``tid``:
        measured from its packets' sizes per TID, else :data:`DEFAULT_TEMPORAL_SHARES`."""
        layers = self.temporal_layers
        if tid >= layers - 1:
            return 1.0
        counts = self._tid_bytes
        total = sum(counts[:layers])
        if total >= 20_000 and counts[layers - 1] > 0:
            return max(0.05, sum(counts[: tid + 1]) / total)
        return DEFAULT_TEMPORAL_SHARES.get(layers, (1.0, 1.0, 1.0, 1.0))[tid]

    def request_keyframe(self) -> None:
        """The subscriber lost a picture: ask the layer it is getting (or about to)."""
        index = self.target if self.target is not None else self.current
        if index is not None and index < len(self.layers):
            self.layers[index].request_keyframe()

    def source(self) -> Producer:
        """The layer now forwarded (its sender reports time our stream), else the parent."""
        if self.current is not None and self.current < len(self.layers):
            return self.layers[self.current]
        return self.producer

    def detach(self) -> None:
        """Stop receiving from every layer (the consumer closes)."""
        for index in list(self._taps):
            self._untap(index)
        self.current = self.target = None

    def _tap(self, index: int) -> None:
        if index in self._taps:
            return
        tap = _LayerTap(self, index)
        self._taps[index] = tap
        self.layers[index].consumers.append(cast("Consumer", tap))

    def _untap(self, index: int) -> None:
        tap = self._taps.pop(index, None)
        if tap is None or index >= len(self.layers):
            return
        consumers = self.layers[index].consumers
        if tap in consumers:
            consumers.remove(cast("Consumer", tap))

    # -- the hot path --------------------------------------------------------------------------

    def on_packet(
        self,
        index: int,
        marker: bool,
        seq: int,
        ts: int,
        payload: bytes,
        extra: bytes | None,
        keyframe: bool,
    ) -> None:
        """One packet of layer ``index`` (arguments as :meth:`Consumer.forward`)."""
        if index != self.current:
            if index != self.target or not keyframe:
                return
            self._switch(index, ts)
        vp8 = self.vp8
        if vp8 is not None:
            info = vp8_temporal(payload)
            if info is not None and self._drop_temporal(info, seq, len(payload), keyframe):
                return
            payload = vp8.rewrite(payload)
        self.consumer.forward(marker, seq, ts, payload, extra, keyframe)

    def _drop_temporal(
        self, info: tuple[int, int, bool, bool], seq: int, size: int, keyframe: bool
    ) -> bool:
        """Count the packet's TID, move ``temporal`` at a picture start; True when the packet
        is above it (then it is dropped without a gap in sequence numbers or picture ids)."""
        pid, tid, sync, start = info
        counts = self._tid_bytes
        counts[tid] += size
        if counts[tid] > 1_000_000:  # a moving window: halve every count
            self._tid_bytes = [count // 2 for count in counts]
        if tid >= self.temporal_layers:
            self.temporal_layers = tid + 1
        if start:
            target = self.temporal_target
            if keyframe or target < self.temporal:
                self.temporal = target
            elif target > self.temporal and tid == self.temporal + 1 and sync:
                self.temporal = target if tid >= self.temporal_layers - 1 else tid
        if tid <= self.temporal:
            return False
        consumer = self.consumer
        if consumer.active:
            consumer.munger.drop(seq)
            assert self.vp8 is not None
            self.vp8.drop(pid)
        self.temporal_dropped += 1
        return True

    def _switch(self, index: int, ts: int) -> None:
        old = self.current
        consumer = self.consumer
        if old is not None:
            self._untap(old)
            munger = consumer.munger
            if munger.started:
                munger.resync(ts_gap=self._ts_gap(old, index, ts))
        else:
            consumer.on_producer_gap(False)  # resumes: timestamps advance by the pause
        self.current = index
        self._tid_bytes = [0, 0, 0, 0]
        if self.vp8 is not None:
            self.vp8.rebase()
        self.switches += 1

    def _ts_gap(self, old: int, new: int, ts: int) -> int:
        """RTP ticks between the last packet sent from layer ``old`` and layer ``new``'s packet
        with timestamp ``ts``, through both layers' sender reports; one frame (1/30 s) when a
        report is missing or the result is implausible (not within 0..5 s)."""
        codec = self.producer.codec
        rate = codec.clock_rate if codec is not None else 90000
        fallback = max(1, rate // 30)
        sr_old = self.layers[old].last_sr
        sr_new = self.layers[new].last_sr
        munger = self.consumer.munger
        if sr_old is None or sr_new is None:
            return fallback
        ntp_old, rtp_old, _ = sr_old
        ntp_new, rtp_new, _ = sr_new
        # seconds of ``ts`` on the NTP clock, then the old layer's timestamp for that instant
        delta_new = ((ts - rtp_new + 0x80000000) & _TS_MASK) - 0x80000000
        at = ntp_new / 2**32 + delta_new / rate
        old_equiv = (rtp_old + round((at - ntp_old / 2**32) * rate)) & _TS_MASK
        gap = (old_equiv - munger.last_in_ts) & _TS_MASK
        if 0 < gap <= 5 * rate:
            return gap
        return fallback
