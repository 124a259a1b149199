"""Benchmark peers: a raw-RTP Opus publisher and count-only subscribers.

The publisher sends real Opus (encoded once, up front, by aiortc's encoder from a tone plus
noise, so every payload is unique) straight over SRTP at 50 packets/s, recording the send time
of each payload. Subscribers count packets without decoding; a few "probes" also keep each
payload's arrival time so end-to-end latency can be matched payload by payload.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from dataclasses import dataclass, field

import av
import numpy as np
from aiortc import RTCRtpTransceiver, RTCSessionDescription
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from sfu import _aiortc_adapter as adapter
from sfu.rtp.header import build_extension_block, build_rtp_header

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=96)


def encode_opus_frames(count: int, frequency: float = 440.0, seed: int = 7) -> list[bytes]:
    """``count`` real Opus payloads of 20 ms (tone + noise, so each payload is unique)."""
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


@dataclass
class _Negotiated:
    rtp: adapter.NegotiatedRtp | None = None
    raw: adapter.RawRtpTransport | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class _PublisherSink(adapter.NullRtpSink):
    def __init__(self, state: _Negotiated) -> None:
        self.state = state

    def on_send_parameters(
        self, transceiver: RTCRtpTransceiver, rtp: adapter.NegotiatedRtp
    ) -> None:
        self.state.rtp = rtp
        self.state.raw = adapter.raw_transport(transceiver)
        self.state.ready.set()


class RawOpusPublisher:
    """Publishes one Opus track over the signaling protocol and sends raw RTP at 50 pps.

    ``send_times`` maps payload bytes to their monotonic send times (s); payloads repeat
    every ``len(payloads)`` packets, so an arrival is matched to the latest send before it.
    """

    def __init__(self, payloads: list[bytes]) -> None:
        self.payloads = payloads
        self.state = _Negotiated()
        self.pc = adapter.ForwardingPeerConnection(
            _PublisherSink(self.state), adapter.make_configuration([])
        )
        self.send_times: dict[bytes, list[float]] = {}
        self.sent = 0
        self._task: asyncio.Task[None] | None = None

    async def offer(self) -> str:
        """Our publish offer (one sendonly Opus m-line)."""
        self.pc.addTransceiver("audio", direction="sendonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def answer(self, sdp: str) -> None:
        """Apply the server's answer and wait until the transport is connected."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        await asyncio.wait_for(self.state.ready.wait(), 20)

    def start(self) -> None:
        """Start sending every 20 ms."""
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        rtp, raw = self.state.rtp, self.state.raw
        assert rtp is not None and raw is not None and rtp.ssrc is not None
        pt = int(next(c.payloadType for c in rtp.codecs if c.mimeType.lower() == "audio/opus") or 0)
        mid_id = rtp.header_extensions.get(adapter.URI_MID, 0)
        level_id = rtp.header_extensions.get(adapter.URI_AUDIO_LEVEL, 0)
        elements = []
        if mid_id:
            elements.append((mid_id, rtp.mid.encode()))
        if level_id:
            elements.append((level_id, bytes([0x80 | 30])))
        ext = build_extension_block(elements)
        seq, ts = 1000, 5000
        start = time.monotonic()
        i = 0
        while True:
            payload = self.payloads[i % len(self.payloads)]
            now = time.monotonic()
            packet = build_rtp_header(i == 0, pt, seq, ts, rtp.ssrc, bool(ext)) + ext + payload
            self.send_times.setdefault(payload, []).append(now)
            raw.send_rtp(packet)
            self.sent += 1
            seq = (seq + 1) & 0xFFFF
            ts = (ts + 960) & 0xFFFFFFFF
            i += 1
            delay = start + i * 0.02 - time.monotonic()
            await asyncio.sleep(max(0.0, delay))

    async def stop(self) -> None:
        """Stop sending and close."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.pc.close()
