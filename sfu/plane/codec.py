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

import functools
import inspect
import typing
from typing import Any

from pydantic import TypeAdapter, ValidationError

from sfu import events
from sfu.errors import CodecError, SfuError, error_from_code
from sfu.plane.api import MediaPlane, PlaneListener

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
    ``join`` is left out (it stays on the caller's side of a channel).

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
        if name != "self" and tp is not PlaneListener and name != "listener"
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
