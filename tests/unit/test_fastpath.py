"""The compiled fan-out (``sfu._fastpath``, issue 14) against the pure-Python path.

Hypothesis drives two identical rigs in lockstep, one per path, with the same generated
publisher packets (real ones, truncated ones and garbage), the same control events (pause,
mute, producer gap, NACKs) and the same SRTP keys. Each consumer's SRTP datagrams are captured
on a local UDP socket; the two paths must send byte-identical datagrams in the same order, and
nothing may raise. The Python path protects with pylibsrtp (aiortc's SRTP binding), the
compiled one with Debian's libsrtp2, so this also checks the two SRTP contexts agree.

Retransmissions: the Python path resends the packet it stored per consumer, the compiled path
rebuilds it from the producer's ring of originals (one copy per producer). They agree as long
as a publisher never reuses a sequence number for other content and the packets asked for are
among the last 512 of the producer; the generated publisher keeps to that.

Clocks are fakes (aiortc's ms clock, ``time.monotonic`` / ``time.time`` as the consumer and
producer modules see them) so that timestamps after a gap and abs-send-time values do not
depend on when each rig ran.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pylibsrtp import Policy, Session

import sfu.consumer as consumer_module
import sfu.producer as producer_module
from sfu import _aiortc_adapter as adapter
from sfu import fastpath
from sfu._aiortc_adapter import URI_ABS_SEND_TIME, URI_AUDIO_LEVEL, URI_MID, NegotiatedRtp
from sfu.consumer import Consumer
from sfu.producer import Producer
from sfu.rtp.munger import RtpMunger
from tests.support.fakes import FakeTransport

assert fastpath.available(), "sfu._fastpath is not built (scripts/test.sh installs libsrtp2-dev)"
native: Any = fastpath.native

PUB_SSRC, PUB_RTX_SSRC = 1111, 2222
PUB_CODECS = {
    "audio": [
        RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
    ],
    "video": [
        RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96),
        RTCRtpCodecParameters(
            mimeType="video/rtx", clockRate=90000, payloadType=97, parameters={"apt": 96}
        ),
    ],
}
SUB_CODECS = {
    "audio": [
        RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=109)
    ],
    "video": [
        RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=100),
        RTCRtpCodecParameters(
            mimeType="video/rtx", clockRate=90000, payloadType=101, parameters={"apt": 100}
        ),
    ],
}
PUB_EXT = {"audio": {URI_MID: 4, URI_AUDIO_LEVEL: 1}, "video": {URI_MID: 4, URI_ABS_SEND_TIME: 2}}
# Consumer 0 gets mid + the extra element, 1 only mid (a long one), 2 no extensions at all
# (and, for video, no RTX).
SUB_EXTS: list[dict[str, dict[str, int]]] = [
    {"audio": {URI_MID: 1, URI_AUDIO_LEVEL: 2}, "video": {URI_MID: 1, URI_ABS_SEND_TIME: 3}},
    {"audio": {URI_MID: 9}, "video": {URI_MID: 9}},
    {"audio": {}, "video": {}},
]
SUB_MIDS = ["3", "abcdefghijklmnop", "7"]
PROFILES = [
    (Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30),
    (Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 28),
    (Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 44),
]
VP8_KEY = bytes([0x10, 0x00, 0x00, 0x9D, 0x01, 0x2A]) + bytes(40)  # S=1, PID 0, P=0: keyframe
VP8_DELTA = bytes([0x10, 0x01]) + bytes(40)  # P=1: delta frame


class Clock:
    """One fake clock for aiortc's ms clock, ``time.monotonic`` and ``time.time``."""

    def __init__(self) -> None:
        self.s = 1000.0

    def ms(self, *_: Any) -> int:
        return int(self.s * 1000)

    def now(self) -> float:
        return self.s


class UdpSrtpRaw:
    """A subscriber transport for the Python path: protects with pylibsrtp exactly as
    aiortc's RTCDtlsTransport policy does and sends on a real UDP socket."""

    def __init__(self, profile: int, key: bytes, sock: socket.socket, dest: tuple[str, int]):
        policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile)
        policy.allow_repeat_tx = True
        policy.window_size = 1024
        self.session = Session(policy)
        self.sock = sock
        self.dest = dest

    def send_rtp(self, data: bytes) -> None:
        self.sock.sendto(self.session.protect(data), self.dest)

    def send_rtcp(self, data: bytes) -> None:
        self.sock.sendto(self.session.protect_rtcp(data), self.dest)

    def native_sender(self) -> Any:
        """No compiled sender unless the rig gives it one (:func:`sfu.fastpath.sender_for`)."""
        return None


@dataclass
class Rig:
    """One producer and its consumers, on one forwarding path."""

    producer: Producer
    consumers: list[Consumer]
    receivers: list[socket.socket]
    senders: list[socket.socket] = field(default_factory=list)

    def drain(self) -> list[list[bytes]]:
        out: list[list[bytes]] = []
        for rx in self.receivers:
            got: list[bytes] = []
            for _ in range(10_000):
                try:
                    got.append(rx.recv(70000))
                except BlockingIOError:
                    break
            out.append(got)
        return out

    def close(self) -> None:
        self.producer.close()
        for s in self.receivers + self.senders:
            s.close()


def _udp_pair() -> tuple[socket.socket, socket.socket]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.setblocking(False)
    return rx, tx


def make_rig(
    kind: str,
    fast: bool,
    keys: list[tuple[int, bytes]],
    init: list[tuple[tuple[Any, ...], int]],
) -> Rig:
    fastpath.configure(fast)
    producer = Producer(
        transport=cast("Any", FakeTransport()), participant_sid="PA_p", mid="0", kind=kind
    )
    assert (producer.fanout is not None) == fast
    producer.on_negotiated(
        NegotiatedRtp(
            mid="0",
            kind=kind,
            codecs=list(PUB_CODECS[kind]),
            header_extensions=dict(PUB_EXT[kind]),
            ssrc=PUB_SSRC,
            rtx_ssrc=PUB_RTX_SSRC if kind == "video" else None,
            rtcp_ssrc=9,
        )
    )
    rig = Rig(producer, [], [])
    for i, ((profile, key), (munger_state, rtx_seq)) in enumerate(zip(keys, init, strict=True)):
        rx, tx = _udp_pair()
        rig.receivers.append(rx)
        rig.senders.append(tx)
        transceiver = SimpleNamespace(
            sender=SimpleNamespace(_ssrc=0x10000 + i, _rtx_ssrc=0x20000 + i), kind=kind
        )
        consumer = Consumer(producer, cast("Any", FakeTransport()), cast("Any", transceiver))
        consumer.munger = RtpMunger.from_state(cast("Any", munger_state))
        consumer.rtx_seq = rtx_seq
        producer.consumers.append(consumer)
        raw = UdpSrtpRaw(profile, key, tx, rx.getsockname())
        if fast:
            sender = native.SrtpSender(profile, key)
            sender.set_route(tx.fileno(), rx.getsockname())
            raw.native_sender = lambda s=sender: s  # type: ignore[method-assign]
        consumer.on_negotiated(
            NegotiatedRtp(
                mid=SUB_MIDS[i],
                kind=kind,
                # consumer 2 negotiated no RTX: NACKed video goes out again on its media SSRC
                codecs=list(SUB_CODECS[kind])[: 1 if i == 2 else None],
                header_extensions=dict(SUB_EXTS[i][kind]),
                ssrc=consumer.ssrc,
                rtx_ssrc=consumer.rtx_ssrc,
                rtcp_ssrc=consumer.ssrc,
            ),
            cast("adapter.RawRtpTransport", raw),
        )
        assert consumer.native == fast
        rig.consumers.append(consumer)
    return rig


def pub_packet(kind: str, seq: int, ts: int, marker: bool, payload: bytes, level: int) -> bytes:
    """A publisher packet with mid and audio level (audio) or abs-send-time (video)."""
    hdr = struct.pack(
        "!BBHII",
        0x90,
        (0x80 if marker else 0) | (111 if kind == "audio" else 96),
        seq,
        ts,
        PUB_SSRC,
    )
    if kind == "audio":
        ext = bytes([0x40, ord("0"), 0x10, level & 0x7F])  # mid "0" (id 4), level (id 1)
    else:
        ext = bytes([0x40, ord("0"), 0x22, 1, 2, 3, 0, 0])  # mid, abs-send-time (id 2), pad
    return hdr + struct.pack("!HH", 0xBEDE, len(ext) // 4) + ext + payload


PACKET = st.tuples(
    st.just("pkt"),
    # seq step (negative: reordered / late); small enough that no example spans more than
    # the 512 packets the retransmission buffers keep (where the two paths evict differently)
    st.integers(-3, 7),
    st.integers(0, 4000),  # ts step
    st.booleans(),
    st.sampled_from(["key", "delta", "delta", "random"]),
    st.binary(max_size=120),
    st.integers(0, 127),
)
FIRST_KEYFRAME = ("pkt", 1, 960, True, "key", b"", 5)

OPS = st.one_of(
    PACKET,
    PACKET,
    PACKET,
    st.tuples(st.just("garbage"), st.binary(max_size=60)),
    # the last packet cut inside its header or extension block (a cut payload would be a
    # valid packet reusing a sequence number for other content, see test docstring)
    st.tuples(st.just("truncate"), st.integers(0, 19)),
    st.tuples(st.just("pause"), st.integers(0, 2), st.booleans()),
    st.tuples(st.just("mute"), st.booleans()),
    st.tuples(st.just("gap"), st.booleans()),
    st.tuples(st.just("nack"), st.integers(0, 2), st.lists(st.integers(-40, 2), max_size=6)),
    st.tuples(st.just("wait"), st.integers(1, 3000)),
)


_STEP = ("pkt", 2, 960, False, "delta", b"", 5)
WRAP_OPS = [_STEP, _STEP, ("pkt", -3, 0, False, "delta", b"", 5), ("nack", 0, [-4, -1]), _STEP]


def apply(rig: Rig, kind: str, op: tuple[Any, ...], state: dict[str, Any], clock: Clock) -> None:
    name = op[0]
    producer = rig.producer
    if name == "pkt":
        _, dseq, dts, marker, body, extra, level = op
        state["seq"] = (state["seq"] + dseq) & 0xFFFF
        state["ts"] = (state["ts"] + dts) & 0xFFFFFFFF
        payload = {"key": VP8_KEY, "delta": VP8_DELTA, "random": b"\x01"}[body] + extra
        # A sequence number seen before carries the same packet again (a duplicate or a
        # late copy): publishers never reuse one for other content.
        data = state["sent"].setdefault(
            state["seq"], pub_packet(kind, state["seq"], state["ts"], marker, payload, level)
        )
        state["last"] = data
        producer.receive_rtp(data, PUB_SSRC, clock.ms())
    elif name == "garbage":
        producer.receive_rtp(op[1], PUB_SSRC, clock.ms())
    elif name == "truncate":
        producer.receive_rtp(state["last"][: op[1]], PUB_SSRC, clock.ms())
    elif name == "pause":
        rig.consumers[op[1]].set_paused(op[2])
    elif name == "mute":
        producer.set_paused(op[1])
    elif name == "gap":
        for consumer in rig.consumers:
            consumer.on_producer_gap(op[1], 0.5)
    elif name == "nack":
        consumer = rig.consumers[op[1]]
        lost = [(consumer.munger.last_seq + d) & 0xFFFF for d in op[2]]
        consumer.retransmit(lost, now_ms=clock.ms())
    elif name == "wait":
        clock.s += op[1] / 1000


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    fake = Clock()
    monkeypatch.setattr(adapter, "now_ms", fake.ms)
    fake_time = SimpleNamespace(monotonic=fake.now, time=fake.now)
    monkeypatch.setattr(consumer_module, "time", fake_time)
    monkeypatch.setattr(producer_module, "time", fake_time)
    yield fake
    fastpath.configure(True)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    kind=st.sampled_from(["audio", "video"]),
    profile=st.sampled_from(PROFILES),
    seed=st.integers(0, 2**32 - 1),
    ops=st.lists(OPS, min_size=1, max_size=60),
    # first outgoing sequence number: random (< 0x8000) or a few packets before the wrap, so
    # the SRTP rollover counter increments within an example (RFC 3711 section 3.3.1)
    first_seq=st.one_of(st.none(), st.integers(0xFFFA, 0xFFFF)),
)
# Always: each GCM profile across the wrap, with a late packet and NACKs from before it.
@example(kind="audio", profile=PROFILES[1], seed=1, ops=WRAP_OPS, first_seq=0xFFFC)
@example(kind="video", profile=PROFILES[2], seed=2, ops=WRAP_OPS, first_seq=0xFFFE)
async def test_both_paths_send_byte_identical_srtp(
    kind: str,
    profile: tuple[int, int],
    seed: int,
    ops: list[tuple[Any, ...]],
    first_seq: int | None,
    clock: Clock,
) -> None:
    rnd = random.Random(seed)
    keys = [(profile[0], rnd.randbytes(profile[1])) for _ in SUB_MIDS]
    init = [(_munger_state(first_seq), rnd.randrange(1 << 15)) for _ in SUB_MIDS]
    rigs = [make_rig(kind, fast, keys, init) for fast in (False, True)]
    states: list[dict[str, Any]] = [
        {"seq": seed & 0xFFFF, "ts": seed, "last": b"", "sent": {}} for _ in rigs
    ]
    try:
        for i, op in enumerate([FIRST_KEYFRAME, *ops]):
            for rig, state in zip(rigs, states, strict=True):
                apply(rig, kind, op, state, clock)
            python_out, native_out = (rig.drain() for rig in rigs)
            if i == 0:  # every consumer got the first (key)frame, on both paths
                assert [len(got) for got in python_out] == [1, 1, 1]
            assert native_out == python_out, f"after {op[0]}"
        for slow, fast in zip(rigs[0].consumers, rigs[1].consumers, strict=True):
            assert (fast.packets_sent, fast.bytes_sent) == (slow.packets_sent, slow.bytes_sent)
            assert fast.sender_report() == slow.sender_report()
    finally:
        for rig in rigs:
            rig.close()


def _munger_state(first_seq: int | None) -> tuple[Any, ...]:
    state = RtpMunger().export_state()
    return state if first_seq is None else (first_seq, *state[1:])


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=80),
    start=st.integers(-5, 100),
    end=st.integers(-5, 100),
    seq=st.integers(-2, 70000),
    ts=st.integers(-2, 2**33),
    extra=st.one_of(st.none(), st.binary(max_size=20)),
    prefix=st.binary(max_size=40),
    pad=st.binary(max_size=6),
)
def test_native_calls_reject_out_of_range_input(
    data: bytes,
    start: int,
    end: int,
    seq: int,
    ts: int,
    extra: bytes | None,
    prefix: bytes,
    pad: bytes,
) -> None:
    """Out-of-range offsets, fields and prefixes raise ValueError/OverflowError; in range,
    a datagram goes out. Nothing reads or writes out of bounds (scripts/asan.sh runs this
    under AddressSanitizer)."""
    rx, tx = _udp_pair()
    try:
        sender = native.SrtpSender(PROFILES[0][0], bytes(30))
        sender.set_route(tx.fileno(), rx.getsockname())
        fanout = native.FanOut(16)
        consumer = fanout.add(sender, 1234, 1, 2)
        try:
            consumer.configure(100, prefix, pad, prefix, 3)
        except ValueError:
            assert len(prefix) > 32 or len(pad) > 4
            consumer.configure(100, b"", b"", None, 0)
        consumer.active = True
        try:
            n = fanout.forward(data, start, end, True, seq, ts, extra, True)
        except (ValueError, OverflowError):
            ok = 0 <= start <= end <= len(data) and 0 <= seq <= 0xFFFF and 0 <= ts < 2**32
            assert not ok or (extra is not None and len(extra) > 16)
            return
        assert n == 1
        # A prefix that is no valid extension block may make libsrtp refuse the packet: it
        # is then counted as dropped, as aiortc's send would drop it.
        if sender.dropped == 0:
            assert len(rx.recv(70000)) >= 12 + 10 + (end - start)
        else:
            assert sender.dropped == 1 and sender.packets_sent == 0
        rebuilt = consumer.rebuild(consumer.last_seq)
        assert rebuilt is not None and rebuilt.endswith(data[start:end])
    finally:
        rx.close()
        tx.close()


def test_srtp_sender_protects_like_pylibsrtp() -> None:
    """The compiled context agrees with aiortc's (pylibsrtp) for each DTLS-SRTP profile, both
    on the system libsrtp2 it links (Debian's, on NSS) and on pylibsrtp's libsrtp2 (OpenSSL),
    which it uses when loaded; a packet shorter than an RTP header and a key of the wrong
    length are refused with ValueError, a library that is no libsrtp2 with OSError."""
    import pylibsrtp._binding as binding

    try:
        for library in (None, binding.__file__):
            version = native.set_srtp_library(library)
            assert version.startswith("libsrtp2 2.")
            for profile, key_len in PROFILES:
                key = os.urandom(key_len)
                policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile)
                policy.allow_repeat_tx = True
                session = Session(policy)
                sender = native.SrtpSender(profile, key)
                for seq in (0, 1, 65535, 0, 7):  # across a rollover and back
                    packet = struct.pack("!BBHII", 0x80, 96, seq, seq * 10, 42) + os.urandom(50)
                    assert sender.protect(packet) == session.protect(packet)
                with pytest.raises(ValueError):
                    sender.protect(b"\x80" * 11)
            with pytest.raises(ValueError):
                native.SrtpSender(PROFILES[0][0], b"short")
        with pytest.raises(OSError):
            native.set_srtp_library(socket.__file__)
    finally:
        native.set_srtp_library(binding.__file__ if "pylibsrtp" in fastpath.srtp_library else None)
    assert native.srtp_library() in fastpath.srtp_library


class _PlainConsumer:
    """A consumer the compiled fan-out does not serve (as a pipe consumer, sfu.pipe): it keeps
    the sequence numbers it was handed."""

    def __init__(self) -> None:
        self.seqs: list[int] = []

    def forward(
        self, marker: bool, seq: int, ts: int, payload: bytes, extra: object, keyframe: bool
    ) -> None:
        self.seqs.append(seq)

    def close(self) -> None:
        pass


async def test_one_python_consumer_does_not_put_the_compiled_ones_on_a_python_loop(
    clock: Clock,
) -> None:
    """A producer with compiled consumers and one that is not (the speaker's worker of a room
    split over two workers: its pipe consumer) hands each packet to the compiled fan-out once
    and makes a Python call only for the other one: no per-packet Python call per compiled
    consumer. Everyone still gets every packet, also after the consumer list changes."""
    rnd = random.Random(7)
    profile = PROFILES[0]
    keys = [(profile[0], rnd.randbytes(profile[1])) for _ in SUB_MIDS]
    init = [(RtpMunger().export_state(), 0) for _ in SUB_MIDS]
    rig = make_rig("audio", True, keys, init)
    pipe, late = _PlainConsumer(), _PlainConsumer()
    rig.producer.consumers.append(cast("Any", pipe))
    calls: list[str] = []

    def count(frame: Any, event: str, arg: object) -> None:
        if event == "call" and frame.f_code.co_filename == consumer_module.__file__:
            calls.append(frame.f_code.co_name)  # Consumer.forward, Consumer.native, ...

    try:
        for seq in range(1, 21):
            if seq == 11:  # the list changes: a second plain consumer joins
                rig.producer.consumers.append(cast("Any", late))
            data = pub_packet("audio", seq, seq * 960, False, b"\x01\x02\x03", 5)
            sys.setprofile(count)
            try:
                rig.producer.receive_rtp(data, PUB_SSRC, clock.ms())
            finally:
                sys.setprofile(None)
        assert "forward" not in calls  # no Consumer.forward per packet
        assert len(calls) <= 2 * len(SUB_MIDS)  # looked at once per consumer list only
        assert pipe.seqs == list(range(1, 21))
        assert late.seqs == list(range(11, 21))
        assert [len(got) for got in rig.drain()] == [20, 20, 20]
        assert rig.producer.packets_forwarded == 20 * 4 + 10
    finally:
        rig.close()


GCM_PROFILES = PROFILES[1:]


def _pylibsrtp_tx(profile: int, key: bytes) -> Session:
    """aiortc's outbound SRTP session (RTCDtlsTransport's tx policy)."""
    policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile)
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return Session(policy)


def _protect_or_none(protect: Any, packet: bytes) -> bytes | None:
    try:
        return cast("bytes", protect(packet))
    except Exception:  # pylibsrtp raises pylibsrtp.Error, the compiled sender ValueError
        return None


def test_gcm_sender_protects_natively_and_matches_pylibsrtp_known_answers() -> None:
    """AEAD_AES_128_GCM and AEAD_AES_256_GCM senders protect with OpenSSL's AES-GCM directly
    (RFC 7714, ``engine == "evp"``), on pylibsrtp's library and on the system one, and their
    datagrams equal pylibsrtp's for fixed master keys (a known answer computed by libsrtp 2.x):
    CSRCs and a header extension in the AAD, an empty payload, a rollover, a repeat."""
    import pylibsrtp._binding as binding

    csrc_ext = (
        struct.pack("!BBHII", 0x92, 0xE0, 65535, 1234, 0xCAFEBABE)
        + struct.pack("!II", 7, 8)  # 2 CSRCs
        + struct.pack("!HH", 0xBEDE, 1)
        + bytes([0x10, 0x55, 0, 0])
    )
    packets = [
        struct.pack("!BBHII", 0x80, 111, 1, 960, 0x01020304) + bytes(range(40)),
        struct.pack("!BBHII", 0x80, 111, 2, 1920, 0x01020304),  # empty payload
        csrc_ext + b"payload",
        struct.pack("!BBHII", 0x92, 0x60, 0, 1234, 0xCAFEBABE) + csrc_ext[12:] + b"x",  # ROC 1
        csrc_ext + b"payload",  # a repeat (allow_repeat_tx), ROC 0 again
    ]
    try:
        for library in (binding.__file__, None):
            native.set_srtp_library(library)
            assert native.set_native_gcm(True)
            for profile, key_len in GCM_PROFILES:
                key = bytes((7 * i + key_len) & 0xFF for i in range(key_len))
                sender = native.SrtpSender(profile, key)
                assert sender.engine == "evp"
                session = _pylibsrtp_tx(profile, key)
                for packet in packets:
                    out = sender.protect(packet)
                    assert out == session.protect(packet)
                    assert len(out) == len(packet) + 16  # the GCM tag (RFC 7714 section 7)
                assert sender.gcm_ssrcs == 2
    finally:
        native.set_srtp_library(binding.__file__ if "pylibsrtp" in fastpath.srtp_library else None)
    # AES_CM_128_HMAC_SHA1_80 stays with libsrtp
    assert native.SrtpSender(PROFILES[0][0], bytes(30)).engine == "libsrtp"


SEQ_STEP = st.one_of(
    st.integers(-3, 5),  # in order, reordered, repeated
    st.sampled_from([-1023, -1024, -1025, -5000, 1000, 32767, 32768, 32769, -32768, 65535]),
    st.integers(-70000, 70000),
)
PROTECT_OPS = st.lists(
    st.tuples(
        st.integers(0, 39),  # one of 40 SSRCs: more than the sender's native table
        SEQ_STEP,
        st.integers(0, 15),  # CSRC count
        st.one_of(st.none(), st.integers(0, 3)),  # extension length in 32-bit words
        st.binary(max_size=48),
        st.integers(-6, 0),  # cut: a malformed header is refused by both alike
    ),
    min_size=1,
    max_size=120,
)


@settings(max_examples=60, deadline=None)
@given(
    profile=st.sampled_from(GCM_PROFILES),
    seed=st.integers(0, 2**32 - 1),
    starts=st.lists(st.integers(0, 0xFFFF), min_size=40, max_size=40),
    ops=PROTECT_OPS,
)
def test_gcm_sender_index_handling_matches_libsrtp(
    profile: tuple[int, int], seed: int, starts: list[int], ops: list[tuple[Any, ...]]
) -> None:
    """The compiled GCM sender keeps libsrtp's per-SSRC packet index (RFC 3711 section 3.3.1:
    rollover counter and highest sequence number, srtp_rdbx_*): sequence wraps, repeats,
    jumps of half the sequence space, packets older than the 1024-packet window (refused by
    both), up to 40 SSRCs on one sender (beyond its table libsrtp takes over), CSRCs,
    extensions and truncated headers. Output and refusals equal pylibsrtp's, packet by
    packet."""
    rnd = random.Random(seed)
    key = rnd.randbytes(profile[1])
    sender = native.SrtpSender(profile[0], key)
    assert sender.engine == "evp"
    session = _pylibsrtp_tx(profile[0], key)
    seqs = list(starts)
    for n, (k, step, cc, ext_words, payload, cut) in enumerate(ops):
        seqs[k] = (seqs[k] + step) & 0xFFFF
        header = struct.pack(
            "!BBHII", 0x80 | cc | (0x10 if ext_words is not None else 0), 96, seqs[k], n, 0x5000 + k
        )
        header += b"".join(struct.pack("!I", 0x1000 + i) for i in range(cc))
        if ext_words is not None:
            header += struct.pack("!HH", 0xBEDE, ext_words) + bytes(4 * ext_words)
        packet = header + payload
        if cut < 0 and -cut > len(payload):  # cut into the header (or its extension)
            packet = packet[: len(packet) + cut - len(payload)]
        expected = _protect_or_none(session.protect, packet)
        assert _protect_or_none(sender.protect, packet) == expected, f"op {n}"
    assert sender.gcm_ssrcs <= 32
