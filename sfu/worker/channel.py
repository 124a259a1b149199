"""A request/reply/notification channel between the control process and a media worker.

Frames over a stream socket (a ``socketpair`` end or a Unix socket path): a 4-byte big-endian
unsigned payload length, then that many bytes of msgpack (https://msgpack.org). Each payload
is one message, a msgpack array whose first element is its type:

* ``[0, id, method, args]`` request: call ``method`` with the positional ``args`` (an array);
* ``[1, id, result]`` reply to request ``id``;
* ``[2, id, code, message]`` error reply to request ``id``: ``code`` is a wire error code
  (:mod:`sfu.worker.errors`), ``message`` text for people;
* ``[3, event, data]`` notification (an event), either direction, no reply;
* ``[4, id]`` cancel: the caller gave up on request ``id`` (its timeout passed); the serving
  side cancels it and sends no reply.

Both ends are symmetric: each may call, serve and notify. Values are plain msgpack values
(None, bool, int, float, str, bytes, lists, maps); a :class:`Codec` maps richer values (the
media-plane API's dataclasses) to and from them. The full protocol, with the error codes and
the lifecycle, is in ``docs/worker-channel.md``.

A frame longer than ``max_frame_bytes`` is refused: sending one fails that call
(:class:`FrameTooLargeError`) and keeps the channel; receiving one, or a payload that is not a
valid message, closes the channel, and every pending call fails with that typed error. When
the peer goes away (EOF, reset) every pending call fails with ``eof_error``
(:class:`ChannelClosedError`, or :class:`WorkerCrashedError` for the pool's channels).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import logging
import math
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgpack

from sfu.worker.errors import (
    BadRequestError,
    CallTimeoutError,
    ChannelClosedError,
    ChannelError,
    FrameTooLargeError,
    ProtocolError,
    RemoteError,
    UnknownMethodError,
    code_for,
    error_from_wire,
)

logger = logging.getLogger(__name__)

REQUEST = 0
REPLY = 1
ERROR = 2
NOTIFY = 3
CANCEL = 4

HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 4 * 1024 * 1024
"""Default largest payload (bytes) either side accepts; the wire allows up to 2**32 - 1."""
DEFAULT_TIMEOUT_S = 10.0
"""Default per-call timeout (seconds)."""

RequestHandler = Callable[[str, list[Any]], Awaitable[Any]]
"""Serves one request: ``(method, args) -> result`` (args and result already decoded by the
codec). Raising an :class:`sfu.errors.SfuError` sends its wire code; anything else is sent
as ``internal``."""
NotificationHandler = Callable[[str, Any], None]
"""Receives one notification: ``(event, data)``."""


class Codec(Protocol):
    """Maps values to plain msgpack values and back (e.g. ``sfu.plane.codec``).

    ``encode`` is applied to each request argument, each result and each notification's data
    before packing; ``decode`` to each of them after unpacking. Both may raise
    ``TypeError``/``ValueError`` for values they cannot map (sent as ``bad_request``)."""

    def encode(self, value: Any) -> Any:
        """A plain msgpack value for ``value``."""
        ...

    def decode(self, value: Any) -> Any:
        """The value that ``encode`` mapped to ``value``."""
        ...


class PlainCodec:
    """The identity codec: values must already be plain msgpack values."""

    def encode(self, value: Any) -> Any:
        """``value`` unchanged."""
        return value

    def decode(self, value: Any) -> Any:
        """``value`` unchanged."""
        return value


def pack_frame(message: list[Any], max_frame_bytes: int = MAX_FRAME_BYTES) -> bytes:
    """One frame (header + msgpack payload) for ``message``.

    Raises :class:`FrameTooLargeError` when the payload exceeds ``max_frame_bytes``,
    ``TypeError`` for a value msgpack cannot pack."""
    payload: bytes = msgpack.packb(message, use_bin_type=True)
    if len(payload) > max_frame_bytes:
        raise FrameTooLargeError(
            f"frame of {len(payload)} bytes exceeds the limit of {max_frame_bytes} bytes"
        )
    return HEADER.pack(len(payload)) + payload


def unpack_payload(payload: bytes) -> list[Any]:
    """The message in one frame's payload. Raises :class:`ProtocolError` when it is not
    msgpack or not a well-formed message of a known type."""
    try:
        message = msgpack.unpackb(payload, raw=False, strict_map_key=False, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise ProtocolError(f"undecodable frame: {exc.__class__.__name__}") from None
    if not isinstance(message, list) or not message or not isinstance(message[0], int):
        raise ProtocolError("a frame must hold an array starting with the message type")
    kind = message[0]
    shapes: dict[int, tuple[int, tuple[int, ...]]] = {
        # type: (length, indexes that must be str)
        REQUEST: (4, (2,)),
        REPLY: (3, ()),
        ERROR: (4, (2, 3)),
        NOTIFY: (3, (1,)),
        CANCEL: (2, ()),
    }
    shape = shapes.get(kind)
    if shape is None:
        raise ProtocolError(f"unknown message type {kind!r}")
    length, strings = shape
    if (
        len(message) != length
        or any(not isinstance(message[i], str) for i in strings)
        or (kind != NOTIFY and not isinstance(message[1], int))
        or (kind == REQUEST and not isinstance(message[3], list))
    ):
        raise ProtocolError(f"malformed message of type {kind}")
    return message


class Channel:
    """One end of a worker channel (asyncio; both the control process and the worker use
    it). Create with :meth:`open` (a connected socket) or :meth:`connect` (a Unix socket
    path), then :meth:`call`, :meth:`notify` and finally :meth:`close`.

    ``handler`` serves the peer's requests (none: every request gets ``unknown_method``);
    ``on_notification`` receives its notifications; ``codec`` maps values (default
    :class:`PlainCodec`); ``max_frame_bytes`` bounds each payload (bytes) both ways;
    ``timeout_s`` is the default per-call timeout (seconds); ``eof_error`` is the class of the
    error pending calls fail with when the peer goes away; ``name`` labels log lines.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        handler: RequestHandler | None = None,
        on_notification: NotificationHandler | None = None,
        codec: Codec | None = None,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        eof_error: type[ChannelClosedError] = ChannelClosedError,
        name: str = "channel",
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.handler = handler
        self.on_notification = on_notification
        self.codec: Codec = codec or PlainCodec()
        self.max_frame_bytes = max_frame_bytes
        self.timeout_s = timeout_s
        self.eof_error = eof_error
        self.name = name
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._serving: dict[int, asyncio.Task[None]] = {}
        self._closed: asyncio.Future[ChannelError] = asyncio.get_running_loop().create_future()
        self._read_task = asyncio.ensure_future(self._read_loop())

    @classmethod
    async def open(cls, sock: socket.socket, **kwargs: Any) -> Channel:
        """A channel over a connected stream socket (e.g. one end of
        ``socket.socketpair()``); the channel owns the socket from now on. ``kwargs`` are
        those of the constructor."""
        sock.setblocking(False)
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        return cls(reader, writer, **kwargs)

    @classmethod
    async def connect(cls, path: str, **kwargs: Any) -> Channel:
        """A channel to the Unix socket listening at ``path``."""
        reader, writer = await asyncio.open_unix_connection(path)
        return cls(reader, writer, **kwargs)

    # --- state --------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the channel is closed (by either side or by an error)."""
        return self._closed.done()

    @property
    def close_reason(self) -> ChannelError | None:
        """Why the channel closed (the error pending calls failed with); None while open."""
        return self._closed.result() if self._closed.done() else None

    async def wait_closed(self) -> ChannelError:
        """Wait until the channel is closed; returns the reason."""
        return await asyncio.shield(self._closed)

    @property
    def pending_calls(self) -> int:
        """Calls sent and not yet answered."""
        return len(self._pending)

    # --- sending ------------------------------------------------------------------------

    async def call(self, method: str, *args: Any, timeout_s: float | None = None) -> Any:
        """Call ``method(*args)`` at the peer and return its (decoded) result.

        ``timeout_s``: seconds to wait for the reply (default: the channel's; ``math.inf``
        waits for ever). Raises the error class of the peer's error code (e.g.
        :class:`sfu.errors.NotFoundError`), :class:`CallTimeoutError` (the peer is told to
        cancel), :class:`FrameTooLargeError` / :class:`BadRequestError` for arguments that do
        not fit a frame or cannot be encoded (the channel stays open), or the channel's close
        reason (:class:`ChannelClosedError` and subclasses) when it closes first."""
        if self.closed:
            raise self._reason_copy()
        request_id = next(self._ids)
        try:
            frame = pack_frame(
                [REQUEST, request_id, method, [self.codec.encode(arg) for arg in args]],
                self.max_frame_bytes,
            )
        except (TypeError, ValueError, OverflowError) as exc:
            raise BadRequestError(f"cannot encode the arguments of {method}: {exc}") from None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self._writer.write(frame)
            timeout = self.timeout_s if timeout_s is None else timeout_s
            try:
                async with asyncio.timeout(None if math.isinf(timeout) else timeout):
                    await self._drain()
                    return await future
            except TimeoutError:
                if future.done() and not future.cancelled() and future.exception() is None:
                    return future.result()
                if self.closed:
                    raise self._reason_copy() from None
                self._send_quietly([CANCEL, request_id])
                raise CallTimeoutError(
                    f"{method}: no reply from {self.name} within {timeout} s"
                ) from None
        except asyncio.CancelledError:
            if future.cancelled() or not future.done():  # awaiting it cancelled it
                self._send_quietly([CANCEL, request_id])  # nobody waits for the reply
            raise
        finally:
            self._pending.pop(request_id, None)

    def notify(self, event: str, data: Any = None) -> None:
        """Send notification ``event`` with ``data`` to the peer (no reply; buffered, not
        awaited). Raises :class:`ChannelClosedError` when closed, :class:`FrameTooLargeError`
        / :class:`BadRequestError` when ``data`` does not fit a frame or cannot be encoded."""
        if self.closed:
            raise self._reason_copy()
        try:
            frame = pack_frame([NOTIFY, event, self.codec.encode(data)], self.max_frame_bytes)
        except (TypeError, ValueError, OverflowError) as exc:
            raise BadRequestError(f"cannot encode notification {event}: {exc}") from None
        self._writer.write(frame)

    async def _drain(self) -> None:
        try:
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            self._set_closed(self.eof_error(f"{self.name}: peer went away ({exc})"))
            raise self._reason_copy() from None

    def _send_quietly(self, message: list[Any]) -> None:
        if self.closed:
            return
        try:
            self._writer.write(pack_frame(message, self.max_frame_bytes))
        except (ChannelError, TypeError, ValueError, OverflowError, ConnectionError, OSError):
            logger.exception("%s: cannot send a %s message", self.name, message[0])

    # --- receiving ----------------------------------------------------------------------

    async def _read_loop(self) -> None:
        reason: ChannelError
        try:
            while True:
                header = await self._reader.readexactly(HEADER.size)
                (length,) = HEADER.unpack(header)
                if length > self.max_frame_bytes:
                    raise FrameTooLargeError(
                        f"{self.name}: received a frame of {length} bytes, limit "
                        f"{self.max_frame_bytes} bytes"
                    )
                payload = await self._reader.readexactly(length)
                self._dispatch(unpack_payload(payload))
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            reason = self.eof_error(f"{self.name}: peer closed the channel ({exc!r})")
        except ChannelError as exc:
            logger.warning("%s: closing: %s", self.name, exc)
            reason = exc
        except asyncio.CancelledError:
            reason = ChannelClosedError(f"{self.name}: channel closed")
        except Exception as exc:  # e.g. a codec bug: never leave pending calls hanging
            logger.exception("%s: closing after an unexpected error", self.name)
            reason = ProtocolError(f"{self.name}: {exc.__class__.__name__}: {exc}")
        self._set_closed(reason)

    def _dispatch(self, message: list[Any]) -> None:
        kind = message[0]
        if kind == REPLY or kind == ERROR:
            future = self._pending.get(message[1])
            if future is None or future.done():
                return  # a reply to a call that timed out: dropped
            if kind == REPLY:
                try:
                    future.set_result(self.codec.decode(message[2]))
                except (TypeError, ValueError, KeyError) as exc:
                    future.set_exception(BadRequestError(f"cannot decode the reply: {exc}"))
            else:
                future.set_exception(error_from_wire(message[2], message[3]))
        elif kind == REQUEST:
            request_id, method, args = message[1], message[2], message[3]
            if request_id in self._serving:
                raise ProtocolError(f"{self.name}: duplicate request id {request_id}")
            task = asyncio.ensure_future(self._serve(request_id, method, args))
            self._serving[request_id] = task
        elif kind == NOTIFY:
            if self.on_notification is None:
                return
            try:
                self.on_notification(message[1], self.codec.decode(message[2]))
            except Exception:
                logger.exception("%s: notification handler failed on %s", self.name, message[1])
        elif kind == CANCEL:
            serving = self._serving.pop(message[1], None)
            if serving is not None:
                serving.cancel()
        else:
            raise ProtocolError(f"{self.name}: unknown message type {kind!r}")

    async def _serve(self, request_id: int, method: str, args: list[Any]) -> None:
        try:
            try:
                decoded = [self.codec.decode(arg) for arg in args]
            except (TypeError, ValueError, KeyError) as exc:
                raise BadRequestError(f"cannot decode the arguments of {method}: {exc}") from None
            if self.handler is None:
                raise UnknownMethodError(f"{self.name} serves no methods")
            result = await self.handler(method, decoded)
        except asyncio.CancelledError:
            self._serving.pop(request_id, None)
            return  # cancelled by the caller, or the channel closed: nothing to send
        except Exception as exc:
            frame = self._error_frame(request_id, method, exc)
        else:
            try:
                frame = pack_frame(
                    [REPLY, request_id, self.codec.encode(result)], self.max_frame_bytes
                )
            except FrameTooLargeError as exc:
                frame = self._error_frame(request_id, method, exc)
            except (TypeError, ValueError, OverflowError) as exc:
                logger.error("%s: cannot encode the result of %s: %s", self.name, method, exc)
                frame = self._error_frame(
                    request_id, method, RemoteError(f"cannot encode the result of {method}")
                )
        self._serving.pop(request_id, None)
        if not self.closed:
            self._writer.write(frame)
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.drain()

    def _error_frame(self, request_id: int, method: str, exc: Exception) -> bytes:
        code = code_for(exc)
        if code == "internal" and not isinstance(exc, RemoteError):
            logger.error("%s: %s failed", self.name, method, exc_info=exc)
        message = (str(exc) or exc.__class__.__name__)[:4096]
        return pack_frame([ERROR, request_id, code, message], self.max_frame_bytes)

    # --- closing ------------------------------------------------------------------------

    def _reason_copy(self) -> ChannelError:
        reason = self.close_reason or ChannelClosedError(f"{self.name}: channel closed")
        return copy.copy(reason)  # a fresh object per raise: tracebacks do not pile up

    def _set_closed(self, reason: ChannelError) -> None:
        if self._closed.done():
            return
        self._closed.set_result(reason)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(self._reason_copy())
        for task in self._serving.values():
            task.cancel()
        self._serving.clear()
        with contextlib.suppress(Exception):
            self._writer.close()
        if self._read_task is not asyncio.current_task():
            self._read_task.cancel()

    async def close(self, reason: ChannelError | None = None) -> None:
        """Close the channel: pending calls fail with ``reason`` (default
        :class:`ChannelClosedError`), requests being served are cancelled, the socket is
        closed (the peer sees EOF). Idempotent."""
        self._set_closed(reason or ChannelClosedError(f"{self.name}: channel closed"))
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._read_task
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()


__all__ = [
    "CANCEL",
    "DEFAULT_TIMEOUT_S",
    "ERROR",
    "MAX_FRAME_BYTES",
    "NOTIFY",
    "REPLY",
    "REQUEST",
    "Channel",
    "Codec",
    "PlainCodec",
    "RemoteError",
    "pack_frame",
    "unpack_payload",
]
