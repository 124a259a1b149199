"""Launcher for the embedded MongoDB-wire-protocol server ``nx-27017`` (SQLite-backed).

``sfu serve`` without ``MONGO_URL`` runs ``nx-27017`` as a child process listening on a Unix
domain socket (never a TCP port: ``nx-27017`` has no authentication, so a loopback port would
let any local user read and write every account), with its SQLite files (one per logical
database) under the data directory, so a restart on the same data directory keeps every user
and room. The socket is created with mode 0600 in a fresh directory with mode 0700 (see
:mod:`signaling.store.nx_unix`); pymongo connects with ``mongodb://<%-encoded path>/``.
The child is started in its own session so that a terminal Ctrl-C reaches only ``sfu``,
which then shuts down in order (sockets closed, history written) and stops the child last.

Errors raised: :class:`StoreStartError` when nx-27017 is not installed, exits early or does
not answer a ``ping`` in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path
from typing import IO
from urllib.parse import quote

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

log = logging.getLogger(__name__)

EXECUTABLE_NAME = "nx-27017"
LAUNCHER = Path(__file__).with_name("nx_unix.py")
SOCKET_NAME = "nx-27017.sock"


class StoreStartError(RuntimeError):
    """The store could not be started or reached (message says why and where to look)."""


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


def unix_server_command(python: str, data_dir: Path, socket_path: Path) -> list[str]:
    """The command line serving ``data_dir`` on the Unix socket ``socket_path`` with
    :mod:`signaling.store.nx_unix` run by the interpreter ``python``; the log goes to
    ``data_dir/nx-27017.log``."""
    return [
        python,
        str(LAUNCHER),
        "--socket",
        str(socket_path),
        "--data-dir",
        str(data_dir / "db"),
        "--log-file",
        str(data_dir / "nx-27017.log"),
    ]


def unix_socket_url(socket_path: Path) -> str:
    """``mongodb://`` URL of a server on the Unix socket ``socket_path`` (the path
    percent-encoded as pymongo requires)."""
    return f"mongodb://{quote(str(socket_path), safe='')}/"


class EmbeddedMongo:
    """One ``nx-27017`` child process serving ``data_dir`` on a private Unix socket.

    Usage::

        server = EmbeddedMongo(settings.data_dir / "mongo")
        url = await server.start()     # "mongodb://%2Ftmp%2Fsfu-store-...%2Fnx-27017.sock/"
        ...
        await server.stop()            # safe to call twice

    Args:
        data_dir: SQLite files, log and child output live here.
        executable: the Python interpreter that runs the launcher (default: this one).
        start_timeout_s: how long to wait for the first ``ping`` answer (s).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        executable: str | None = None,
        start_timeout_s: float = 20.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.executable = executable
        self.start_timeout_s = start_timeout_s
        self.socket_path: Path | None = None
        self._socket_dir: Path | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._output: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The MongoDB URL of the running server (raises if not started)."""
        if self.socket_path is None or self._proc is None:
            raise StoreStartError("embedded store is not started")
        return unix_socket_url(self.socket_path)

    @property
    def output_path(self) -> Path:
        """File receiving the child's stdout and stderr."""
        return self.data_dir / "nx-27017.out"

    async def start(self) -> str:
        """Start the server and wait until it answers ``ping``; returns its URL.

        Raises :class:`StoreStartError` with the tail of the server's output when it cannot
        start, or when ``nx-27017`` is not installed.
        """
        if self.executable is None and find_spec("nx_27017") is None:
            raise StoreStartError(
                f"{EXECUTABLE_NAME} not installed (pip install nx-27017, or set MONGO_URL)"
            )
        python = self.executable or sys.executable
        try:
            (self.data_dir / "db").mkdir(parents=True, exist_ok=True)
            # A short private path: Unix socket paths are limited to 107 bytes.
            self._socket_dir = Path(tempfile.mkdtemp(prefix="sfu-store-"))  # mode 0700
        except OSError as exc:
            raise StoreStartError(f"cannot create store directory {self.data_dir}: {exc}") from exc
        self.socket_path = self._socket_dir / SOCKET_NAME
        try:
            await self._spawn(python, self.socket_path)
            await self._wait_ready(unix_socket_url(self.socket_path))
        except StoreStartError as exc:
            await self.stop()
            raise StoreStartError(f"embedded store nx-27017 did not start: {exc}") from exc
        log.info(
            "embedded store nx-27017 ready on %s (data in %s)", self.socket_path, self.data_dir
        )
        return self.url

    async def _spawn(self, python: str, socket_path: Path) -> None:
        self._output = self.output_path.open("ab")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *unix_server_command(python, self.data_dir, socket_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=self._output,
                stderr=self._output,
                start_new_session=True,
            )
        except OSError as exc:
            raise StoreStartError(f"cannot run {python}: {exc}") from exc

    async def _wait_ready(self, url: str) -> None:
        assert self._proc is not None
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
            f"nx-27017 did not answer on {self.socket_path} within {self.start_timeout_s:.0f} s: "
            f"{self._tail()}"
        )

    def _tail(self, limit: int = 800) -> str:
        try:
            text = self.output_path.read_bytes()[-limit:].decode("utf-8", "replace")
        except OSError:
            return f"(no output; see {self.output_path})"
        return text.strip() or f"(no output; see {self.output_path})"

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout_s``) and remove its socket
        directory. Safe to call twice."""
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
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
        self.socket_path = None
