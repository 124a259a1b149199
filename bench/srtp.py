"""CPU cost of SRTP protection per forwarded packet in the compiled path (sfu._fastpath, issue 14):
libsrtp's ``srtp_protect`` against the native AES-GCM of ``SrtpSender`` (OpenSSL EVP, RFC 7714).

Both engines run in one process, one after the other and then again (A B A B), over
``--senders`` SrtpSenders (one per subscriber transport) touched round-robin, one packet each
in turn, as one packet fanned out to that many subscribers touches them: every sender's state
is cache-cold by the time it is used again. Two measurements:

* ``protect``: ``SrtpSender.protect`` called from Python for each sender in turn (the Python
  call and the bytes object are the same for both engines, so the difference per packet is
  the saving of the engine itself);
* ``fanout``: ``FanOut.forward`` of one Opus-sized packet to ``--senders`` consumers, each
  with its own sender, sent with sendmmsg to a UDP socket on 127.0.0.1 (the real fan-out
  loop: header rewrite, protection, batched send; the kernel part is the same for both).

Each is measured with warm caches (only the senders compete for them) and with ``--evict-kib``
of other memory written between two packets (untimed), as the rest of the server does between
two fan-outs. Figures are CPU time (``time.process_time``) per protected packet in
microseconds, and the ratio new / old (best of two runs each). Run (a few seconds; the fan-out
part needs a loopback interface):
``unshare -n -- sh -c 'ip link set lo up && exec .venv/bin/python -m bench.srtp'``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import time
from typing import Any

from sfu import fastpath

PROFILES = {"aes128gcm": (7, 28), "aes256gcm": (8, 44), "aes128cm": (1, 30)}
"""libsrtp profile numbers (srtp_profile_t) and master key+salt lengths (RFC 5764, RFC 7714)."""


def make_senders(profile: int, key_len: int, count: int, native_gcm: bool) -> list[Any]:
    """``count`` SrtpSenders with distinct random master keys, on the chosen GCM engine."""
    native: Any = fastpath.native
    native.set_native_gcm(native_gcm)
    try:
        return [native.SrtpSender(profile, os.urandom(key_len)) for _ in range(count)]
    finally:
        native.set_native_gcm(True)


class Evictor:
    """Writes one byte per 64-byte cache line of a ``kib`` KiB buffer (untimed) between two
    packets, as the rest of the server (interpreter, event loop, kernel) does between two
    fan-outs: each sender's state is then fetched from beyond L2 again. 0: no eviction."""

    def __init__(self, kib: int) -> None:
        self.buf = bytearray(kib * 1024)
        self.zeros = bytes(len(self.buf[::64]))

    def __call__(self) -> None:
        if self.buf:
            self.buf[::64] = self.zeros


def bench_protect(senders: list[Any], payload: int, rounds: int, evict: Evictor) -> float:
    """CPU us per ``protect`` call, ``rounds`` packets per sender, senders round-robin."""
    packets = [
        struct.pack("!BBHII", 0x90, 111, seq, seq * 960, 0x1234)
        + struct.pack("!HH", 0xBEDE, 1)
        + bytes([0x10, 0x7F, 0, 0])
        + bytes(payload)
        for seq in range(rounds)
    ]
    spent = 0.0
    for packet in packets:
        evict()
        start = time.process_time()
        for sender in senders:
            sender.protect(packet)
        spent += time.process_time() - start
    return spent / (rounds * len(senders)) * 1e6


def bench_fanout(senders: list[Any], payload: int, rounds: int, evict: Evictor) -> float:
    """CPU us per forwarded packet of ``FanOut.forward`` to one consumer per sender."""
    native: Any = fastpath.native
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.setblocking(False)
    try:
        fanout = native.FanOut(0)
        for i, sender in enumerate(senders):
            sender.set_route(tx.fileno(), rx.getsockname())
            consumer = fanout.add(sender, 0x10000 + i, 0, 0)
            mid = b"\x10" + b"1"  # RFC 8285 one-byte element: id 1, mid "1"
            consumer.configure(109, b"\xbe\xde\x00\x01" + mid, b"\x00\x00", None, 0)
            consumer.active = True
        data = bytes(payload)
        spent = 0.0
        forwarded = 0
        for seq in range(rounds):
            evict()
            start = time.process_time()
            forwarded += fanout.forward(data, 0, len(data), False, seq, seq * 960, None, True)
            spent += time.process_time() - start
        return spent / max(forwarded, 1) * 1e6
    finally:
        rx.close()
        tx.close()


def main() -> None:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=400, help="senders touched round-robin")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="aes128gcm")
    parser.add_argument("--payload", type=int, default=80, help="payload bytes (Opus ~80)")
    parser.add_argument("--rounds", type=int, default=300, help="packets per sender and run")
    parser.add_argument(
        "--evict-kib",
        type=int,
        default=4096,
        help="KiB of other memory written between two packets (0: none; both are reported)",
    )
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    if fastpath.native is None:
        raise SystemExit("sfu._fastpath is not built")
    profile, key_len = PROFILES[args.profile]
    result: dict[str, Any] = {"library": fastpath.srtp_library, "profile": args.profile}
    for cache, kib in (("warm", 0), ("evicted", args.evict_kib)):
        evict = Evictor(kib)
        for name, bench in (("protect", bench_protect), ("fanout", bench_fanout)):
            runs: dict[str, list[float]] = {"libsrtp": [], "evp": []}
            for _ in range(2):  # A B A B: drift on a shared machine hits both alike
                for engine in ("libsrtp", "evp"):
                    senders = make_senders(profile, key_len, args.senders, engine == "evp")
                    assert {s.engine for s in senders} == (
                        {engine} if args.profile != "aes128cm" else {"libsrtp"}
                    )
                    runs[engine].append(bench(senders, args.payload, args.rounds, evict))
            old, new = min(runs["libsrtp"]), min(runs["evp"])
            result[f"{name}_{cache}"] = {
                "libsrtp_us": round(old, 3),
                "evp_us": round(new, 3),
                "saved_us": round(old - new, 3),
                "ratio": round(new / old, 3),
                "runs": runs,
            }
            print(
                f"{name:8s} {cache:7s} {args.senders} senders round-robin, {args.profile}: "
                f"libsrtp {old:.3f} us, evp {new:.3f} us per packet (saved {old - new:.3f} us, "
                f"ratio {new / old:.2f})"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
