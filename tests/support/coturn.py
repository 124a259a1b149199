"""Debian's coturn (``turnserver``) as a test child process on 127.0.0.1.

coturn runs with the TURN REST API (``--use-auth-secret --static-auth-secret``), UDP only, no
config file, no CLI, relaying on 127.0.0.1 and allowing loopback peers (refused by default),
so a client forced to relay reaches the SFU's 127.0.0.1 host candidates through it.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

TURNSERVER = "turnserver"
STUN_MAGIC_COOKIE = 0x2112A442  # RFC 8489 §5


class CoturnStartError(RuntimeError):
    """``turnserver`` exited, or did not answer a STUN Binding request in time."""


@dataclass
class Coturn:
    """A running coturn: its UDP port, shared secret and process."""

    port: int
    secret: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        """The ``turn:`` URL (RFC 7065) of its UDP listener."""
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def find_turnserver() -> str | None:
    """The ``turnserver`` executable, or None when coturn is not installed."""
    return shutil.which(TURNSERVER) or (
        "/usr/bin/turnserver" if Path("/usr/bin/turnserver").exists() else None
    )


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stun_binding_answered(port: int, timeout_s: float) -> bool:
    """Send one STUN Binding request (RFC 8489 §6) and wait for a success response."""
    transaction = os.urandom(12)
    request = struct.pack("!HHI12s", 0x0001, 0, STUN_MAGIC_COOKIE, transaction)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        sock.sendto(request, ("127.0.0.1", port))
        try:
            data, _addr = sock.recvfrom(2048)
        except OSError:
            return False
    return len(data) >= 20 and data[0:2] == b"\x01\x01" and data[8:20] == transaction


def start_coturn(workdir: Path, secret: str, timeout_s: float = 15.0) -> Coturn:
    """Start ``turnserver`` on a free UDP port of 127.0.0.1 with ``secret`` as its TURN REST
    API shared secret; returns once it answers STUN.

    Raises:
        CoturnStartError: it exited or did not answer within ``timeout_s`` seconds.
    """
    executable = find_turnserver()
    if executable is None:
        raise CoturnStartError("turnserver is not installed (apt-get install coturn)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_udp_port()
    log_path = workdir / "turnserver.log"
    cmd = [
        executable,
        "-n",  # no configuration file
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        f"--listening-port={port}",
        "--use-auth-secret",
        f"--static-auth-secret={secret}",
        "--realm=sfu.test",
        "--fingerprint",
        "--no-tcp",
        "--no-tls",
        "--no-dtls",
        "--allow-loopback-peers",
        "--no-cli",
        "--log-file=stdout",
        "--simple-log",
        f"--pidfile={workdir / 'turnserver.pid'}",
        f"--userdb={workdir / 'turndb'}",
    ]
    with log_path.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    coturn = Coturn(port, secret, process, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CoturnStartError(f"turnserver exited with {process.returncode}: {coturn.log()}")
        if _stun_binding_answered(port, 0.3):
            return coturn
    stop_coturn(coturn)
    raise CoturnStartError(f"turnserver did not answer STUN on port {port}: {coturn.log()}")


def stop_coturn(coturn: Coturn) -> None:
    """Terminate the process (by its PID), kill it after 5 s."""
    process = coturn.process
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
