"""The media worker process: ``python -m sfu.worker --fd N --parent-pid P``.

The control process (:class:`sfu.worker.pool.WorkerPool`) starts it with one end of a
``socketpair`` as file descriptor ``N`` and talks to it over a :class:`Channel`. The first
request must be ``sys.init(factory, config, index)``: the worker imports ``factory``
(``"package.module:attribute"``), calls ``factory(config, context)`` (``config`` a plain
dict, ``context`` a :class:`WorkerContext`; the factory may be a coroutine function) and
from then on serves the *target* it returned: a request ``method(*args)`` awaits
``target.method(*args)`` for every public coroutine method (name not starting with ``_``).
The target emits notifications with ``context.emit(event, data)``; notifications from the
control process go to ``target.on_notification(event, data)`` when it has one.

Reserved requests (``sys.*``): ``sys.init`` (above; returns ``{"pid": int}``), ``sys.stats``
(the target's ``stats()`` dict, ``{}`` without one) and ``sys.ping`` (returns ``"pong"``).

Lifecycle: the worker dies with its parent (Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, and
it exits when the channel reaches EOF); SIGTERM closes the target (``target.close()``, sync
or async, at most ``CLOSE_TIMEOUT_S``) and exits 0; SIGINT is ignored (a terminal's Ctrl-C
reaches the whole process group: the control process decides). Exit codes: 0 after SIGTERM
or EOF, 1 when the parent was already gone at start, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import importlib
import inspect
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from sfu.errors import InvalidStateError
from sfu.worker.channel import MAX_FRAME_BYTES, Channel, Codec
from sfu.worker.errors import BadRequestError, UnknownMethodError, WorkerStartError

logger = logging.getLogger(__name__)

SYS_INIT = "sys.init"
SYS_STATS = "sys.stats"
SYS_PING = "sys.ping"
CLOSE_TIMEOUT_S = 5.0
"""Longest the worker waits for ``target.close()`` on SIGTERM or EOF (seconds)."""
PR_SET_PDEATHSIG = 1


class WorkerContext:
    """What a target factory gets besides its config: the worker's ``index`` in the pool
    and :meth:`emit` to send notifications to the control process."""

    def __init__(self, index: int, channel: Channel) -> None:
        self.index = index
        self._channel = channel

    def emit(self, event: str, data: Any = None) -> None:
        """Send notification ``event`` with ``data`` (encoded by the codec) to the control
        process. Dropped, with a log line, when the channel is closed or ``data`` cannot be
        encoded (an event must never break the worker's media path)."""
        try:
            self._channel.notify(event, data)
        except Exception as exc:
            logger.warning("worker %d: notification %s dropped: %s", self.index, event, exc)


def import_object(path: str) -> Any:
    """The object at ``"package.module:attribute"`` (``attribute`` may be dotted).

    Raises ``ValueError`` for a malformed path, ``ImportError``/``AttributeError`` when it
    does not exist."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{path!r} is not 'package.module:attribute'")
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


class Dispatcher:
    """Serves a target object's public coroutine methods by name (the worker side of the
    channel's generic dispatch). ``context`` is handed to the target factory."""

    def __init__(self, channel: Channel, on_closed: Callable[[], None] | None = None) -> None:
        self.channel = channel
        self.target: Any = None
        self.context: WorkerContext | None = None
        self._on_closed = on_closed

    async def handle(self, method: str, args: list[Any]) -> Any:
        """The channel's request handler: ``sys.*`` requests, else ``target.method(*args)``.

        Raises :class:`InvalidStateError` before ``sys.init``, :class:`UnknownMethodError`
        for a name that is not a public coroutine method of the target,
        :class:`BadRequestError` for arguments that do not fit its signature, and whatever
        the method raises."""
        if method == SYS_INIT:
            return await self._init(args)
        if method == SYS_PING:
            return "pong"
        if self.target is None:
            raise InvalidStateError(f"{method}: the worker has no target yet (sys.init first)")
        if method == SYS_STATS:
            return await self._stats()
        function = self._method(method)
        try:
            inspect.signature(function).bind(*args)
        except TypeError as exc:
            raise BadRequestError(f"{method}: {exc}") from None
        return await function(*args)

    def _method(self, name: str) -> Callable[..., Any]:
        if not name or name.startswith("_") or "." in name:
            raise UnknownMethodError(f"no method {name!r}")
        function = getattr(self.target, name, None)
        if function is None or not inspect.iscoroutinefunction(function):
            raise UnknownMethodError(f"no method {name!r}")
        result: Callable[..., Any] = function
        return result

    async def _init(self, args: list[Any]) -> dict[str, Any]:
        if self.target is not None:
            raise InvalidStateError("sys.init: the worker already has a target")
        if (
            len(args) != 3
            or not isinstance(args[0], str)
            or not isinstance(args[1], dict)
            or not isinstance(args[2], int)
        ):
            raise BadRequestError("sys.init takes (factory: str, config: dict, index: int)")
        factory_path, config, index = args
        try:
            factory = import_object(factory_path)
        except (ValueError, ImportError, AttributeError) as exc:
            raise WorkerStartError(f"factory {factory_path!r}: {exc}") from None
        self.context = WorkerContext(index, self.channel)
        target = factory(config, self.context)
        if inspect.isawaitable(target):
            target = await target
        self.target = target
        freeze_startup_objects()
        logger.info("worker %d (pid %d): target %s ready", index, os.getpid(), factory_path)
        return {"pid": os.getpid()}

    async def _stats(self) -> dict[str, Any]:
        stats = getattr(self.target, "stats", None)
        if stats is None:
            return {}
        result = stats()
        if inspect.isawaitable(result):
            result = await result
        return dict(result)

    def on_notification(self, event: str, data: Any) -> None:
        """Hand a control-process notification to ``target.on_notification``, if any."""
        handler = getattr(self.target, "on_notification", None)
        if handler is not None:
            handler(event, data)

    async def close_target(self) -> None:
        """``target.close()`` (sync or async), bounded by :data:`CLOSE_TIMEOUT_S`."""
        close = getattr(self.target, "close", None)
        if close is None:
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                result = close()
                if inspect.isawaitable(result):
                    await result
        except Exception:
            logger.exception("worker: closing the target failed")


def set_parent_death_signal(parent_pid: int | None) -> bool:
    """Ask Linux to SIGKILL this process when its parent dies (``prctl(PR_SET_PDEATHSIG)``,
    see prctl(2); note it fires when the parent *thread* that forked exits). Returns False
    where unavailable. Exits with code 1 when ``parent_pid`` is already gone (the parent died
    before the prctl call: the signal would never come)."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)
    return armed


async def serve(fd: int, codec: Codec | None = None, max_frame_bytes: int = MAX_FRAME_BYTES) -> int:
    """Serve the channel on socket ``fd`` until SIGTERM or EOF; returns the exit code."""
    sock = socket.socket(fileno=fd)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    channel: Channel | None = None
    dispatcher: Dispatcher | None = None

    async def handle(method: str, args: list[Any]) -> Any:
        assert dispatcher is not None
        return await dispatcher.handle(method, args)

    def on_notification(event: str, data: Any) -> None:
        if dispatcher is not None:
            dispatcher.on_notification(event, data)

    channel = await Channel.open(
        sock,
        handler=handle,
        on_notification=on_notification,
        codec=codec,
        max_frame_bytes=max_frame_bytes,
        name=f"worker {os.getpid()}",
    )
    dispatcher = Dispatcher(channel)
    closed = asyncio.ensure_future(channel.wait_closed())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({closed, stopping}, return_when=asyncio.FIRST_COMPLETED)
    why = "SIGTERM" if stop.is_set() else f"channel closed ({channel.close_reason})"
    logger.info("worker %d: stopping: %s", os.getpid(), why)
    for future in (closed, stopping):
        future.cancel()
    await dispatcher.close_target()
    await channel.close()
    return 0


def freeze_startup_objects() -> None:
    """Move everything alive once the target is built (modules, aiortc, the target) out of the
    cyclic GC's reach (``gc.freeze``), as the control process does at start-up
    (signaling/cli.py): a worker's full collections then scan only what its rooms allocate
    (issue 12: without it a busy worker's gen-2 collections scanned its whole heap)."""
    gc.collect()
    gc.freeze()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m sfu.worker``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m sfu.worker", description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="channel socket descriptor")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit if not our parent")
    parser.add_argument("--codec", default=None, help="codec object, 'module:attribute'")
    parser.add_argument("--max-frame-bytes", type=int, default=MAX_FRAME_BYTES)
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning"])
    args = parser.parse_args(argv)
    set_parent_death_signal(args.parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format=f"%(asctime)s %(levelname)s worker[{os.getpid()}] %(name)s: %(message)s",
    )
    codec: Codec | None = None
    if args.codec:
        codec = import_object(args.codec)
        if isinstance(codec, type):
            codec = codec()
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(serve(args.fd, codec, args.max_frame_bytes))
    return 0
