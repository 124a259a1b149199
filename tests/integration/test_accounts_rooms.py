"""Rooms, invite codes, join by code, meeting history and ``authorize_join``."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from signaling.accounts import JWT_SECRET, authorize_join, record_presence
from signaling.auth.tokens import TokenError, VideoGrant, create_access_token
from signaling.client import RoomClient
from tests.conftest import Api


async def _room(api: Api, owner: dict[str, Any], kind: str = "conference") -> dict[str, Any]:
    resp = await api.client.post(
        "/api/rooms", headers=api.auth(owner), json={"name": "Weekly sync", "kind": kind}
    )
    assert resp.status == 201, await resp.text()
    room: dict[str, Any] = (await resp.json())["room"]
    return room


async def _invite(api: Api, owner: dict[str, Any], room_id: str, **body: Any) -> dict[str, Any]:
    resp = await api.client.post(
        f"/api/rooms/{room_id}/invites", headers=api.auth(owner), json=body
    )
    assert resp.status == 201, await resp.text()
    invite: dict[str, Any] = await resp.json()
    return invite


async def test_create_and_list_rooms(api: Api) -> None:
    alice = await api.register("alice@example.com")
    bob = await api.register("bob@example.com")
    r1 = await _room(api, alice)
    r2 = await _room(api, alice, "podcast")
    await _room(api, bob)
    resp = await api.client.get("/api/rooms", headers=api.auth(alice))
    rooms = (await resp.json())["rooms"]
    assert {r["id"] for r in rooms} == {r1["id"], r2["id"]}
    assert r2["kind"] == "podcast" and r1["owner"] == alice["user"]["id"]


async def test_invite_join_by_code_gives_room_token(api: Api) -> None:
    alice = await api.register("alice@example.com")
    bob = await api.register("bob@example.com")
    room = await _room(api, alice)
    invite = await _invite(api, alice, room["id"])
    assert invite["url"] == f"/join/{invite['code']}"
    assert len(invite["code"]) >= 22
    resp = await api.client.post(f"/api/join/{invite['code']}", headers=api.auth(bob), json={})
    assert resp.status == 200, await resp.text()
    joined = await resp.json()
    assert joined["identity"] == bob["user"]["id"]
    assert joined["grants"]["canPublish"] and not joined["grants"]["roomAdmin"]
    claims = await authorize_join(api.app, joined["token"], room["id"])
    assert claims.sub == bob["user"]["id"] and claims.video.room == room["id"]
    with pytest.raises(TokenError) as info:
        await authorize_join(api.app, joined["token"], "another-room")
    assert info.value.code == "wrong_room" and info.value.status == 403
    # An account token is not a room token.
    with pytest.raises(TokenError) as info:
        await authorize_join(api.app, bob["access_token"], room["id"])
    assert info.value.code == "wrong_room"


async def test_guest_join_podcast_is_listener(api: Api) -> None:
    alice = await api.register("alice@example.com")
    room = await _room(api, alice, "podcast")
    invite = await _invite(api, alice, room["id"])
    resp = await api.client.post(f"/api/join/{invite['code']}", json={"display_name": "Gus"})
    assert resp.status == 200
    joined = await resp.json()
    assert joined["identity"].startswith("guest-") and joined["name"] == "Gus"
    assert not joined["grants"]["canPublish"] and joined["grants"]["canSubscribe"]
    # The join page for the invite link is served (the browser client).
    page = await api.client.get(invite["url"])
    assert page.status == 200
    assert "Content-Security-Policy" in page.headers


async def test_invite_max_uses_and_unknown_code(api: Api) -> None:
    alice = await api.register("alice@example.com")
    room = await _room(api, alice)
    invite = await _invite(api, alice, room["id"], max_uses=1, role="listener")
    assert (await api.client.post(f"/api/join/{invite['code']}")).status == 200
    used = await api.client.post(f"/api/join/{invite['code']}")
    assert used.status == 404 and (await used.json())["code"] == "invite_not_found"
    unknown = await api.client.post("/api/join/doesnotexist")
    assert unknown.status == 404


async def test_only_owner_invites_and_gets_owner_token(api: Api) -> None:
    alice = await api.register("alice@example.com")
    bob = await api.register("bob@example.com")
    room = await _room(api, alice)
    resp = await api.client.post(f"/api/rooms/{room['id']}/invites", headers=api.auth(bob))
    assert resp.status == 403 and (await resp.json())["code"] == "not_room_owner"
    resp = await api.client.post(f"/api/rooms/{room['id']}/token", headers=api.auth(alice))
    assert resp.status == 200
    owner = await resp.json()
    assert owner["grants"]["roomAdmin"]
    missing = await api.client.post("/api/rooms/nosuchroom/token", headers=api.auth(alice))
    assert missing.status == 404


async def test_history_readable_only_by_owner(api: Api) -> None:
    alice = await api.register("alice@example.com")
    bob = await api.register("bob@example.com")
    room = await _room(api, alice)
    await record_presence(api.app, room["id"], bob["user"]["id"], "joined", "bob")
    await record_presence(api.app, room["id"], bob["user"]["id"], "left", "bob")
    resp = await api.client.get(f"/api/rooms/{room['id']}/history", headers=api.auth(alice))
    assert resp.status == 200
    events = (await resp.json())["events"]
    assert [e["event"] for e in events] == ["joined", "left"]
    assert events[0]["identity"] == bob["user"]["id"] and events[0]["at"] <= events[1]["at"]
    other = await api.client.get(f"/api/rooms/{room['id']}/history", headers=api.auth(bob))
    assert other.status == 403
    assert other.content_type == "application/problem+json"
    anon = await api.client.get(f"/api/rooms/{room['id']}/history")
    assert anon.status == 401


async def test_room_token_refused_on_account_api(api: Api) -> None:
    secret = api.app[JWT_SECRET]
    token, _ = create_access_token(
        secret, identity="x", ttl_s=60, video=VideoGrant(room="r", roomJoin=True)
    )
    resp = await api.client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401 and (await resp.json())["code"] == "token_invalid"


async def test_authorize_join_errors(api: Api) -> None:
    secret = api.app[JWT_SECRET]
    grant = VideoGrant(room="r1", roomJoin=True, canPublish=True)
    now = time.time()
    cases = {
        "token_missing": None,
        "token_expired": create_access_token(
            secret, identity="a", ttl_s=10, video=grant, now=now - 60
        )[0],
        "token_not_yet_valid": create_access_token(
            secret, identity="a", ttl_s=600, video=grant, not_before=now + 300
        )[0],
        "token_invalid": create_access_token(
            "another-secret" * 3, identity="a", ttl_s=60, video=grant
        )[0],
    }
    for code, token in cases.items():
        with pytest.raises(TokenError) as info:
            await authorize_join(api.app, token, "r1")
        assert info.value.code == code
        assert info.value.status == 401
    token, claims = create_access_token(secret, identity="a", ttl_s=60, video=grant)
    assert (await authorize_join(api.app, token, "r1")).jti == claims.jti
    await api.store.revoke_jti(claims.jti, datetime.fromtimestamp(claims.exp, UTC))
    with pytest.raises(TokenError) as info:
        await authorize_join(api.app, token, "r1")
    assert info.value.code == "token_revoked"


async def test_removal_bars_the_redemption_the_account_and_the_guest_browser(api: Api) -> None:
    alice = await api.register("alice@example.com")
    bob = await api.register("bob@example.com")
    room = await _room(api, alice, "podcast")
    invite = await _invite(api, alice, room["id"], max_uses=50)
    spare = await _invite(api, alice, room["id"], max_uses=50)
    url = str(api.client.make_url("")).rstrip("/")
    owner_token = await api.client.post(f"/api/rooms/{room['id']}/token", headers=api.auth(alice))
    host = RoomClient(url, room["id"], token=(await owner_token.json())["token"])

    async def redeem(code: str, session: dict[str, Any] | None = None, **body: Any) -> Any:
        headers = api.auth(session) if session is not None else {}
        return await api.client.post(f"/api/join/{code}", headers=headers, json=body)

    first = await redeem(invite["code"], display_name="Troll")
    guest_answer = await first.json()
    device = guest_answer["device"]
    assert isinstance(device, str) and len(device) >= 16
    guest = RoomClient(url, room["id"], token=guest_answer["token"])
    member_answer = await (await redeem(invite["code"], bob)).json()
    member = RoomClient(url, room["id"], token=member_answer["token"])
    try:
        await host.connect()
        await guest.connect()
        await member.connect()
        sid = {c: str(c.joined["participant"]["sid"]) for c in (guest, member)}
        await host.request({"type": "remove_participant", "participant": sid[guest]})
        await guest.wait_for(lambda: guest.ws is not None and guest.ws.closed)
        # The same browser (its device key) redeeming the link again is refused, and no use
        # of the invite is spent on it.
        left = await api.store.get_invite(invite["code"])
        assert left is not None
        again = await redeem(invite["code"], device=device)
        assert again.status == 403
        problem = await again.json()
        assert problem["code"] == "removed_from_room"
        assert problem["detail"] == "You were removed from this room"
        after = await api.store.get_invite(invite["code"])
        assert after is not None and after.remaining == left.remaining
        # The owner is never barred, even from a browser that a removed guest used.
        owner_answer = await redeem(spare["code"], alice, device=device)
        assert owner_answer.status == 200
        assert (await owner_answer.json())["grants"]["device"] is None
        # A fresh browser profile gets in until the host revokes the link (below).
        assert (await redeem(invite["code"])).status == 200

        # A signed-in member removed with revoke_invite: the account is barred on every link
        # of the room, and the link that admitted them is dead for everybody.
        await host.request(
            {"type": "remove_participant", "participant": sid[member], "revoke_invite": True}
        )
        await member.wait_for(lambda: member.ws is not None and member.ws.closed)
        barred = await redeem(spare["code"], bob)
        assert barred.status == 403 and (await barred.json())["code"] == "removed_from_room"
        signed_out = await redeem(spare["code"], device=member_answer["device"])  # same browser
        assert signed_out.status == 403
        gone = await redeem(invite["code"])
        assert gone.status == 404 and (await gone.json())["code"] == "invite_not_found"
        told = await redeem(invite["code"], bob)  # the removed member is told why
        assert told.status == 403 and (await told.json())["code"] == "removed_from_room"
        assert (await redeem(spare["code"])).status == 200  # other guests still welcome
    finally:
        for client in (member, guest, host):
            await client.close()
