"""Synthetic media: a sine tone and a solid-colour video, and checks that identify them.

Each publisher in a test gets a distinct frequency and colour; a subscriber that decodes the
wrong stream (a mix-up of SSRCs or producers) fails the FFT or colour check.
"""

from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

AUDIO_RATE = 48000
AUDIO_PTIME = 0.02
VIDEO_CLOCK = 90000


class ToneTrack(MediaStreamTrack):
    """A mono sine tone at ``frequency`` Hz, 20 ms frames of s16 at 48 kHz, paced in real time."""

    kind = "audio"

    def __init__(self, frequency: float, amplitude: float = 0.5) -> None:
        super().__init__()
        self.frequency = frequency
        self.amplitude = amplitude
        self._samples = int(AUDIO_RATE * AUDIO_PTIME)
        self._pts = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self._pts / AUDIO_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        t = (np.arange(self._samples) + self._pts) / AUDIO_RATE
        pcm = (self.amplitude * 32767 * np.sin(2 * np.pi * self.frequency * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._pts += self._samples
        return frame


class ColorTrack(MediaStreamTrack):
    """A solid ``rgb`` colour video, 320x240 at ``fps`` frames per second."""

    kind = "video"

    def __init__(self, rgb: tuple[int, int, int], fps: int = 15) -> None:
        super().__init__()
        self.rgb = rgb
        self.fps = fps
        self._count = 0
        self._start: float | None = None
        image = np.zeros((240, 320, 3), dtype=np.uint8)
        image[:, :] = rgb
        self._image = image

    def set_color(self, rgb: tuple[int, int, int]) -> None:
        """Show ``rgb`` from the next frame on (the stream, its timestamps and its encoder go
        on; ``replaceTrack`` with a new track would restart the timestamps)."""
        self.rgb = rgb
        self._image[:, :] = rgb

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self._count / self.fps - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        frame = av.VideoFrame.from_ndarray(self._image, format="rgb24")
        frame.pts = int(self._count * VIDEO_CLOCK / self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._count += 1
        return frame


def dominant_frequency(samples: np.ndarray, rate: int = AUDIO_RATE) -> float:
    """The strongest frequency (Hz) of a mono signal, by FFT with a Hann window."""
    samples = samples.astype(np.float64)
    samples -= samples.mean()
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    return float(freqs[int(np.argmax(spectrum[1:])) + 1])


async def collect_audio(track: MediaStreamTrack, seconds: float, timeout: float = 15) -> np.ndarray:
    """Decode ``seconds`` of audio from a received track; returns mono float samples."""
    chunks: list[np.ndarray] = []
    total = 0
    wanted = int(seconds * AUDIO_RATE)

    async def run() -> None:
        nonlocal total
        while total < wanted:
            frame = await track.recv()
            data = frame.to_ndarray()
            channels = len(frame.layout.channels)
            mono = data.reshape(-1, channels)[:, 0] if data.ndim == 2 else data
            if frame.sample_rate != AUDIO_RATE:
                raise AssertionError(f"unexpected sample rate {frame.sample_rate}")
            chunks.append(mono.astype(np.float64))
            total += len(mono)

    await asyncio.wait_for(run(), timeout)
    return np.concatenate(chunks)


async def mean_color(track: MediaStreamTrack, frames: int = 5, timeout: float = 15) -> np.ndarray:
    """Decode ``frames`` frames of a received video track (after the first few) and return the
    mean RGB of the last one."""
    last: np.ndarray | None = None

    async def run() -> None:
        nonlocal last
        for _ in range(frames):
            frame = await track.recv()
            last = frame.to_ndarray(format="rgb24")

    await asyncio.wait_for(run(), timeout)
    assert last is not None
    return last.reshape(-1, 3).mean(axis=0)
