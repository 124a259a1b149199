"""Benchmark peers: the raw-RTP Opus publisher now lives in :mod:`signaling.loadtest.media`
(shared with ``sfu loadtest``); this module re-exports it for the benchmarks."""

from __future__ import annotations

from signaling.loadtest.media import OPUS, RawOpusPublisher, RawPublisher, encode_opus_frames

__all__ = ["OPUS", "RawOpusPublisher", "RawPublisher", "encode_opus_frames"]
