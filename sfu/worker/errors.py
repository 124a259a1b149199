"""Typed errors of the worker channel (``sfu.worker.channel``) and the worker pool.

An error raised by a method served in a worker travels back as an error reply with a code
(``docs/worker-channel.md``, "Error codes"); the caller re-raises it as the class registered
for that code: the :mod:`sfu.errors` classes for the media plane's own errors, the classes
below for failures of the channel itself.
"""

from __future__ import annotations

from sfu.errors import ERRORS, SfuError


class ChannelError(SfuError):
    """Base class of every failure of the worker channel itself (not of the called method).

    ``code`` is the wire error code (``docs/worker-channel.md``)."""

    code = "channel_error"


class ChannelClosedError(ChannelError):
    """The channel is closed: the call was not sent, or its reply will never come."""

    code = "channel_closed"


class WorkerCrashedError(ChannelClosedError):
    """The worker process at the other end died (or is down, waiting to be restarted); every
    call pending on it fails with this error."""

    code = "worker_crashed"


class CallTimeoutError(ChannelError):
    """No reply within the call's timeout; the worker is told to cancel the request."""

    code = "timeout"


class FrameTooLargeError(ChannelError):
    """A frame longer than the channel's ``max_frame_bytes``. Sending one fails the call and
    leaves the channel open; receiving one closes the channel (its framing can no longer be
    trusted)."""

    code = "frame_too_large"


class ProtocolError(ChannelError):
    """A frame that is not valid msgpack, or not a message of the channel protocol; the
    channel is closed."""

    code = "protocol_error"


class UnknownMethodError(ChannelError):
    """The worker's target has no public coroutine method of that name."""

    code = "unknown_method"


class BadRequestError(ChannelError):
    """The arguments do not fit the method's signature, or a value cannot be encoded."""

    code = "bad_request"


class RemoteError(ChannelError):
    """An unexpected exception in the worker (a bug), or an error code this side does not
    know; ``code`` is the code received (``internal`` for unexpected exceptions)."""

    code = "internal"

    def __init__(self, message: str, code: str = "internal") -> None:
        super().__init__(message)
        self.code = code


class WorkerStartError(ChannelError):
    """A worker process exited, or did not build its target, before it was ready."""

    code = "worker_start"


# Wire code -> exception class. The order matters for ``code_for``: a subclass must come
# before its base class (``code_for`` walks the exception's MRO, so it does in any order).
ERROR_CLASSES: dict[str, type[SfuError]] = {
    # every media-plane error (sfu.errors.ERRORS: invalid_sdp, not_allowed, codec_error, ...)
    **ERRORS,
    ChannelError.code: ChannelError,
    ChannelClosedError.code: ChannelClosedError,
    WorkerCrashedError.code: WorkerCrashedError,
    CallTimeoutError.code: CallTimeoutError,
    FrameTooLargeError.code: FrameTooLargeError,
    ProtocolError.code: ProtocolError,
    UnknownMethodError.code: UnknownMethodError,
    BadRequestError.code: BadRequestError,
    WorkerStartError.code: WorkerStartError,
}
_CODES: dict[type[BaseException], str] = {cls: code for code, cls in ERROR_CLASSES.items()}


def register_error(code: str, cls: type[SfuError]) -> None:
    """Map wire error ``code`` to ``cls`` in both directions, e.g. for an error class the
    media-plane API adds. ``cls`` must be constructible from one message string."""
    ERROR_CLASSES[code] = cls
    _CODES[cls] = code


def code_for(exc: BaseException) -> str:
    """The wire code of ``exc``: the code of the nearest class in its MRO that has one,
    ``internal`` when none has (an unexpected exception); a :class:`RemoteError` keeps its
    own code (an error relayed from further away)."""
    if isinstance(exc, RemoteError):
        return exc.code
    for cls in type(exc).__mro__:
        code = _CODES.get(cls)
        if code is not None:
            return code
    return "internal"


def error_from_wire(code: str, message: str) -> SfuError:
    """The exception to raise on the caller's side for an error reply ``(code, message)``."""
    if code == "internal":
        return RemoteError(message, code)
    cls = ERROR_CLASSES.get(code)
    if cls is None:
        return RemoteError(message, code)
    return cls(message)
