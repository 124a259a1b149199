"""The bandwidth allocator's timing (issue 15: "downswitch within 2 s of congestion, upswitch
probing within 10 s of recovery, no oscillation") on a simulated clock and a simulated link.

The rig is the real Producer / Consumer / LayerForwarder / BandwidthAllocator of
``tests/unit/test_simulcast.py``; only the subscriber's link is simulated, 10 ms ticks:

* the consumer sends the rate of the layer it forwards (150 / 500 / 1500 kbit/s);
* a link capped at ``cap_bps`` loses what exceeds the cap; lost packets (1200 bytes) are
  NACKed 50 ms later and every receiver report (1 s) carries the fraction lost since the last;
* a layer switch happens on the target layer's keyframe, ``KEYFRAME_S`` after it was asked;
* the allocator runs every 0.5 s (the transport's RTCP tick) and on every report, as in
  ``sfu/transport.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sfu.allocation import BandwidthAllocator, SubscriberEstimator
from sfu.consumer import Consumer
from tests.support.fakes import FakeTransport
from tests.unit.test_forwarding_paths import (
    ForwardingPeerConnection,
    add_consumer,
    negotiate,
    pcs,  # noqa: F401  (fixture)
)
from tests.unit.test_simulcast import _measure, _simulcast_producer

RATES = (150_000, 500_000, 1_500_000)
KEYFRAME_S = 0.4
"""Seconds from a layer request to the switch (PLI round trip and the keyframe's arrival)."""
TICK_S = 0.01
PACKET_BYTES = 1200


@dataclass
class Link:
    """One subscriber behind a rate-capped link, driven tick by tick (see the module doc)."""

    consumer: Consumer
    allocator: BandwidthAllocator
    cap_bps: float | None
    now: float = 1000.0
    asked_at: float | None = None
    asked_for: int | None = None
    lost_since_report: float = 0.0
    sent_since_report: float = 0.0
    lost_unreported: float = 0.0
    next_report: float = 1001.0
    next_tick: float = 1000.5
    layers: list[tuple[float, int | None]] = field(default_factory=list)
    probes: int = 0
    rates: tuple[int, ...] = RATES
    keyframe_s: float = KEYFRAME_S

    def step(self) -> None:
        forwarder = self.consumer.layers
        assert forwarder is not None
        self.now += TICK_S
        now = self.now
        # the switch happens on the target layer's keyframe
        if forwarder.target != forwarder.current:
            if self.asked_at is None or self.asked_for != forwarder.target:
                self.asked_at = now
                self.asked_for = forwarder.target
            elif now - self.asked_at >= self.keyframe_s:
                if forwarder.current is not None and forwarder.target is not None:
                    if forwarder.target > forwarder.current:
                        self.probes += 1
                forwarder.current = forwarder.target
                self.asked_at = None
        else:
            self.asked_at = None
        rate = 0.0 if forwarder.current is None else float(self.rates[forwarder.current])
        sent = rate * TICK_S / 8 / PACKET_BYTES  # packets
        self.consumer._bytes_sent += int(rate * TICK_S / 8)
        lost = 0.0
        if self.cap_bps is not None and rate > self.cap_bps:
            lost = sent * (1.0 - self.cap_bps / rate)
        self.sent_since_report += sent
        self.lost_since_report += lost
        self.lost_unreported += lost
        if self.lost_unreported >= 1.0 and round(now / TICK_S) % 5 == 0:  # NACK every 50 ms
            self.allocator.on_nack(int(self.lost_unreported), now)
            self.lost_unreported -= int(self.lost_unreported)
        if now >= self.next_report:
            self.next_report += 1.0
            fraction = (
                self.lost_since_report / self.sent_since_report if self.sent_since_report else 0.0
            )
            self.allocator.on_loss(fraction, now)
            self.lost_since_report = self.sent_since_report = 0.0
        if now >= self.next_tick:
            self.next_tick += 0.5
            self.allocator.allocate(now)
        self.layers.append((now, forwarder.current))

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / TICK_S)):
            self.step()


def _link(
    pcs: list[ForwardingPeerConnection],  # noqa: F811
    cap_bps: float | None,
    rates: tuple[int, ...] = RATES,
    start_bps: int = 800_000,
) -> Link:
    producer = _simulcast_producer(FakeTransport())
    consumer = add_consumer(producer, pcs)
    negotiate(consumer)
    _measure(producer, rates)
    allocator = BandwidthAllocator(lambda: [consumer], None, SubscriberEstimator(start_bps))
    link = Link(consumer, allocator, cap_bps, rates=rates)
    allocator.allocate(link.now)
    return link


async def test_steady_congestion_keeps_the_low_layer_without_oscillation(
    pcs: list[ForwardingPeerConnection],  # noqa: F811
) -> None:
    link = _link(pcs, 300_000)  # q (150 k) fits, h (500 k) does not
    link.run(10.0)
    start = len(link.layers)
    probes = link.probes
    link.run(60.0)
    window = link.layers[start:]
    on_low = sum(1 for _t, layer in window if layer == 0) / len(window)
    forwarder = link.consumer.layers
    assert forwarder is not None
    print(f"60 s at 300 kbit/s: {on_low:.1%} on q, {link.probes - probes} upswitch probes")
    assert all(layer is not None for _t, layer in window)  # never paused: q fits
    assert all(layer != 2 for _t, layer in window)  # f never tried on a link that fails h
    assert on_low >= 0.9  # probes for h are brief
    assert link.probes - probes <= 60 / 4  # at most one probe per 4 s: no oscillation
    assert not forwarder.paused_for_bandwidth


async def test_lifting_the_cap_brings_the_full_layer_back_within_10_s_at_any_phase(
    pcs: list[ForwardingPeerConnection],  # noqa: F811
) -> None:
    link = _link(pcs, 300_000)
    link.run(20.0)
    forwarder = link.consumer.layers
    assert forwarder is not None
    worst = 0.0
    # lift the cap at 16 points of the probe cycle (after a failed probe, during the hold,
    # during a probe); each time, measure until f is forwarded, then cap again for 10 s
    for phase in range(16):
        link.run(0.37 * phase)
        link.cap_bps = None
        lifted = link.now
        for _ in range(round(15 / TICK_S)):
            link.step()
            if forwarder.current == 2:
                break
        took = link.now - lifted
        worst = max(worst, took)
        assert forwarder.current == 2, f"phase {phase}: not on f {took:.1f} s after the lift"
        link.cap_bps = 300_000
        link.run(10.0)
        assert forwarder.current == 0, "back on q under the cap"
    print(f"recovery to f: worst {worst:.1f} s after the lift")
    # 10 s in the issue, of which ~2 s are a real browser's keyframes and frame-size report
    assert worst <= 7.5


async def test_after_a_congestion_a_probe_raises_one_layer_at_a_time(
    pcs: list[ForwardingPeerConnection],  # noqa: F811
) -> None:
    link = _link(pcs, 300_000)
    link.run(20.0)  # congested: on q, probing h now and then
    forwarder = link.consumer.layers
    assert forwarder is not None
    estimator = link.allocator.estimator
    while forwarder.current != 0 or estimator.holding(link.now):
        link.step()
    # the estimate outgrew the whole ladder between two allocations (a cheap f: a still
    # picture): still only h is tried, not f's keyframe down a link that failed h
    estimator.estimate_bps = 3_000_000
    link.allocator.allocate(link.now)
    assert forwarder.target == 1
    link.allocator.allocate(link.now + 0.5)  # and the next allocation the next one
    assert forwarder.target == 2


async def test_a_probe_whose_keyframe_comes_late_is_still_ended_by_its_loss(
    pcs: list[ForwardingPeerConnection],  # noqa: F811
) -> None:
    # h restarts at the publisher (dynacast had paused it): its keyframe comes 3.5 s after
    # the probe asked for it, and the link loses only ~6% of h (below the 10% of a decrease)
    link = _link(pcs, 300_000)
    link.run(20.0)  # congested: on q
    link.cap_bps = 470_000
    link.keyframe_s = 3.5
    start = len(link.layers)
    link.run(40.0)
    seen = [layer for _t, layer in link.layers[start:]]
    longest = run = 0
    for layer in seen:
        run = run + 1 if layer == 1 else 0
        longest = max(longest, run)
    print(f"h loses 6%, keyframes 3.5 s late: {link.probes} probes, on h {longest * TICK_S} s max")
    assert link.probes >= 2
    # each probe of h ends once h flows and loses packets (then q's keyframe, 3.5 s here too)
    assert longest * TICK_S <= 5.0
