"""A real target for the worker tests (``factory = "tests.support.echo_target:make"``).

Every method is a coroutine served over the worker channel: echo values, sleep, raise a
typed :mod:`sfu.errors` error (or an unexpected one), emit notifications, keep a bit of state
(to check that a restart of another worker leaves it alone) and report ``stats()``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfu.errors import InvalidStateError, NotFoundError
from sfu.worker.process import WorkerContext


@dataclass(frozen=True)
class Point:
    """A dataclass carried over the channel by :class:`PointCodec`."""

    x: int
    y: int


class PointCodec:
    """A codec as the media-plane API's will be: :class:`Point` <-> ``{"__point__": [x, y]}``,
    recursively through lists and maps; plain values pass through unchanged."""

    def encode(self, value: Any) -> Any:
        if isinstance(value, Point):
            return {"__point__": [value.x, value.y]}
        if isinstance(value, list | tuple):
            return [self.encode(item) for item in value]
        if isinstance(value, dict):
            return {key: self.encode(item) for key, item in value.items()}
        return value

    def decode(self, value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"__point__"}:
                return Point(*value["__point__"])
            return {key: self.decode(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.decode(item) for item in value]
        return value


class EchoTarget:
    """The test target; ``config`` is echoed back by :meth:`config`."""

    def __init__(self, config: dict[str, Any], context: WorkerContext) -> None:
        self._config = config
        self._context = context
        self._state: dict[str, Any] = {}
        self._calls = 0
        self.closed = False
        self._notes: list[Any] = []

    async def echo(self, *values: Any) -> list[Any]:
        """The arguments, as a list."""
        self._calls += 1
        return list(values)

    async def whoami(self) -> dict[str, Any]:
        """This worker's pid and index."""
        self._calls += 1
        return {"pid": os.getpid(), "index": self._context.index}

    async def gc_frozen(self) -> int:
        """Objects in this worker's permanent GC generation (``gc.get_freeze_count``)."""
        return gc.get_freeze_count()

    async def config(self) -> dict[str, Any]:
        """The config the factory got."""
        return self._config

    async def sleep(self, seconds: float) -> float:
        """Sleep ``seconds``, return them."""
        await asyncio.sleep(seconds)
        return seconds

    async def fail(self, kind: str) -> None:
        """Raise: ``not_found`` / ``invalid_state`` (typed), ``bug`` (a ValueError)."""
        if kind == "not_found":
            raise NotFoundError("no such producer: p1")
        if kind == "invalid_state":
            raise InvalidStateError("transport closed")
        raise ValueError("a bug in the worker")

    async def emit(self, event: str, count: int) -> int:
        """Emit ``count`` notifications ``event`` with data ``{"n": i}``."""
        for n in range(count):
            self._context.emit(event, {"n": n, "index": self._context.index})
        return count

    async def set(self, key: str, value: Any) -> None:
        """Remember ``value`` under ``key``."""
        self._state[key] = value

    async def get(self, key: str) -> Any:
        """The value remembered under ``key`` (None when none)."""
        return self._state.get(key)

    async def move(self, point: Point, dx: int) -> dict[str, Point]:
        """``point`` moved by ``dx`` (needs :class:`PointCodec` on both ends)."""
        if not isinstance(point, Point):
            raise TypeError(f"not a Point: {point!r}")
        self._context.emit("moved", [point])
        return {"to": Point(point.x + dx, point.y)}

    async def blob(self, size: int) -> bytes:
        """``size`` zero bytes (a large reply)."""
        return bytes(size)

    async def bad_result(self) -> Any:
        """A result msgpack cannot encode."""
        return object()

    async def notes(self) -> list[Any]:
        """The notifications received from the control process."""
        return self._notes

    def on_notification(self, event: str, data: Any) -> None:
        """Keep a control-process notification."""
        self._notes.append([event, data])

    def helper(self) -> int:
        """Not a coroutine: never served."""
        return 1

    def stats(self) -> dict[str, int]:
        """Counters: calls served."""
        return {"calls": self._calls, "pid": os.getpid()}

    async def block(self, seconds: float) -> None:
        """Block the worker's event loop for ``seconds`` (a stuck worker)."""
        time.sleep(seconds)  # noqa: ASYNC251 - blocking on purpose

    async def close(self) -> None:
        """Close (SIGTERM). Config ``close_marker``: a directory where ``closed-<index>`` is
        written; ``hang_on_close``: never return (the pool must SIGKILL)."""
        self.closed = True
        if self._config.get("hang_on_close"):
            time.sleep(3600)  # noqa: ASYNC251 - a target that never finishes closing
        marker = self._config.get("close_marker")
        if marker:
            (Path(marker) / f"closed-{self._context.index}").write_text(str(os.getpid()))


def make(config: dict[str, Any], context: WorkerContext) -> EchoTarget:
    """The factory the worker calls."""
    if config.get("fail_start"):
        raise RuntimeError("refusing to start")
    return EchoTarget(config, context)
