"""CPU cost per piped packet (sfu/pipe.py): both ends of a pipe in one process, no aiortc peers.

Synthetic Opus RTP packets (RFC 6464 audio level, 120-byte payload) are handed to a
Producer on router A, as a WebRtcTransport would after SRTP decryption. Three configurations
run side by side in one process:

* ``local``: A's producer feeds one stub consumer on A (the forwarding work without a pipe);
* ``pipe``: A's producer feeds a PipeConsumer; the packet crosses 127.0.0.1 UDP to router B,
  whose piped producer feeds one stub consumer there;
* ``pipe+srtp``: the same with SRTP AEAD_AES_128_GCM on the pipe.

The pipe's cost per piped packet is (CPU of ``pipe`` - CPU of ``local``) / packets, CPU being
this process's user+system time (``time.process_time``), which holds both ends. Run:
``.venv/bin/python -m bench.pipe --packets 30000`` (a few seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import time
from dataclasses import dataclass

from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from sfu import _aiortc_adapter as adapter
from sfu.producer import Producer
from sfu.router import Router
from sfu.rtp.loss_proxy import DownstreamLoss

OPUS = RTCRtpCodecParameters(
    mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111, parameters={}
)
LEVEL_ID = 1
BURST = 1
"""Packets handed to A's producer per event-loop iteration: asyncio reads one datagram per
iteration from a ready socket, so a larger burst would overflow B's receive buffer."""


class _NoFeedback:
    """A publisher transport that ignores feedback (nothing is lost here)."""

    def send_pli(self, producer: Producer) -> None:
        return None

    def send_nack(self, producer: Producer, lost: list[int]) -> None:
        return None

    def adopt_producer(self, producer: Producer) -> None:
        return None


class _StubConsumer:
    """Counts what a producer hands it (stands in for a subscriber's Consumer)."""

    def __init__(self) -> None:
        self.packets = 0
        self.downstream_loss = DownstreamLoss()

    def forward(
        self, marker: bool, seq: int, ts: int, payload: bytes, extra: bytes | None, kf: bool
    ) -> None:
        self.packets += 1

    def on_producer_paused(self, paused: bool) -> None:
        return None

    def on_producer_gap(self, started: bool, since_s: float = 0.0) -> None:
        return None

    def close(self) -> None:
        return None


def _source(router: Router) -> Producer:
    producer = Producer(transport=_NoFeedback(), participant_sid="PA_bench", mid="0", kind="audio")
    producer.on_negotiated(
        adapter.NegotiatedRtp(
            mid="0",
            kind="audio",
            codecs=[OPUS],
            header_extensions={adapter.URI_AUDIO_LEVEL: LEVEL_ID},
            ssrc=0x1234,
            rtx_ssrc=None,
            rtcp_ssrc=1,
        )
    )
    router.producers[producer.id] = producer
    return producer


def _packets(count: int) -> list[bytes]:
    payload = bytes(range(120))
    ext = b"\xbe\xde\x00\x01" + bytes((LEVEL_ID << 4, 0x80 | 30, 0, 0))
    return [
        struct.pack("!BBHII", 0x90, 111, i & 0xFFFF, (960 * i) & 0xFFFFFFFF, 0x1234) + ext + payload
        for i in range(count)
    ]


@dataclass
class Result:
    name: str
    packets: int
    delivered: int
    cpu_s: float
    wall_s: float

    @property
    def cpu_us_per_packet(self) -> float:
        return self.cpu_s / self.packets * 1e6


async def _run(name: str, packets: list[bytes], *, pipe: bool, srtp: bool) -> Result:
    router_a = Router(ice_servers=[])
    router_b = Router(ice_servers=[])
    try:
        source = _source(router_a)
        stub = _StubConsumer()
        if pipe:
            piped = await router_a.pipe_to_router(source.id, router_b, enable_srtp=srtp)
            piped.consumers.append(stub)  # type: ignore[arg-type]
        else:
            source.consumers.append(stub)  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for i in range(0, len(packets), BURST):
            for data in packets[i : i + BURST]:
                source.receive_rtp(data, 0x1234, 0)
            await asyncio.sleep(0)
        deadline = time.monotonic() + 2.0
        while stub.packets < len(packets) and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        return Result(name, len(packets), stub.packets, cpu, wall)
    finally:
        await router_a.close()
        await router_b.close()


async def main_async(args: argparse.Namespace) -> list[Result]:
    packets = _packets(args.packets)
    results = []
    for name, pipe, srtp in (
        ("local", False, False),
        ("pipe", True, False),
        ("pipe+srtp", True, True),
    ):
        results.append(await _run(name, packets, pipe=pipe, srtp=srtp))
    return results


def main() -> int:
    """Run the three configurations and print CPU per packet and the pipe's cost."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packets", type=int, default=30000, help="packets per configuration")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    local = results[0]
    print(f"{'config':<10} {'packets':>8} {'delivered':>9} {'cpu us/pkt':>10} {'pipe us/pkt':>11}")
    for r in results:
        extra = r.cpu_us_per_packet - local.cpu_us_per_packet
        pipe_cost = f"{extra:11.2f}" if r is not local else f"{'-':>11}"
        print(
            f"{r.name:<10} {r.packets:>8} {r.delivered / r.packets:>9.1%} "
            f"{r.cpu_us_per_packet:>10.2f} {pipe_cost}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
