"""Simulcast (issue 15) without a network: the SDP answer, layer routing by rid, keyframe
switches that keep the subscriber's stream continuous, the per-subscriber allocator and dynacast.

The Producer/Consumer rig (real objects, in-memory fakes, real libvpx VP8 payloads) is the one of
``tests/unit/test_forwarding_paths.py``.
"""

from __future__ import annotations

import fractions
import time

import av
import numpy as np
import pytest
from aiortc.codecs import depayload, get_decoder, get_encoder
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket

from sfu import _aiortc_adapter as adapter
from sfu._aiortc_adapter import URI_MID
from sfu.allocation import BandwidthAllocator, SubscriberEstimator
from sfu.dynacast import OFF_DELAY_S
from sfu.errors import InvalidSdpError
from sfu.producer import Producer
from sfu.rtp.bitrate import BitrateMeter
from sfu.rtp.header import parse_rtp
from sfu.simulcast import URI_REPAIRED_RID, URI_RID, answer_simulcast, parse_simulcast_offer
from sfu.transport import _route_layer
from tests.support.fakes import FakeClock, FakeRawRtp, FakeTransport
from tests.unit.test_forwarding_paths import (
    VIDEO_TICKS,
    VP8_PUB,
    ForwardingPeerConnection,
    _extensions_map,
    add_consumer,
    clock,  # noqa: F401  (fixture)
    delta,
    key,
    make_producer,
    negotiate,
    parse,
    pcs,  # noqa: F401  (fixture)
    pub_rtp,
)

OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 1 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=mid:0",
        "a=sendonly",
        "a=rtpmap:111 opus/48000/2",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        "a=mid:1",
        "a=sendonly",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        f"a=extmap:10 {URI_RID}",
        f"a=extmap:11 {URI_REPAIRED_RID}",
        "a=rtpmap:96 VP8/90000",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "a=rid:f send",
        "a=rid:h send",
        "a=rid:q send",
        "a=simulcast:send f;h;~q",
        "",
    ]
)

ANSWER = "\r\n".join(
    [
        "v=0",
        "o=- 3 4 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=mid:0",
        "a=recvonly",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        "a=mid:1",
        "a=recvonly",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "",
    ]
)


# --- SDP -------------------------------------------------------------------------------------


def test_offer_layers_are_ordered_low_to_high_and_the_answer_receives_them() -> None:
    offers = parse_simulcast_offer(OFFER)
    assert list(offers) == ["1"]
    offer = offers["1"]
    assert offer.rids == ("q", "h", "f")  # q/h/f ordered whatever the offer's order; ~q paused
    assert (offer.rid_ext_id, offer.repaired_rid_ext_id) == (10, 11)
    answer = answer_simulcast(ANSWER, offers)
    video = answer.split("m=video")[1]
    assert f"a=extmap:10 {URI_RID}\r\n" in video
    assert f"a=extmap:11 {URI_REPAIRED_RID}\r\n" in video
    assert "a=rid:q recv\r\na=rid:h recv\r\na=rid:f recv\r\na=simulcast:recv q;h;f\r\n" in video
    assert "simulcast" not in answer.split("m=video")[0]  # audio untouched


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ([("a=rid:f send", "a=rid:f!x send"), ("send f;", "send f!x;")], "invalid rid"),
        ([(f"a=extmap:10 {URI_RID}\r\n", "")], "rtp-stream-id"),
        ([("a=rid:q send\r\n", "")], "no a=rid"),
        ([("a=rid:q send", "a=rid:q send\r\na=rid:z send"), ("~q", "~q;z")], "at most 3"),
    ],
)
def test_bad_simulcast_offers_get_a_typed_error(
    changes: list[tuple[str, str]], message: str
) -> None:
    offer = OFFER
    for old, new in changes:
        assert old in offer
        offer = offer.replace(old, new)
    with pytest.raises(InvalidSdpError, match=message):
        parse_simulcast_offer(offer)


# --- routing ----------------------------------------------------------------------------------


def _simulcast_producer(transport: FakeTransport) -> Producer:
    producer = make_producer("video", transport)
    producer.ssrc = producer.rtx_ssrc = None
    producer.enable_simulcast(["q", "h", "f"], 10, 11)
    for index, layer in enumerate(producer.layers):
        layer.ssrc = 5000 + index
    return producer


RID_MAP = _extensions_map({URI_MID: 4, URI_RID: 10, URI_REPAIRED_RID: 11})


def _rid_packet(rid: str, *, rtx: bool) -> bytes:
    """A publisher packet naming its layer as Chromium does (mid + rid or repaired rid)."""
    packet = RtpPacket(payload_type=97 if rtx else 96, sequence_number=1, ssrc=77, payload=key(0))
    packet.extensions.mid = "0"
    if rtx:
        packet.extensions.repaired_rtp_stream_id = rid
    else:
        packet.extensions.rtp_stream_id = rid
    data: bytes = packet.serialize(RID_MAP)
    return data


def test_packets_are_bound_to_their_layer_by_rid_and_rtx_by_repaired_rid() -> None:
    producer = _simulcast_producer(FakeTransport())
    producer.mid = "0"
    for rid, rtx in (("h", False), ("f", True)):
        data = _rid_packet(rid, rtx=rtx)
        _m, pt_, _s, _t, _ss, prof, start, end, _ps, _pe = parse_rtp(data)
        found = _route_layer(producer, data, start, end, prof, pt_)
        assert found is not None
        assert (found[0].rid, found[1]) == (rid, rtx)
    unknown = _rid_packet("x", rtx=False)
    fields = parse_rtp(unknown)
    assert _route_layer(producer, unknown, fields[6], fields[7], fields[5], fields[1]) is None


# --- switching --------------------------------------------------------------------------------


def _send(layer: Producer, seq: int, frame: int, payload: bytes) -> None:
    assert layer.ssrc is not None
    data = pub_rtp(
        "video", seq, 90_000 * layer.ssrc + frame * VIDEO_TICKS, payload, ssrc=layer.ssrc
    )
    layer.receive_rtp(data, layer.ssrc, 0)


def _sent(raw: FakeRawRtp) -> list[RtpPacket]:
    return [parse("video", data) for data in raw.sent]


async def test_layer_switches_happen_on_keyframes_and_keep_the_stream_continuous(
    pcs: list[ForwardingPeerConnection],  # noqa: F811
) -> None:
    transport = FakeTransport()
    producer = _simulcast_producer(transport)
    q, h, _f = producer.layers
    consumer = add_consumer(producer, pcs)
    assert consumer.layers is not None
    raw = negotiate(consumer)
    forwarder = consumer.layers

    forwarder.set_target(0)
    assert transport.plis[-1] is q  # the target layer is asked for a keyframe
    _send(q, 100, 0, delta(0))  # no keyframe yet: nothing
    assert raw.sent == []
    _send(q, 101, 1, key(0))
    _send(q, 102, 2, delta(1))
    assert len(raw.sent) == 2

    forwarder.set_target(1)
    assert transport.plis[-1] is h
    _send(h, 7000, 2, delta(2))  # h without a keyframe: q continues
    _send(q, 103, 3, delta(3))
    _send(h, 7001, 4, key(1))  # the switch
    _send(q, 104, 4, delta(4))  # q is no longer forwarded
    _send(h, 7002, 5, delta(5))
    packets = _sent(raw)
    assert len(packets) == 5
    assert [p.sequence_number for p in packets] == [
        (packets[0].sequence_number + i) & 0xFFFF for i in range(5)
    ]
    stamps = [(p.timestamp - packets[0].timestamp) & 0xFFFFFFFF for p in packets]
    assert stamps == sorted(stamps) and stamps[-1] < 10 * VIDEO_TICKS  # no jump
    pids = [VpxPayloadDescriptor.parse(p.payload)[0].picture_id for p in packets]

    def pid(payload: bytes) -> int:
        return int(VpxPayloadDescriptor.parse(payload)[0].picture_id)

    # VP8 picture ids: the switch continues from the last one sent, then the new layer's own
    # increments are kept
    assert pids[3] == (pids[2] + 1) & 0x7FFF
    assert (pids[4] - pids[3]) & 0x7FFF == (pid(delta(5)) - pid(key(1))) & 0x7FFF
    assert forwarder.current == 1 and forwarder.switches == 2
    assert h.frame_width == 160  # read from the VP8 keyframe

    forwarder.set_target(None)  # hidden tile: nothing at all
    _send(h, 7003, 6, key(0))
    assert len(raw.sent) == 5
    forwarder.set_target(0)
    _send(q, 105, 7, key(0))
    assert [p.sequence_number for p in _sent(raw)][-1] == (packets[-1].sequence_number + 1) & 0xFFFF
    consumer.close()
    assert q.consumers == [] and h.consumers == []  # the taps are gone


# --- allocation -------------------------------------------------------------------------------


def _measure(producer: Producer, rates: tuple[int, ...]) -> None:
    """Make the layers' meters read ``rates`` (bits/s) from now on."""
    for layer, rate in zip(producer.layers, rates, strict=True):
        layer.bitrate = BitrateMeter(min_interval_s=float("inf"))
        layer.bitrate.bps = float(rate)
        layer.last_arrival_ms = adapter.now_ms()  # flowing now


async def test_allocator_downswitches_on_loss_pauses_when_nothing_fits_and_probes_back_up(
    pcs: list[ForwardingPeerConnection],  # noqa: F811
) -> None:
    producer = _simulcast_producer(FakeTransport())
    consumer = add_consumer(producer, pcs)
    negotiate(consumer)
    paused: list[bool] = []
    estimator = SubscriberEstimator(start_bps=800_000)
    allocator = BandwidthAllocator(lambda: [consumer], lambda _c, p: paused.append(p), estimator)
    forwarder = consumer.layers
    assert forwarder is not None
    now = 100.0
    _measure(producer, (150_000, 500_000, 1_500_000))
    allocator.allocate(now)
    assert forwarder.target == 1  # 800 kbit/s: h fits, f does not

    estimator.sent_bps = 500_000
    assert estimator.on_loss(0.5, now + 0.5)  # congestion: 500 k x 0.75
    allocator.allocate(now + 0.5)
    assert forwarder.target == 0

    estimator.sent_bps = 150_000
    for step in range(1, 6):  # heavy loss even on q: the video pauses (audio would go on)
        estimator.on_loss(0.9, now + 0.5 + 2.0 * step)
    allocator.allocate(now + 11)
    assert forwarder.target == 0 and paused == []  # not on one report: it may be stale
    estimator.on_loss(0.9, now + 12.6)  # and the loss goes on
    allocator.allocate(now + 13.5)
    assert forwarder.target is None and paused == [True]  # still short 2.5 s later

    # the link recovers: no loss; within the hold plus growth the layers come back
    now += 2.5
    t = now + 11
    while forwarder.target != 2 and t < now + 11 + 30:
        t += 0.5
        estimator.on_loss(0.0, t)
        allocator.allocate(t)
    assert forwarder.target == 2, estimator.estimate_bps
    assert paused == [True, False]
    assert t - (now + 11) <= 25


async def test_small_or_hidden_tiles_limit_the_layer_and_dynacast_follows(
    pcs: list[ForwardingPeerConnection],  # noqa: F811
) -> None:
    producer = _simulcast_producer(FakeTransport())
    changes: list[tuple[str, ...]] = []
    assert producer.dynacast is not None
    producer.dynacast.on_change = lambda _p, active: changes.append(active)
    consumer = add_consumer(producer, pcs)
    negotiate(consumer)
    allocator = BandwidthAllocator(lambda: [consumer], None, SubscriberEstimator(5_000_000))
    forwarder = consumer.layers
    assert forwarder is not None
    for layer, width in zip(producer.layers, (320, 640, 1280), strict=True):
        layer.frame_width = width
    now = 50.0
    _measure(producer, (150_000, 500_000, 1_500_000))
    allocator.allocate(now)
    assert forwarder.target == 2 and changes == []  # all three wanted: nothing to change

    forwarder.set_preference(True, 300)  # a thumbnail: q is wide enough
    allocator.allocate(now + 1)
    assert forwarder.target == 0
    assert changes == []  # f and h are switched off only after OFF_DELAY_S
    forwarder.current = 0  # (the switch happens on q's next keyframe)
    allocator.allocate(now + 1 + OFF_DELAY_S + 0.1)
    assert changes == [("q",)]

    forwarder.set_preference(False, None)  # hidden: no video at all, not a bandwidth pause
    allocator.allocate(now + 10)
    assert forwarder.target is None and not forwarder.paused_for_bandwidth

    forwarder.set_preference(True, 1280)  # full screen: f is turned on at once
    allocator.allocate(now + 11)
    assert forwarder.target == 2 and changes[-1] == ("q", "h", "f")


async def test_nacks_during_an_upswitch_probe_end_it_at_once(
    pcs: list[ForwardingPeerConnection],  # noqa: F811
) -> None:
    producer = _simulcast_producer(FakeTransport())
    consumer = add_consumer(producer, pcs)
    negotiate(consumer)
    estimator = SubscriberEstimator(start_bps=300_000)
    allocator = BandwidthAllocator(lambda: [consumer], None, estimator)
    forwarder = consumer.layers
    assert forwarder is not None
    _measure(producer, (150_000, 500_000, 1_500_000))
    allocator.allocate()
    assert forwarder.target == 0
    estimator.sent_bps = 150_000
    estimator.estimate_bps = 700_000  # grown while calm: h now fits, a probe
    allocator.allocate()
    assert forwarder.target == 1 and estimator.probing(time.monotonic())
    allocator.on_nack(4)  # a little loss: not yet
    assert forwarder.target == 1
    allocator.on_nack(8)  # the link cannot carry h: back to q now, not at the next report
    assert forwarder.target == 0
    assert estimator.estimate_bps == 150_000  # the rate that worked before the probe


def test_estimator_ignores_a_remb_that_is_still_ramping_up() -> None:
    estimator = SubscriberEstimator(start_bps=1_000_000)
    estimator.sent_bps = 900_000
    assert not estimator.on_remb(300_000, 1.0)  # first REMB: a receiver starting low
    assert not estimator.on_remb(400_000, 2.0)  # rising
    assert estimator.on_remb(200_000, 3.0)  # fell below what we send: overuse
    assert estimator.estimate_bps == 200_000


def _picture(i: int, width: int, height: int) -> av.VideoFrame:
    y, x = np.mgrid[0:height, 0:width]
    arr = np.stack([(x + 4 * i) % 256, (y + 2 * i) % 256, (x + y) % 256], axis=2).astype(np.uint8)
    frame = av.VideoFrame.from_ndarray(arr, format="rgb24").reformat(format="yuv420p")
    frame.pts = i * VIDEO_TICKS
    frame.time_base = fractions.Fraction(1, 90000)
    return frame


async def test_an_aiortc_decoder_decodes_every_frame_across_layer_switches(
    pcs: list[ForwardingPeerConnection],  # noqa: F811
    clock: FakeClock,  # noqa: F811
) -> None:
    """Two real libvpx encoders (160x120 and 320x240) as layers q and h; the subscriber's
    stream switches q -> h -> q on PLI-requested keyframes and aiortc's VP8 depacketizer and
    decoder (libvpx through PyAV, which raises on a corrupt frame) decode every frame sent."""
    transport = FakeTransport()
    producer = make_producer("video", transport)
    producer.ssrc = producer.rtx_ssrc = None
    producer.enable_simulcast(["q", "h"], 10, 11)
    sizes = {0: (160, 120), 1: (320, 240)}
    encoders = {index: get_encoder(VP8_PUB[0]) for index in sizes}
    seqs = {0: 1000, 1: 30000}
    for index, layer in enumerate(producer.layers):
        layer.ssrc = 6000 + index
    consumer = add_consumer(producer, pcs)
    raw = negotiate(consumer)
    forwarder = consumer.layers
    assert forwarder is not None
    forwarder.set_target(0)
    plan = {12: 1, 24: 0}  # frame -> new target layer
    keyframe_in = {0: 0, 1: 0}  # frames until a requested keyframe
    for i in range(36):
        clock.advance(50)  # past the keyframe request throttle (500 ms) between switches
        if i in plan:
            forwarder.set_target(plan[i])
        for index, layer in enumerate(producer.layers):
            if layer in transport.plis:  # the encoder answers a PLI two frames later (RTT)
                transport.plis = [p for p in transport.plis if p is not layer]
                keyframe_in[index] = 2
            keyframe_in[index] -= 1
            wanted = keyframe_in[index] == 0
            payloads, _ = encoders[index].encode(_picture(i, *sizes[index]), force_keyframe=wanted)
            for n, payload in enumerate(payloads):
                assert layer.ssrc is not None
                data = pub_rtp(
                    "video",
                    seqs[index],
                    7_000_000 * (index + 1) + i * VIDEO_TICKS,
                    payload,
                    marker=n == len(payloads) - 1,
                    ssrc=layer.ssrc,
                )
                seqs[index] += 1
                layer.receive_rtp(data, layer.ssrc, 0)

    packets = _sent(raw)
    assert [p.sequence_number for p in packets] == [
        (packets[0].sequence_number + k) & 0xFFFF for k in range(len(packets))
    ]
    decoder = get_decoder(VP8_PUB[0])
    widths: list[int] = []
    frame_data = b""
    for packet in packets:
        frame_data += depayload(VP8_PUB[0], packet.payload)
        if packet.marker:
            decoded = decoder.decode(JitterFrame(frame_data, packet.timestamp))
            assert len(decoded) == 1
            widths.append(decoded[0].width)
            frame_data = b""
    runs = [w for k, w in enumerate(widths) if k == 0 or widths[k - 1] != w]
    assert runs == [160, 320, 160], widths
    assert len(widths) >= 30  # only the frames before each switch's keyframe are skipped


async def test_a_consumer_with_nothing_on_screen_starts_on_a_flowing_layer(
    pcs: list[ForwardingPeerConnection],  # noqa: F811
) -> None:
    """Layers paused by dynacast send nothing: a new or resumed subscriber starts on a layer
    that flows (shown at once), then aims higher, which turns the higher layer back on."""
    producer = _simulcast_producer(FakeTransport())
    consumer = add_consumer(producer, pcs)
    negotiate(consumer)
    allocator = BandwidthAllocator(lambda: [consumer], None, SubscriberEstimator(5_000_000))
    forwarder = consumer.layers
    assert forwarder is not None and producer.dynacast is not None
    _measure(producer, (150_000, 500_000, 1_500_000))
    for layer in producer.layers[1:]:
        layer.last_arrival_ms = 0  # h and f paused at the publisher
    producer.dynacast.active = ("q",)
    allocator.allocate()
    assert forwarder.target == 0
    forwarder.current = 0  # q's keyframe came
    allocator.allocate()
    assert forwarder.target == 2 and producer.dynacast.active == ("q", "h", "f")
