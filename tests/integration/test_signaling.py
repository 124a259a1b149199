"""Signaling robustness and lifecycle: typed errors, leave, unpublish, mute, no leaks."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Callable

import pytest
from aiohttp.test_utils import TestServer

from signaling.app import create_app
from signaling.client import RoomClient, SignalingError
from signaling.settings import Settings
from tests.integration.conftest import MakeToken
from tests.support.media import ColorTrack, ToneTrack
from tests.support.udp import local_media_server

Factory = Callable[..., RoomClient]


async def _error_after(client: RoomClient, text: str) -> dict[str, object]:
    before = len(client.errors)
    await client.send_raw(text)
    await client.wait_for(lambda: len(client.errors) > before, timeout=5)
    return client.errors[-1]


async def test_bad_input_gets_typed_errors_and_the_room_goes_on(room_client: Factory) -> None:
    speaker = room_client("robust", "speaker")
    other = room_client("robust", "other")
    try:
        await speaker.connect()
        await speaker.publish([ToneTrack(700.0)])
        await other.connect()
        await other.wait_for(lambda: bool(other.received))
        assert (await _error_after(other, "not json"))["code"] == "bad_request"
        assert (await _error_after(other, "[1,2]"))["code"] == "bad_request"
        assert (await _error_after(other, '{"type":"teleport"}'))["code"] == "unknown_type"
        assert (await _error_after(other, '{"type":"join","room":"x"}'))["code"] == (
            "already_joined"
        )
        assert (await _error_after(other, '{"type":"mute","track":"nope","muted":true}'))[
            "code"
        ] == "not_found"
        big = json.dumps({"type": "ping", "pad": "x" * 300_000})
        assert (await _error_after(other, big))["code"] == "too_large"
        with pytest.raises(SignalingError) as excinfo:
            await other.request({"type": "offer", "sdp": "v=0\r\nthis is not sdp"})
        assert excinfo.value.code == "invalid_sdp"
        with pytest.raises(SignalingError) as excinfo:
            await other.request({"type": "answer", "sdp": "v=0\r\n"})
        assert excinfo.value.code in ("out_of_order", "invalid_sdp")
        # Still connected, still receiving, the room still works.
        assert (await other.request({"type": "ping"}))["type"] == "pong"
        counted = other.received and next(iter(other.received.values()))
        assert counted
        late = room_client("robust", "late")
        await late.connect()
        await late.wait_for(lambda: bool(late.received))
        await late.close()
    finally:
        await other.close()
        await speaker.close()


async def test_requests_before_join_and_bad_version(sfu_url: str) -> None:
    client = RoomClient(sfu_url, "v", "x")
    try:
        import aiohttp

        client.session = aiohttp.ClientSession()
        client.ws = await client.session.ws_connect(sfu_url + "/ws")
        client._reader = asyncio.ensure_future(client._read_loop())
        with pytest.raises(SignalingError) as excinfo:
            await client.request({"type": "offer", "sdp": "v=0"})
        assert excinfo.value.code == "not_joined"
        with pytest.raises(SignalingError) as excinfo:
            await client.request({"type": "join", "room": "v", "v": 99})
        assert excinfo.value.code == "unsupported_version"
        with pytest.raises(SignalingError) as excinfo:
            await client.request({"type": "join", "room": "bad room/../x"})
        assert excinfo.value.code == "bad_request"
    finally:
        await client.close()


async def test_unpublish_mute_and_leave_update_the_others(room_client: Factory) -> None:
    alice = room_client("life", "alice")
    bob = room_client("life", "bob")
    try:
        await alice.connect()
        tone, color = ToneTrack(440.0), ColorTrack((10, 200, 10))
        mids = await alice.publish([tone, color])
        await bob.connect()
        await bob.wait_for(lambda: len(bob.received) == 2)
        audio_sid = next(sid for mid, sid in mids.items() if mid == "0")
        await alice.request({"type": "mute", "track": audio_sid, "muted": True})
        await bob.wait_for(
            lambda: any(e["type"] == "track_muted" and e["muted"] for e in bob.events)
        )
        await alice.unpublish(color)
        await bob.wait_for(
            lambda: (
                any(e["type"] == "track_unpublished" for e in bob.events) and len(bob.received) == 1
            )
        )
        assert next(iter(bob.received.values())).kind == "audio"
        await alice.close()
        await bob.wait_for(lambda: any(e["type"] == "participant_left" for e in bob.events))
        await bob.wait_for(lambda: not bob.received)
    finally:
        await bob.close()
        await alice.close()


async def test_repeated_join_and_leave_leaks_nothing(
    sfu_settings: Settings, make_token: MakeToken
) -> None:
    app = create_app(sfu_settings)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    host = RoomClient(url, "churn", "host", token=make_token("churn", "host"), count_only=True)
    try:
        await host.connect()
        await host.publish([ToneTrack(500.0)])
        media = local_media_server(app)

        async def cycle(i: int) -> None:
            guest = RoomClient(
                url, "churn", f"guest{i}", token=make_token("churn", f"guest{i}"), count_only=True
            )
            await guest.connect()
            await guest.publish([ToneTrack(600.0 + i)])
            await guest.wait_for(lambda: sum(guest.counter.packets.values()) > 5)
            await guest.close()

        await cycle(0)
        await asyncio.sleep(0.5)
        gc.collect()
        tasks_before = len(asyncio.all_tasks())
        names_before = sorted(t.get_coro().__qualname__ for t in asyncio.all_tasks())
        for i in range(1, 7):
            await cycle(i)
        room = media.rooms["churn"]
        await host.wait_for(lambda: len(room.participants) == 1, timeout=10)
        await asyncio.sleep(1.0)
        gc.collect()
        assert len(room.router.transports) == 2  # host's publish and subscribe transports
        assert len(room.router.producers) == 1
        host_participant = next(iter(room.participants.values()))
        assert host_participant.subscriptions == {}
        assert all(not p.consumers for p in room.router.producers.values())
        names_after = sorted(t.get_coro().__qualname__ for t in asyncio.all_tasks())
        from collections import Counter

        leaked = Counter(names_after) - Counter(names_before)
        assert len(asyncio.all_tasks()) <= tasks_before + 2, f"tasks leaked: {leaked}"
    finally:
        await host.close()
        await server.close()
    assert media.rooms == {} or all(r.closed for r in media.rooms.values())


async def test_tokens_are_enforced_at_join(sfu_url: str, make_token: MakeToken) -> None:
    async def join_error(token: str | None, room: str = "secure") -> str:
        client = RoomClient(sfu_url, room, "x", token=token)
        try:
            await client.connect()
        except SignalingError as exc:
            return exc.code
        finally:
            await client.close()
        return "joined"

    assert await join_error(None) == "unauthorized"
    assert await join_error("not.a.jwt") == "unauthorized"
    assert await join_error(make_token("secure", "a", ttl_s=-30)) == "unauthorized"
    assert await join_error(make_token("elsewhere", "a")) == "forbidden"
    assert await join_error(make_token("secure", "a")) == "joined"


async def test_grants_limit_publish_and_subscribe(sfu_url: str, make_token: MakeToken) -> None:
    speaker = RoomClient(sfu_url, "grants", "s", token=make_token("grants", "s"))
    listener = RoomClient(
        sfu_url, "grants", "l", token=make_token("grants", "l", publish=False), count_only=True
    )
    deaf = RoomClient(
        sfu_url, "grants", "d", token=make_token("grants", "d", subscribe=False), count_only=True
    )
    try:
        await speaker.connect()
        await speaker.publish([ToneTrack(300.0)])
        await listener.connect()
        await deaf.connect()
        with pytest.raises(SignalingError) as excinfo:
            await listener.publish([ToneTrack(900.0)])
        assert excinfo.value.code == "forbidden"
        await listener.wait_for(lambda: sum(listener.counter.packets.values()) > 20)
        await asyncio.sleep(1.0)
        assert deaf.counter.packets == {} and deaf.received == {}
        # The identity comes from the token, whatever the client claims.
        assert listener.joined["participant"]["identity"] == "l"
    finally:
        await asyncio.gather(speaker.close(), listener.close(), deaf.close())


async def test_revoked_token_is_refused_at_join(sfu_settings: Settings) -> None:
    from datetime import UTC, datetime

    from signaling import accounts
    from signaling.auth.tokens import VideoGrant, create_access_token
    from tests.integration.conftest import TEST_SECRET

    app = create_app(sfu_settings)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    grant = VideoGrant(room="revoked", roomJoin=True, canPublish=True, canSubscribe=True)
    token, claims = create_access_token(TEST_SECRET, identity="mallory", ttl_s=600, video=grant)
    try:
        first = RoomClient(url, "revoked", "m", token=token)
        await first.connect()  # valid until revoked
        await first.close()
        await app[accounts.STORE].revoke_jti(claims.jti, datetime.fromtimestamp(claims.exp, UTC))
        second = RoomClient(url, "revoked", "m", token=token)
        with pytest.raises(SignalingError) as excinfo:
            await second.connect()
        assert excinfo.value.code == "unauthorized"
        assert "token_revoked" in excinfo.value.message
        await second.close()
    finally:
        await server.close()
