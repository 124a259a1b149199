"""WHIP publishing and WHEP playback (RFC 9725) with real aiortc peers."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from sfu import _aiortc_adapter as adapter
from signaling.client import RoomClient
from tests.integration.conftest import MakeToken
from tests.integration.test_stage import ROOM, _events, _sid
from tests.support.media import (
    ColorTrack,
    ToneTrack,
    collect_audio,
    dominant_frequency,
    mean_color,
)

SDP = {"Content-Type": "application/sdp"}


@pytest.mark.parametrize("media_workers", [0, 2])
async def test_whip_to_whep_round_trip(
    sfu_url: str, make_token: MakeToken, media_workers: int
) -> None:
    publisher = RTCPeerConnection(adapter.make_configuration([]))
    viewer = RTCPeerConnection(adapter.make_configuration([]))
    watcher = RoomClient(sfu_url, "stage", "watcher", token=make_token("stage", "watcher"))
    obs = {"Authorization": "Bearer " + make_token("stage", "obs", subscribe=False), **SDP}
    viewer_auth = {
        "Authorization": "Bearer " + make_token("stage", "viewer1", publish=False),
        **SDP,
    }
    async with aiohttp.ClientSession() as http:
        try:
            await watcher.connect()
            publisher.addTransceiver(ToneTrack(523.0), direction="sendonly")
            publisher.addTransceiver(ColorTrack((240, 200, 20)), direction="sendonly")
            await publisher.setLocalDescription(await publisher.createOffer())
            async with http.post(
                f"{sfu_url}/whip/stage",
                data=publisher.localDescription.sdp,
                headers=obs,
            ) as resp:
                assert resp.status == 201, await resp.text()
                assert resp.content_type == "application/sdp"
                whip_location = resp.headers["Location"]
                assert whip_location.startswith("/whip/stage/")
                answer = await resp.text()
            await publisher.setRemoteDescription(RTCSessionDescription(answer, "answer"))

            # A browser-style participant in the room sees and hears the WHIP publisher.
            await watcher.wait_for(lambda: len(watcher.received) == 2)
            assert any(
                e["type"] == "participant_joined" and e["participant"]["identity"] == "obs"
                for e in watcher.events
            )

            viewer.addTransceiver("audio", direction="recvonly")
            viewer.addTransceiver("video", direction="recvonly")
            await viewer.setLocalDescription(await viewer.createOffer())
            async with http.post(
                f"{sfu_url}/whep/stage/obs", data=viewer.localDescription.sdp, headers=viewer_auth
            ) as resp:
                assert resp.status == 201, await resp.text()
                whep_location = resp.headers["Location"]
                answer = await resp.text()
            await viewer.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            tracks = {t.kind: t.receiver.track for t in viewer.getTransceivers()}
            samples = await collect_audio(tracks["audio"], 1.0)
            assert abs(dominant_frequency(samples[len(samples) // 2 :]) - 523.0) < 15
            color = await mean_color(tracks["video"], frames=5)
            assert np.abs(color - np.array([240, 200, 20])).max() < 30

            async with http.delete(sfu_url + whep_location, headers=viewer_auth) as resp:
                assert resp.status == 200
            async with http.delete(sfu_url + whip_location, headers=obs) as resp:
                assert resp.status == 200
            async with http.delete(sfu_url + whip_location, headers=obs) as resp:
                assert resp.status == 404
            await watcher.wait_for(
                lambda: any(
                    e["type"] == "participant_left"
                    and e["participant"] not in {p["sid"] for p in watcher.joined["participants"]}
                    for e in watcher.events
                )
            )
            await watcher.wait_for(lambda: not watcher.received)
        finally:
            await publisher.close()
            await viewer.close()
            await watcher.close()


async def test_whip_errors(sfu_url: str, make_token: MakeToken) -> None:
    auth = {"Authorization": "Bearer " + make_token("r1", "pub")}
    sdp_auth = {**SDP, **auth}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{sfu_url}/whip/r1", data="v=0\r\n", headers=SDP) as resp:
            assert resp.status == 401
            assert resp.content_type == "application/problem+json"
        async with http.post(f"{sfu_url}/whip/other", data="v=0\r\n", headers=sdp_auth) as resp:
            assert resp.status == 403
        listen_only = {"Authorization": "Bearer " + make_token("r1", "l", publish=False), **SDP}
        async with http.post(f"{sfu_url}/whip/r1", data="v=0\r\n", headers=listen_only) as resp:
            assert resp.status == 403
        async with http.post(
            f"{sfu_url}/whip/r1", data="v=0\r\n", headers={"Content-Type": "text/plain", **auth}
        ) as resp:
            assert resp.status == 415
            assert (await resp.json())["status"] == 415
        async with http.post(f"{sfu_url}/whip/r1", data="hello", headers=sdp_auth) as resp:
            assert resp.status == 400
        async with http.post(
            f"{sfu_url}/whip/r1",
            data="v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
            headers=sdp_auth,
        ) as resp:
            assert resp.status == 400
            assert "detail" in await resp.json()
        nowhere = {"Authorization": "Bearer " + make_token("nowhere", "v"), **SDP}
        async with http.post(
            f"{sfu_url}/whep/nowhere/nobody", data="v=0\r\n", headers=nowhere
        ) as resp:
            assert resp.status == 404
        async with http.options(f"{sfu_url}/whip/r1") as resp:
            assert resp.status == 204
            assert "POST" in resp.headers["Access-Control-Allow-Methods"]
            assert "Location" in resp.headers["Access-Control-Expose-Headers"]
        async with http.post(
            f"{sfu_url}/whip/r1?identity=someone-else", data="v=0\r\n", headers=sdp_auth
        ) as resp:
            assert resp.status == 403
        async with http.patch(f"{sfu_url}/whip/r1/abc") as resp:
            assert resp.status == 401  # the session URL needs the session's token
        # The server is still healthy after all of that.
        async with http.get(f"{sfu_url}/healthz") as resp:
            assert resp.status == 200


# -- WHIP/WHEP sessions go through the stage's admission (issue 10) ------------------------------


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + token}


async def _whip(
    http: aiohttp.ClientSession, url: str, room: str, token: str, *tracks: MediaStreamTrack
) -> tuple[RTCPeerConnection, int, str]:
    """POST a WHIP offer with ``tracks``; returns (peer, status, Location or problem body).
    On 201 the answer is applied, so media flows."""
    pc = RTCPeerConnection(adapter.make_configuration([]))
    for track in tracks:
        pc.addTransceiver(track, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    headers = {**SDP, **_bearer(token)}
    async with http.post(
        f"{url}/whip/{room}", data=pc.localDescription.sdp, headers=headers
    ) as resp:
        if resp.status != 201:
            assert resp.content_type == "application/problem+json"
            return pc, resp.status, await resp.text()
        location = resp.headers["Location"]
        answer = await resp.text()
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    return pc, 201, location


async def _whep(
    http: aiohttp.ClientSession, url: str, path: str, token: str, *kinds: str
) -> tuple[RTCPeerConnection, int, str]:
    """POST a WHEP offer of recvonly ``kinds`` to ``path``; returns (peer, status, Location)."""
    pc = RTCPeerConnection(adapter.make_configuration([]))
    for kind in kinds:
        pc.addTransceiver(kind, direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    headers = {**SDP, **_bearer(token)}
    async with http.post(url + path, data=pc.localDescription.sdp, headers=headers) as resp:
        if resp.status != 201:
            return pc, resp.status, await resp.text()
        location = resp.headers["Location"]
        answer = await resp.text()
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    return pc, 201, location


def _joined_sid(client: RoomClient, identity: str) -> str:
    """The sid of ``identity`` from the ``participant_joined`` events ``client`` saw."""
    return next(
        str(e["participant"]["sid"])
        for e in _events(client, "participant_joined")
        if e["participant"]["identity"] == identity
    )


def _saw_join(client: RoomClient, identity: str) -> bool:
    return any(
        e["participant"]["identity"] == identity for e in _events(client, "participant_joined")
    )


def _saw_leave(client: RoomClient, sid: str) -> bool:
    return any(e["participant"] == sid for e in _events(client, "participant_left"))


async def test_host_mutes_and_removes_a_whip_publisher(
    sfu_url: str, make_token: MakeToken, podcast: Callable[..., RoomClient]
) -> None:
    host = podcast("host", "host")
    token = make_token(ROOM, "obs", kind="podcast", role="speaker")
    async with aiohttp.ClientSession() as http:
        pc: RTCPeerConnection | None = None
        try:
            await host.connect()
            pc, status, location = await _whip(http, sfu_url, ROOM, token, ToneTrack(523.0))
            assert status == 201, location
            await host.wait_for(lambda: _saw_join(host, "obs"))
            joined = next(
                e["participant"]
                for e in _events(host, "participant_joined")
                if e["participant"]["identity"] == "obs"
            )
            assert joined["role"] == "speaker"
            obs = joined["sid"]
            await host.wait_for(
                lambda: any(e["participant"] == obs for e in _events(host, "track_published"))
            )

            # The host mutes the WHIP publisher server-side: everyone is told.
            await host.request({"type": "mute_participant", "participant": obs})
            await host.wait_for(
                lambda: any(
                    e["participant"] == obs and e["muted"] and e["remote"]
                    for e in _events(host, "track_muted")
                )
            )

            # The host removes it: the WHIP session ends, its token is revoked and the
            # identity is barred while the room lives.
            await host.request({"type": "remove_participant", "participant": obs})
            await host.wait_for(lambda: _saw_leave(host, obs))
            async with http.delete(sfu_url + location, headers=_bearer(token)) as resp:
                assert resp.status == 401  # revoked
            again, status, body = await _whip(http, sfu_url, ROOM, token, ToneTrack(523.0))
            await again.close()
            assert status == 401 and "revoked" in body
            fresh = make_token(ROOM, "obs", kind="podcast", role="speaker")
            again, status, body = await _whip(http, sfu_url, ROOM, fresh, ToneTrack(523.0))
            await again.close()
            assert status == 403, body
        finally:
            if pc is not None:
                await pc.close()
            await host.close()


async def test_demoted_speakers_cannot_publish_over_whip(
    sfu_url: str, make_token: MakeToken, podcast: Callable[..., RoomClient]
) -> None:
    host = podcast("host", "host")
    speaker = podcast("spk", "speaker")
    token = make_token(ROOM, "obs", kind="podcast", role="speaker")
    async with aiohttp.ClientSession() as http:
        pc: RTCPeerConnection | None = None
        try:
            await host.connect()
            await speaker.connect()
            pc, status, location = await _whip(http, sfu_url, ROOM, token, ToneTrack(523.0))
            assert status == 201, location
            await host.wait_for(lambda: _saw_join(host, "obs"))
            obs = _joined_sid(host, "obs")

            # Demoting the WHIP publisher closes its producers and ends its WHIP session.
            await host.request({"type": "set_role", "participant": obs, "role": "listener"})
            await host.wait_for(lambda: _saw_leave(host, obs))
            async with http.delete(sfu_url + location, headers=_bearer(token)) as resp:
                assert resp.status == 404
            # Its live role is listener now: a new WHIP session (even a fresh speaker token)
            # is refused with a problem.
            fresh = make_token(ROOM, "obs", kind="podcast", role="speaker")
            again, status, body = await _whip(http, sfu_url, ROOM, fresh, ToneTrack(523.0))
            await again.close()
            assert status == 403, body

            # A /ws speaker the host demoted cannot go round the stage over WHIP either.
            await host.request(
                {"type": "set_role", "participant": _sid(speaker), "role": "listener"}
            )
            await speaker.wait_for(
                lambda: _events(speaker, "role_changed")[-1]["role"] == "listener"
            )
            again, status, body = await _whip(
                http, sfu_url, ROOM, speaker.token or "", ToneTrack(1.0e3)
            )
            await again.close()
            assert status == 403, body
            # The refused WHIP session did not take over the speaker's /ws session.
            assert (await speaker.request({"type": "ping"}))["type"] == "pong"
            assert not speaker.errors
        finally:
            if pc is not None:
                await pc.close()
            await speaker.close()
            await host.close()


async def test_whip_after_end_room_is_refused(
    sfu_url: str, make_token: MakeToken, podcast: Callable[..., RoomClient]
) -> None:
    host = podcast("host", "host")
    token = make_token(ROOM, "obs", kind="podcast", role="speaker")
    async with aiohttp.ClientSession() as http:
        pc: RTCPeerConnection | None = None
        try:
            await host.connect()
            pc, status, location = await _whip(http, sfu_url, ROOM, token, ToneTrack(523.0))
            assert status == 201, location
            await host.wait_for(lambda: _saw_join(host, "obs"))
            await host.request({"type": "end_room"})
            await host.wait_for(lambda: host.ws is not None and host.ws.closed)
            # The WHIP session ended with the room and was forgotten.
            async with http.delete(sfu_url + location, headers=_bearer(token)) as resp:
                assert resp.status == 404
            late = make_token(ROOM, "late", kind="podcast", role="speaker")
            again, status, body = await _whip(http, sfu_url, ROOM, late, ToneTrack(523.0))
            await again.close()
            assert status in (403, 410) and "ended" in body
        finally:
            if pc is not None:
                await pc.close()
            await host.close()


async def test_whep_viewer_is_a_hidden_listener(
    sfu_url: str, make_token: MakeToken, podcast: Callable[..., RoomClient]
) -> None:
    host = podcast("host", "host")
    speaker = podcast("spk", "speaker")
    late = podcast("late", "listener")
    token = make_token(ROOM, "fan", kind="podcast", role="listener", publish=False)
    async with aiohttp.ClientSession() as http:
        pc: RTCPeerConnection | None = None
        try:
            await host.connect()
            await speaker.connect()
            await speaker.publish([ToneTrack(440.0), ColorTrack((200, 30, 30))])
            pc, status, location = await _whep(
                http, sfu_url, f"/whep/{ROOM}/spk", token, "audio", "video"
            )
            assert status == 201, location
            # Audio plays; the stage does not show video, so the video m-line is inactive.
            tracks = {t.kind: t for t in pc.getTransceivers()}
            assert tracks["video"].currentDirection == "inactive"
            samples = await collect_audio(tracks["audio"].receiver.track, 1.0)
            assert abs(dominant_frequency(samples[len(samples) // 2 :]) - 440.0) < 20
            # Counted and listed as audience, never announced as a participant.
            page = await host.request({"type": "list_audience", "offset": 0, "limit": 10})
            assert [m["identity"] for m in page["listeners"]] == ["fan"]
            await late.connect()
            assert {p["identity"] for p in late.joined["participants"]} == {"host", "spk"}
            assert not _saw_join(host, "fan") and not _saw_join(speaker, "fan")
            async with http.delete(sfu_url + location, headers=_bearer(token)) as resp:
                assert resp.status == 200
            page = await host.request({"type": "list_audience", "offset": 0, "limit": 10})
            assert [m["identity"] for m in page["listeners"]] == ["late"]
        finally:
            if pc is not None:
                await pc.close()
            for client in (late, speaker, host):
                await client.close()


async def test_session_urls_need_the_creating_token(sfu_url: str, make_token: MakeToken) -> None:
    obs = make_token("r2", "obs", subscribe=False)
    viewer = make_token("r2", "viewer", publish=False)
    stranger = make_token("r2", "stranger")
    async with aiohttp.ClientSession() as http:
        pub: RTCPeerConnection | None = None
        sub: RTCPeerConnection | None = None
        try:
            pub, status, whip_location = await _whip(http, sfu_url, "r2", obs, ToneTrack(523.0))
            assert status == 201, whip_location
            sub, status, whep_location = await _whep(http, sfu_url, "/whep/r2/obs", viewer, "audio")
            assert status == 201, whep_location
            whip_id = whip_location.rsplit("/", 1)[1]
            whep_id = whep_location.rsplit("/", 1)[1]
            url = sfu_url + whip_location
            async with http.delete(url) as resp:
                assert resp.status == 401
                assert resp.content_type == "application/problem+json"
            async with http.patch(url) as resp:
                assert resp.status == 401
            for other in (stranger, viewer):
                async with http.delete(url, headers=_bearer(other)) as resp:
                    assert resp.status == 403
                    assert resp.content_type == "application/problem+json"
            # Each route only knows its own sessions.
            async with http.delete(
                f"{sfu_url}/whep/r2/obs/{whip_id}", headers=_bearer(obs)
            ) as resp:
                assert resp.status == 404
            async with http.delete(f"{sfu_url}/whip/r2/{whep_id}", headers=_bearer(viewer)) as resp:
                assert resp.status == 404
            async with http.patch(
                url, headers={**_bearer(obs), "Content-Type": "application/trickle-ice-sdpfrag"}
            ) as resp:
                assert resp.status == 405
            async with http.delete(sfu_url + whep_location, headers=_bearer(viewer)) as resp:
                assert resp.status == 200
            async with http.delete(url, headers=_bearer(obs)) as resp:
                assert resp.status == 200
            async with http.delete(url, headers=_bearer(obs)) as resp:
                assert resp.status == 404
        finally:
            for pc in (pub, sub):
                if pc is not None:
                    await pc.close()


async def test_sessions_are_forgotten_when_the_peer_goes(
    sfu_url: str, make_token: MakeToken, room_client: Callable[..., RoomClient]
) -> None:
    watcher = room_client("r3", "watcher")
    obs = make_token("r3", "obs", subscribe=False)
    viewer = make_token("r3", "viewer", publish=False)
    async with aiohttp.ClientSession() as http:
        pub: RTCPeerConnection | None = None
        sub: RTCPeerConnection | None = None
        try:
            await watcher.connect()
            pub, status, whip_location = await _whip(http, sfu_url, "r3", obs, ToneTrack(523.0))
            assert status == 201, whip_location
            sub, status, whep_location = await _whep(http, sfu_url, "/whep/r3/obs", viewer, "audio")
            assert status == 201, whep_location
            await watcher.wait_for(
                lambda: _saw_join(watcher, "obs") and _saw_join(watcher, "viewer")
            )
            # Media flows from the WHIP publisher to the WHEP viewer: both peers are connected.
            track = sub.getTransceivers()[0].receiver.track
            samples = await collect_audio(track, 0.5)
            assert abs(dominant_frequency(samples) - 523.0) < 20
            # Both peers go away without a DELETE (the tool crashed, the network dropped).
            await sub.close()
            await pub.close()
            for identity in ("obs", "viewer"):
                sid = _joined_sid(watcher, identity)
                await watcher.wait_for(lambda s=sid: _saw_leave(watcher, s))  # type: ignore[misc]
            async with http.delete(sfu_url + whip_location, headers=_bearer(obs)) as resp:
                assert resp.status == 404
            async with http.delete(sfu_url + whep_location, headers=_bearer(viewer)) as resp:
                assert resp.status == 404
        finally:
            for pc in (pub, sub):
                if pc is not None:
                    await pc.close()
            await watcher.close()


async def test_browser_players_on_other_origins(sfu_url: str, make_token: MakeToken) -> None:
    origin = {"Origin": "https://player.example"}
    token = make_token("r4", "obs", subscribe=False)
    async with aiohttp.ClientSession() as http:
        for path in ("/whip/r4", "/whip/r4/abc", "/whep/r4/obs", "/whep/r4/obs/abc"):
            async with http.options(
                sfu_url + path,
                headers={
                    **origin,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, content-type",
                },
            ) as resp:
                assert resp.status in (200, 204), path
                assert resp.headers["Access-Control-Allow-Origin"] == "*"
                assert "POST" in resp.headers["Access-Control-Allow-Methods"]
                assert "DELETE" in resp.headers["Access-Control-Allow-Methods"]
                allowed = resp.headers["Access-Control-Allow-Headers"].lower()
                assert "authorization" in allowed and "content-type" in allowed
        pc = RTCPeerConnection(adapter.make_configuration([]))
        try:
            pc.addTransceiver(ToneTrack(523.0), direction="sendonly")
            await pc.setLocalDescription(await pc.createOffer())
            async with http.post(
                f"{sfu_url}/whip/r4",
                data=pc.localDescription.sdp,
                headers={**origin, **SDP, **_bearer(token)},
            ) as resp:
                assert resp.status == 201
                assert resp.headers["Access-Control-Allow-Origin"] == "*"
                exposed = resp.headers["Access-Control-Expose-Headers"]
                assert "Location" in exposed and "ETag" in exposed
                location = resp.headers["Location"]
            async with http.delete(
                sfu_url + location, headers={**origin, **_bearer(token)}
            ) as resp:
                assert resp.status == 200
                assert resp.headers["Access-Control-Allow-Origin"] == "*"
            # Errors are readable by the player too.
            async with http.post(
                f"{sfu_url}/whip/r4", data="v=0\r\n", headers={**origin, **SDP}
            ) as resp:
                assert resp.status == 401
                assert resp.headers["Access-Control-Allow-Origin"] == "*"
        finally:
            await pc.close()
        # The /api allow-list is unchanged: that origin is still refused there.
        async with http.options(
            f"{sfu_url}/api/me", headers={**origin, "Access-Control-Request-Method": "GET"}
        ) as resp:
            assert resp.status == 403
            assert "Access-Control-Allow-Origin" not in resp.headers
