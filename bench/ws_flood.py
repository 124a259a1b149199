"""A WebSocket client that sends requests and never reads: the server's memory (issue 10.5).

Usage: ``python -m bench.ws_flood [--duration 8]``

Starts ``sfu serve`` on 127.0.0.1, opens ``/ws`` on a bare socket with a 4 KiB receive buffer,
and sends ``ping`` requests (64-character ids) in batches of 200 for ``--duration`` seconds
without ever reading a reply. Prints the pings sent, the server's resident memory (VmRSS,
MB) before and after, and whether the server closed the connection. Without an outbox bound
the replies pile up in the server; with it, the server closes the socket (1008) early.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import struct
import tempfile
import time

from signaling.serverproc import start_server, stop_server, wait_healthy


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def _frame(text: str) -> bytes:
    """One masked WebSocket text frame (RFC 6455 5.2), payload < 64 KiB."""
    payload = text.encode()
    mask = os.urandom(4)
    n = len(payload)
    header = struct.pack("!BB", 0x81, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x81, 0xFE, n)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def flood(duration_s: float) -> str:
    """Run one flood against a fresh server; returns the one-line result."""
    data_dir = tempfile.mkdtemp(prefix="sfu-flood-")
    proc, url = start_server(data_dir, env={"SFU_JWT_SECRET": "x" * 48})
    try:
        wait_healthy(url, proc, timeout_s=60)
        port = int(url.rsplit(":", 1)[1])
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        await loop.sock_sendall(
            sock,
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode(),
        )
        await asyncio.sleep(0.5)
        before = _rss_mb(proc.pid)
        batch = _frame(json.dumps({"type": "ping", "id": "p" * 64})) * 200
        started = time.monotonic()
        sent = 0
        closed = "no"
        while time.monotonic() - started < duration_s:
            try:
                await asyncio.wait_for(loop.sock_sendall(sock, batch), 0.5)
                sent += 200
            except TimeoutError:
                continue
            except ConnectionError as exc:
                closed = f"yes ({type(exc).__name__} after {time.monotonic() - started:.1f} s)"
                break
        after = _rss_mb(proc.pid)
        sock.close()
        return (
            f"sent {sent} pings in {time.monotonic() - started:.1f} s without reading; server "
            f"RSS {before:.0f} -> {after:.0f} MB (+{after - before:.0f} MB); closed: {closed}"
        )
    finally:
        stop_server(proc)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds (at most 60)")
    args = parser.parse_args()
    print(asyncio.run(flood(min(args.duration, 60.0))))


if __name__ == "__main__":
    main()
