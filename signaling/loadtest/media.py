"""Pre-encoded real media and a raw-RTP publisher for load tests and benchmarks.

Media is encoded once, up front, with aiortc's own encoders: Opus (20 ms frames of a tone plus
noise, so every payload is unique) and VP8 (a moving, noisy picture at ~500 kbit/s, 15 fps,
a keyframe at the start of every cycle). :class:`RawPublisher` publishes one Opus and/or one
VP8 m-line over the signaling protocol and sends the pre-encoded payloads as raw RTP over SRTP
(no encoder at run time), recording the send time of every payload so that probes can match
arrivals to sends byte for byte.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from aiortc import RTCRtpTransceiver, RTCSessionDescription
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from sfu import _aiortc_adapter as adapter
from sfu.rtp.header import build_extension_block, build_rtp_header

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=96)
VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)

AUDIO_PTIME_S = 0.02
VIDEO_FPS = 15
VIDEO_BITRATE = 500_000
SEND_TIMES_KEPT = 4  # send times kept per payload (payloads repeat once per cycle)


def encode_opus_frames(count: int, frequency: float = 440.0, seed: int = 7) -> list[bytes]:
    """``count`` real Opus payloads of 20 ms (tone + noise, so each payload is unique).

    Different ``frequency``/``seed`` give a different stream (every publisher needs its own
    payloads so that latency probes can tell them apart)."""
    encoder = get_encoder(OPUS)
    rng = np.random.default_rng(seed)
    out: list[bytes] = []
    samples = 960
    for i in range(count):
        t = (np.arange(samples) + i * samples) / 48000
        pcm = 8000 * np.sin(2 * np.pi * frequency * t) + rng.normal(0, 800, samples)
        stereo = np.repeat(pcm.astype(np.int16), 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
        frame.sample_rate = 48000
        frame.pts = i * samples
        frame.time_base = fractions.Fraction(1, 48000)
        payloads, _ts = encoder.encode(frame)
        out.extend(payloads)
    return out[:count]


def encode_vp8_frames(
    seconds: float = 2.0,
    *,
    fps: int = VIDEO_FPS,
    bitrate: int = VIDEO_BITRATE,
    width: int = 640,
    height: int = 360,
    seed: int = 1,
) -> list[list[bytes]]:
    """Real VP8 for ``seconds`` of video: one list of RTP payloads per frame (aiortc's
    packetization, VP8 payload descriptor included). Frame 0 is a keyframe; sending the list in
    a loop therefore gives a keyframe every ``seconds``."""
    encoder: Any = get_encoder(VP8)
    encoder.target_bitrate = bitrate
    rng = np.random.default_rng(seed)
    count = max(1, round(seconds * fps))
    yy, xx = np.mgrid[0:height, 0:width]
    base = rng.integers(0, 255, size=(height // 8 + 1, width // 8 + 1), dtype=np.uint8)
    blocks = np.kron(base, np.ones((8, 8), dtype=np.uint8))[:height, :width]
    frames: list[list[bytes]] = []
    for i in range(count):
        shift = i * 6 + seed * 40
        y = ((xx + shift) % 256 + (yy // 2)) % 256
        y = (0.6 * y + 0.4 * np.roll(blocks, shift, axis=1)).astype(np.uint8)
        y = np.clip(y.astype(np.int16) + rng.integers(-6, 7, size=y.shape), 0, 255)
        u = np.full((height // 2, width // 2), (seed * 37 + i) % 256, dtype=np.uint8)
        v = np.full((height // 2, width // 2), (seed * 91) % 256, dtype=np.uint8)
        yuv = np.concatenate([y.astype(np.uint8).reshape(-1), u.reshape(-1), v.reshape(-1)])
        frame = av.VideoFrame.from_ndarray(yuv.reshape(height * 3 // 2, width), format="yuv420p")
        frame.pts = i * (90000 // fps)
        frame.time_base = fractions.Fraction(1, 90000)
        payloads, _ts = encoder.encode(frame, force_keyframe=(i == 0))
        frames.append(payloads)
    return frames


@dataclass
class TrackSent:
    """What one published m-line has sent so far."""

    kind: str
    packets: int = 0
    bytes: int = 0
    started: float | None = None  # monotonic time of the first packet
    last: float | None = None  # monotonic time of the latest packet


@dataclass
class _Negotiated:
    rtp: dict[str, adapter.NegotiatedRtp] = field(default_factory=dict)  # kind -> parameters
    raw: adapter.RawRtpTransport | None = None
    expected: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class _PublisherSink(adapter.NullRtpSink):
    def __init__(self, state: _Negotiated) -> None:
        self.state = state

    def on_send_parameters(
        self, transceiver: RTCRtpTransceiver, rtp: adapter.NegotiatedRtp
    ) -> None:
        self.state.rtp[rtp.kind] = rtp
        self.state.raw = adapter.raw_transport(transceiver)
        if len(self.state.rtp) >= self.state.expected:
            self.state.ready.set()


class RawPublisher:
    """Publishes an Opus and/or a VP8 m-line and sends pre-encoded payloads as raw RTP.

    Audio: one packet every 20 ms. Video: every frame's packets back to back at ``fps``, the
    marker bit on the last packet of each frame, 90 kHz timestamps. Both loop over their
    payloads. ``send_times`` maps payload bytes to their latest monotonic send times (s); an
    arrival is matched to the latest send before it. ``tracks`` counts what each kind sent.
    """

    def __init__(
        self,
        audio: list[bytes] | None = None,
        video: list[list[bytes]] | None = None,
        *,
        fps: int = VIDEO_FPS,
    ) -> None:
        if not audio and not video:
            raise ValueError("a publisher needs audio or video payloads")
        self.audio = audio or []
        self.video = video or []
        self.fps = fps
        self.state = _Negotiated(expected=int(bool(self.audio)) + int(bool(self.video)))
        self.pc = adapter.ForwardingPeerConnection(
            _PublisherSink(self.state), adapter.make_configuration([])
        )
        self.send_times: dict[bytes, list[float]] = {}
        self.sent = 0
        self.tracks: dict[str, TrackSent] = {}
        self.kinds: list[str] = (["audio"] if self.audio else []) + (
            ["video"] if self.video else []
        )
        self._tasks: list[asyncio.Task[None]] = []

    def track_descriptions(self) -> list[dict[str, str]]:
        """The ``tracks`` of our publish offer (mids are "0", "1" in m-line order)."""
        return [
            {"mid": str(i), "kind": kind, "source": "microphone" if kind == "audio" else "camera"}
            for i, kind in enumerate(self.kinds)
        ]

    async def offer(self) -> str:
        """Our publish offer (one sendonly m-line per kind)."""
        for kind in self.kinds:
            self.pc.addTransceiver(kind, direction="sendonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def answer(self, sdp: str, timeout: float = 20) -> None:
        """Apply the server's answer and wait until the transport is connected."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        await asyncio.wait_for(self.state.ready.wait(), timeout)

    def start(self) -> None:
        """Start sending."""
        if self.audio:
            self._tasks.append(asyncio.ensure_future(self._run_audio()))
        if self.video:
            self._tasks.append(asyncio.ensure_future(self._run_video()))

    def _note_send(self, payload: bytes, now: float) -> None:
        times = self.send_times.get(payload)
        if times is None:
            self.send_times[payload] = [now]
        else:
            times.append(now)
            if len(times) > SEND_TIMES_KEPT:
                del times[0]

    def _prepare(self, kind: str, mime: str) -> tuple[adapter.RawRtpTransport, int, int, bytes]:
        rtp, raw = self.state.rtp[kind], self.state.raw
        assert raw is not None and rtp.ssrc is not None
        pt = int(next(c.payloadType for c in rtp.codecs if c.mimeType.lower() == mime) or 0)
        mid_id = rtp.header_extensions.get(adapter.URI_MID, 0)
        level_id = rtp.header_extensions.get(adapter.URI_AUDIO_LEVEL, 0)
        elements = []
        if mid_id:
            elements.append((mid_id, rtp.mid.encode()))
        if level_id and kind == "audio":
            elements.append((level_id, bytes([0x80 | 30])))
        self.tracks[kind] = TrackSent(kind=kind)
        return raw, pt, rtp.ssrc, build_extension_block(elements)

    async def _run_audio(self) -> None:
        raw, pt, ssrc, ext = self._prepare("audio", "audio/opus")
        track = self.tracks["audio"]
        seq, ts = 1000, 5000
        start = time.monotonic()
        track.started = start
        i = 0
        while True:
            payload = self.audio[i % len(self.audio)]
            now = time.monotonic()
            packet = build_rtp_header(i == 0, pt, seq, ts, ssrc, bool(ext)) + ext + payload
            self._note_send(payload, now)
            raw.send_rtp(packet)
            self.sent += 1
            track.packets += 1
            track.bytes += len(packet)
            track.last = now
            seq = (seq + 1) & 0xFFFF
            ts = (ts + 960) & 0xFFFFFFFF
            i += 1
            delay = start + i * AUDIO_PTIME_S - time.monotonic()
            await asyncio.sleep(max(0.0, delay))

    async def _run_video(self) -> None:
        raw, pt, ssrc, ext = self._prepare("video", "video/vp8")
        track = self.tracks["video"]
        seq, ts = 2000, 7000
        step = 90000 // self.fps
        start = time.monotonic()
        track.started = start
        i = 0
        while True:
            payloads = self.video[i % len(self.video)]
            now = time.monotonic()
            for n, payload in enumerate(payloads):
                marker = n == len(payloads) - 1
                packet = build_rtp_header(marker, pt, seq, ts, ssrc, bool(ext)) + ext + payload
                self._note_send(payload, now)
                raw.send_rtp(packet)
                self.sent += 1
                track.packets += 1
                track.bytes += len(packet)
                seq = (seq + 1) & 0xFFFF
            track.last = now
            ts = (ts + step) & 0xFFFFFFFF
            i += 1
            delay = start + i / self.fps - time.monotonic()
            await asyncio.sleep(max(0.0, delay))

    async def stop_sending(self) -> None:
        """Stop the send loops (the peer connection stays open)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks = []

    async def stop(self) -> None:
        """Stop sending and close."""
        await self.stop_sending()
        await self.pc.close()


class RawOpusPublisher(RawPublisher):
    """One Opus track at 50 packets/s (the fan-out benchmark's speaker)."""

    def __init__(self, payloads: list[bytes]) -> None:
        super().__init__(audio=payloads)
