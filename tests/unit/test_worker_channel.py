"""The worker channel (sfu.worker.channel): both ends in one event loop over a socketpair,
or one end facing a raw socket that writes bad frames."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.errors import NotFoundError
from sfu.worker.channel import Channel, unpack_payload
from sfu.worker.errors import (
    BadRequestError,
    CallTimeoutError,
    ChannelClosedError,
    FrameTooLargeError,
    ProtocolError,
    RemoteError,
    UnknownMethodError,
    WorkerCrashedError,
)

LIMIT = 64 * 1024


class Served:
    """The serving end's methods and what it saw."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.notes: list[tuple[str, Any]] = []

    async def handle(self, method: str, args: list[Any]) -> Any:
        if method == "echo":
            return args
        if method == "sleep":
            await asyncio.sleep(args[0])
            return args[0]
        if method == "hang":
            try:
                await asyncio.sleep(3600)
            finally:
                self.cancelled.set()
        if method == "not_found":
            raise NotFoundError("no producer p1")
        if method == "bug":
            raise ValueError("oops")
        if method == "blob":
            return bytes(args[0])
        if method == "unencodable":
            return object()
        raise UnknownMethodError(f"no method {method!r}")


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Channel, Channel, Served]]:
    a, b = socket.socketpair()
    served = Served()
    caller = await Channel.open(a, max_frame_bytes=LIMIT, timeout_s=5, name="caller")
    server = await Channel.open(
        b,
        handler=served.handle,
        on_notification=lambda event, data: served.notes.append((event, data)),
        max_frame_bytes=LIMIT,
        name="server",
    )
    yield caller, server, served
    await caller.close()
    await server.close()


async def test_round_trip_and_concurrent_calls(pair: tuple[Channel, Channel, Served]) -> None:
    caller, _server, _ = pair
    value = {"ssrc": 1234, 5: [1.5, None, True], "sdp": "v=0\r\n", "raw": b"\x00\xff"}
    assert await caller.call("echo", value, "x") == [value, "x"]
    # Replies are matched by id, not by order: the slow call answers last.
    slow = asyncio.ensure_future(caller.call("sleep", 0.2))
    fast = asyncio.ensure_future(caller.call("sleep", 0.01))
    done, _ = await asyncio.wait({slow, fast}, return_when=asyncio.FIRST_COMPLETED)
    assert done == {fast}
    assert await slow == 0.2
    assert caller.pending_calls == 0


async def test_typed_errors_come_back_and_the_channel_stays_open(
    pair: tuple[Channel, Channel, Served],
) -> None:
    caller, _server, _ = pair
    with pytest.raises(NotFoundError, match="no producer p1"):
        await caller.call("not_found")
    with pytest.raises(RemoteError, match="oops") as bug:
        await caller.call("bug")
    assert bug.value.code == "internal"
    with pytest.raises(UnknownMethodError):
        await caller.call("nope")
    with pytest.raises(RemoteError, match="cannot encode the result"):
        await caller.call("unencodable")
    assert await caller.call("echo", 1) == [1]


async def test_a_channel_without_handler_answers_unknown_method(
    pair: tuple[Channel, Channel, Served],
) -> None:
    _caller, server, _ = pair
    with pytest.raises(UnknownMethodError):
        await server.call("anything")


async def test_timeout_cancels_the_request_at_the_peer(
    pair: tuple[Channel, Channel, Served],
) -> None:
    caller, _server, served = pair
    with pytest.raises(CallTimeoutError):
        await caller.call("hang", timeout_s=0.1)
    await asyncio.wait_for(served.cancelled.wait(), 2)
    assert await caller.call("echo", "still") == ["still"]


async def test_a_cancelled_call_is_cancelled_at_the_peer(
    pair: tuple[Channel, Channel, Served],
) -> None:
    caller, _server, served = pair
    call = asyncio.ensure_future(caller.call("hang"))
    await asyncio.sleep(0.05)
    call.cancel()
    await asyncio.wait_for(served.cancelled.wait(), 2)
    assert caller.pending_calls == 0


async def test_notifications_both_ways(pair: tuple[Channel, Channel, Served]) -> None:
    caller, server, served = pair
    got: list[tuple[str, Any]] = []
    caller.on_notification = lambda event, data: got.append((event, data))
    caller.notify("to_server", {"a": 1})
    server.notify("to_caller", [1, 2])
    for _ in range(100):
        if got and served.notes:
            break
        await asyncio.sleep(0.01)
    assert served.notes == [("to_server", {"a": 1})]
    assert got == [("to_caller", [1, 2])]


async def test_sending_an_oversized_frame_fails_only_that_call(
    pair: tuple[Channel, Channel, Served],
) -> None:
    caller, _server, _ = pair
    with pytest.raises(FrameTooLargeError):
        await caller.call("echo", bytes(LIMIT + 1))
    with pytest.raises(FrameTooLargeError):
        caller.notify("big", bytes(LIMIT + 1))
    with pytest.raises(BadRequestError):
        await caller.call("echo", object())
    # A reply too large for a frame comes back as a typed error, not a hang.
    with pytest.raises(FrameTooLargeError):
        await caller.call("blob", LIMIT + 1)
    assert not caller.closed
    assert await caller.call("blob", 10) == bytes(10)


async def _raw_peer() -> tuple[Channel, socket.socket]:
    a, b = socket.socketpair()
    channel = await Channel.open(
        a, max_frame_bytes=LIMIT, timeout_s=30, eof_error=WorkerCrashedError, name="c"
    )
    b.setblocking(True)
    return channel, b


async def test_receiving_an_oversized_frame_closes_with_a_typed_error() -> None:
    channel, raw = await _raw_peer()
    pending = asyncio.ensure_future(channel.call("echo", 1))
    await asyncio.sleep(0.05)
    raw.sendall(struct.pack(">I", LIMIT + 1))  # the header alone: no payload needed
    with pytest.raises(FrameTooLargeError):
        await asyncio.wait_for(pending, 2)
    assert isinstance(await asyncio.wait_for(channel.wait_closed(), 2), FrameTooLargeError)
    with pytest.raises(FrameTooLargeError):
        await channel.call("echo", 2)
    raw.close()
    await channel.close()


@pytest.mark.parametrize(
    "payload",
    [
        b"\xc1",  # never used in msgpack
        msgpack.packb({"not": "an array"}),
        msgpack.packb([9, 1]),  # unknown type
        msgpack.packb([0, "id", "m", []]),  # request id not an int
        msgpack.packb([0, 1, "m", "args"]),  # args not an array
        msgpack.packb([2, 1, 5, "msg"]),  # error code not a string
    ],
)
async def test_a_malformed_frame_closes_with_protocol_error(payload: bytes) -> None:
    channel, raw = await _raw_peer()
    pending = asyncio.ensure_future(channel.call("echo", 1))
    await asyncio.sleep(0.05)
    raw.sendall(struct.pack(">I", len(payload)) + payload)
    with pytest.raises(ProtocolError):
        await asyncio.wait_for(pending, 2)
    raw.close()
    await channel.close()


async def test_peer_death_fails_every_pending_call() -> None:
    channel, raw = await _raw_peer()
    pending = [asyncio.ensure_future(channel.call("echo", n)) for n in range(5)]
    await asyncio.sleep(0.05)
    raw.sendall(struct.pack(">I", 100) + b"\x93")  # a truncated frame, then gone
    raw.close()
    results = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 2)
    assert all(isinstance(result, WorkerCrashedError) for result in results)
    with pytest.raises(WorkerCrashedError):
        await channel.call("echo", 1)
    with pytest.raises(ChannelClosedError):
        channel.notify("x")
    await channel.close()


async def test_close_fails_pending_calls_and_the_peer_sees_eof(
    pair: tuple[Channel, Channel, Served],
) -> None:
    caller, server, _ = pair
    pending = asyncio.ensure_future(caller.call("hang"))
    await asyncio.sleep(0.05)
    await caller.close()
    with pytest.raises(ChannelClosedError):
        await pending
    assert isinstance(await asyncio.wait_for(server.wait_closed(), 2), ChannelClosedError)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_unpack_payload_raises_only_protocol_error(payload: bytes) -> None:
    try:
        message = unpack_payload(payload)
    except ProtocolError:
        return
    assert isinstance(message, list) and message[0] in (0, 1, 2, 3, 4)
