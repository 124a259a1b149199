"""Debian's ``redis-server`` as a test child process on a free loopback port.

No config file, no persistence (``--save ''``, ``--appendonly no``), bound to 127.0.0.1
only; :meth:`RedisServer.stop` and :meth:`RedisServer.restart` (same port) let a test take
the cluster's Redis away and bring it back.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from signaling.serverproc import free_port


class RedisStartError(RuntimeError):
    """``redis-server`` exited, or did not answer PING in time."""


def find_redis_server() -> str | None:
    """The ``redis-server`` executable, or None when it is not installed."""
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    """A running ``redis-server``: its port, working directory and process."""

    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = field(default=None)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> None:
        """Start it on :attr:`port`; returns once it answers PING.

        Raises:
            RedisStartError: it exited or did not answer within ``timeout_s`` seconds.
        """
        executable = find_redis_server()
        if executable is None:
            raise RedisStartError("redis-server is not installed (scripts/test.sh installs it)")
        log = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RedisStartError(f"redis-server exited with {self.process.returncode}")
            if _ping(self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise RedisStartError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after 5 s); safe to call twice."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        """Start it again on the same port (its data is gone: nothing is persisted)."""
        self.stop()
        self.start()


def start_redis(workdir: Path) -> RedisServer:
    """Start ``redis-server`` on a free port of 127.0.0.1 (see :meth:`RedisServer.start`)."""
    server = RedisServer(port=free_port(), workdir=workdir)
    server.start()
    return server
