"""Chromium as a subscriber while a publisher's camera comes and goes: the server reuses the
closed consumer's m-line (RFC 8829 §5.2.2), so the browser's subscribe SDP keeps one m-line
for that camera, and the browser shows the newest producer's picture on it.

The publisher is a Python :class:`RoomClient` (aiortc) that turns its camera off and on (each
time a new producer, another colour); the browser client maps mids to tracks through each
offer's ``tracks`` list.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiortc import RTCSessionDescription

from sfu import _aiortc_adapter as adapter
from signaling.client import RoomClient
from tests.e2e.conftest import create_invite
from tests.e2e.test_browser_call import SID_BY_NAME_JS, _open, _wait_js
from tests.support.media import ColorTrack

if TYPE_CHECKING:
    from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

COLORS = [(220, 30, 30), (30, 200, 40), (40, 50, 220), (230, 220, 30)]

# Mean RGB of the video in the tile of participant `sid` (null while it shows nothing).
TILE_COLOR_JS = """
(sid) => {
  const v = document.querySelector(`#grid .tile[data-sid="${sid}"] video`);
  if (!v || v.videoWidth === 0) return null;
  const c = document.createElement('canvas');
  c.width = 32; c.height = 24;
  const g = c.getContext('2d');
  g.drawImage(v, 0, 0, 32, 24);
  const d = g.getImageData(0, 0, 32, 24).data;
  const sum = [0, 0, 0];
  for (let i = 0; i < d.length; i += 4) { sum[0] += d[i]; sum[1] += d[i + 1]; sum[2] += d[i + 2]; }
  const n = d.length / 4;
  return sum.map((x) => Math.round(x / n));
}
"""

SUB_MLINES_JS = """
() => {
  const sub = window.sfu.sub;
  if (!sub || !sub.remoteDescription) return -1;
  return sub.remoteDescription.sdp.split('\\r\\n').filter((l) => l.startsWith('m=')).length;
}
"""


async def _renegotiate(client: RoomClient) -> None:
    assert client.pub is not None
    await client.pub.setLocalDescription(await client.pub.createOffer())
    reply = await client.request({"type": "offer", "sdp": client.pub.localDescription.sdp})
    await client.pub.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
    client.published = dict(reply["tracks"])


async def _wait_color(page: Any, sid: str, rgb: tuple[int, int, int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = await page.evaluate(TILE_COLOR_JS, sid)
        if last is not None and max(abs(a - b) for a, b in zip(last, rgb, strict=True)) < 40:
            return
        await asyncio.sleep(0.3)
    pytest.fail(f"the browser shows {last} for the camera, expected {rgb}")


async def test_browser_sees_each_new_camera_on_the_reused_mline(
    browser: Any, server: ServerProcess
) -> None:
    code = await create_invite(server.base_url, "e2e-recycle", "owner-recycle@example.com")
    page = await _open(browser, server, f"/join/{code}?name=bob", {"width": 1280, "height": 720})
    await _wait_js(page, "() => window.sfu.state === 'joined'", 15, "bob to join")
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.base_url}/api/join/{code}", json={"display_name": "flaky"}) as resp,
    ):
        assert resp.status == 200, await resp.text()
        grant = await resp.json()
    # This process's aiortc gathers on loopback only (the namespace has nothing else).
    adapter.set_ice_host_addresses(["127.0.0.1"])
    publisher = RoomClient(
        server.base_url, grant["grants"]["room"], "flaky", token=grant["token"], subscribe=False
    )
    try:
        await publisher.connect()
        camera = ColorTrack(COLORS[0], fps=10)
        await publisher.publish([camera])
        assert publisher.pub is not None
        transceiver = publisher.pub.getTransceivers()[0]
        await _wait_js(page, f"() => ({SID_BY_NAME_JS})('flaky') !== null", 15, "bob sees flaky")
        sid = await page.evaluate(SID_BY_NAME_JS, "flaky")
        await _wait_color(page, sid, COLORS[0], 20)
        for rgb in COLORS[1:]:
            transceiver.direction = "inactive"
            await _renegotiate(publisher)
            await _wait_js(
                page,
                "() => window.sfu.sub.getTransceivers()"
                ".every((t) => t.currentDirection !== 'recvonly')",
                15,
                "the camera m-line to go inactive in the browser",
            )
            camera.set_color(rgb)
            transceiver.direction = "sendonly"
            await _renegotiate(publisher)
            await _wait_color(page, sid, rgb, 20)
            assert await page.evaluate(SUB_MLINES_JS) == 1
    finally:
        await publisher.close()
        adapter.set_ice_host_addresses([])
        await page.context.close()
