"""A WHIP publisher built on GStreamer's ``webrtcbin`` (run with the system ``python3``).

It does what Debian's ``simple-whip-client`` (meetecho, by the Janus author) does, step by
step, without its HTTP stack: that binary links libsoup 2 while Debian bookworm's libnice
links libsoup 3, and libsoup aborts at start-up when both are loaded ("libsoup2 symbols
detected"), so the packaged client cannot run at all. The WebRTC side is the same element
configured the same way:

* pipeline ``webrtcbin name=sendonly bundle-policy=max-bundle <video> ! sendonly. <audio> !
  sendonly.`` (video first, so the audio m-line is ``a=bundle-only`` with port 0);
* the offer is created on ``on-negotiation-needed``, applied locally, and sent once ICE
  gathering completes with every candidate of m-line 0 copied into each m-section
  (``--no-trickle``);
* with ``--local-address``, candidates are gathered on that address only (libnice ignores
  loopback interfaces otherwise; simple-whip-client has no such option);
* ``POST`` the offer (``application/sdp``, ``Authorization: Bearer``) to the WHIP URL
  (RFC 9725), apply the answer, publish for ``--seconds``, then ``DELETE`` the resource.

Exit status: 0 when the peer connection reached ``connected``; 2 on an HTTP or SDP error; 3 when
it never connected. ``--offer-out`` writes the offer as sent; ``--answer-out`` the answer.

This file is not imported by the test suite (it needs PyGObject and GStreamer's
introspection data: Debian ``python3-gi gir1.2-gst-plugins-bad-1.0``); tests run it as a
subprocess.
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

VIDEO = (
    "videotestsrc is-live=true pattern=solid-color foreground-color={argb} ! "
    "video/x-raw,width=320,height=240,framerate=15/1 ! videoconvert ! queue ! "
    "vp8enc deadline=1 keyframe-max-dist=15 ! rtpvp8pay pt=96 ssrc=2 ! queue ! "
    "application/x-rtp,media=video,encoding-name=VP8,payload=96"
)
AUDIO = (
    "audiotestsrc is-live=true wave=sine freq={freq} volume=0.5 ! audioconvert ! "
    "audioresample ! queue ! opusenc ! rtpopuspay pt=100 ssrc=1 ! queue ! "
    "application/x-rtp,media=audio,encoding-name=OPUS,payload=100"
)


def _keep_reference(obj: object) -> None:
    """Take one more GObject reference on ``obj``: PyGObject 3.42 releases a reference it does
    not own when the wrapper of webrtcbin's ``ice-agent`` goes away, and webrtcbin then uses a
    freed object (a crash at ``create-offer``)."""
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    gobject = ctypes.CDLL("libgobject-2.0.so.0")
    gobject.g_object_ref.argtypes = [ctypes.c_void_p]
    gobject.g_object_ref.restype = ctypes.c_void_p
    gobject.g_object_ref(get_pointer(obj.__gpointer__, None))  # type: ignore[attr-defined]


class Publisher:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.loop = GLib.MainLoop()
        self.candidates: list[str] = []
        self.offer: str | None = None
        self.gathered = False
        self.sent = False
        self.connected = False
        self.status = 3
        self.resource: str | None = None
        rgb = int(args.rgb, 16)
        pipeline = (
            "webrtcbin name=sendonly bundle-policy=max-bundle "
            f"{VIDEO.format(argb=0xFF000000 | rgb)} ! sendonly. "
            f"{AUDIO.format(freq=args.freq)} ! sendonly."
        )
        self.pipeline = Gst.parse_launch(pipeline)
        self.pc = self.pipeline.get_by_name("sendonly")
        if args.local_address:
            # libnice skips loopback interfaces; tests run in a loopback-only namespace.
            ice = self.pc.get_property("ice-agent")
            _keep_reference(ice)
            ice.emit("add-local-ip-address", args.local_address)
        self.pc.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.pc.connect("on-ice-candidate", self.on_ice_candidate)
        self.pc.connect("notify::ice-gathering-state", self.on_gathering_state)
        self.pc.connect("notify::connection-state", self.on_connection_state)

    def log(self, text: str) -> None:
        print(f"[gst-whip] {text}", file=sys.stderr, flush=True)

    def on_negotiation_needed(self, element: Gst.Element) -> None:
        promise = Gst.Promise.new_with_change_func(self.on_offer_created, None)
        self.pc.emit("create-offer", None, promise)

    def on_offer_created(self, promise: Gst.Promise, _data: object) -> None:
        reply = promise.get_reply()
        offer = reply.get_value("offer")
        self.offer = offer.sdp.as_text()
        self.pc.emit("set-local-description", offer, Gst.Promise.new())
        if self.gathered:
            GLib.idle_add(self.send_offer)

    def on_ice_candidate(self, element: Gst.Element, mline: int, candidate: str) -> None:
        parts = candidate.split()
        if mline == 0 and len(parts) > 1 and parts[1] == "1":  # bundled: m-line 0, RTP
            self.candidates.append(candidate)

    def on_gathering_state(self, element: Gst.Element, _spec: object) -> None:
        state = self.pc.get_property("ice-gathering-state")
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            self.gathered = True
            if self.offer is not None:
                GLib.idle_add(self.send_offer)

    def on_connection_state(self, element: Gst.Element, _spec: object) -> None:
        state = self.pc.get_property("connection-state")
        self.log(f"connection state {state.value_nick}")
        if state == GstWebRTC.WebRTCPeerConnectionState.CONNECTED and not self.connected:
            self.connected = True
            self.status = 0
            GLib.timeout_add(int(self.args.seconds * 1000), self.finish)
        elif state == GstWebRTC.WebRTCPeerConnectionState.FAILED:
            self.finish()

    def sdp_with_candidates(self) -> str:
        assert self.offer is not None
        text = self.offer
        attributes = "".join(f"a={c}\r\n" for c in self.candidates)
        out: list[str] = []
        mlines = 0
        for line in text.split("\r\n"):
            if line.startswith("m="):
                mlines += 1
                if mlines > 1:
                    out.append(attributes)
            if len(line) > 2:
                out.append(line + "\r\n")
        out.append(attributes)
        return "".join(out)

    def request(self, method: str, url: str, body: str | None = None) -> tuple[int, dict, str]:
        headers = {"Authorization": f"Bearer {self.args.token}"}
        if body is not None:
            headers["Content-Type"] = "application/sdp"
        data = body.encode() if body is not None else None
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, dict(resp.headers), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode(errors="replace")

    def send_offer(self) -> bool:
        if self.sent:
            return False
        self.sent = True
        offer = self.sdp_with_candidates()
        if self.args.offer_out:
            with open(self.args.offer_out, "w", newline="") as f:
                f.write(offer)
        status, headers, answer = self.request("POST", self.args.url, offer)
        if status != 201 or not answer.startswith("v=0\r\n"):
            self.log(f"WHIP POST failed: {status} {answer[:500]}")
            self.status = 2
            self.loop.quit()
            return False
        if self.args.answer_out:
            with open(self.args.answer_out, "w", newline="") as f:
                f.write(answer)
        location = headers.get("Location") or headers.get("location")
        if location:
            self.resource = urllib.parse.urljoin(self.args.url, location)
        # simple-whip-client feeds the first m-section's candidates as trickles too.
        first = answer.split("\r\nm=")[1] if "\r\nm=" in answer else ""
        for line in first.split("\r\n"):
            if line.startswith("a=candidate"):
                self.pc.emit("add-ice-candidate", 0, line[2:])
        res, message = GstSdp.SDPMessage.new_from_text(answer)
        if res != GstSdp.SDPResult.OK:
            self.log("cannot parse the answer")
            self.status = 2
            self.loop.quit()
            return False
        description = GstWebRTC.WebRTCSessionDescription.new(
            GstWebRTC.WebRTCSDPType.ANSWER, message
        )
        self.pc.emit("set-remote-description", description, Gst.Promise.new())
        GLib.timeout_add(int(self.args.connect_timeout * 1000), self.connect_timeout)
        return False

    def connect_timeout(self) -> bool:
        if not self.connected:
            self.log("never connected")
            self.finish()
        return False

    def finish(self) -> bool:
        if self.resource is not None:
            self.request("DELETE", self.resource)
            self.resource = None
        self.loop.quit()
        return False

    def run(self) -> int:
        self.pipeline.set_state(Gst.State.PLAYING)
        GLib.timeout_add(
            int((self.args.seconds + self.args.connect_timeout + 10) * 1000), self.finish
        )
        self.loop.run()
        self.pipeline.set_state(Gst.State.NULL)
        return self.status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the WHIP endpoint")
    parser.add_argument("--token", required=True, help="the Bearer token")
    parser.add_argument(
        "--seconds", type=float, default=4.0, help="publish this long once connected"
    )
    parser.add_argument("--connect-timeout", type=float, default=10.0)
    parser.add_argument("--freq", type=int, default=440, help="audio tone (Hz)")
    parser.add_argument("--rgb", default="20c040", help="video colour, hex RRGGBB")
    parser.add_argument("--local-address", help="gather ICE candidates on this address only")
    parser.add_argument("--offer-out")
    parser.add_argument("--answer-out")
    args = parser.parse_args()
    Gst.init(None)
    return Publisher(args).run()


if __name__ == "__main__":
    sys.exit(main())
