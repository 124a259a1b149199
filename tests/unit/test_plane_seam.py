"""The seam between the edge and the media plane (issue 12).

* ``signaling/`` reaches the media plane only through ``sfu.plane`` (plus the plain
  ``sfu.events``/``sfu.errors``/``sfu.stats``/``sfu.tasks``): it imports no Router,
  WebRtcTransport, Producer, Consumer, Room, Participant or MediaServer module. The aiortc
  *client* code (``signaling/client.py``, ``signaling/loadtest``) is allowed the adapter and
  the RTP helpers, by name.
* In ``sfu/``, only ``transport.py`` and the aiortc adapter touch the RTCPeerConnection.
* Every dataclass of the API (arguments, results, events) and every typed error crosses a
  JSON channel through ``sfu.plane.codec`` and comes back equal.
* ``LocalMediaPlane`` speaks ids and dataclasses and raises the typed errors.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from sfu import errors, events
from sfu.plane import codec
from sfu.plane.api import MediaPlane
from sfu.plane.local import LocalMediaPlane
from sfu.plane.types import ParticipantSpec, TrackSpec

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN = {
    "sfu.participant",
    "sfu.producer",
    "sfu.consumer",
    "sfu.transport",
    "sfu.router",
    "sfu.room",
    "sfu.server",
}
"""Media-plane objects the edge must never import (it holds ids, not objects)."""

EDGE_ALLOWED = {
    "sfu.plane",
    "sfu.plane.api",
    "sfu.plane.types",
    "sfu.plane.codec",
    "sfu.events",
    "sfu.errors",
    "sfu.stats",
    "sfu.tasks",
}
"""What the edge may import from ``sfu``."""

PLANE_FACTORY = {"signaling/app.py": {"sfu.plane.local", "sfu.plane.workers"}}
"""The app factory builds the media plane: in process, or over worker processes."""

CLIENT_FILES = {
    "signaling/client.py": {"sfu._aiortc_adapter", "sfu.rtp.header", "sfu.tasks"},
    "signaling/loadtest/media.py": {"sfu._aiortc_adapter", "sfu.rtp.header"},
    "signaling/loadtest/peers.py": {"sfu._aiortc_adapter", "sfu.rtp.header"},
    "signaling/loadtest/worker.py": {"sfu._aiortc_adapter"},
}
"""aiortc *clients* (the test/load-test peers), not the server's edge: allowed by name."""


def sfu_imports(source: str) -> set[str]:
    """Every ``sfu`` module a Python source imports, anywhere (functions and
    ``TYPE_CHECKING`` blocks included); ``from sfu import x`` counts as ``sfu.x``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "sfu")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "sfu":
                continue
            if node.module == "sfu":
                found.update(f"sfu.{a.name}" for a in node.names)
            else:
                found.add(node.module)
    return found


def test_the_checker_sees_every_form_of_import() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import sfu.router\n"
        "from sfu import room, events\n"
        "if TYPE_CHECKING:\n"
        "    from sfu.participant import Participant\n"
        "def f() -> None:\n"
        "    from sfu.server import MediaServer\n"
    )
    assert sfu_imports(source) == {
        "sfu.router",
        "sfu.room",
        "sfu.events",
        "sfu.participant",
        "sfu.server",
    }


def test_signaling_reaches_the_media_plane_only_through_sfu_plane() -> None:
    modules = sorted((ROOT / "signaling").rglob("*.py"))
    assert len(modules) > 30  # the walk found the package
    violations = []
    for path in modules:
        rel = path.relative_to(ROOT).as_posix()
        imported = sfu_imports(path.read_text(encoding="utf-8"))
        allowed = CLIENT_FILES.get(rel, EDGE_ALLOWED | PLANE_FACTORY.get(rel, set()))
        bad = {m for m in imported if m not in allowed or m in FORBIDDEN}
        violations.extend(f"{rel} imports {m}" for m in sorted(bad))
    assert violations == []
    for rel in CLIENT_FILES:  # the allow-list names files that exist
        assert (ROOT / rel).is_file(), rel


def test_only_the_transport_and_the_adapter_touch_the_peer_connection() -> None:
    owners = {"transport.py", "_aiortc_adapter.py"}
    violations = []
    for path in sorted((ROOT / "sfu").rglob("*.py")):
        if path.name in owners and path.parent.name == "sfu":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "pc":
                violations.append(f"{path.relative_to(ROOT)}:{node.lineno} reads .pc")
    assert violations == []


# -- the codec --------------------------------------------------------------------------------


def _sample(tp: Any, name: str = "x") -> Any:
    """A value of type ``tp`` with every optional part filled in (so nothing is skipped)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is str:
        return f"{name}-é✓"  # non-ASCII survives too
    if tp is bool:
        return True
    if tp is int:
        return 1234567
    if tp is float:
        return 2.5
    if tp is bytes:
        return bytes(range(200, 228))  # not UTF-8: an SRTP key crosses as base64
    if tp is type(None):
        return None
    if origin is typing.Literal:
        return args[-1]
    if origin in (typing.Union, types.UnionType):
        concrete = [a for a in args if a is not type(None)]
        return _sample(concrete[0], name)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:  # variadic: two items
            return tuple(_sample(args[0], f"{name}{i}") for i in range(2))
        return tuple(_sample(a, f"{name}{i}") for i, a in enumerate(args))  # fixed length
    if origin is list:
        return [_sample(args[0], f"{name}0"), _sample(args[0], f"{name}1")]
    if origin in (dict, Mapping) or origin is typing.get_origin(Mapping[str, str]):
        return {"k1": _sample(args[1], name), "k2": _sample(args[1], name + "2")}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = typing.get_type_hints(tp)
        return tp(**{f.name: _sample(hints[f.name], f.name) for f in dataclasses.fields(tp)})
    raise AssertionError(f"the API uses a type the codec test does not know: {tp!r}")


def _dataclasses_in(tp: Any, seen: set[type]) -> None:
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if tp in seen:
            return
        seen.add(tp)
        for field_type in typing.get_type_hints(tp).values():
            _dataclasses_in(field_type, seen)
        return
    for arg in typing.get_args(tp):
        _dataclasses_in(arg, seen)


def api_dataclasses() -> set[type]:
    """Every dataclass reachable from the API's signatures and events."""
    seen: set[type] = set()
    for method in codec.methods():
        params, result = codec.method_types(method)
        for tp in [*params.values(), result]:
            _dataclasses_in(tp, seen)
    for event in codec.EVENT_TYPES.values():
        _dataclasses_in(event, seen)
    return seen


def _through_json(data: Any) -> Any:
    return json.loads(json.dumps(data, ensure_ascii=False))


def test_every_api_dataclass_round_trips_through_plain_json() -> None:
    classes = api_dataclasses()
    names = {c.__name__ for c in classes}
    # the walk reaches arguments, results, nested values and events
    assert {"ParticipantSpec", "TrackSpec", "JoinResult", "ParticipantInfo", "TrackInfo"} <= names
    assert {"PublishAnswer", "ParticipantState", "PlaneStats", "IceServer"} <= names
    assert {"SubscribeOffer", "SubscribedTrack", "ActiveSpeakersChanged", "SpeakerLevel"} <= names
    assert {"PipeTransportParameters", "PipeProducerParameters", "PipeControl"} <= names
    for cls in classes:
        value = _sample(cls)
        assert codec.decode(_through_json(codec.encode(value, cls)), cls) == value, cls


def test_every_method_call_and_result_round_trips() -> None:
    assert codec.methods() == sorted(
        n for n in vars(MediaPlane) if not n.startswith("_") and callable(getattr(MediaPlane, n))
    )
    for method in codec.methods():
        params, result = codec.method_types(method)
        kwargs = {name: _sample(tp, name) for name, tp in params.items()}
        message = _through_json(codec.encode_call(method, kwargs))
        assert codec.decode_call(message) == (method, kwargs)
        value = _sample(result)
        assert codec.decode_result(method, _through_json(codec.encode_result(method, value))) == (
            value
        )


def test_every_event_round_trips_with_its_type() -> None:
    assert set(codec.EVENT_TYPES) >= {
        "ParticipantJoined",
        "ParticipantUpdated",
        "SubscribeOffer",
        "ParticipantClosed",
        "MediaRestarted",
    }
    for cls in codec.EVENT_TYPES.values():
        event = _sample(cls)
        decoded = codec.decode_event(_through_json(codec.encode_event(event)))
        assert type(decoded) is cls and decoded == event
        message = _through_json(codec.encode_notification("PA_1", event))
        assert codec.decode_notification(message) == ("PA_1", event)
    # two events of one shape stay apart
    info = _sample(events.ParticipantInfo)
    joined = codec.decode_event(_through_json(codec.encode_event(events.ParticipantJoined(info))))
    assert isinstance(joined, events.ParticipantJoined)


def test_bad_messages_get_a_typed_codec_error() -> None:
    with pytest.raises(errors.CodecError):
        codec.decode_call({"method": "no_such_method", "args": {}})
    with pytest.raises(errors.CodecError):
        codec.decode_call({"method": "leave", "args": {"participant": "PA_x", "bogus": 1}})
    with pytest.raises(errors.CodecError):
        codec.decode_call({"method": "set_hidden", "args": {"participant": "PA_x", "hidden": {}}})
    with pytest.raises(errors.CodecError):
        codec.decode_event({"type": "Exploded", "data": {}})
    with pytest.raises(errors.CodecError):
        codec.decode_notification({"event": {"type": "ParticipantLeft", "data": {}}})
    with pytest.raises(errors.CodecError):
        codec.encode_event(TrackSpec("0", "audio"))  # type: ignore[arg-type]
    with pytest.raises(errors.CodecError):
        codec.decode_result("participant", {"participant": "not a ref"})


def test_the_channel_codec_carries_every_api_value_without_its_type() -> None:
    """``ChannelCodec`` is the worker channel's per-value hook: it must restore every API
    dataclass from the value alone, and leave plain values as they are."""
    channel = codec.CHANNEL_CODEC
    assert set(codec.api_dataclasses().values()) == api_dataclasses()
    for cls in api_dataclasses():
        value = _sample(cls)
        assert channel.decode(_through_json(channel.encode(value))) == value, cls
    for method in codec.methods():  # positional args as a channel sends them, and results
        params, result = codec.method_types(method)
        for value in [*(_sample(tp, name) for name, tp in params.items()), _sample(result)]:
            back = channel.decode(_through_json(channel.encode(value)))
            assert back == (list(value) if isinstance(value, tuple) else value), method
    plain = {"a": [1, "x", None, True, 2.5], "b": {"c": -1}}
    assert channel.encode(plain) == plain and channel.decode(plain) == plain
    assert channel.encode(b"\x00raw") == b"\x00raw"
    with pytest.raises(TypeError):
        channel.encode(object())
    with pytest.raises(ValueError):  # a CodecError is a ValueError: the channel's bad_request
        channel.decode({codec.TAG: "Exploded", "v": {}})
    with pytest.raises(ValueError):
        channel.decode({codec.TAG: "TrackSpec", "v": {"mid": []}})


def test_every_typed_error_crosses_with_its_class() -> None:
    classes = [
        v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, errors.SfuError)
    ]
    assert len({c.code for c in classes}) == len(classes)  # one code each
    assert set(errors.ERRORS.values()) == set(classes)
    for cls in classes:
        back = codec.decode_error(_through_json(codec.encode_error(cls("why: é"))))
        assert type(back) is cls and str(back) == "why: é"


# -- LocalMediaPlane through the API only --------------------------------------------------------


async def test_local_plane_speaks_ids_dataclasses_and_typed_errors() -> None:
    plane: MediaPlane = LocalMediaPlane()
    seen: dict[str, list[events.ParticipantEvent]] = {"a": [], "b": []}
    try:
        a = await plane.join(
            "r", ParticipantSpec("alice", "Alice", attributes={"role": "host"}), seen["a"].append
        )
        b = await plane.join(
            "r", ParticipantSpec("bob", "Bob", can_publish=False), seen["b"].append
        )
        assert seen["b"] == []  # nothing reaches a new participant before join returns
        assert a.participant.room == "r" and a.others == ()
        assert [i.identity for i in b.others] == ["alice"]
        assert seen["a"] == [events.ParticipantJoined(b.info)]
        assert (await plane.find_participant("r", "bob")) == await plane.participant(
            b.participant.sid
        )
        assert [i.sid for i in await plane.room_participants("r", exclude=a.participant.sid)] == [
            b.participant.sid
        ]
        # grants are enforced with typed errors, before any SDP is looked at
        with pytest.raises(errors.NotAllowedError):
            await plane.publish_offer(b.participant.sid, "v=0\r\n", [TrackSpec("0", "audio")])
        with pytest.raises(errors.NotFoundError):
            await plane.set_track_muted(a.participant.sid, "TR_nope", True)
        with pytest.raises(errors.InvalidSdpError):
            await plane.publish_offer(a.participant.sid, "not sdp", [])
        # a podcast-style move off the stage: the others see a leave, then nothing
        await plane.set_hidden(b.participant.sid, True)
        await plane.set_attributes(b.participant.sid, {"role": "listener"})
        assert seen["a"][-1] == events.ParticipantLeft(b.participant.sid)
        assert (await plane.participant(b.participant.sid)).hidden
        stats = await plane.stats()
        assert (stats.rooms, stats.participants) == (1, 2)
        # every event is one of the codec's types, so a channel can carry it
        for event in seen["a"] + seen["b"]:
            assert codec.decode_event(_through_json(codec.encode_event(event))) == event
        await plane.close_room("r", reason="room_ended")
        assert seen["a"][-1] == events.ParticipantClosed("room_ended")
        assert seen["b"][-1] == events.ParticipantClosed("room_ended")
        with pytest.raises(errors.NotFoundError):
            await plane.participant(a.participant.sid)
        with pytest.raises(errors.NotFoundError):
            await plane.subscribe_answer(a.participant.sid, "v=0\r\n")
        await plane.leave(a.participant.sid)  # unknown now: a no-op
        await plane.set_hidden("PA_unknown", False)  # setters ignore unknown ids
        assert (await plane.stats()).participants == 0
    finally:
        await plane.close()
