"""Conference host controls: lock, waiting room (knock, admit, deny), mute, remove, end, hands.

Real aiortc peers on loopback; every permission check is driven by crafted messages from
participants who are not the host.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from signaling.app import create_app
from signaling.client import RoomClient, SignalingError
from signaling.settings import Settings
from tests.integration.conftest import MakeToken
from tests.support.media import ToneTrack

ROOM = "meet"


def _events(client: RoomClient, kind: str) -> list[dict[str, Any]]:
    return [e for e in client.events if e["type"] == kind]


def _sid(client: RoomClient) -> str:
    return str(client.joined["participant"]["sid"])


def _saw_join(client: RoomClient, identity: str) -> bool:
    return any(
        e["participant"]["identity"] == identity for e in _events(client, "participant_joined")
    )


async def _refused(client: RoomClient, message: dict[str, Any], code: str = "forbidden") -> None:
    with pytest.raises(SignalingError) as info:
        await client.request(message)
    assert info.value.code == code, info.value


async def _join_refused(client: RoomClient) -> SignalingError:
    with pytest.raises(SignalingError) as info:
        await client.connect()
    return info.value


@pytest.fixture
def meet(room_client: Callable[..., RoomClient]) -> Callable[..., RoomClient]:
    """``meet(identity, host=False)``: a client of the conference room (the host holds
    ``roomAdmin``)."""

    def make(identity: str, host: bool = False, **kwargs: Any) -> RoomClient:
        return room_client(ROOM, identity, admin=host, **kwargs)

    return make


async def test_a_locked_room_admits_only_the_host_and_people_already_in_it(
    meet: Callable[..., RoomClient],
) -> None:
    host = meet("host", host=True)
    alice = meet("alice")
    bob = meet("bob")
    cohost = meet("cohost", host=True)
    alice_again = meet("alice")
    try:
        await host.connect()
        await alice.connect()
        await host.request({"type": "lock_room", "locked": True})
        # Everyone learns the room is locked.
        await alice.wait_for(lambda: any(e["locked"] for e in _events(alice, "stage_settings")))
        refused = await _join_refused(bob)
        assert refused.code == "forbidden" and "locked" in refused.message
        await bob.close()
        # A roomAdmin (the second one joins as moderator) still comes in ...
        assert (await cohost.connect())["role"] == "moderator"
        # ... and so does someone who was already in this meeting (a reconnect).
        await alice.close()
        await alice_again.connect()
        # Unlocked: newcomers join again.
        await host.request({"type": "lock_room", "locked": False})
        bob = meet("bob")
        await bob.connect()
        await host.wait_for(lambda: _saw_join(host, "bob"))
    finally:
        for client in (bob, alice_again, cohost, alice, host):
            await client.close()


@contextlib.asynccontextmanager
async def _server(settings: Settings) -> AsyncIterator[str]:
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def test_the_lock_and_the_waiting_room_survive_a_restart(
    sfu_settings: Settings, make_token: MakeToken
) -> None:
    def client(url: str, identity: str, admin: bool = False) -> RoomClient:
        return RoomClient(
            url, ROOM, identity=identity, token=make_token(ROOM, identity, admin=admin)
        )

    async with _server(sfu_settings) as url:
        host = client(url, "host", admin=True)
        try:
            await host.connect()
            await host.request({"type": "lock_room", "locked": True})
            await host.request({"type": "set_waiting_room", "enabled": True})
        finally:
            await host.close()

    async with _server(sfu_settings) as url:
        bob = client(url, "bob")
        host = client(url, "host", admin=True)
        try:
            refused = await _join_refused(bob)
            assert refused.code == "forbidden" and "locked" in refused.message
            await host.connect()
            await host.wait_for(lambda: bool(_events(host, "stage_settings")))
            settings = _events(host, "stage_settings")[-1]
            assert settings["locked"] is True and settings["waiting_room"] is True
        finally:
            await bob.close()
            await host.close()


async def test_waiting_room_knock_admit_and_deny(meet: Callable[..., RoomClient]) -> None:
    host = meet("host", host=True)
    alice = meet("alice")
    bob = meet("bob")
    carol = meet("carol")
    dave = meet("dave")
    tasks: list[asyncio.Task[dict[str, Any]]] = []
    try:
        await host.connect()
        await alice.connect()
        await host.request({"type": "set_waiting_room", "enabled": True})
        await alice.wait_for(
            lambda: any(e["waiting_room"] for e in _events(alice, "stage_settings"))
        )
        # Bob knocks: he is told to wait and gets no media; the host is asked, with his name.
        bob_join = asyncio.ensure_future(bob.connect())
        tasks.append(bob_join)
        await bob.wait_for(lambda: bool(_events(bob, "waiting")))
        await host.wait_for(lambda: bool(_events(host, "knock")))
        knock = _events(host, "knock")[0]
        assert knock["name"] == "bob" and knock["identity"] == "bob"
        assert not bob_join.done() and bob.sub is None and bob.pub is None
        assert not _saw_join(alice, "bob")
        assert not _events(alice, "knock")  # only the host and moderators see knocks
        # While waiting only ping answers; anything else is refused.
        assert (await bob.request({"type": "ping"}))["type"] == "pong"
        await _refused(bob, {"type": "chat", "text": "let me in"}, code="not_joined")
        # A participant who is not the host cannot let anyone in.
        await _refused(alice, {"type": "respond_knock", "knock": knock["knock"], "admit": True})
        assert not bob_join.done()
        # The host admits Bob: his join goes on and everyone sees him.
        await host.request({"type": "respond_knock", "knock": knock["knock"], "admit": True})
        joined = await asyncio.wait_for(bob_join, 20)
        assert joined["type"] == "joined" and joined["participant"]["identity"] == "bob"
        await alice.wait_for(lambda: _saw_join(alice, "bob"))
        resolved = _events(host, "knock_resolved")[-1]
        assert resolved["outcome"] == "admitted" and resolved["by"] == _sid(host)

        # Carol knocks and is turned away, in words.
        carol_join = asyncio.ensure_future(carol.connect())
        tasks.append(carol_join)
        await host.wait_for(lambda: len(_events(host, "knock")) == 2)
        knock = _events(host, "knock")[1]
        await host.request({"type": "respond_knock", "knock": knock["knock"], "admit": False})
        with pytest.raises(SignalingError) as info:
            await asyncio.wait_for(carol_join, 20)
        assert info.value.code == "forbidden"
        assert info.value.message == "The host did not let you in."
        assert not _saw_join(alice, "carol")
        # An answered knock cannot be answered again.
        await _refused(
            host, {"type": "respond_knock", "knock": knock["knock"], "admit": True}, "not_found"
        )

        # Dave knocks and gives up (closes the tab): the host's list drops him.
        dave_join = asyncio.ensure_future(dave.connect())
        tasks.append(dave_join)
        await host.wait_for(lambda: len(_events(host, "knock")) == 3)
        assert dave.ws is not None
        await dave.ws.close()
        await host.wait_for(
            lambda: any(e["outcome"] == "left" for e in _events(host, "knock_resolved"))
        )
    finally:
        for task in tasks:
            task.cancel()
        for client in (dave, carol, bob, alice, host):
            await client.close()


async def test_turning_the_waiting_room_off_lets_everyone_in(
    meet: Callable[..., RoomClient],
) -> None:
    host = meet("host", host=True)
    bob = meet("bob")
    try:
        await host.connect()
        await host.request({"type": "set_waiting_room", "enabled": True})
        bob_join = asyncio.ensure_future(bob.connect())
        await host.wait_for(lambda: bool(_events(host, "knock")))
        await host.request({"type": "set_waiting_room", "enabled": False})
        joined = await asyncio.wait_for(bob_join, 20)
        assert joined["participant"]["identity"] == "bob"
    finally:
        await bob.close()
        await host.close()


async def test_host_requests_from_others_are_forbidden(meet: Callable[..., RoomClient]) -> None:
    host = meet("host", host=True)
    alice = meet("alice")
    bob = meet("bob")
    try:
        await host.connect()
        await alice.connect()
        await bob.connect()
        await bob.publish([ToneTrack(440.0)])
        await bob.request({"type": "raise_hand", "raised": True})
        for message in (
            {"type": "lock_room", "locked": True},
            {"type": "set_waiting_room", "enabled": True},
            {"type": "respond_knock", "knock": "anything", "admit": True},
            {"type": "mute_participant", "participant": _sid(bob)},
            {"type": "remove_participant", "participant": _sid(bob)},
            {"type": "end_room"},
            {"type": "raise_hand", "raised": False, "participant": _sid(bob)},
        ):
            await _refused(alice, message)
        # Nothing changed: Bob is still here, unmuted, hand up; newcomers still join.
        assert not _events(bob, "track_muted") and not bob.errors
        assert not _events(bob, "hand") or _events(bob, "hand")[-1]["raised"] is True
        late = meet("late")
        try:
            await late.connect()
        finally:
            await late.close()
    finally:
        for client in (bob, alice, host):
            await client.close()


async def test_conference_host_mutes_and_only_the_speaker_unmutes(
    meet: Callable[..., RoomClient],
) -> None:
    host = meet("host", host=True)
    alice = meet("alice")
    bob = meet("bob")
    try:
        for client in (host, alice, bob):
            await client.connect()
        await alice.publish([ToneTrack(440.0)])
        track = next(iter(alice.published.values()))
        # Mute: Alice is told it was the host (remote), everyone sees the track muted.
        await host.request({"type": "mute_participant", "participant": _sid(alice)})
        await alice.wait_for(
            lambda: any(e["remote"] and e["muted"] for e in _events(alice, "track_muted"))
        )
        await bob.wait_for(lambda: any(e["muted"] for e in _events(bob, "track_muted")))
        # Bob cannot unmute her (nor mute her again); only Alice unmutes herself.
        await _refused(bob, {"type": "mute_participant", "participant": _sid(alice)})
        await _refused(bob, {"type": "mute", "track": track, "muted": False}, "not_found")
        await alice.request({"type": "mute", "track": track, "muted": False})
        await bob.wait_for(lambda: not _events(bob, "track_muted")[-1]["muted"])
    finally:
        for client in (bob, alice, host):
            await client.close()


async def test_conference_host_removes_and_ends_for_everyone(
    meet: Callable[..., RoomClient],
) -> None:
    host = meet("host", host=True)
    alice = meet("alice")
    bob = meet("bob")
    carol = meet("carol")
    try:
        for client in (host, alice, bob):
            await client.connect()
        # Remove Bob: he is told, and a fresh token does not bring him back.
        await host.request({"type": "remove_participant", "participant": _sid(bob)})
        await bob.wait_for(lambda: any("removed" in e["message"] for e in bob.errors))
        again = meet("bob")
        refused = await _join_refused(again)
        assert refused.code == "forbidden" and "removed" in refused.message
        await again.close()

        # End for everyone: both get room_ended and are disconnected, and whoever waits in
        # the waiting room is turned away; nobody rejoins.
        await host.request({"type": "set_waiting_room", "enabled": True})
        carol_join = asyncio.ensure_future(carol.connect())
        await host.wait_for(lambda: bool(_events(host, "knock")))
        await host.request({"type": "end_room"})
        with pytest.raises(SignalingError) as info:
            await asyncio.wait_for(carol_join, 20)
        assert info.value.code == "forbidden" and "ended" in info.value.message
        for client in (host, alice):
            await client.wait_for(lambda c=client: bool(_events(c, "room_ended")))  # type: ignore[misc]
            await client.wait_for(lambda c=client: c.ws is not None and c.ws.closed)  # type: ignore[misc]
        late = meet("alice")
        refused = await _join_refused(late)
        assert refused.code == "forbidden" and "ended" in refused.message
        await late.close()
    finally:
        for client in (carol, bob, alice, host):
            await client.close()


async def test_conference_hands_are_seen_by_everyone_and_lowered_by_the_host(
    meet: Callable[..., RoomClient],
) -> None:
    host = meet("host", host=True)
    alice = meet("alice")
    bob = meet("bob")
    try:
        for client in (host, alice, bob):
            await client.connect()
        # A speaker raises a hand in a conference (a podcast allows only listeners).
        await alice.request({"type": "raise_hand", "raised": True})

        def raised(client: RoomClient) -> list[str]:
            hands = _events(client, "hands")
            return [m["sid"] for m in hands[-1]["queue"]] if hands else []

        for client in (host, bob):  # everyone sees the hand, not only the host
            await client.wait_for(lambda c=client: raised(c) == [_sid(alice)])  # type: ignore[misc]
        assert _events(alice, "hand")[-1]["raised"] is True
        # Bob may not lower it; the host may.
        await _refused(bob, {"type": "raise_hand", "raised": False, "participant": _sid(alice)})
        await host.request({"type": "raise_hand", "raised": False, "participant": _sid(alice)})
        await alice.wait_for(lambda: _events(alice, "hand")[-1]["raised"] is False)
        await bob.wait_for(lambda: raised(bob) == [])
    finally:
        for client in (bob, alice, host):
            await client.close()
