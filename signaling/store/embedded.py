"""Launcher for the embedded MongoDB-wire-protocol server ``nx-27017`` (SQLite-backed).

``sfu serve`` without ``MONGO_URL`` runs ``nx-27017`` as a child process bound to a free
loopback port, with its SQLite files (one per logical database) under the data directory, so
a restart on the same data directory keeps every user and room. The child is started in its
own session so that a terminal Ctrl-C reaches only ``sfu``, which then shuts down in order
(sockets closed, history written) and stops the child last.

Errors raised: :class:`StoreStartError` when the executable is missing, exits early or does
not answer a ``ping`` in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from typing import IO

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

log = logging.getLogger(__name__)

EXECUTABLE_NAME = "nx-27017"


class StoreStartError(RuntimeError):
    """The store could not be started or reached (message says why and where to look)."""


def find_executable() -> str:
    """Path of the ``nx-27017`` executable: next to the running interpreter, else on PATH.

    Raises :class:`StoreStartError` when it cannot be found.
    """
    beside = Path(sys.executable).parent / EXECUTABLE_NAME
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(EXECUTABLE_NAME)
    if found is None:
        raise StoreStartError(
            f"{EXECUTABLE_NAME} not found (pip install nx-27017, or set MONGO_URL to a MongoDB)"
        )
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def server_command(executable: str, data_dir: Path, host: str, port: int) -> list[str]:
    """The ``nx-27017`` command line for a data directory and address.

    Its log and pid files are kept in ``data_dir`` too (the defaults are shared paths in /tmp).
    """
    return [
        executable,
        "--data-dir",
        str(data_dir / "db"),
        "--host",
        host,
        "--port",
        str(port),
        "--log-file",
        str(data_dir / "nx-27017.log"),
        "--pid-file",
        str(data_dir / "nx-27017.pid"),
    ]


async def ping(url: str, timeout_s: float = 0.5) -> bool:
    """True when a MongoDB-wire server at ``url`` answers ``ping`` within ``timeout_s``."""
    timeout_ms = max(1, int(timeout_s * 1000))
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        url, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
    )
    try:
        await client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        await client.close()


class EmbeddedMongo:
    """One ``nx-27017`` child process serving ``data_dir`` on a loopback port.

    Usage::

        server = EmbeddedMongo(settings.data_dir / "mongo")
        url = await server.start()     # "mongodb://127.0.0.1:<port>/"
        ...
        await server.stop()            # safe to call twice
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        executable: str | None = None,
        start_timeout_s: float = 20.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.executable = executable
        self.start_timeout_s = start_timeout_s
        self.port: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._output: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The MongoDB URL of the running server (raises if not started)."""
        if self.port is None:
            raise StoreStartError("embedded store is not started")
        return f"mongodb://{self.host}:{self.port}/"

    @property
    def output_path(self) -> Path:
        """File receiving the child's stdout and stderr."""
        return self.data_dir / "nx-27017.out"

    async def start(self) -> str:
        """Start the server and wait until it answers ``ping``; returns its URL.

        Retries on a new port if the chosen one was taken in the meantime. Raises
        :class:`StoreStartError` with the tail of the server's output when it cannot start.
        """
        executable = self.executable or find_executable()
        try:
            (self.data_dir / "db").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreStartError(f"cannot create store directory {self.data_dir}: {exc}") from exc
        last_error = "unknown error"
        for _attempt in range(3):
            port = free_port(self.host)
            try:
                await self._spawn(executable, port)
                await self._wait_ready(port)
            except StoreStartError as exc:
                last_error = str(exc)
                await self.stop()
                continue
            self.port = port
            log.info("embedded store nx-27017 ready on %s (data in %s)", self.url, self.data_dir)
            return self.url
        raise StoreStartError(f"embedded store nx-27017 did not start: {last_error}")

    async def _spawn(self, executable: str, port: int) -> None:
        self._output = self.output_path.open("ab")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *server_command(executable, self.data_dir, self.host, port),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=self._output,
                stderr=self._output,
                start_new_session=True,
            )
        except OSError as exc:
            raise StoreStartError(f"cannot run {executable}: {exc}") from exc

    async def _wait_ready(self, port: int) -> None:
        assert self._proc is not None
        url = f"mongodb://{self.host}:{port}/"
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.returncode is not None:
                raise StoreStartError(
                    f"nx-27017 exited with status {self._proc.returncode}: {self._tail()}"
                )
            if await ping(url):
                return
            await asyncio.sleep(0.1)
        raise StoreStartError(
            f"nx-27017 did not answer on {url} within {self.start_timeout_s:.0f} s: {self._tail()}"
        )

    def _tail(self, limit: int = 800) -> str:
        try:
            text = self.output_path.read_bytes()[-limit:].decode("utf-8", "replace")
        except OSError:
            return f"(no output; see {self.output_path})"
        return text.strip() or f"(no output; see {self.output_path})"

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout_s``). Safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._output is not None:
            self._output.close()
            self._output = None
        self.port = None
