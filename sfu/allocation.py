"""Per-subscriber bandwidth: estimate what one subscribe transport can carry and share it
among its consumers (LiveKit ``streamallocator``, mediasoup's
``Transport::DistributeAvailableOutgoingBitrate``).

**Estimate** (:class:`SubscriberEstimator`, bits/s). aiortc negotiates no transport-wide
congestion control (TWCC), so the inputs are what a subscriber sends without it:

* receiver-report loss of our video streams (RFC 3550 §6.4.1 fraction lost): above 10% the
  estimate drops to ``sent * (1 - loss / 2)`` (draft-ietf-rmcat-gcc-02 §6), at most every
  :data:`DECREASE_INTERVAL_S`;
* REMB (draft-alvestrand-rmcat-remb): the subscriber's delay-based estimate. A REMB that falls
  below 85% of what we send is taken as overuse (estimate lowered to it); a higher REMB never
  raises the estimate.

While neither signals congestion for :data:`CALM_BEFORE_GROWTH_S`, the estimate grows by
:data:`GROWTH_PER_S` per second: that is how the allocator probes for the next layer. A probe
that ends in congestion sets a ceiling just below the rate that failed (for a failed probe: the
rate it aimed at), held for :data:`HOLD_START_S` (doubling per repeated failure, at most
:data:`HOLD_MAX_S`); during the hold the estimate grows back up to the ceiling, so the next
probe comes as the hold ends: no oscillation (a congested link is probed about every 4.5 s,
briefly), and a recovered link reaches the top layer within ~7 s (tests/unit/
test_allocation_timing.py simulates both).

**Allocation** (:class:`BandwidthAllocator`): audio first (its sent rate is reserved), then
video consumers that cannot adapt (no simulcast), then each simulcast consumer gets the lowest
layer its tile needs if it fits (else its video pauses: ``paused_for_bandwidth``), then layers
are raised one step at a time, round robin, while they fit and the tile can use them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sfu import _aiortc_adapter as adapter
from sfu.rtp.layers import ALL_TEMPORAL

if TYPE_CHECKING:
    from sfu.consumer import Consumer

logger = logging.getLogger(__name__)

__all__ = [
    "CALM_BEFORE_GROWTH_S",
    "GROWTH_PER_S",
    "HOLD_MAX_S",
    "HOLD_START_S",
    "NOMINAL_LAYER_BPS",
    "BandwidthAllocator",
    "SubscriberEstimator",
]

CALM_BEFORE_GROWTH_S = 1.5
"""Seconds without congestion before the estimate grows."""

GROWTH_PER_S = 1.7
"""Multiplicative growth of a calm estimate, per second."""

DECREASE_INTERVAL_S = 2.0
"""At most one decrease per this many seconds (s): the loss reported just after a decrease
is mostly from before it (packets already queued on the link)."""

PROBE_BLAME_S = 3.0
"""Congestion within this many seconds (s) of an upswitch is blamed on the upswitch."""

PROBE_ONE_STEP_S = 30.0
"""Within this many seconds (s) of a congestion, an upswitch probe raises one layer at a time
(one step per allocation); a link never congested may jump to the layer its estimate fits."""

PROBE_NACK_LIMIT = 4
"""Packets NACKed during an upswitch probe that end it (a clean link NACKs none)."""

HOLD_START_S = 2.0
"""After a congestion the estimate stays below the rate that failed for this long (s)."""

HOLD_MAX_S = 4.0
"""The longest hold (s), reached after repeated failures. With the ramp back to the ceiling
during the hold, a failed probe is retried about every 4.5 s on a link that stays congested
(no oscillation: >90% of the time on the layer that fits), and a link that recovers is probed
within ~4.5 s of its recovery (then ~2 s of growth to the top layer: under 10 s in all)."""

KEEP_FRACTION = 0.9
"""Hysteresis: a consumer keeps the layer it has (or its video on) while the budget covers this
fraction of the layer's cost; taking a layer it does not have needs the whole cost."""

KEEP_VIDEO_FRACTION = 0.7
"""A consumer's video is paused for bandwidth only when the budget is below this fraction of
its lowest layer's cost (resuming needs the whole cost)."""

PAUSE_CONFIRM_S = 2.0
"""How long (s) the lowest layer must keep not fitting before a consumer's video pauses."""

NOMINAL_LAYER_BPS = (150_000, 500_000, 1_500_000)
"""Bits/s assumed for layers 0, 1, 2 of a three-layer track while they are not measured (paused
by dynacast or not started yet); with fewer layers the top ones of this list are used."""


class SubscriberEstimator:
    """The available downlink bandwidth of one subscriber (see the module docstring).

    Args:
        start_bps, min_bps, max_bps: first estimate and bounds (bits/s).

    Attributes:
        estimate_bps: the current estimate (bits/s).
        sent_bps: what we send now (bits/s), kept up to date by the allocator.
        congested_at: monotonic time (s) of the last congestion signal.
    """

    __slots__ = (
        "_ceiling",
        "_ceiling_until",
        "_grown_at",
        "_hold_s",
        "_last_decrease",
        "_pre_probe_bps",
        "_probe_at",
        "_probe_bps",
        "congested_at",
        "estimate_bps",
        "max_bps",
        "min_bps",
        "remb_bps",
        "sent_bps",
    )

    def __init__(
        self, start_bps: int = 800_000, min_bps: int = 50_000, max_bps: int = 20_000_000
    ) -> None:
        if not 0 < min_bps <= start_bps <= max_bps:
            raise ValueError("need 0 < min_bps <= start_bps <= max_bps")
        self.estimate_bps = float(start_bps)
        self.min_bps = min_bps
        self.max_bps = max_bps
        self.sent_bps = 0.0
        self.remb_bps: int | None = None
        self.congested_at = float("-inf")
        self._last_decrease = float("-inf")
        self._grown_at: float | None = None
        self._ceiling: float | None = None
        self._ceiling_until = float("-inf")
        self._hold_s = HOLD_START_S
        self._probe_at = float("-inf")
        self._pre_probe_bps = 0.0
        self._probe_bps = 0.0

    def on_probe(self, now: float) -> None:
        """The allocator raised a layer beyond what was proven (an upswitch probe): if that
        ends in congestion soon, fall back to about the rate sent before it, not lower."""
        self._probe_at = now
        self._pre_probe_bps = self.sent_bps
        self._probe_bps = self.estimate_bps

    def probe_pending(self, now: float) -> None:
        """The probed layer is not forwarded yet (its keyframe has not come: a layer that
        dynacast had paused takes seconds to restart at the publisher): the probe's blame
        window starts again, so the loss it causes once it flows still ends it."""
        if self.probing(now):
            self._probe_at = now

    def holding(self, now: float) -> bool:
        """True during the hold after a congestion: no layer may go up (no oscillation)."""
        return now < self._ceiling_until

    def probing(self, now: float) -> bool:
        """True within :data:`PROBE_BLAME_S` of an upswitch probe."""
        return now - self._probe_at < PROBE_BLAME_S

    def on_probe_failed(self, now: float) -> None:
        """The subscriber lost packets (NACKs) during a probe: congestion, at once."""
        self._congestion(self._pre_probe_bps, now)

    def _congestion(self, new_estimate: float, now: float) -> None:
        failed = self.sent_bps if self.sent_bps > 0 else self.estimate_bps
        if now - self._probe_at < PROBE_BLAME_S:
            # a probe failed: what failed is the rate it aimed at (the rate measured so far
            # may still be the one before it); the estimate grows back to just below it
            # during the hold, so the next probe comes as soon as the hold ends
            failed = max(failed, self._probe_bps)
        if now - self.congested_at < self._hold_s + 5.0:
            self._hold_s = min(HOLD_MAX_S, self._hold_s * 2)
        else:
            self._hold_s = HOLD_START_S
        self._ceiling = 0.9 * failed
        self._ceiling_until = now + self._hold_s
        if now - self._probe_at < PROBE_BLAME_S:
            # the probe failed, not the link: back to what it carried before (once)
            new_estimate = max(new_estimate, self._pre_probe_bps)
            self._probe_at = float("-inf")
        self.estimate_bps = min(max(new_estimate, self.min_bps), self.max_bps)
        self.congested_at = now
        self._last_decrease = now

    def on_loss(self, fraction_lost: float, now: float) -> bool:
        """A receiver report's fraction lost (0..1) of our video; True when the estimate
        dropped."""
        if fraction_lost > 0.02 and self.probing(now):
            self.on_probe_failed(now)  # any loss during a probe: the next layer does not fit
            return True
        if fraction_lost > 0.10 and now - self._last_decrease >= DECREASE_INTERVAL_S:
            # what we sent is what the link could not carry; a rate far below the estimate
            # (a layer just lowered, a video paused) says nothing about the link
            sent = self.sent_bps
            base = (
                min(self.estimate_bps, sent)
                if sent >= 0.5 * self.estimate_bps
                else self.estimate_bps
            )
            self._congestion(base * (1.0 - 0.5 * min(fraction_lost, 1.0)), now)
            return True
        if fraction_lost > 0.02:
            self.congested_at = max(self.congested_at, now - CALM_BEFORE_GROWTH_S / 2)
        return False

    def on_remb(self, bitrate_bps: int, now: float) -> bool:
        """The subscriber's REMB (bits/s); True when the estimate dropped."""
        previous, self.remb_bps = self.remb_bps, bitrate_bps
        # Overuse: the REMB fell (a receiver's AIMD cuts to 0.85 x its incoming rate on
        # overuse) below what we send; a REMB still ramping up from its start is not one.
        falling = previous is not None and bitrate_bps < 0.95 * previous
        if falling and self.sent_bps > 0 and bitrate_bps < 0.85 * self.sent_bps:
            if now - self._last_decrease >= DECREASE_INTERVAL_S:
                self._congestion(min(self.estimate_bps, float(bitrate_bps)), now)
                return True
            return False
        # A higher REMB does not raise the estimate: a receiver's delay-based estimate runs
        # ahead of a rate-capped link until its queue builds; only probing raises it.
        return False

    def _cap(self, now: float) -> float:
        if self._ceiling is not None and now < self._ceiling_until:
            return max(self._ceiling, self.estimate_bps)
        return float(self.max_bps)

    def grow(self, now: float) -> float:
        """Let a calm estimate grow (called on every allocation); returns the estimate."""
        last = self._grown_at if self._grown_at is not None else now
        self._grown_at = now
        if now - self.congested_at >= CALM_BEFORE_GROWTH_S:
            grown = self.estimate_bps * GROWTH_PER_S ** min(now - last, 2.0)
            self.estimate_bps = max(self.estimate_bps, min(grown, self._cap(now)))
        return self.estimate_bps


def layer_bitrate(consumer: Consumer, index: int, now: float) -> float:
    """Bits/s of layer ``index`` of ``consumer``'s simulcast producer: measured while it is
    sent at half or more of its :data:`NOMINAL_LAYER_BPS`, else that nominal rate."""
    layers = consumer.producer.layers
    layer = layers[index]
    measured = layer.bitrate.sample(layer.bytes_received, now)
    nominal = NOMINAL_LAYER_BPS[len(NOMINAL_LAYER_BPS) - len(layers) + index]
    # a layer far below its nominal rate is starting (dynacast, encoder ramp-up): it will not
    # stay that cheap
    return measured if measured >= 0.5 * nominal else float(nominal)


def _highest_live(consumer: Consumer, index: int) -> int:
    """The highest layer <= ``index`` of ``consumer``'s producer that received a packet in the
    last second (0 when none did)."""
    now_ms = adapter.now_ms()
    for candidate in range(index, 0, -1):
        arrival = consumer.producer.layers[candidate].last_arrival_ms
        if arrival and now_ms - arrival < 1000:
            return candidate
    return 0


class BandwidthAllocator:
    """Chooses the layer of every simulcast consumer of one subscribe transport.

    Args:
        consumers: returns the transport's consumers (live view).
        on_paused: called with (consumer, paused) when a consumer's video pauses for, or
            resumes after, lack of bandwidth.
        estimator: the :class:`SubscriberEstimator` (a default one when None).
    """

    def __init__(
        self,
        consumers: Callable[[], list[Consumer]],
        on_paused: Callable[[Consumer, bool], None] | None = None,
        estimator: SubscriberEstimator | None = None,
    ) -> None:
        self._consumers = consumers
        self.on_paused = on_paused
        self.estimator = estimator if estimator is not None else SubscriberEstimator()
        self._sent: dict[str, tuple[int, float, float]] = {}
        self._probe_nacks = 0
        self._short_since: dict[str, float] = {}  # consumer id -> when q stopped fitting

    def on_remb(self, bitrate_bps: int, now: float | None = None) -> None:
        """REMB from the subscriber: reallocate at once when it signals overuse. ``now``:
        monotonic seconds (default: the clock)."""
        now = time.monotonic() if now is None else now
        if self.estimator.on_remb(bitrate_bps, now):
            self.allocate(now)

    def on_loss(self, fraction_lost: float, now: float | None = None) -> None:
        """The worst fraction lost (0..1) of one receiver report over our video streams.
        ``now``: monotonic seconds (default: the clock)."""
        now = time.monotonic() if now is None else now
        if self.estimator.on_loss(fraction_lost, now):
            self.allocate(now)

    def on_nack(self, lost: int, now: float | None = None) -> None:
        """The subscriber NACKed ``lost`` packets. During an upswitch probe, more than
        :data:`PROBE_NACK_LIMIT` lost packets end the probe at once (long before the next
        receiver report), so a link that cannot carry the next layer sees it only briefly.
        ``now``: monotonic seconds (default: the clock)."""
        estimator = self.estimator
        now = time.monotonic() if now is None else now
        if not estimator.probing(now):
            self._probe_nacks = 0
            return
        self._probe_nacks += lost
        if self._probe_nacks > PROBE_NACK_LIMIT:
            self._probe_nacks = 0
            estimator.on_probe_failed(now)
            self.allocate(now)

    def _sent_bps(self, consumers: list[Consumer], now: float) -> dict[str, float]:
        # bits/s each consumer sent since the previous sample (>= 0.5 s ago), else the last rate
        rates: dict[str, float] = {}
        seen: dict[str, tuple[int, float, float]] = {}
        for consumer in consumers:
            before = self._sent.get(consumer.id)
            total = consumer.bytes_sent
            if before is None:
                seen[consumer.id] = (total, now, 0.0)
            elif now - before[1] < 0.5:
                seen[consumer.id] = before
            else:
                rate = max(0, total - before[0]) * 8 / (now - before[1])
                seen[consumer.id] = (total, now, rate)
            rates[consumer.id] = seen[consumer.id][2]
        self._sent = seen
        return rates

    def allocate(self, now: float | None = None) -> None:
        """Share the estimate among the consumers and set every simulcast consumer's target
        layer (see the module docstring)."""
        now = time.monotonic() if now is None else now
        consumers = [c for c in self._consumers() if not c.closed]
        rates = self._sent_bps(consumers, now)
        estimator = self.estimator
        if any(rates.values()):
            estimator.sent_bps = sum(rates.values())
        budget = estimator.grow(now)
        adaptive: list[Consumer] = []
        for consumer in consumers:
            if consumer.layers is not None and consumer.producer.layers:
                adaptive.append(consumer)
            else:
                budget -= rates.get(consumer.id, 0.0)  # audio, and video we cannot adapt
        chosen: dict[str, int | None] = {}
        temporal: dict[str, int] = {}  # VP8 temporal layer on the lowest spatial layer
        for consumer in adaptive:
            forwarder = consumer.layers
            assert forwarder is not None
            top = forwarder.wanted_max()
            if top is None or consumer.producer.paused:
                chosen[consumer.id] = None
                continue
            # the lowest layer at its lowest frame rate (temporal layer 0; the whole layer
            # when it has no temporal layers)
            cost = layer_bitrate(consumer, 0, now) * forwarder.temporal_share(0)
            temporal[consumer.id] = 0
            if forwarder.target is not None:
                cost *= KEEP_VIDEO_FRACTION
            short_since = self._short_since.get(consumer.id)
            if cost > budget and forwarder.target is not None:
                # one report can be stale (loss from before a downswitch): the video pauses
                # only if the lowest layer still does not fit PAUSE_CONFIRM_S later
                if short_since is None:
                    self._short_since[consumer.id] = short_since = now
                if now - short_since < PAUSE_CONFIRM_S:
                    cost = budget
            else:
                self._short_since.pop(consumer.id, None)
            if cost <= budget:
                chosen[consumer.id] = 0
                budget -= cost
            else:
                chosen[consumer.id] = None
                forwarder_pause = True
                self._set_paused(consumer, forwarder_pause)
        raised = True
        # after a congestion in the last PROBE_ONE_STEP_S, probe one layer at a time (one step
        # beyond what was proven per allocation): a capped link never gets the top layer's
        # keyframe on the way to the middle one
        one_step = now - estimator.congested_at < PROBE_ONE_STEP_S
        probed = False
        while raised:
            raised = False
            for consumer in adaptive:
                current = chosen.get(consumer.id)
                forwarder = consumer.layers
                assert forwarder is not None
                top = forwarder.wanted_max()
                if current is None or top is None:
                    continue
                tid = temporal.get(consumer.id, ALL_TEMPORAL)
                if current == 0 and tid < forwarder.temporal_layers - 1:
                    # first the lowest layer's frame rate (VP8 temporal layers), then size
                    full = layer_bitrate(consumer, 0, now)
                    cost = full * (
                        forwarder.temporal_share(tid + 1) - forwarder.temporal_share(tid)
                    )
                    keeping = forwarder.target is not None and (
                        forwarder.target > 0 or forwarder.temporal_target > tid
                    )
                    frame_rate = True
                else:
                    if current >= top:
                        continue
                    cost = layer_bitrate(consumer, current + 1, now) - layer_bitrate(
                        consumer, current, now
                    )
                    keeping = forwarder.target is not None and forwarder.target > current
                    frame_rate = False
                if keeping:
                    cost *= KEEP_FRACTION
                elif estimator.holding(now) or (
                    one_step and probed and forwarder.target is not None
                ):
                    continue  # after a congestion nothing goes up until the hold ends
                if cost <= budget:
                    if forwarder.target is not None and not keeping:
                        estimator.on_probe(now)
                        probed = True
                    if frame_rate:
                        temporal[consumer.id] = tid + 1
                    else:
                        chosen[consumer.id] = current + 1
                    budget -= cost
                    raised = True
        producers = set()
        for consumer in adaptive:
            forwarder = consumer.layers
            assert forwarder is not None
            index = chosen.get(consumer.id)
            if index is not None and forwarder.current is None:
                # nothing on screen yet: start on a layer that is flowing now (a layer paused
                # by dynacast comes back later, while this one shows)
                index = min(index, _highest_live(consumer, index))
            wanted = forwarder.wanted_max()
            if index is not None or wanted is None or consumer.producer.paused:
                self._set_paused(consumer, False)
            if index != forwarder.target:
                logger.debug(
                    "consumer %s: layer %s -> %s (estimate %.0f bit/s, sending %.0f, layers %s)",
                    consumer.id,
                    forwarder.target,
                    index,
                    estimator.estimate_bps,
                    estimator.sent_bps,
                    [
                        round(layer_bitrate(consumer, i, now))
                        for i in range(len(consumer.producer.layers))
                    ],
                )
            forwarder.set_target(index)
            if index is not None and forwarder.current is not None and index > forwarder.current:
                estimator.probe_pending(now)
            tid = temporal.get(consumer.id, ALL_TEMPORAL) if index == 0 else ALL_TEMPORAL
            forwarder.set_temporal(ALL_TEMPORAL if tid >= forwarder.temporal_layers - 1 else tid)
            producers.add(consumer.producer)
        for producer in producers:
            if producer.dynacast is not None:
                producer.dynacast.update(now)

    def _set_paused(self, consumer: Consumer, paused: bool) -> None:
        forwarder = consumer.layers
        if forwarder is None or forwarder.paused_for_bandwidth == paused:
            return
        forwarder.paused_for_bandwidth = paused
        if self.on_paused is not None:
            self.on_paused(consumer, paused)
