"""Simulcast benchmark: one Chromium camera publisher, listeners with mixed links and tiles.

Usage: ``python -m bench.simulcast [--settle 12] [--window 10] [--caps 300000,1000000,0]``

The server runs twice (``SFU_DYNACAST`` on, then off) as a subprocess on 127.0.0.1. In each run
alice publishes Chromium's fake camera (1280x720) as q/h/f simulcast; one listener per entry of
``--caps`` joins with its subscribe transport through a user-space UDP relay capped at that
rate (0: uncapped) and alice's tile at ``--tile`` CSS pixels wide (a thumbnail grid by
default, so nobody needs ``f``). After ``--settle`` seconds, over ``--window`` seconds, it
prints per listener: received video bit rate, frame width (the layer), the longest gap between
decoded frames and Chromium's freezes; and alice's uplink (video bytes sent per rid). The last
line compares the publisher's uplink with and without dynacast, measured in this one run.

Needs Chromium (``/usr/bin/chromium``) and Playwright; every address is 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import tempfile
from pathlib import Path
from typing import Any

from signaling.serverproc import start_server, stop_server, wait_healthy
from tests.support.udprelay import RelaySet
from tests.support.video_gaps import GAPS_STOP_JS, gaps_start_js

# The browser-test helpers (Chromium flags, invites, the relay page); imported at run time so
# that type-checking the benchmarks does not type-check the test suite's fixtures.
_e2e: Any = importlib.import_module("tests.e2e.conftest")
_relaypage: Any = importlib.import_module("tests.e2e.relaypage")

INBOUND_JS = """
async () => {
  const s = window.sfu.session;
  const mids = new Set();
  for (const [mid, info] of s.subscriber.mids) {
    const p = s.roster.participants.get(info.participant);
    if (info.kind === 'video' && p && p.name === 'alice') mids.add(mid);
  }
  const out = { bytes: 0, width: 0, decoded: 0, freezes: 0, freeze_s: 0 };
  (await window.sfu.sub.getStats()).forEach((r) => {
    if (r.type !== 'inbound-rtp' || r.kind !== 'video' || !mids.has(r.mid)) return;
    out.bytes += r.bytesReceived || 0;
    out.width = Math.max(out.width, r.frameWidth || 0);
    out.decoded += r.framesDecoded || 0;
    out.freezes += r.freezeCount || 0;
    out.freeze_s += r.totalFreezesDuration || 0;
  });
  return out;
}
"""

OUTBOUND_JS = """
async () => {
  const out = {};
  (await window.sfu.pub.getStats()).forEach((r) => {
    if (r.type === 'outbound-rtp' && r.kind === 'video') out[r.rid || '-'] = r.bytesSent || 0;
  });
  return out;
}
"""


TILE_JS = """
(width) => {
  const apply = () => document.querySelectorAll('.tile[data-name="alice"]').forEach((el) => {
    el.style.setProperty('width', width + 'px', 'important');
  });
  apply();
  setInterval(apply, 500);
}
"""


async def _run(
    dynacast: bool, caps: list[int], tile: int, settle: float, window: float
) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    viewport: Any = {"width": 1280, "height": 720}
    with tempfile.TemporaryDirectory() as tmp:
        process, url = start_server(
            Path(tmp),
            env={"SFU_BCRYPT_COST": "4", "SFU_DYNACAST": "true" if dynacast else "false"},
        )
        relays = [RelaySet(seed=i) for i in range(len(caps))]
        try:
            wait_healthy(url, process, 60)
            server = _e2e.ServerProcess(url, process, Path(tmp) / "server.log")
            code = await _e2e.create_invite(url, "bench-simulcast", "bench-simulcast@example.com")
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=str(_e2e.CHROMIUM) if _e2e.CHROMIUM.exists() else None,
                    headless=True,
                    args=_e2e.CHROMIUM_ARGS,
                )
                try:
                    alice = await (await browser.new_context(viewport=viewport)).new_page()
                    await alice.goto(f"{url}/join/{code}?name=alice")
                    listeners = []
                    for i, (cap, relay) in enumerate(zip(caps, relays, strict=True)):
                        page = await _relaypage.open_through_relay(
                            browser, server, f"/join/{code}?name=l{i}", viewport, relay
                        )
                        if cap:
                            relay.downlink.set(rate_bps=cap, queue_bytes=max(4000, cap // 40))
                        listeners.append(page)
                    for page in [alice, *listeners]:
                        for _ in range(100):
                            if await page.evaluate("() => window.sfu.state === 'joined'"):
                                break
                            await asyncio.sleep(0.2)
                    for page in listeners:  # only alice's camera; her tile at --tile px
                        await page.evaluate("() => window.sfu.session.setMuted('video', true)")
                        await page.evaluate(TILE_JS, tile)
                    await asyncio.sleep(settle)
                    out0 = await alice.evaluate(OUTBOUND_JS)
                    in0 = [await p.evaluate(INBOUND_JS) for p in listeners]
                    for page in listeners:
                        await page.evaluate(gaps_start_js(100))
                    await asyncio.sleep(window)
                    gaps = [await p.evaluate(GAPS_STOP_JS) for p in listeners]
                    out1 = await alice.evaluate(OUTBOUND_JS)
                    in1 = [await p.evaluate(INBOUND_JS) for p in listeners]
                finally:
                    await browser.close()
        finally:
            for relay in relays:
                relay.close()
            stop_server(process)
    rows = []
    for cap, a, b, gap in zip(caps, in0, in1, gaps, strict=True):
        rows.append(
            {
                "cap_bps": cap or None,
                "video_kbps": round((b["bytes"] - a["bytes"]) * 8 / window / 1000),
                "width": b["width"],
                "longest_gap_ms": round(gap),
                "freezes": b["freezes"] - a["freezes"],
            }
        )
    uplink = {rid: round((out1[rid] - out0.get(rid, 0)) * 8 / window / 1000) for rid in out1}
    return {"dynacast": dynacast, "listeners": rows, "uplink_kbps_by_rid": uplink}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caps", default="300000,1000000,0", help="bits/s per listener, 0=none")
    parser.add_argument("--tile", type=int, default=300, help="alice's tile width (CSS px)")
    parser.add_argument("--settle", type=float, default=12.0)
    parser.add_argument("--window", type=float, default=10.0)
    args = parser.parse_args()
    caps = [int(c) for c in args.caps.split(",")]
    results = []
    for dynacast in (True, False):
        result = await _run(dynacast, caps, args.tile, args.settle, args.window)
        print(json.dumps(result))
        results.append(result)
    on, off = (sum(r["uplink_kbps_by_rid"].values()) for r in results)
    print(
        f"publisher uplink: {on} kbit/s with dynacast, {off} kbit/s without "
        f"({off / max(on, 1):.2f}x); tiles {args.tile} px, caps {caps}"
    )


if __name__ == "__main__":
    asyncio.run(main())
