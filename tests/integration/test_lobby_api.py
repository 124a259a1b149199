"""The lobby's rooms API (issue 16): live state and counts, delete, invite links listed and
revoked, paginated history, and the explicit reopen of a room its host ended.

Every endpoint is owner-only: another account gets 403, nobody signed in 401, an unknown
room 404. Real WebSocket clients join the rooms (``signaling.client.RoomClient``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from signaling.accounts import record_presence
from signaling.client import RoomClient, SignalingError
from tests.conftest import Api
from tests.integration.test_accounts_rooms import _invite


async def _room(api: Api, owner: dict[str, Any], kind: str = "podcast") -> dict[str, Any]:
    resp = await api.client.post(
        "/api/rooms", headers=api.auth(owner), json={"name": "Friday show", "kind": kind}
    )
    assert resp.status == 201, await resp.text()
    room: dict[str, Any] = (await resp.json())["room"]
    return room


async def _client(api: Api, room_id: str, answer: Any) -> RoomClient:
    url = str(api.client.make_url("")).rstrip("/")
    return RoomClient(url, room_id, token=(await answer.json())["token"])


async def _owner_client(api: Api, owner: dict[str, Any], room_id: str) -> RoomClient:
    resp = await api.client.post(f"/api/rooms/{room_id}/token", headers=api.auth(owner))
    assert resp.status == 200, await resp.text()
    return await _client(api, room_id, resp)


async def _guest(api: Api, room_id: str, code: str, name: str) -> RoomClient:
    resp = await api.client.post(f"/api/join/{code}", json={"display_name": name})
    assert resp.status == 200, await resp.text()
    return await _client(api, room_id, resp)


async def _listed(api: Api, session: dict[str, Any], room_id: str) -> dict[str, Any] | None:
    resp = await api.client.get("/api/rooms", headers=api.auth(session))
    assert resp.status == 200
    rooms = [r for r in (await resp.json())["rooms"] if r["id"] == room_id]
    return rooms[0] if rooms else None


async def _until(check: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def _others_refused(api: Api, method: str, path: str, stranger: dict[str, Any]) -> None:
    resp = await api.client.request(method, path, headers=api.auth(stranger))
    assert resp.status == 403 and (await resp.json())["code"] == "not_room_owner"
    anon = await api.client.request(method, path)
    assert anon.status == 401


async def test_the_owners_room_list_shows_live_state_and_everyone_counted(api: Api) -> None:
    alice = await api.register("alice@example.com")
    bob = await api.register("bob@example.com")
    room = await _room(api, alice)
    idle = await _listed(api, alice, room["id"])
    assert idle is not None
    assert (idle["live"], idle["participants"], idle["listeners"], idle["ended"]) == (
        False,
        0,
        0,
        False,
    )
    listener_link = await _invite(api, alice, room["id"], role="listener")
    speaker_link = await _invite(api, alice, room["id"], role="speaker")
    host = await _owner_client(api, alice, room["id"])
    speaker = await _guest(api, room["id"], speaker_link["code"], "Sam")
    listeners = [await _guest(api, room["id"], listener_link["code"], f"L{i}") for i in range(2)]
    try:
        for each in (host, speaker, *listeners):
            await each.connect()
        live = await _listed(api, alice, room["id"])
        assert live is not None
        # Hidden podcast listeners count too: 1 host + 1 speaker + 2 listeners.
        assert (live["live"], live["participants"], live["listeners"]) == (True, 4, 2)
        assert await _listed(api, bob, room["id"]) is None  # only the owner's rooms
        await listeners[0].close()

        async def three() -> bool:
            now = await _listed(api, alice, room["id"])
            return now is not None and (now["participants"], now["listeners"]) == (3, 1)

        await _until(three)
    finally:
        for each in (*listeners, speaker, host):
            await each.close()

    async def empty() -> bool:
        now = await _listed(api, alice, room["id"])
        return now is not None and not now["live"] and now["participants"] == 0

    await _until(empty)


async def test_deleting_a_live_room_ends_it_and_only_the_owner_may(api: Api) -> None:
    alice = await api.register("alice@example.com")
    bob = await api.register("bob@example.com")
    room = await _room(api, alice)
    link = await _invite(api, alice, room["id"])
    host = await _owner_client(api, alice, room["id"])
    guest = await _guest(api, room["id"], link["code"], "Gus")
    path = f"/api/rooms/{room['id']}"
    try:
        await host.connect()
        await guest.connect()
        await _others_refused(api, "DELETE", path, bob)
        missing = await api.client.delete("/api/rooms/nosuchroom", headers=api.auth(alice))
        assert missing.status == 404 and (await missing.json())["code"] == "room_not_found"
        assert (await _listed(api, alice, room["id"])) is not None  # still there

        resp = await api.client.delete(path, headers=api.auth(alice))
        assert resp.status == 204
        for each in (host, guest):
            await each.wait_for(lambda c=each: any(e["type"] == "room_ended" for e in c.events))  # type: ignore[misc]
            await each.wait_for(lambda c=each: c.ws is not None and c.ws.closed)  # type: ignore[misc]
        assert await _listed(api, alice, room["id"]) is None
        gone = await api.client.post(f"/api/join/{link['code']}")
        assert gone.status == 404
        again = await api.client.delete(path, headers=api.auth(alice))
        assert again.status == 404
    finally:
        await guest.close()
        await host.close()
    # A room token issued before the deletion no longer gets in.
    late = RoomClient(guest.url, room["id"], token=guest.token)
    with pytest.raises(SignalingError) as info:
        await late.connect()
    assert info.value.code == "forbidden"
    await late.close()


async def test_invite_links_are_listed_and_revoked_by_the_owner(api: Api) -> None:
    alice = await api.register("alice@example.com")
    bob = await api.register("bob@example.com")
    room = await _room(api, alice)
    other = await _room(api, alice)
    speaker = await _invite(api, alice, room["id"], role="speaker")
    moderator = await _invite(api, alice, room["id"], role="moderator", max_uses=3)
    foreign = await _invite(api, alice, other["id"])
    path = f"/api/rooms/{room['id']}/invites"
    await _others_refused(api, "GET", path, bob)
    await _others_refused(api, "DELETE", f"{path}/{speaker['code']}", bob)

    listed = await (await api.client.get(path, headers=api.auth(alice))).json()
    by_code = {i["code"]: i for i in listed["invites"]}
    assert set(by_code) == {speaker["code"], moderator["code"]}
    assert by_code[moderator["code"]]["role"] == "moderator"
    assert by_code[moderator["code"]]["remaining"] == 3
    assert by_code[speaker["code"]]["url"] == f"/join/{speaker['code']}"

    revoked = await api.client.delete(f"{path}/{speaker['code']}", headers=api.auth(alice))
    assert revoked.status == 204
    listed = await (await api.client.get(path, headers=api.auth(alice))).json()
    assert [i["code"] for i in listed["invites"]] == [moderator["code"]]
    dead = await api.client.post(f"/api/join/{speaker['code']}")
    assert dead.status == 404 and (await dead.json())["code"] == "invite_not_found"
    twice = await api.client.delete(f"{path}/{speaker['code']}", headers=api.auth(alice))
    assert twice.status == 404 and (await twice.json())["code"] == "invite_not_found"
    # Another room's link is not this room's to revoke; it keeps working.
    cross = await api.client.delete(f"{path}/{foreign['code']}", headers=api.auth(alice))
    assert cross.status == 404
    assert (await api.client.post(f"/api/join/{foreign['code']}")).status == 200
    # The moderator link works and gives a moderator.
    answer = await api.client.post(f"/api/join/{moderator['code']}", json={})
    assert answer.status == 200
    assert (await answer.json())["grants"]["role"] == "moderator"


async def test_history_is_paginated_and_owner_only(api: Api) -> None:
    alice = await api.register("alice@example.com")
    bob = await api.register("bob@example.com")
    room = await _room(api, alice)
    for i in range(5):
        await record_presence(api.app, room["id"], f"guest-{i}", "joined", f"Guest {i}")
    path = f"/api/rooms/{room['id']}/history"
    await _others_refused(api, "GET", path, bob)
    first = await (await api.client.get(f"{path}?limit=2", headers=api.auth(alice))).json()
    assert (first["total"], first["offset"], first["limit"]) == (5, 0, 2)
    assert [e["name"] for e in first["events"]] == ["Guest 0", "Guest 1"]
    last = await (await api.client.get(f"{path}?offset=4&limit=2", headers=api.auth(alice))).json()
    assert [e["name"] for e in last["events"]] == ["Guest 4"]
    for bad in ("limit=0", "limit=501", "offset=-1", "limit=abc"):
        resp = await api.client.get(f"{path}?{bad}", headers=api.auth(alice))
        assert resp.status == 422 and (await resp.json())["code"] == "validation_failed", bad


async def test_an_ended_room_opens_again_only_when_its_owner_reopens_it(api: Api) -> None:
    alice = await api.register("alice@example.com")
    bob = await api.register("bob@example.com")
    room = await _room(api, alice)
    host = await _owner_client(api, alice, room["id"])
    spare = await _owner_client(api, alice, room["id"])  # an owner token from before the end
    try:
        await host.connect()
        await host.request({"type": "end_room"})
        await host.wait_for(lambda: host.ws is not None and host.ws.closed)
        listed = await _listed(api, alice, room["id"])
        assert listed is not None and listed["ended"] is True and listed["live"] is False
        # The owner's roomAdmin token no longer reopens it silently: a clear sentence.
        with pytest.raises(SignalingError) as info:
            await spare.connect()
        assert info.value.code == "forbidden" and "reopen it from your lobby" in info.value.message
        token = await api.client.post(f"/api/rooms/{room['id']}/token", headers=api.auth(alice))
        assert token.status == 409
        problem = await token.json()
        assert problem["code"] == "room_ended" and "Reopen" in problem["detail"]

        await _others_refused(api, "POST", f"/api/rooms/{room['id']}/reopen", bob)
        reopened = await api.client.post(f"/api/rooms/{room['id']}/reopen", headers=api.auth(alice))
        assert reopened.status == 200
        assert (await reopened.json())["room"]["ended"] is False
        back = await _owner_client(api, alice, room["id"])
        try:
            joined = await back.connect()
            assert joined["role"] == "host"
        finally:
            await back.close()
    finally:
        await spare.close()
        await host.close()
