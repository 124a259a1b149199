"""Run ``nx-27017`` (the embedded MongoDB-wire server) on a Unix domain socket, not TCP.

``nx-27017`` has no authentication and its command line only offers a TCP ``--host``/``--port``,
so on a loopback port any local user or process could read and write every account. This
launcher serves the same request handler (``nx_27017.server.handle_client`` over a
``NeoSQLiteHandler``, exactly as ``nx-27017``'s own ``run_server`` does) on a Unix socket
created with mode 0600 inside a directory the parent made with mode 0700: only our user can
connect. pymongo reaches it as ``mongodb://<percent-encoded socket path>/``.

It is run as a script by path (``python nx_unix.py --socket S --data-dir D --log-file L``) by
:class:`signaling.store.embedded.EmbeddedMongo`, and imports nothing from this project. It exits
0 on SIGTERM/SIGINT after closing the socket and the SQLite files.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--socket", required=True, help="Unix socket path to listen on")
    parser.add_argument("--data-dir", required=True, help="one <db>.db SQLite file per database")
    parser.add_argument("--log-file", required=True, help="server log file")
    return parser.parse_args(argv)


async def _serve(socket_path: str, data_dir: str) -> None:
    from nx_27017.handler import NeoSQLiteHandler
    from nx_27017.server import handle_client

    handler = NeoSQLiteHandler(data_dir, journal_mode="WAL", data_dir=data_dir)

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await handle_client(reader, writer, handler)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)  # a stale socket of a killed predecessor
    old_umask = os.umask(0o177)  # the socket file is created 0600
    try:
        server = await asyncio.start_unix_server(on_client, path=socket_path)
    finally:
        os.umask(old_umask)
    logging.getLogger("nx_27017").info("Listening on unix socket %s", socket_path)
    try:
        await stop.wait()
    finally:
        # No wait_closed(): from Python 3.12 it waits for every client to hang up; the
        # remaining connection tasks are cancelled when asyncio.run() returns.
        server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
        close_all = getattr(handler, "close_all", None)
        if close_all is not None:
            close_all()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 after a clean stop)."""
    args = _parse(argv)
    logging.basicConfig(
        level=logging.INFO,
        filename=args.log_file,
        format="%(asctime)s - %(name)s - %(levelname)s - [%(process)d] - %(message)s",
    )
    try:  # as nx-27017's own run_server does, when uvloop is installed
        importlib.import_module("uvloop").install()
    except ImportError:
        pass
    asyncio.run(_serve(args.socket, args.data_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
