"""WHIP publishing and WHEP playback (RFC 9725) with real aiortc peers."""

from __future__ import annotations

import aiohttp
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription

from sfu import _aiortc_adapter as adapter
from signaling.client import RoomClient
from tests.integration.conftest import MakeToken
from tests.support.media import (
    ColorTrack,
    ToneTrack,
    collect_audio,
    dominant_frequency,
    mean_color,
)

SDP = {"Content-Type": "application/sdp"}


async def test_whip_to_whep_round_trip(sfu_url: str, make_token: MakeToken) -> None:
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

            async with http.delete(sfu_url + whep_location) as resp:
                assert resp.status == 200
            async with http.delete(sfu_url + whip_location) as resp:
                assert resp.status == 200
            async with http.delete(sfu_url + whip_location) as resp:
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
            assert resp.status == 405
        # The server is still healthy after all of that.
        async with http.get(f"{sfu_url}/healthz") as resp:
            assert resp.status == 200
