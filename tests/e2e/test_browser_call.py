"""Two headless Chromium pages call each other through the real server.

Each page joins through the URL, publishes the fake camera and microphone, and must decode the
other's video and play the other's audio (stats from the subscribe RTCPeerConnection). Then the
publisher's video bitrate must ramp up, a camera mute must reach the other page as an indicator,
and a participant who leaves must disappear from the other page.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.conftest import create_invite

if TYPE_CHECKING:
    from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

MEDIA_TIMEOUT_S = 30.0
BITRATE_TIMEOUT_S = 15.0
MIN_VIDEO_BPS = 500_000

INBOUND_JS = """
async () => {
  const sub = window.sfu.sub;
  const out = { video: 0, audio: 0, videoStreams: 0, audioStreams: 0 };
  if (!sub) return out;
  const stats = await sub.getStats();
  stats.forEach((r) => {
    if (r.type !== 'inbound-rtp') return;
    if (r.kind === 'video') { out.video += r.framesDecoded || 0; out.videoStreams += 1; }
    if (r.kind === 'audio') { out.audio += r.totalSamplesReceived || 0; out.audioStreams += 1; }
  });
  return out;
}
"""

OUTBOUND_VIDEO_JS = """
async () => {
  const pub = window.sfu.pub;
  if (!pub) return null;
  const stats = await pub.getStats();
  let bytes = 0, ts = null, found = false, target = 0, available = null;
  stats.forEach((r) => {
    if (r.type === 'outbound-rtp' && r.kind === 'video') {
      bytes += r.bytesSent || 0; ts = r.timestamp; found = true; target += r.targetBitrate || 0;
    }
    if (r.type === 'candidate-pair' && r.nominated && r.availableOutgoingBitrate !== undefined) {
      available = r.availableOutgoingBitrate;
    }
  });
  return found ? { bytes, ts, target, available } : null;
}
"""

PARTICIPANT_NAMES_JS = "() => [...window.sfu.participants.values()].map((p) => p.name)"
SID_BY_NAME_JS = """
(name) => {
  for (const [sid, p] of window.sfu.participants) if (p.name === name) return sid;
  return null;
}
"""


async def _open(browser: Any, server: ServerProcess, path: str, viewport: dict[str, int]) -> Any:
    context = await browser.new_context(viewport=viewport)
    page = await context.new_page()
    page.on("console", lambda msg: server.page_logs.append(f"[{path}] {msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: server.page_logs.append(f"[{path}] pageerror: {err}"))
    await page.goto(f"{server.base_url}{path}")
    return page


async def _wait_js(page: Any, expression: str, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await page.evaluate(expression):
            return
        await asyncio.sleep(0.2)
    state = await page.evaluate("() => [window.sfu.state, window.sfu.lastError]")
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}; [state, lastError]={state}")


async def _wait_media_flowing(page: Any, who: str) -> dict[str, Any]:
    """Poll until framesDecoded and totalSamplesReceived both grow across one second."""
    deadline = time.monotonic() + MEDIA_TIMEOUT_S
    before = await page.evaluate(INBOUND_JS)
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        after = await page.evaluate(INBOUND_JS)
        if after["video"] > before["video"] and after["audio"] > before["audio"]:
            return after
        before = after
    pytest.fail(
        f"{who}: media from the other participant is not flowing after {MEDIA_TIMEOUT_S:.0f} s "
        f"(last two inbound samples: {before}); sfu.lastError="
        f"{await page.evaluate('() => window.sfu.lastError')}"
    )


async def _wait_bitrate(page: Any, who: str) -> float:
    """Poll outbound video bytesSent; return the first 1 s rate above MIN_VIDEO_BPS."""
    deadline = time.monotonic() + BITRATE_TIMEOUT_S
    rates: list[float] = []
    estimates: list[tuple[int, int]] = []  # (encoder target, sender's bandwidth estimate)
    prev = await page.evaluate(OUTBOUND_VIDEO_JS)
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        cur = await page.evaluate(OUTBOUND_VIDEO_JS)
        if prev is not None and cur is not None and cur["ts"] > prev["ts"]:
            bps = (cur["bytes"] - prev["bytes"]) * 8 * 1000.0 / (cur["ts"] - prev["ts"])
            rates.append(bps)
            estimates.append((round(cur["target"] / 1000), round((cur["available"] or 0) / 1000)))
            if bps > MIN_VIDEO_BPS:
                return bps
        prev = cur
    pytest.fail(
        f"{who}: outbound video never exceeded {MIN_VIDEO_BPS / 1000:.0f} kbit/s within "
        f"{BITRATE_TIMEOUT_S:.0f} s; 1 s rates (kbit/s): {[round(r / 1000) for r in rates]}; "
        f"(targetBitrate, availableOutgoingBitrate) kbit/s: {estimates}"
    )


async def _join_pair(browser: Any, server: ServerProcess, room: str) -> tuple[Any, Any, str, str]:
    """Alice (desktop) and bob (phone width) join a new room; returns pages and their sids."""
    # Joining needs a room token: both open the room's invite link, named in the URL.
    code = await create_invite(server.base_url, room, f"owner-{room}@example.com")
    alice = await _open(browser, server, f"/join/{code}?name=alice", {"width": 1280, "height": 720})
    bob = await _open(browser, server, f"/join/{code}?name=bob", {"width": 390, "height": 844})

    for page, who in ((alice, "alice"), (bob, "bob")):
        await _wait_js(page, "() => window.sfu.state === 'joined'", 15, f"{who} to join")
    await _wait_js(
        alice, f"() => ({PARTICIPANT_NAMES_JS})().includes('bob')", 15, "alice to see bob"
    )
    await _wait_js(
        bob, f"() => ({PARTICIPANT_NAMES_JS})().includes('alice')", 15, "bob to see alice"
    )
    alice_sid = await bob.evaluate(SID_BY_NAME_JS, "alice")
    bob_sid = await alice.evaluate(SID_BY_NAME_JS, "bob")
    assert alice_sid and bob_sid
    return alice, bob, alice_sid, bob_sid


async def test_publisher_video_bitrate_ramps_up(browser: Any, server: ServerProcess) -> None:
    """The server's congestion feedback (REMB) lets the publisher send > 500 kbit/s."""
    alice, bob, _alice_sid, _bob_sid = await _join_pair(browser, server, "e2e-bitrate")
    await _wait_media_flowing(bob, "bob")  # alice's video reaches bob through the server
    await _wait_bitrate(alice, "alice")


async def test_two_participants_call(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    alice, bob, alice_sid, bob_sid = await _join_pair(browser, server, "e2e")

    # Each page decodes the other's video and receives the other's audio.
    alice_in = await _wait_media_flowing(alice, "alice")
    bob_in = await _wait_media_flowing(bob, "bob")
    assert alice_in["videoStreams"] >= 1 and alice_in["audioStreams"] >= 1
    assert bob_in["videoStreams"] >= 1 and bob_in["audioStreams"] >= 1

    # The remote tile shows a playing video of the right size (the fake camera is 640x480, 4:3).
    bob_tile_video = alice.locator(f'.tile[data-sid="{bob_sid}"] video')
    await _wait_js(
        alice,
        f"""() => {{
          const v = document.querySelector('.tile[data-sid="{bob_sid}"] video');
          return v !== null && v.videoWidth > 0 && v.currentTime > 0 && !v.paused;
        }}""",
        10,
        "bob's video element on alice's page to play",
    )
    width, height = await bob_tile_video.evaluate("v => [v.videoWidth, v.videoHeight]")
    assert width * 3 == height * 4, (width, height)  # the 4:3 fake camera (maybe scaled)
    await alice.locator(f'.tile[data-sid="{bob_sid}"] .name').wait_for()
    assert await alice.locator(f'.tile[data-sid="{bob_sid}"] .name').text_content() == "bob"

    # Chromium's fake microphone beeps: the server's active-speaker events reach bob's page,
    # which highlights alice's tile at least once.
    await _wait_js(
        bob,
        f"""() => window.sfu.heardSpeaking.has('{alice_sid}')""",
        15,
        "bob's page to hear that alice is speaking (active_speakers)",
    )

    await alice.screenshot(path=str(screenshot_dir / "01-alice-call.png"))
    await bob.screenshot(path=str(screenshot_dir / "02-bob-call-phone.png"))

    # Alice stops her camera with the real button; bob's page shows the indicator.
    cam_button = alice.get_by_role("button", name="Stop camera")
    await cam_button.click()
    await _wait_js(
        alice,
        "() => window.sfu.local.video.muted && window.sfu.local.video.track.readyState === 'ended'",
        5,
        "alice's camera capture to end",
    )
    start_button = alice.get_by_role("button", name="Start camera")
    assert await start_button.get_attribute("aria-pressed") == "true"
    alice_tile_on_bob = bob.locator(f'.tile[data-sid="{alice_sid}"]')
    await _wait_js(
        bob,
        f"""() => {{
          const t = document.querySelector('.tile[data-sid="{alice_sid}"]');
          return t !== null && t.dataset.camMuted === 'true';
        }}""",
        10,
        "bob's page to show alice's camera as muted (track_muted)",
    )
    await alice_tile_on_bob.locator(".ind-cam").wait_for(state="visible", timeout=2000)
    await bob.screenshot(path=str(screenshot_dir / "03-bob-sees-alice-muted.png"))

    # Bob leaves; his tile disappears from alice's page.
    await bob.get_by_role("button", name="Leave").click()
    await _wait_js(bob, "() => window.sfu.state === 'left'", 10, "bob to leave")
    await alice.locator(f'.tile[data-sid="{bob_sid}"]').wait_for(state="detached", timeout=10000)
    assert await alice.evaluate(PARTICIPANT_NAMES_JS) == []
    await alice.screenshot(path=str(screenshot_dir / "04-alice-after-bob-left.png"))
    await bob.screenshot(path=str(screenshot_dir / "05-bob-left-phone.png"))


async def test_join_with_the_form_by_keyboard(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    # Without an invite or token there is no room form to fill (it could never work): the
    # start page says the room needs an invite link.
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    page = await context.new_page()
    page.on("console", lambda msg: server.page_logs.append(f"[form] {msg.type}: {msg.text}"))
    await page.goto(f"{server.base_url}/?room=no-invite&name=dave")
    assert await page.evaluate("() => window.sfu.state") == "idle"
    note = page.locator("#landing-note")
    await note.wait_for(state="visible")
    assert "invite link" in (await note.text_content() or "")
    assert await page.get_by_label("Room", exact=True).count() == 0
    await page.screenshot(path=str(screenshot_dir / "06-join-form-phone.png"))

    # An invite link opens the pre-join screen; labels name the inputs, Enter submits.
    code = await create_invite(server.base_url, "form room", "owner-form@example.com")
    await page.goto(f"{server.base_url}/join/{code}")
    await page.get_by_role("heading", name="You're joining form room").wait_for(timeout=10000)
    await page.screenshot(path=str(screenshot_dir / "07-prejoin-phone.png"))
    await page.get_by_label("Display name", exact=True).fill("<b>carol</b>")
    await page.get_by_label("Display name", exact=True).press("Enter")
    await _wait_js(page, "() => window.sfu.state === 'joined'", 15, "the form join")
    await _wait_js(page, "() => window.sfu.local.audio !== null", 10, "the microphone")
    assert await page.locator("#room-label").text_content() == "Room: form room"
    local_name = page.locator(".tile.local .name")
    # The name is text, never markup.
    assert await local_name.text_content() == "<b>carol</b> (you)"
    assert await page.locator(".tile.local .name b").count() == 0
    await page.get_by_role("button", name="Mute mic").focus()
    await page.keyboard.press("Enter")
    await _wait_js(page, "() => window.sfu.local.audio.muted", 5, "the mic to mute by keyboard")
    await page.screenshot(path=str(screenshot_dir / "08-form-joined-phone.png"))
    await context.close()
