"""Baseline for bench/fanout.py: aiortc's own MediaRelay (decode once, re-encode per
subscriber), the way aiortc's examples build a "server". Run as a subprocess.

``POST /publish`` with an SDP offer (the publisher), ``POST /subscribe`` with a recvonly
offer (each listener); both answer with SDP.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay

from sfu import _aiortc_adapter as adapter

relay = MediaRelay()
source: dict[str, MediaStreamTrack] = {}
pcs: set[RTCPeerConnection] = set()
ready = {"audio": asyncio.Event(), "video": asyncio.Event()}


async def publish(request: web.Request) -> web.Response:
    pc = RTCPeerConnection(adapter.make_configuration([]))
    pcs.add(pc)

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        source[track.kind] = track
        ready[track.kind].set()

    await pc.setRemoteDescription(RTCSessionDescription(await request.text(), "offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    return web.Response(text=pc.localDescription.sdp, content_type="application/sdp")


async def subscribe(request: web.Request) -> web.Response:
    pc = RTCPeerConnection(adapter.make_configuration([]))
    pcs.add(pc)
    await pc.setRemoteDescription(RTCSessionDescription(await request.text(), "offer"))
    for transceiver in pc.getTransceivers():
        if transceiver.kind in ready:
            await asyncio.wait_for(ready[transceiver.kind].wait(), 20)
            transceiver.direction = "sendonly"
            transceiver.sender.replaceTrack(relay.subscribe(source[transceiver.kind]))
    await pc.setLocalDescription(await pc.createAnswer())
    return web.Response(text=pc.localDescription.sdp, content_type="application/sdp")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    adapter.set_ice_host_addresses(["127.0.0.1"])
    app = web.Application()
    app.router.add_post("/publish", publish)
    app.router.add_post("/subscribe", subscribe)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
