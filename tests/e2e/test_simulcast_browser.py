"""Simulcast with Chromium (issue 15): per-subscriber layers, adaptive stream and dynacast.

Alice publishes Chromium's fake camera (1280x720) as three simulcast encodings, rid ``q``
(320x180), ``h`` (640x360) and ``f`` (1280x720). Bob subscribes over a clean link; carol's
subscribe transport crosses the user-space relay (tests/support/udprelay.py) capped at
300 kbit/s downstream. Asserted, from W3C getStats:

* alice sends the three rids (``outbound-rtp`` per rid), each with VP8 temporal layers
  (``scalabilityMode`` L1T3);
* bob gets the full layer (``frameWidth`` 1280), carol a low one (at most 320) and decodes it
  without a gap longer than 1 s between decoded frames over 5 s;
* lifting carol's cap brings her up to the full layer within the issue's 10 s, and her
  decoder goes on through those layer switches (no gap over 1 s between decoded frames);
* adaptive stream: a small tile (carol's tiles shrunk to 150 CSS px) gets the low layer, a
  hidden tile (bob's tiles hidden) gets no video packets;
* dynacast: then nobody needs ``f``, and alice's ``f`` encoding stops (its outbound-rtp
  ``bytesSent`` stops growing).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.conftest import CHROMIUM_ARGS, create_invite, launch_chromium
from tests.e2e.relaypage import open_through_relay
from tests.e2e.test_browser_call import PARTICIPANT_NAMES_JS, _open, _wait_js
from tests.support.udprelay import RelaySet
from tests.support.video_gaps import GAPS_START_JS, GAPS_STOP_JS

if TYPE_CHECKING:
    from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

DESKTOP = {"width": 1280, "height": 720}
CAP_BPS = 300_000

INBOUND_VIDEO_JS = """
async () => {
  // alice's video only (a muted camera's m-line keeps its last frameWidth)
  const s = window.sfu.session;
  const mids = new Set();
  for (const [mid, info] of s.subscriber.mids) {
    const p = s.roster.participants.get(info.participant);
    if (info.kind === 'video' && p && p.name === 'alice') mids.add(mid);
  }
  const out = { width: 0, decoded: 0, packets: 0, lost: 0, nacks: 0, plis: 0, keyframes: 0 };
  (await window.sfu.sub.getStats()).forEach((r) => {
    if (r.type !== 'inbound-rtp' || r.kind !== 'video' || !mids.has(r.mid)) return;
    out.width = Math.max(out.width, r.frameWidth || 0);
    out.decoded += r.framesDecoded || 0;
    out.packets += r.packetsReceived || 0;
    out.lost += r.packetsLost || 0;
    out.nacks += r.nackCount || 0;
    out.plis += r.pliCount || 0;
    out.keyframes += r.keyFramesDecoded || 0;
  });
  return out;
}
"""

OUTBOUND_RIDS_JS = """
async () => {
  const out = {};
  (await window.sfu.pub.getStats()).forEach((r) => {
    if (r.type === 'outbound-rtp' && r.kind === 'video' && r.rid) {
      out[r.rid] = {
        bytes: r.bytesSent || 0, width: r.frameWidth || 0, active: r.active,
        mode: r.scalabilityMode || null,
      };
    }
  });
  return out;
}
"""


@pytest.fixture
async def light_browser(chromium: Path) -> AsyncIterator[Any]:
    """Chromium with its built-in fake camera (cheap to encode three times) and microphone."""
    async with launch_chromium(chromium, CHROMIUM_ARGS) as browser:
        yield browser


async def _wait_width(page: Any, ok: Any, timeout_s: float, what: str) -> tuple[float, int]:
    """Poll the inbound video ``frameWidth`` until ``ok(width)``; (seconds taken, width)."""
    start = time.monotonic()
    width = 0
    while time.monotonic() - start < timeout_s:
        width = (await page.evaluate(INBOUND_VIDEO_JS))["width"]
        if ok(width):
            return time.monotonic() - start, width
        await asyncio.sleep(0.5)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}; frameWidth={width}")


ALICE_TILE = '.tile[data-name="alice"]:not(.screen)'


async def _style(page: Any, props: dict[str, str]) -> None:
    """Set CSS ``props`` on alice's tile (through the CSSOM: the page's CSP forbids <style>),
    now and whenever the tile is made again."""
    await page.evaluate(
        """([selector, props]) => {
          const apply = () => document.querySelectorAll(selector).forEach((el) => {
            for (const [k, v] of Object.entries(props)) el.style.setProperty(k, v, 'important');
          });
          apply();
          clearInterval(window.__tileStyle);
          window.__tileStyle = setInterval(apply, 200);
        }""",
        [ALICE_TILE, props],
    )


BIG = {
    "position": "fixed",
    "left": "0",
    "top": "0",
    "width": "1280px",
    "height": "720px",
    "z-index": "10",
}


async def test_simulcast_layers_follow_bandwidth_tiles_and_dynacast(
    light_browser: Any, server: ServerProcess
) -> None:
    browser = light_browser
    relays = RelaySet(seed=15)
    try:
        code = await create_invite(server.base_url, "e2e-simulcast", "owner-simulcast@example.com")
        alice = await _open(browser, server, f"/join/{code}?name=alice", DESKTOP)
        bob = await _open(browser, server, f"/join/{code}?name=bob", DESKTOP)
        carol = await open_through_relay(
            browser, server, f"/join/{code}?name=carol", DESKTOP, relays
        )
        relays.downlink.set(rate_bps=CAP_BPS, queue_bytes=8_000)
        for page, who in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
            await _wait_js(page, "() => window.sfu.state === 'joined'", 20, f"{who} to join")
        for page, who in ((bob, "bob"), (carol, "carol")):
            await _wait_js(
                page, f"() => ({PARTICIPANT_NAMES_JS})().includes('alice')", 15, f"{who}: alice"
            )

        for page in (bob, carol):  # only alice's camera: carol's link is for her video alone
            await page.evaluate("() => window.sfu.session.setMuted('video', true)")
            await _style(page, BIG)  # alice's tile fills the page: it can show the full layer
        # alice publishes three layers; bob (clean link) gets the full one
        await _wait_js(
            alice,
            f"async () => Object.keys(await ({OUTBOUND_RIDS_JS})()).length === 3",
            20,
            "alice to send three rids",
        )
        # each encoding with VP8 temporal layers (webrtc-svc scalabilityMode, Chromium lists
        # L1T3 for VP8): the SFU can lower a weak subscriber's frame rate before pausing it
        await _wait_js(
            alice,
            f"""async () => Object.values(await ({OUTBOUND_RIDS_JS})())
                .every((r) => r.mode === 'L1T3')""",
            10,
            "alice's encodings in L1T3",
        )
        took, width = await _wait_width(bob, lambda w: w >= 1280, 25, "bob's full layer")
        print(f"bob: full layer ({width} px) after {took:.1f} s")

        # carol (300 kbit/s) gets a low layer and decodes it without freezes
        took, width = await _wait_width(carol, lambda w: 0 < w <= 320, 20, "carol's low layer")
        await asyncio.sleep(3.0)  # the joins' renegotiations are over
        await carol.evaluate(GAPS_START_JS)
        samples = []  # an upswitch probe may show the next layer for a moment
        for _ in range(10):
            await asyncio.sleep(0.5)
            samples.append(await carol.evaluate(INBOUND_VIDEO_JS))
        longest = await carol.evaluate(GAPS_STOP_JS)
        _, down = relays.stats()
        widths = [sample["width"] for sample in samples]
        # per 0.5 s: width, then the counters' growth (frames decoded, packets lost, NACKs,
        # PLIs, keyframes decoded): tells a probe that stayed from a switch down that waits
        trace = [
            (b["width"], *(b[k] - a[k] for k in ("decoded", "lost", "nacks", "plis", "keyframes")))
            for a, b in itertools.pairwise(samples)
        ]
        print(
            f"carol capped: widths {widths}, longest gap {longest:.0f} ms, relay overflow "
            f"{down.overflow}/{down.received}; (width, decoded, lost, nacks, plis, keyframes) "
            f"per 0.5 s: {trace}"
        )
        # mostly the low layer: an upswitch probe (every ~5 s at most) shows h for a moment
        assert sum(1 for w in widths if 0 < w <= 320) >= 6, (widths, trace)
        assert longest <= 1000, longest

        # lift the cap: carol comes up to the full layer
        await carol.evaluate(GAPS_START_JS)
        relays.downlink.set(rate_bps=None)
        # the 10 s (the allocator's own timing: tests/unit/test_allocation_timing.py)
        took, width = await _wait_width(carol, lambda w: w >= 1280, 10, "carol's full layer")
        await asyncio.sleep(1.0)
        longest = await carol.evaluate(GAPS_STOP_JS)
        print(f"carol uncapped: full layer ({width} px) after {took:.1f} s, gap {longest:.0f} ms")
        # the switches up (q -> h -> f) decode without a freeze
        assert longest <= 1000, longest

        # adaptive stream: carol's tiles small -> low layer; bob's hidden -> no video
        await _style(carol, {**BIG, "width": "150px", "height": "84px"})
        await _style(bob, {"display": "none"})
        await _wait_width(carol, lambda w: 0 < w <= 320, 15, "carol's small tile on a low layer")
        await asyncio.sleep(2.0)
        before = (await bob.evaluate(INBOUND_VIDEO_JS))["packets"]
        await asyncio.sleep(2.0)
        after = (await bob.evaluate(INBOUND_VIDEO_JS))["packets"]
        print(f"bob hidden: {after - before} video packets in 2 s")
        assert after - before <= 5, after - before

        # dynacast: nobody needs f any more, alice's f encoding stops
        deadline = time.monotonic() + 15
        grew = True
        while time.monotonic() < deadline:
            one = (await alice.evaluate(OUTBOUND_RIDS_JS))["f"]["bytes"]
            await asyncio.sleep(1.5)
            two = await alice.evaluate(OUTBOUND_RIDS_JS)
            grew = two["f"]["bytes"] > one
            if not grew:
                break
        print(f"alice after dynacast: {await alice.evaluate(OUTBOUND_RIDS_JS)}")
        assert not grew, "alice still sends the f layer nobody receives"
    finally:
        relays.close()
