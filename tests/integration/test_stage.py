"""Podcast rooms: roles, raise hand, promote/demote, server-side mute, remove, end, audience.

Real aiortc peers on loopback; every permission check is driven by crafted messages.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from signaling.app import create_app
from signaling.auth.tokens import VideoGrant, create_access_token
from signaling.client import RoomClient, SignalingError
from signaling.serverproc import start_server, stop_server, wait_healthy
from signaling.settings import Settings
from tests.integration.conftest import PODCAST_ROOM, MakeToken
from tests.support.media import (
    ColorTrack,
    ToneTrack,
    collect_audio,
    dominant_frequency,
    mean_color,
)

ROOM = PODCAST_ROOM


def _events(client: RoomClient, kind: str) -> list[dict[str, Any]]:
    return [e for e in client.events if e["type"] == kind]


def _sid(client: RoomClient) -> str:
    return str(client.joined["participant"]["sid"])


async def _refused(client: RoomClient, message: dict[str, Any], code: str = "forbidden") -> None:
    with pytest.raises(SignalingError) as info:
        await client.request(message)
    assert info.value.code == code, info.value


async def test_listener_joins_hidden_and_subscribe_only(
    podcast: Callable[..., RoomClient],
) -> None:
    host = podcast("host", "host")
    speaker = podcast("speaker", "speaker")
    listener = podcast("listener", "listener")
    other = podcast("other", "listener")
    try:
        await host.connect()
        assert host.joined["kind"] == "podcast" and host.joined["role"] == "host"
        assert host.joined["permissions"]["roomAdmin"] is True
        await speaker.connect()
        await speaker.publish([ToneTrack(440.0)])
        await listener.connect()
        joined = listener.joined
        assert joined["role"] == "listener"
        assert joined["permissions"]["canPublish"] is False
        assert {p["identity"] for p in joined["participants"]} == {"host", "speaker"}
        await other.connect()
        # The stage gets one batched audience count, never the listeners' joins.
        await host.wait_for(lambda: any(e["count"] == 2 for e in _events(host, "audience")))
        assert not [
            e
            for e in host.events
            if e["type"] == "participant_joined"
            and e["participant"]["identity"] in ("listener", "other")
        ]
        assert not _events(other, "participant_joined") or all(
            e["participant"]["identity"] not in ("listener",)
            for e in _events(other, "participant_joined")
        )
        # Audio arrives; no publish transport was ever made for the listener.
        await listener.wait_for(lambda: len(listener.received) == 1)
        received = next(iter(listener.received.values()))
        samples = await collect_audio(received.track, 1.0)  # type: ignore[arg-type]
        assert abs(dominant_frequency(samples[len(samples) // 2 :]) - 440.0) < 20
        assert listener.pub is None
        # Paginated audience list, in join order.
        page = await host.request({"type": "list_audience", "offset": 0, "limit": 1})
        assert page["total"] == 2 and [m["identity"] for m in page["listeners"]] == ["listener"]
        page = await host.request({"type": "list_audience", "offset": 1, "limit": 10})
        assert [m["identity"] for m in page["listeners"]] == ["other"]
    finally:
        for client in (other, listener, speaker, host):
            await client.close()


async def test_listener_crafted_messages_are_refused(podcast: Callable[..., RoomClient]) -> None:
    host = podcast("host", "host")
    speaker = podcast("speaker", "speaker")
    listener = podcast("listener", "listener")
    try:
        await host.connect()
        await speaker.connect()
        await speaker.publish([ToneTrack(440.0)])
        await listener.connect()
        target = _sid(speaker)
        track = next(iter(speaker.published.values()))
        for message in (
            {"type": "set_role", "participant": _sid(listener), "role": "speaker"},
            {"type": "set_role", "participant": target, "role": "listener"},
            {"type": "mute_participant", "participant": target},
            {"type": "mute_participant", "participant": target, "track": track},
            {"type": "remove_participant", "participant": target},
            {"type": "invite_to_stage", "participant": _sid(listener)},
            {"type": "transfer_host", "participant": _sid(listener)},
            {"type": "end_room"},
            {"type": "list_audience"},
            {"type": "set_listener_sharing", "enabled": True},
        ):
            await _refused(listener, message)
        # Publishing without the grant: refused before any SDP is looked at.
        with pytest.raises(SignalingError) as info:
            await listener.publish([ToneTrack(660.0)])
        assert info.value.code == "forbidden"
        await _refused(listener, {"type": "respond_invite", "accept": True}, "out_of_order")
        # A speaker cannot moderate either, and nothing changed for anyone.
        await _refused(speaker, {"type": "mute_participant", "participant": _sid(host)})
        await _refused(
            speaker, {"type": "set_role", "participant": _sid(listener), "role": "speaker"}
        )
        await _refused(speaker, {"type": "end_room"})
        await _refused(speaker, {"type": "list_audience", "offset": 0, "limit": 10})
        assert not [e for e in speaker.events if e["type"] == "track_muted"]
        assert not _events(listener, "role_changed")
    finally:
        for client in (listener, speaker, host):
            await client.close()


@pytest.mark.parametrize("media_workers", [0, 2])
async def test_raise_hand_promote_speak_mute_demote(
    podcast: Callable[..., RoomClient], media_workers: int
) -> None:
    host = podcast("host", "host")
    mod = podcast("mod", "moderator")
    fan = podcast("fan", "listener")
    audience = podcast("audience", "listener")
    try:
        for client in (host, mod, fan, audience):
            await client.connect()
        assert mod.joined["role"] == "moderator"
        await fan.request({"type": "raise_hand", "raised": True})
        await audience.request({"type": "raise_hand", "raised": True})

        def queue(client: RoomClient) -> list[str]:
            hands = _events(client, "hands")
            return [m["identity"] for m in hands[-1]["queue"]] if hands else []

        await mod.wait_for(lambda: queue(mod) == ["fan", "audience"])
        await host.wait_for(lambda: queue(host) == ["fan", "audience"])
        assert not _events(fan, "hands")  # the queue is for moderators only
        await audience.request({"type": "raise_hand", "raised": False})
        await mod.wait_for(lambda: queue(mod) == ["fan"])

        # The moderator promotes the fan: the grant changes live, no reconnect.
        await mod.request({"type": "set_role", "participant": _sid(fan), "role": "speaker"})
        await fan.wait_for(lambda: bool(_events(fan, "role_changed")))
        change = _events(fan, "role_changed")[-1]
        assert change["role"] == "speaker" and change["permissions"]["canPublish"] is True
        await host.wait_for(
            lambda: any(
                e["participant"]["identity"] == "fan" and e["participant"]["role"] == "speaker"
                for e in _events(host, "participant_joined")
            )
        )
        await mod.wait_for(lambda: queue(mod) == [])
        await fan.publish([ToneTrack(550.0)])
        track = next(iter(fan.published.values()))
        await audience.wait_for(lambda: track in audience.received)
        received = audience.received[track]
        samples = await collect_audio(received.track, 1.0)  # type: ignore[arg-type]
        assert abs(dominant_frequency(samples[len(samples) // 2 :]) - 550.0) < 20

        # Server-side mute: forwarding stops, the speaker is told, only the speaker unmutes.
        await mod.request({"type": "mute_participant", "participant": _sid(fan)})
        await fan.wait_for(
            lambda: any(e["remote"] and e["muted"] for e in _events(fan, "track_muted"))
        )
        await host.wait_for(lambda: any(e["muted"] for e in _events(host, "track_muted")))
        await _refused(
            mod, {"type": "mute", "track": track, "muted": False}, "not_found"
        )  # not the moderator's track
        await fan.request({"type": "mute", "track": track, "muted": False})
        await host.wait_for(lambda: _events(host, "track_muted")[-1]["muted"] is False)

        # Demote: producers close at once, the fan leaves the stage, publishing is refused.
        await host.request({"type": "set_role", "participant": _sid(fan), "role": "listener"})
        await audience.wait_for(lambda: track not in audience.received)
        await host.wait_for(
            lambda: any(e["participant"] == _sid(fan) for e in _events(host, "participant_left"))
        )
        await fan.wait_for(lambda: _events(fan, "role_changed")[-1]["role"] == "listener")
        with pytest.raises(SignalingError) as info:
            await fan.publish([ToneTrack(660.0)])
        assert info.value.code == "forbidden"
    finally:
        for client in (audience, fan, mod, host):
            await client.close()


async def test_invite_accept_and_moderator_limits(podcast: Callable[..., RoomClient]) -> None:
    host = podcast("host", "host")
    mod = podcast("mod", "moderator")
    guest = podcast("guest", "listener")
    try:
        for client in (host, mod, guest):
            await client.connect()
        await mod.request({"type": "invite_to_stage", "participant": _sid(guest)})
        await guest.wait_for(lambda: bool(_events(guest, "stage_invite")))
        assert _events(guest, "stage_invite")[0]["name"] == "mod"
        await guest.request({"type": "respond_invite", "accept": True})
        await guest.wait_for(lambda: bool(_events(guest, "role_changed")))
        assert _events(guest, "role_changed")[-1]["role"] == "speaker"
        # Moderators do not touch the host or make moderators; the host can.
        await _refused(mod, {"type": "mute_participant", "participant": _sid(host)})
        await _refused(mod, {"type": "remove_participant", "participant": _sid(host)})
        await _refused(mod, {"type": "set_role", "participant": _sid(guest), "role": "moderator"})
        await _refused(mod, {"type": "end_room"})
        await host.request({"type": "set_role", "participant": _sid(guest), "role": "moderator"})
        await guest.wait_for(lambda: _events(guest, "role_changed")[-1]["role"] == "moderator")
        await guest.wait_for(lambda: bool(_events(guest, "hands")))  # now sees the queue
        # A speaker may step down, never up.
        await _refused(guest, {"type": "set_role", "participant": _sid(guest), "role": "host"})
        await guest.request({"type": "set_role", "participant": _sid(guest), "role": "listener"})
        await guest.wait_for(lambda: _events(guest, "role_changed")[-1]["role"] == "listener")
    finally:
        for client in (guest, mod, host):
            await client.close()


async def test_remove_revokes_token_and_transfer_then_end(
    podcast: Callable[..., RoomClient], room_client: Callable[..., RoomClient], sfu_url: str
) -> None:
    host = podcast("host", "host")
    cohost = podcast("cohost", "speaker")
    troll = podcast("troll", "listener")
    try:
        for client in (host, cohost, troll):
            await client.connect()
        await host.request({"type": "remove_participant", "participant": _sid(troll)})
        await troll.wait_for(lambda: any("removed" in e["message"] for e in troll.errors))
        # The same token is now revoked for this room.
        again = RoomClient(sfu_url, ROOM, identity="troll", token=troll.token)
        with pytest.raises(SignalingError) as info:
            await again.connect()
        assert info.value.code == "unauthorized" and "revoked" in info.value.message
        await again.close()
        # Even a fresh token for the same identity is barred while the room lives.
        fresh = podcast("troll", "listener")
        with pytest.raises(SignalingError) as info:
            await fresh.connect()
        assert info.value.code == "forbidden"
        await fresh.close()

        # Hand over hosting: the old host becomes a moderator and can no longer end the room.
        await host.request({"type": "transfer_host", "participant": _sid(cohost)})
        await cohost.wait_for(lambda: _events(cohost, "role_changed")[-1]["role"] == "host")
        await host.wait_for(lambda: _events(host, "role_changed")[-1]["role"] == "moderator")
        await _refused(host, {"type": "end_room"})

        # The new host ends the room: everyone is told and disconnected.
        await cohost.request({"type": "end_room"})
        for client in (host, cohost):
            await client.wait_for(lambda c=client: bool(_events(c, "room_ended")))  # type: ignore[misc]
            await client.wait_for(lambda c=client: c.ws is not None and c.ws.closed)  # type: ignore[misc]
        late = podcast("late", "listener")
        with pytest.raises(SignalingError) as info:
            await late.connect()
        assert info.value.code == "forbidden" and "ended" in info.value.message
        await late.close()
    finally:
        for client in (troll, cohost, host):
            await client.close()


async def test_conference_rooms_keep_everyone_visible(
    room_client: Callable[..., RoomClient],
) -> None:
    admin = room_client("conf", "admin", admin=True)
    alice = room_client("conf", "alice")
    viewer = room_client("conf", "viewer", publish=False)
    try:
        await admin.connect()
        await alice.connect()
        await viewer.connect()
        assert admin.joined["kind"] == "conference" and admin.joined["role"] == "host"
        assert alice.joined["role"] == "speaker" and viewer.joined["role"] == "listener"
        await alice.wait_for(
            lambda: any(
                e["participant"]["identity"] == "viewer"
                for e in _events(alice, "participant_joined")
            )
        )
        # The admin mutes a speaker's track server-side.
        await alice.publish([ToneTrack(440.0)])
        track = next(iter(alice.published.values()))
        await admin.request(
            {"type": "mute_participant", "participant": _sid(alice), "track": track}
        )
        await alice.wait_for(lambda: any(e["remote"] for e in _events(alice, "track_muted")))
    finally:
        for client in (viewer, alice, admin):
            await client.close()


@pytest.mark.parametrize("media_workers", [0, 2])
async def test_listeners_get_video_only_when_the_stage_shows_it(
    podcast: Callable[..., RoomClient], media_workers: int
) -> None:
    host = podcast("host", "host")
    speaker = podcast("speaker", "speaker")
    listener = podcast("listener", "listener")
    try:
        await host.connect()
        await speaker.connect()
        await speaker.publish([ToneTrack(440.0), ColorTrack((200, 30, 30))])
        await listener.connect()
        assert listener.joined["stage_video"] is False
        await listener.wait_for(lambda: len(listener.received) == 1)
        assert {r.kind for r in listener.received.values()} == {"audio"}
        await _refused(listener, {"type": "set_stage_video", "enabled": True})

        # The host shows the stage's video: the listener subscribes to it at once.
        await host.request({"type": "set_stage_video", "enabled": True})
        await listener.wait_for(lambda: bool(_events(listener, "stage_settings")))
        assert _events(listener, "stage_settings")[-1]["video"] is True
        await listener.wait_for(
            lambda: {r.kind for r in listener.received.values()} == {"audio", "video"}
        )
        video = next(r for r in listener.received.values() if r.kind == "video")
        red, green, blue = await mean_color(video.track)  # type: ignore[arg-type]
        assert red > 150 and green < 80 and blue < 80
        late = podcast("late", "listener")
        await late.connect()
        assert late.joined["stage_video"] is True
        await late.wait_for(lambda: len(late.received) == 2)
        await late.close()

        # Back to audio only: the video consumer goes away.
        await host.request({"type": "set_stage_video", "enabled": False})
        await listener.wait_for(lambda: {r.kind for r in listener.received.values()} == {"audio"})
    finally:
        for client in (listener, speaker, host):
            await client.close()


@contextlib.asynccontextmanager
async def _server(settings: Settings) -> AsyncIterator[str]:
    """A server on ``settings`` (its MongoDB database); leaving the block stops it."""
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def test_roles_bans_and_ended_rooms_survive_a_restart(
    sfu_settings: Settings, make_token: MakeToken
) -> None:
    def client(url: str, room: str, identity: str, role: str) -> RoomClient:
        token = make_token(
            room,
            identity,
            kind="podcast",
            role=role,
            admin=role == "host",
            publish=role != "listener",
        )
        return RoomClient(url, room, identity=identity, token=token)

    async with _server(sfu_settings) as url:
        host = client(url, "show", "host", "host")
        guest = client(url, "show", "guest", "listener")
        troll = client(url, "show", "troll", "listener")
        closer = client(url, "closed-show", "closer", "host")
        try:
            for each in (host, guest, troll, closer):
                await each.connect()
            await host.request({"type": "set_role", "participant": _sid(guest), "role": "speaker"})
            await host.request({"type": "remove_participant", "participant": _sid(troll)})
            await closer.request({"type": "end_room"})
            await closer.wait_for(lambda: closer.ws is not None and closer.ws.closed)
        finally:
            for each in (closer, troll, guest, host):
                await each.close()

    # A new server process on the same store: nothing was forgotten.
    async with _server(sfu_settings) as url:
        guest = client(url, "show", "guest", "listener")  # a fresh listener token
        troll = client(url, "show", "troll", "listener")
        late = client(url, "closed-show", "late", "listener")
        try:
            joined = await guest.connect()
            assert joined["role"] == "speaker" and joined["permissions"]["canPublish"] is True
            with pytest.raises(SignalingError) as info:
                await troll.connect()
            assert info.value.code == "forbidden" and "removed" in info.value.message
            with pytest.raises(SignalingError) as info:
                await late.connect()
            assert info.value.code == "forbidden" and "ended" in info.value.message
        finally:
            for each in (late, troll, guest):
                await each.close()


async def test_listeners_draw_and_upload_only_when_the_host_allows(
    podcast: Callable[..., RoomClient], sfu_url: str
) -> None:
    host = podcast("host", "host")
    listener = podcast("listener", "listener")
    stroke = {"type": "board_stroke", "stroke": {"id": "l1", "points": [[1, 1], [2, 2]]}}

    async def upload(client: RoomClient) -> aiohttp.ClientResponse:
        async with aiohttp.ClientSession() as http:
            resp = await http.post(
                f"{sfu_url}/api/rooms/{ROOM}/files",
                data=b"hello",
                headers={"Authorization": f"Bearer {client.token}", "X-Filename": "a.txt"},
            )
            await resp.read()
            return resp

    try:
        await host.connect()
        await listener.connect()
        await listener.wait_for(lambda: bool(_events(listener, "board_state")))
        assert _events(listener, "board_state")[0]["can_draw"] is False
        await _refused(listener, stroke)
        refused = await upload(listener)
        assert refused.status == 403
        assert (await upload(host)).status == 201  # the stage shares as before
        await host.request({"type": "set_listener_sharing", "enabled": True})
        await listener.wait_for(
            lambda: any(e.get("listener_sharing") for e in _events(listener, "stage_settings"))
        )
        await listener.request(stroke)
        assert (await upload(listener)).status == 201
        await host.request({"type": "set_listener_sharing", "enabled": False})
        await listener.wait_for(
            lambda: not _events(listener, "stage_settings")[-1]["listener_sharing"]
        )
        await _refused(listener, {**stroke, "stroke": {"id": "l2", "points": [[3, 3]]}})
        assert (await upload(listener)).status == 403
    finally:
        for client in (listener, host):
            await client.close()


async def test_a_restarted_server_process_keeps_bans_roles_and_ended_rooms(
    mongo_url: str, tmp_path: Path
) -> None:
    secret = "restart-secret-" + "r" * 40
    env = {
        "SFU_JWT_SECRET": secret,
        "MONGO_URL": mongo_url,
        "SFU_MONGO_DB": f"restart_{uuid.uuid4().hex[:12]}",
    }

    def client(url: str, room: str, identity: str, role: str) -> RoomClient:
        token, _claims = create_access_token(
            secret,
            identity=identity,
            ttl_s=600,
            video=VideoGrant(
                room=room,
                roomJoin=True,
                roomAdmin=role == "host",
                canPublish=role != "listener",
                canSubscribe=True,
                canPublishData=True,
                roomKind="podcast",
                role=role,  # type: ignore[arg-type]
            ),
        )
        return RoomClient(url, room, identity=identity, token=token)

    proc, url = start_server(tmp_path, env=env)
    try:
        wait_healthy(url, proc, timeout_s=30)
        host, guest, troll = (
            client(url, "show", "host", "host"),
            client(url, "show", "guest", "listener"),
            client(url, "show", "troll", "listener"),
        )
        closer = client(url, "ended", "closer", "host")
        try:
            for each in (host, guest, troll, closer):
                await each.connect()
            await host.request({"type": "set_role", "participant": _sid(guest), "role": "speaker"})
            await host.request({"type": "remove_participant", "participant": _sid(troll)})
            await closer.request({"type": "end_room"})
        finally:
            for each in (closer, troll, guest, host):
                await each.close()
    finally:
        stop_server(proc)

    proc, url = start_server(tmp_path, env=env)
    try:
        wait_healthy(url, proc, timeout_s=30)
        guest = client(url, "show", "guest", "listener")
        troll = client(url, "show", "troll", "listener")
        late = client(url, "ended", "late", "listener")
        try:
            assert (await guest.connect())["role"] == "speaker"
            with pytest.raises(SignalingError) as info:
                await troll.connect()
            assert info.value.code == "forbidden" and "removed" in info.value.message
            with pytest.raises(SignalingError) as info:
                await late.connect()
            assert info.value.code == "forbidden" and "ended" in info.value.message
        finally:
            for each in (late, troll, guest):
                await each.close()
    finally:
        stop_server(proc)
