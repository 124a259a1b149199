"""PipeTransport (sfu/pipe.py): a producer of router A consumed on router B, in one process.

An aiortc publisher (tone + coloured video) publishes on room A; subscribers join room B and
consume the piped producers through the ordinary Participant.subscribe path. Real UDP on
127.0.0.1 between the two pipe ends, real ICE/DTLS/SRTP to the aiortc peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket

from sfu import _aiortc_adapter as adapter
from sfu.errors import InvalidStateError
from sfu.events import RoomEvent, SubscribedTrack
from sfu.participant import Participant
from sfu.pipe import PipeConsumer, PipeTransport, PipeTransportParameters
from sfu.producer import Producer
from sfu.room import Room
from sfu.router import Router
from sfu.stats import Totals
from tests.support.media import (
    ColorTrack,
    ToneTrack,
    collect_audio,
    dominant_frequency,
    mean_color,
)

TONE_HZ = 440.0
RGB = (30, 60, 220)


@pytest.fixture(autouse=True)
def loopback_ice() -> Iterator[None]:
    adapter.set_ice_host_addresses(["127.0.0.1"])
    yield
    adapter.set_ice_host_addresses([])


async def _until(predicate: Callable[[], bool], timeout: float, step: float = 0.02) -> None:
    """Poll ``predicate`` (bounded: ``timeout`` s); raises TimeoutError when it never holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(step)


class _Listener:
    """A ParticipantListener that queues subscribe offers."""

    def __init__(self) -> None:
        self.offers: asyncio.Queue[str] = asyncio.Queue()

    def send_subscribe_offer(self, sdp: str, tracks: list[SubscribedTrack]) -> None:
        self.offers.put_nowait(sdp)

    def on_room_event(self, event: RoomEvent) -> None:
        return None

    def on_closed(self, reason: str) -> None:
        return None


class _SeqSink(adapter.NullRtpSink):
    """Records every decrypted RTP packet's sequence number per SSRC (a counting subscriber)."""

    def __init__(self) -> None:
        self.seqs: dict[int, list[int]] = {}

    def on_rtp(self, data: bytes, arrival_ms: int) -> None:
        ssrc = int.from_bytes(data[8:12], "big")
        self.seqs.setdefault(ssrc, []).append(int.from_bytes(data[2:4], "big"))


@dataclass
class Subscriber:
    """One subscriber on room B: a decoding RTCPeerConnection or a counting one."""

    participant: Participant
    listener: _Listener
    pc: RTCPeerConnection
    sink: _SeqSink | None = None
    task: asyncio.Task[None] | None = None
    tracks: dict[str, MediaStreamTrack] = field(default_factory=dict)

    async def _answer_offers(self) -> None:
        while True:
            sdp = await self.listener.offers.get()
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            for transceiver in self.pc.getTransceivers():
                if transceiver.receiver.track is not None:
                    self.tracks[transceiver.kind] = transceiver.receiver.track
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            await self.participant.subscribe_answer(self.pc.localDescription.sdp)

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._answer_offers())

    def seqs(self, producer: Producer) -> list[int]:
        """Sequence numbers received on the consumer SSRC of ``producer``."""
        consumer = self.participant.subscriptions[producer.id]
        assert self.sink is not None
        return self.sink.seqs.get(consumer.ssrc, [])

    def video_transceiver(self) -> RTCRtpTransceiver:
        return next(t for t in self.pc.getTransceivers() if t.kind == "video")

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        await self.pc.close()


@dataclass
class Rig:
    room_a: Room
    room_b: Room
    publisher: RTCPeerConnection
    producers: dict[str, Producer]
    subscribers: list[Subscriber] = field(default_factory=list)

    async def subscriber(self, name: str, *, counting: bool = False) -> Subscriber:
        listener = _Listener()
        participant = await self.room_b.join(name, name, listener, auto_subscribe=False)
        sink = None
        if counting:
            sink = _SeqSink()
            pc: RTCPeerConnection = adapter.ForwardingPeerConnection(
                sink, adapter.make_configuration([])
            )
        else:
            pc = RTCPeerConnection(adapter.make_configuration([]))
        sub = Subscriber(participant, listener, pc, sink)
        sub.start()
        self.subscribers.append(sub)
        return sub

    async def pipe(self, kind: str, **kwargs: bool) -> Producer:
        return await self.room_a.router.pipe_to_router(
            self.producers[kind].id, self.room_b.router, **kwargs
        )


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    totals = Totals()
    room_a = Room("a", Router(ice_servers=[], totals=totals))
    room_b = Room("b", Router(ice_servers=[], totals=totals))
    publisher = await room_a.join("speaker", "speaker", _Listener(), can_subscribe=False)
    pc = RTCPeerConnection(adapter.make_configuration([]))
    pc.addTrack(ToneTrack(TONE_HZ))
    pc.addTrack(ColorTrack(RGB, fps=15))
    await pc.setLocalDescription(await pc.createOffer())
    answer, _mids = await publisher.publish_offer(pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    producers = {p.kind: p for p in publisher.producers.values()}
    assert set(producers) == {"audio", "video"}
    await _until(lambda: all(p.packets_received > 5 for p in producers.values()), timeout=10)
    rig = Rig(room_a, room_b, pc, producers)
    try:
        yield rig
    finally:
        await asyncio.gather(*(s.close() for s in rig.subscribers), return_exceptions=True)
        await pc.close()
        await room_b.close()
        await room_a.close()


def _pipe_ends(rig: Rig) -> tuple[PipeTransport, PipeTransport]:
    (a,) = rig.room_a.router.pipe_transports
    (b,) = rig.room_b.router.pipe_transports
    return a, b


def _largest_step(seqs: list[int]) -> int:
    """The largest forward step between consecutive 16-bit sequence numbers (mod 2**16)."""
    return max((((y - x) & 0xFFFF) for x, y in itertools.pairwise(seqs)), default=0)


async def test_subscriber_on_router_b_decodes_tone_and_colour(rig: Rig) -> None:
    audio = await rig.pipe("audio")
    video = await rig.pipe("video")
    assert audio.id == rig.producers["audio"].id and audio in rig.room_b.router.producers.values()
    assert await rig.pipe("audio") is audio, "a producer is piped once per router"
    sub = await rig.subscriber("listener")
    assert sub.participant.subscribe(audio) is not None
    assert sub.participant.subscribe(video) is not None
    await _until(lambda: set(sub.tracks) == {"audio", "video"}, timeout=10)
    samples = await collect_audio(sub.tracks["audio"], 1.0)
    got = dominant_frequency(samples[len(samples) // 2 :])
    assert abs(got - TONE_HZ) < 15, f"heard {got:.0f} Hz through the pipe"
    assert np.abs(samples).max() > 1000, "piped audio is silent"
    color = await mean_color(sub.tracks["video"], frames=5)
    assert np.abs(color - np.array(RGB)).max() < 30, f"saw {color.round()} through the pipe"
    end_a, end_b = _pipe_ends(rig)
    counters_a, counters_b = end_a.counters(), end_b.counters()
    assert counters_a["pipe_packets_sent"] > 50 and counters_b["pipe_packets_received"] > 50
    assert counters_b["pipe_packets_sent"] > 0, "B sends RTCP (receiver reports) upstream"
    assert counters_b["pipe_dropped"] == 0


async def test_pli_on_router_b_reaches_the_publisher(rig: Rig) -> None:
    video = await rig.pipe("video")
    sub = await rig.subscriber("viewer", counting=True)
    sub.participant.subscribe(video)
    await _until(lambda: len(sub.seqs(video)) > 20, timeout=10)
    source = rig.producers["video"]
    end_a, _end_b = _pipe_ends(rig)
    pipe_consumer = end_a.consumers[source.id]
    # Let the start-up keyframe requests pass the throttle (500 ms) before asking again.
    await asyncio.sleep(1.2)
    keyframes, plis, requests = source.keyframes_received, source.plis_sent, video.plis_sent
    consumer_ssrc = sub.participant.subscriptions[video.id].ssrc
    pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1234, media_ssrc=consumer_ssrc)
    adapter.raw_transport(sub.video_transceiver()).send_rtcp(bytes(pli))
    await _until(lambda: source.keyframes_received > keyframes, timeout=5)
    assert video.plis_sent > requests, "B's piped producer sent the PLI over the pipe"
    assert pipe_consumer.keyframe_requests > 0, "A's pipe end received it"
    assert source.plis_sent > plis, "A's producer asked the publisher"


async def test_packet_lost_on_the_pipe_is_recovered_by_nack(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = await rig.pipe("video")
    sub = await rig.subscriber("viewer", counting=True)
    sub.participant.subscribe(video)
    await _until(lambda: len(sub.seqs(video)) > 30, timeout=10)
    end_a, _end_b = _pipe_ends(rig)
    pipe_consumer = end_a.consumers[rig.producers["video"].id]
    dropped: list[int] = []

    def lose_one(packet: bytes) -> bool:
        ssrc = int.from_bytes(packet[8:12], "big")
        if not dropped and ssrc == pipe_consumer.ssrc:
            dropped.append(int.from_bytes(packet[2:4], "big"))
            return True
        return False

    end_a.impairment = lose_one
    await _until(lambda: bool(dropped), timeout=5)
    received_at_drop = len(sub.seqs(video))
    await _until(lambda: len(sub.seqs(video)) > received_at_drop + 15, timeout=10)
    await _until(lambda: pipe_consumer.retransmissions > 0, timeout=5)
    assert video.nacks_sent > 0, "B's piped producer NACKed the hole upstream"
    assert video.rtx_received > 0, "the retransmission came back over the pipe as RTX"

    def missing() -> list[int]:
        window = sub.seqs(video)[received_at_drop - 20 :]
        offsets = {(s - window[0]) & 0xFFFF for s in window}
        top = max(o for o in offsets if o < 0x8000)
        return [o for o in range(top) if o not in offsets]

    with contextlib.suppress(TimeoutError):
        await _until(lambda: not missing(), timeout=3)
    assert not missing(), f"the subscriber never got {len(missing())} packet(s) lost on the pipe"
    # B's REMB for the piped video reached A and caps what A tells the publisher.
    source = rig.producers["video"]
    await _until(lambda: bool(source.remote_estimates), timeout=5)
    ((reported, _at),) = source.remote_estimates.values()
    assert 0 < reported <= rig.room_b.router.max_publish_bitrate_bps
    assert source.capped_estimate(10**9) == reported
    # A low estimate from B is what the publisher's REMB says.
    rembs: list[int] = []
    publish_transport = source.transport
    send_remb = publish_transport.send_remb  # type: ignore[attr-defined]

    def record(producer: Producer, bitrate: int) -> None:
        rembs.append(bitrate)
        send_remb(producer, bitrate)

    monkeypatch.setattr(publish_transport, "send_remb", record)
    # As if a second router reported a low estimate over its own pipe (B's own reports keep
    # overwriting B's entry every second).
    source.remote_estimates["PC_second_router"] = (150_000, time.monotonic())
    await _until(lambda: 150_000 in rembs, timeout=5)


async def test_last_consumer_on_b_closes_the_pipe(rig: Rig) -> None:
    audio = await rig.pipe("audio")
    source = rig.producers["audio"]
    end_a, end_b = _pipe_ends(rig)
    first = await rig.subscriber("one", counting=True)
    second = await rig.subscriber("two", counting=True)
    c1 = first.participant.subscribe(audio)
    c2 = second.participant.subscribe(audio)
    assert c1 is not None and c2 is not None
    await _until(lambda: len(first.seqs(audio)) > 10 and len(second.seqs(audio)) > 10, 10)
    assert any(isinstance(c, PipeConsumer) for c in source.consumers)
    c1.close()
    assert not audio.closed, "one consumer is left on B: the pipe stays"
    c2.close()
    assert audio.closed, "the last consumer on B went: the piped producer closes"
    assert source.id not in rig.room_b.router.producers
    assert not any(isinstance(c, PipeConsumer) for c in source.consumers), "A stopped piping"
    assert not end_a.consumers and not end_b.producers
    assert not source.closed, "the publisher's producer itself lives on"
    # A new subscriber pipes it again.
    again = await rig.pipe("audio")
    assert again is not audio and not again.closed
    third = await rig.subscriber("three", counting=True)
    third.participant.subscribe(again)
    await _until(lambda: len(third.seqs(again)) > 10, timeout=10)


async def test_mute_and_close_travel_over_the_pipe(rig: Rig) -> None:
    audio = await rig.pipe("audio")
    sub = await rig.subscriber("listener", counting=True)
    sub.participant.subscribe(audio)
    await _until(lambda: len(sub.seqs(audio)) > 10, timeout=10)
    source = rig.producers["audio"]
    source.set_paused(True)
    assert audio.paused, "mute travelled to B"
    source.set_paused(False)
    assert not audio.paused, "unmute travelled to B"
    count = len(sub.seqs(audio))
    await _until(lambda: len(sub.seqs(audio)) > count + 10, timeout=5)
    source.close()
    assert audio.closed and not sub.participant.subscriptions, "close travelled to B"


async def test_recreated_pipe_keeps_subscriber_sequence_numbers_continuous(rig: Rig) -> None:
    audio = await rig.pipe("audio")
    sub = await rig.subscriber("listener", counting=True)
    consumer = sub.participant.subscribe(audio)
    assert consumer is not None
    await _until(lambda: len(sub.seqs(audio)) > 20, timeout=10)
    end_a, end_b = _pipe_ends(rig)
    old_pipe_ssrc = audio.ssrc
    # The A end goes away (its worker died): B keeps the piped producer and its consumers.
    await end_b.close(keep_producers=True)
    await end_a.close()
    assert not audio.closed and audio.id in rig.room_b.router.producers
    before = len(sub.seqs(audio))
    await asyncio.sleep(0.3)
    again = await rig.pipe("audio")
    assert again is audio, "the recreated pipe resumes the same producer on B"
    assert audio.ssrc != old_pipe_ssrc, "a new pipe brings a new SSRC"
    await _until(lambda: len(sub.seqs(audio)) > before + 20, timeout=10)
    seqs = sub.seqs(audio)
    assert sub.participant.subscriptions[audio.id] is consumer
    assert _largest_step(seqs) <= 3, "sequence numbers jumped when the pipe was recreated"
    assert set(sub.sink.seqs) == {consumer.ssrc}  # type: ignore[union-attr]


async def test_srtp_gcm_pipe_carries_media(rig: Rig) -> None:
    audio = await rig.pipe("audio", enable_srtp=True)
    end_a, end_b = _pipe_ends(rig)
    assert end_a.srtp_enabled and end_b.srtp_enabled
    sub = await rig.subscriber("listener")
    sub.participant.subscribe(audio)
    await _until(lambda: "audio" in sub.tracks, timeout=10)
    samples = await collect_audio(sub.tracks["audio"], 1.0)
    got = dominant_frequency(samples[len(samples) // 2 :])
    assert abs(got - TONE_HZ) < 15, f"heard {got:.0f} Hz through the SRTP pipe"
    assert end_b.counters()["pipe_dropped"] == 0


async def test_srtp_pipe_with_a_wrong_key_drops_and_counts(rig: Rig) -> None:
    end_a = await rig.room_a.router.create_pipe_transport(enable_srtp=True)
    end_b = await rig.room_b.router.create_pipe_transport(enable_srtp=True)
    end_a.connect(end_b.local_parameters())
    wrong = PipeTransportParameters(end_a.listen_ip, end_a.port, os.urandom(28))
    for bad, error in (
        (PipeTransportParameters("pipe.example", 5000, wrong.srtp_key), ValueError),
        (PipeTransportParameters("127.0.0.1", 0, wrong.srtp_key), ValueError),
        (PipeTransportParameters("127.0.0.1", 5000, b"short"), ValueError),
        (PipeTransportParameters("127.0.0.1", 5000, None), InvalidStateError),
    ):
        with pytest.raises(error):
            end_b.connect(bad)
    end_b.connect(wrong)
    piped = end_b.produce(end_a.consume(rig.producers["audio"]))
    await _until(lambda: end_b.counters_.drop_reasons.get("srtp", 0) > 20, timeout=5)
    assert piped.packets_received == 0, "nothing decrypted with the wrong key reached B"
    assert end_b.counters()["pipe_dropped"] >= 20
    assert rig.producers["audio"].packets_received > 0 and not piped.closed


async def test_hostile_datagrams_are_dropped_and_counted(rig: Rig) -> None:
    audio = await rig.pipe("audio")
    _end_a, end_b = _pipe_ends(rig)
    await _until(lambda: audio.packets_received > 5, timeout=5)
    assert end_b.remote is not None
    # A stranger sends a packet that looks exactly like the pipe's own RTP.
    forged = bytes([0x80, 111, 0, 1, 0, 0, 0, 1]) + (audio.ssrc or 0).to_bytes(4, "big") + b"x"
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for payload in (forged, b"", b"\xff" * 3, os.urandom(200)):
            stranger.sendto(payload, ("127.0.0.1", end_b.port))
    finally:
        stranger.close()
    await _until(lambda: end_b.counters_.drop_reasons.get("stranger", 0) >= 3, timeout=5)
    # Truncated and garbage datagrams from the remote address itself.
    remote = end_b.remote
    received = audio.packets_received
    for junk in (
        b"\x80",
        b"\x80\x6f\x00",
        b"\x00" * 40,
        b"\x80\xc9\x00\x07" + b"\xff" * 4,  # RTCP RR whose length overruns the datagram
        b"\x81\xcd\x00\x01\x00\x00\x00\x01",  # RTPFB NACK cut before its media SSRC
        bytes([0x90, 111, 0, 9]) + (audio.ssrc or 0).to_bytes(4, "big") * 2 + b"\xbe\xde\xff",
        bytes([0x80, 111, 0, 9, 0, 0, 0, 1, 0xDE, 0xAD, 0xBE, 0xEF]),  # unknown SSRC
    ):
        end_b.datagram_received(junk, remote)
    assert end_b.counters()["pipe_dropped"] >= 3 + 5
    assert audio.packets_received <= received + 1, "garbage was not forwarded as media"
    assert not audio.closed and not end_b.closed
    count = audio.packets_received
    await _until(lambda: audio.packets_received > count + 5, timeout=5)
