"""Encode every value of the media-plane API to plain JSON-able data, and back.

A channel to a media worker (requests, replies, notifications; docs/media-plane.md) carries
only what this module produces: dicts, lists, str, int, float, bool and None, which msgpack
or JSON encode as they are. Validation and reconstruction use pydantic's ``TypeAdapter``
(pydantic v2 supports stdlib dataclasses, tuples, unions and mappings), driven by the type
hints of :class:`sfu.plane.api.MediaPlane`, so a new method or field needs no codec change.

* a call: ``encode_call(method, kwargs)`` -> ``{"method", "args"}``, :func:`decode_call`;
* a reply: :func:`encode_result` / :func:`decode_result` (by method), or for a typed error
  :func:`encode_error` / :func:`decode_error` (``{"code", "message"}``, :mod:`sfu.errors`);
* a notification: :func:`encode_notification` -> ``{"participant": sid, "event": ...}``
  with :func:`encode_event` -> ``{"type": "<dataclass name>", "data": {...}}``, and back
  (some events of :data:`sfu.events.ParticipantEvent` share a shape, e.g.
  ``ParticipantJoined`` and ``ParticipantUpdated``, so they are tagged by name).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError

from sfu import events
from sfu.errors import CodecError, SfuError, error_from_code
from sfu.plane.api import MediaPlane, PipeListener, PlaneListener
from sfu.plane.types import PipeTransportParameters

# An SRTP key (bytes) crosses as base64 text (pydantic's default would be UTF-8, which random
# key bytes are not); pydantic reads this attribute of a stdlib dataclass as its config.
PipeTransportParameters.__pydantic_config__ = ConfigDict(  # type: ignore[attr-defined]
    ser_json_bytes="base64", val_json_bytes="base64"
)

EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls for cls in typing.get_args(events.ParticipantEvent)
}
"""Every :data:`sfu.events.ParticipantEvent` dataclass by its name (the notification tag)."""


@functools.cache
def _adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


def encode(value: Any, tp: Any) -> Any:
    """``value`` (of type ``tp``) as plain JSON-able data (dataclasses become dicts, tuples
    become lists)."""
    return _adapter(tp).dump_python(value, mode="json")


def decode(data: Any, tp: Any) -> Any:
    """Rebuild a value of type ``tp`` from :func:`encode`'s output.

    Raises:
        CodecError: ``data`` does not fit ``tp``.
    """
    try:
        return _adapter(tp).validate_python(data)
    except ValidationError as exc:
        raise CodecError(f"cannot decode {tp}: {exc}") from None


@functools.cache
def method_types(method: str) -> tuple[dict[str, Any], Any]:
    """(parameter name -> type, result type) of ``MediaPlane.<method>``; the listener of
    ``join`` and ``pipe_open`` is left out (it stays on the caller's side of a channel).

    Raises:
        CodecError: no such method.
    """
    function = getattr(MediaPlane, method, None)
    if method.startswith("_") or not inspect.iscoroutinefunction(function):
        raise CodecError(f"no media-plane method {method!r}")
    hints = typing.get_type_hints(function)
    result = hints.pop("return")
    params = {
        name: tp
        for name, tp in hints.items()
        if name != "self" and tp not in (PlaneListener, PipeListener) and name != "listener"
    }
    return params, result


def methods() -> list[str]:
    """Every method of :class:`MediaPlane`, by name."""
    return sorted(
        name
        for name, value in vars(MediaPlane).items()
        if not name.startswith("_") and inspect.iscoroutinefunction(value)
    )


def encode_call(method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A request: ``{"method": method, "args": {name: encoded value}}`` (keyword arguments
    only; ``join``'s listener is not sent).

    Raises:
        CodecError: no such method, or an argument it does not take.
    """
    params, _ = method_types(method)
    unknown = set(kwargs) - set(params) - {"listener"}
    if unknown:
        raise CodecError(f"{method} takes no {sorted(unknown)}")
    return {
        "method": method,
        "args": {name: encode(kwargs[name], params[name]) for name in params if name in kwargs},
    }


def decode_call(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(method, keyword arguments) of an :func:`encode_call` message.

    Raises:
        CodecError: unknown method or argument, or an argument of the wrong shape.
    """
    method = message.get("method")
    args = message.get("args")
    if not isinstance(method, str) or not isinstance(args, dict):
        raise CodecError("a call needs a method name and an args object")
    params, _ = method_types(method)
    unknown = set(args) - set(params)
    if unknown:
        raise CodecError(f"{method} takes no {sorted(unknown)}")
    return method, {name: decode(value, params[name]) for name, value in args.items()}


def encode_result(method: str, value: Any) -> Any:
    """The reply value of ``method``, encoded by its declared result type."""
    return encode(value, method_types(method)[1])


def decode_result(method: str, data: Any) -> Any:
    """The value of ``method``'s reply.

    Raises:
        CodecError: it does not fit the declared result type.
    """
    return decode(data, method_types(method)[1])


def encode_event(event: events.ParticipantEvent) -> dict[str, Any]:
    """A notification body: ``{"type": "<dataclass name>", "data": {...}}``.

    Raises:
        CodecError: not a :data:`sfu.events.ParticipantEvent`.
    """
    name = type(event).__name__
    if EVENT_TYPES.get(name) is not type(event):
        raise CodecError(f"not a participant event: {name}")
    return {"type": name, "data": encode(event, type(event))}


def decode_event(message: dict[str, Any]) -> events.ParticipantEvent:
    """The event of an :func:`encode_event` body.

    Raises:
        CodecError: unknown type or bad data.
    """
    cls = EVENT_TYPES.get(str(message.get("type")))
    if cls is None:
        raise CodecError(f"unknown event type {message.get('type')!r}")
    event: events.ParticipantEvent = decode(message.get("data"), cls)
    return event


def encode_notification(participant: str, event: events.ParticipantEvent) -> dict[str, Any]:
    """A notification for one participant's listener: ``{"participant": sid, "event":
    encode_event(event)}``.

    Raises:
        CodecError: not a :data:`sfu.events.ParticipantEvent`.
    """
    return {"participant": participant, "event": encode_event(event)}


def decode_notification(message: dict[str, Any]) -> tuple[str, events.ParticipantEvent]:
    """(participant sid, event) of an :func:`encode_notification` message.

    Raises:
        CodecError: no participant id, or a bad event.
    """
    participant = message.get("participant")
    event = message.get("event")
    if not isinstance(participant, str) or not isinstance(event, dict):
        raise CodecError("a notification needs a participant id and an event object")
    return participant, decode_event(event)


def encode_error(exc: SfuError) -> dict[str, str]:
    """A typed error reply: ``{"code": exc.code, "message": str(exc)}``."""
    return {"code": exc.code, "message": str(exc)}


def decode_error(message: dict[str, Any]) -> SfuError:
    """The typed error of an :func:`encode_error` reply (to raise)."""
    return error_from_code(str(message.get("code")), str(message.get("message", "")))


# -- a self-describing codec, for a channel that maps one value at a time ----------------------

TAG = "$dc"
"""The key that marks an encoded API dataclass in :class:`ChannelCodec`'s output."""


def _walk(tp: Any, seen: dict[str, type[Any]]) -> None:
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if seen.get(tp.__name__) is tp:
            return
        if tp.__name__ in seen:
            raise CodecError(f"two API dataclasses are named {tp.__name__}")
        seen[tp.__name__] = tp
        for field_type in typing.get_type_hints(tp).values():
            _walk(field_type, seen)
        return
    for arg in typing.get_args(tp):
        _walk(arg, seen)


@functools.cache
def api_dataclasses() -> dict[str, type[Any]]:
    """Every dataclass the API takes, returns or emits (nested ones too), by class name."""
    seen: dict[str, type[Any]] = {}
    for method in methods():
        params, result = method_types(method)
        for tp in [*params.values(), result]:
            _walk(tp, seen)
    for event in EVENT_TYPES.values():
        _walk(event, seen)
    return seen


class ChannelCodec:
    """Maps any API value to plain msgpack/JSON values and back, one value at a time, without
    knowing its declared type (the ``Codec`` hook of a worker channel: ``encode(value)`` /
    ``decode(value)``).

    An API dataclass becomes ``{"$dc": "<class name>", "v": <its fields, encoded by
    type>}``; lists and tuples become lists of encoded items, dicts keep their keys with
    encoded values; str, int, float, bool, None and bytes pass through unchanged (so plain
    control messages need no codec). A top-level tuple comes back as a list (the API's
    methods take either). ``$dc`` is reserved as a dict key.
    """

    def encode(self, value: Any) -> Any:
        """A plain value for ``value``.

        Raises:
            TypeError: a value that is neither plain nor an API dataclass.
        """
        if value is None or isinstance(value, str | bool | int | float | bytes):
            return value
        if isinstance(value, list | tuple):
            return [self.encode(item) for item in value]
        if isinstance(value, dict):
            return {key: self.encode(item) for key, item in value.items()}
        cls = type(value)
        if api_dataclasses().get(cls.__name__) is cls:
            return {TAG: cls.__name__, "v": encode(value, cls)}
        raise TypeError(f"not a media-plane API value: {cls.__name__}")

    def decode(self, value: Any) -> Any:
        """The value :meth:`encode` mapped to ``value``.

        Raises:
            CodecError: an unknown dataclass tag or fields that do not fit it (a
                ``ValueError``, as the channel expects).
        """
        if isinstance(value, list):
            return [self.decode(item) for item in value]
        if isinstance(value, dict):
            if TAG in value:
                cls = api_dataclasses().get(str(value[TAG]))
                if cls is None:
                    raise CodecError(f"unknown media-plane dataclass {value[TAG]!r}")
                return decode(value.get("v"), cls)
            return {key: self.decode(item) for key, item in value.items()}
        return value


CHANNEL_CODEC = ChannelCodec()
"""The instance a worker channel names as ``sfu.plane.codec:CHANNEL_CODEC``."""
