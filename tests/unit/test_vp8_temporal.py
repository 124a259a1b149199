"""VP8 temporal layers (issue 15: "one spatial layer (and temporal layers for VP8)"): the RFC 7741
§4.2 descriptor's TID / Y / TL0PICIDX, dropping the layers above a subscriber's with continuous
sequence numbers and picture ids, and the allocator lowering the frame rate of the lowest
spatial layer before it pauses the video.

The payloads are real libvpx VP8 frames (``tests/unit/test_forwarding_paths.py``) whose
descriptors are rewritten as a browser publishing ``L1T2`` writes them: picture id, TL0PICIDX,
TID alternating 0, 1 and the layer-sync bit Y.
"""

from __future__ import annotations

from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.rtp import RtpPacket

from sfu.allocation import BandwidthAllocator, SubscriberEstimator
from sfu.producer import Producer
from sfu.rtp.layers import ALL_TEMPORAL, vp8_temporal
from sfu.rtp.munger import RtpMunger
from tests.support.fakes import FakeRawRtp, FakeTransport
from tests.unit.test_forwarding_paths import (
    VIDEO_TICKS,
    ForwardingPeerConnection,
    add_consumer,
    delta,
    key,
    negotiate,
    parse,
    pcs,  # noqa: F401  (fixture)
    pub_rtp,
)
from tests.unit.test_simulcast import _measure, _simulcast_producer


def _l1t2(payload: bytes, pid: int, tl0: int, tid: int, sync: bool, start: bool) -> bytes:
    """``payload`` (a real VP8 RTP payload) with an L1T2 descriptor."""
    _descriptor, body = VpxPayloadDescriptor.parse(payload)
    out = VpxPayloadDescriptor(
        partition_start=1 if start else 0,
        partition_id=0,
        picture_id=pid,
        tl0picidx=tl0,
        tid=(tid, 1 if sync else 0),
    )
    return bytes(out) + body


class Publisher:
    """Sends an L1T2 VP8 stream on one simulcast layer: two packets per picture."""

    def __init__(self, layer: Producer) -> None:
        self.layer = layer
        self.seq = 1000
        self.frame = 0
        self.pid = 32760  # wraps past 0x7FFF
        self.tl0 = 250  # wraps past 255

    def picture(self, tid: int, *, sync: bool = True, keyframe: bool = False) -> None:
        if tid == 0:
            self.tl0 = (self.tl0 + 1) & 0xFF
        body = key(0) if keyframe else delta(self.frame % 10)
        assert self.layer.ssrc is not None
        for start in (True, False):
            payload = _l1t2(body, self.pid, self.tl0, tid, sync, start)
            data = pub_rtp(
                "video",
                self.seq & 0xFFFF,
                self.frame * VIDEO_TICKS,
                payload,
                ssrc=self.layer.ssrc,
                marker=not start,
            )
            self.layer.receive_rtp(data, self.layer.ssrc, 0)
            self.seq += 1
        self.frame += 1
        self.pid = (self.pid + 1) & 0x7FFF


def _descriptors(raw: FakeRawRtp) -> list[tuple[RtpPacket, VpxPayloadDescriptor]]:
    out = []
    for data in raw.sent:
        packet = parse("video", data)
        out.append((packet, VpxPayloadDescriptor.parse(packet.payload)[0]))
    return out


def test_the_descriptor_gives_tid_sync_picture_id_and_picture_start() -> None:
    body = delta(0)
    assert vp8_temporal(_l1t2(body, 300, 7, 1, True, True)) == (300, 1, True, True)
    assert vp8_temporal(_l1t2(body, 5, 7, 0, False, False)) == (5, 0, False, False)
    assert vp8_temporal(body) is None  # aiortc's descriptor: picture id only, no TID
    assert vp8_temporal(_l1t2(body, 300, 7, 1, True, True)[:3]) is None  # truncated


async def test_upper_temporal_layers_are_dropped_without_gaps(
    pcs: list[ForwardingPeerConnection],  # noqa: F811
) -> None:
    producer = _simulcast_producer(FakeTransport())
    q = producer.layers[0]
    consumer = add_consumer(producer, pcs)
    raw = negotiate(consumer)
    forwarder = consumer.layers
    assert forwarder is not None
    forwarder.set_target(0)
    pub = Publisher(q)
    pub.picture(0, keyframe=True)
    for i in range(1, 6):  # full frame rate: everything
        pub.picture(i % 2)
    assert len(raw.sent) == 12 and forwarder.temporal_layers == 2

    forwarder.set_temporal(0)  # half the frame rate
    for i in range(6, 16):
        pub.picture(i % 2)
    assert len(raw.sent) == 12 + 10 and forwarder.temporal_dropped == 10

    forwarder.set_temporal(ALL_TEMPORAL)  # back up: on the next layer-sync TL1 picture
    pub.picture(0)
    pub.picture(1, sync=False)  # depends on a TL1 picture we did not send: still dropped
    pub.picture(0)
    pub.picture(1, sync=True)
    pub.picture(0)
    assert forwarder.temporal == ALL_TEMPORAL and forwarder.temporal_dropped == 12

    sent = _descriptors(raw)
    assert len(sent) == 12 + 10 + 8
    seqs = [p.sequence_number for p, _d in sent]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(len(seqs))]  # no gap
    pids = [d.picture_id for _p, d in sent[::2]]  # one per picture
    assert pids == [(pids[0] + i) & 0x7FFF for i in range(len(pids))]  # no gap, wrapped
    tl0s = [d.tl0picidx for _p, d in sent[::2] if d.tid is not None and d.tid[0] == 0]
    assert tl0s == [(tl0s[0] + i) & 0xFF for i in range(len(tl0s))]  # TL0PICIDX untouched
    tids = [d.tid[0] for _p, d in sent[::2] if d.tid is not None]
    assert tids[6:11] == [0, 0, 0, 0, 0]  # only TL0 while the subscriber had half the rate
    stamps = [p.timestamp for p, _d in sent]
    assert stamps == sorted(stamps)  # timestamps untouched (gaps between frames only)


def test_a_drop_moves_later_packets_down_and_late_earlier_ones_keep_their_numbers() -> None:
    munger = RtpMunger()
    first = munger.munge(10, 0)
    assert first is not None
    base = first[0]
    munger.drop(12)  # 11 not here yet (reordered), 12 is a dropped TL1 packet
    later = munger.munge(13, 0)
    late = munger.munge(11, 0)
    assert later is not None and late is not None
    assert (late[0] - base) & 0xFFFF == 1 and (later[0] - base) & 0xFFFF == 2


async def test_the_allocator_halves_the_frame_rate_before_it_pauses_the_video(
    pcs: list[ForwardingPeerConnection],  # noqa: F811
) -> None:
    producer = _simulcast_producer(FakeTransport())
    consumer = add_consumer(producer, pcs)
    negotiate(consumer)
    forwarder = consumer.layers
    assert forwarder is not None
    forwarder.set_target(0)
    pub = Publisher(producer.layers[0])
    pub.picture(0, keyframe=True)
    pub.picture(1)
    assert forwarder.temporal_layers == 2  # learnt from the packets
    paused: list[bool] = []
    estimator = SubscriberEstimator(start_bps=800_000)
    allocator = BandwidthAllocator(lambda: [consumer], lambda _c, p: paused.append(p), estimator)
    _measure(producer, (150_000, 500_000, 1_500_000))
    now = 100.0
    allocator.allocate(now)
    assert forwarder.target == 1 and forwarder.temporal_target == ALL_TEMPORAL

    # 100 kbit/s: q at full frame rate (150 k) does not fit, its TL0 (60% of it) does
    estimator.estimate_bps = 100_000
    estimator.min_bps = 50_000
    estimator.max_bps = 100_000
    for step in range(6):
        allocator.allocate(now + 1 + step)
        assert forwarder.target == 0 and forwarder.temporal_target == 0, step
    assert paused == []

    # 50 kbit/s: not even TL0 fits (below 70% of its 90 k): the video pauses (2 s later)
    estimator.estimate_bps = estimator.max_bps = estimator.min_bps = 50_000
    for step in range(6):
        allocator.allocate(now + 10 + step)
    assert forwarder.target is None and paused == [True]

    # the link comes back: q at its full frame rate
    estimator.max_bps = 400_000  # h (500 k) does not fit yet
    estimator.estimate_bps = 400_000
    allocator.allocate(now + 30)
    assert forwarder.target == 0 and forwarder.temporal_target == ALL_TEMPORAL
    assert paused == [True, False]
