"""In-memory fakes for driving Producer/Consumer without ICE, DTLS or sockets.

In the spirit of aiortc's in-memory transport tests: every packet the code under test would
put on the wire is recorded as plaintext ``bytes`` so a test can parse and check it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sfu._aiortc_adapter import NullRtpSink

if TYPE_CHECKING:
    from sfu.producer import Producer


class FakeTransport:
    """Stands in for :class:`sfu.transport.WebRtcTransport` as seen by a Producer/Consumer.

    Records the RTCP feedback a Producer asks for instead of sending it.
    """

    def __init__(self) -> None:
        self.plis: list[Producer] = []
        self.nacks: list[tuple[Producer, list[int]]] = []
        self.rembs: list[tuple[Producer, int]] = []

    def send_pli(self, producer: Producer) -> None:
        """Record a Picture Loss Indication request (RFC 4585 §6.3.1)."""
        self.plis.append(producer)

    def send_nack(self, producer: Producer, lost: list[int]) -> None:
        """Record a Generic NACK (RFC 4585 §6.2.1) for ``lost`` sequence numbers."""
        self.nacks.append((producer, list(lost)))

    def send_remb(self, producer: Producer, bitrate: int) -> None:
        """Record a REMB estimate (bits/s)."""
        self.rembs.append((producer, bitrate))


class FakeRawRtp:
    """Stands in for :class:`sfu._aiortc_adapter.RawRtpTransport`: keeps plaintext RTP."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.rtcp: list[bytes] = []

    def send_rtp(self, data: bytes) -> None:
        """Record one plaintext RTP packet."""
        self.sent.append(bytes(data))

    def send_rtcp(self, data: bytes) -> None:
        """Record one plaintext RTCP packet."""
        self.rtcp.append(bytes(data))


class NullSink(NullRtpSink):
    """An :class:`sfu._aiortc_adapter.RtpSink` that ignores everything."""


class FakeClock:
    """A settable millisecond clock to monkeypatch over ``sfu._aiortc_adapter.now_ms``."""

    def __init__(self, start_ms: int = 1_000_000) -> None:
        self.ms = start_ms

    def __call__(self, *args: Any) -> int:
        return self.ms

    def advance(self, ms: int) -> None:
        """Move the clock forward by ``ms`` milliseconds."""
        self.ms += ms
