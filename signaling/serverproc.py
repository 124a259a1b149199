"""Run ``sfu serve`` as a child process on a free loopback port.

One place for what the benchmarks, the load-test tests and the browser tests all need: a
free port, loopback ICE, an explicit (empty) ICE server list, the command line, waiting for
``/healthz`` and stopping the process.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parent.parent


class ServerStartError(RuntimeError):
    """``sfu serve`` exited, or did not answer ``/healthz`` in time."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(
    data_dir: Path | str,
    *,
    env: Mapping[str, str] | None = None,
    output: IO[bytes] | int = subprocess.DEVNULL,
    log_level: str = "warning",
    tls: tuple[Path, Path] | None = None,
    port: int | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``sfu serve`` on a free port with ICE on 127.0.0.1, no ICE servers and no cap
    of WebSockets per address; returns ``(process, base URL)``. ``env`` adds to (and
    overrides) this process's environment; the server's stdout and stderr go to ``output``.
    ``tls`` = (certificate, key) PEM files serves HTTPS/WSS (``--tls-cert/--tls-key``) and the
    URL is ``https://``. ``port``: this port instead of a free one (a restart on the same
    address)."""
    port = port or free_port()
    full_env = {
        **os.environ,
        "SFU_ICE_HOSTS": "127.0.0.1",
        "SFU_ICE_SERVERS": "",
        # Tests and benchmarks run hundreds of peers from 127.0.0.1: no per-address cap.
        "SFU_WS_MAX_CONNECTIONS_PER_ADDRESS": "0",
        # Media in the server process unless the caller asks for workers (issue 12).
        "SFU_WORKERS": "0",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    cmd = [
        sys.executable,
        "-m",
        "signaling.cli",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--log-level",
        log_level,
    ]
    if tls is not None:
        cmd += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    process = subprocess.Popen(
        cmd, cwd=REPO_ROOT, env=full_env, stdout=output, stderr=subprocess.STDOUT
    )
    scheme = "https" if tls is not None else "http"
    return process, f"{scheme}://127.0.0.1:{port}"


def wait_healthy(
    url: str,
    process: subprocess.Popen[bytes],
    timeout_s: float = 60,
    context: ssl.SSLContext | None = None,
) -> None:
    """Poll ``GET /healthz`` until it answers 200 (``context`` verifies an https server).

    Raises:
        ServerStartError: the process exited first, or ``timeout_s`` passed.
    """
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerStartError(f"sfu serve exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2, context=context) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last_error = exc
        time.sleep(0.2)
    raise ServerStartError(f"{url} did not answer /healthz within {timeout_s:.0f} s ({last_error})")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """Terminate, and kill after 10 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
