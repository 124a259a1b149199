"""The in-call view of a conference (issue 16, "In a conference"), in headless Chromium.

- Pin a tile (it is shown large in the spotlight) and the speaker view beside the grid.
- Join and leave notices (toasts in an aria-live region).
- "You are muted" when the (fake) microphone hears sound while muted: the level is measured
  on a clone of the muted track with Web Audio.
- Keyboard shortcuts (M, V, H, C, "?") and their help dialog; never while typing.
- "Stop camera" ends the capture (the track's readyState is "ended", the sender sends no
  track, the other side stops decoding frames); "Start camera" captures again.
- The active speaker is visible at a glance (a thick green ring and label).
- Chat links: http(s) only, target=_blank, rel="noopener noreferrer"; javascript: stays text.
- Phones: three tiles or more in two columns.

Chromium's fake microphone plays ``fake_audio`` (a steady 440 Hz tone, conftest.py) and its
fake camera ``fake_video``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.conftest import create_invite
from tests.e2e.test_browser_call import INBOUND_JS, SID_BY_NAME_JS, _wait_js, _wait_media_flowing
from tests.e2e.test_conference_ui import DESKTOP, PHONE, _join, _send_chat, _wait_sees

if TYPE_CHECKING:
    from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

TILE_BOX_JS = """
(sid) => {
  const t = document.querySelector(`.tile[data-sid="${sid}"]:not(.screen)`);
  if (!t) return null;
  const r = t.getBoundingClientRect();
  const inSpotlight = t.parentElement.id === 'spotlight';
  return { x: r.x, y: r.y, w: r.width, h: r.height, inSpotlight };
}
"""

TOAST_RECORDER_JS = """
() => {
  window.__toasts = [];
  const region = document.getElementById('notices');
  new MutationObserver((records) => {
    for (const r of records) {
      for (const n of r.addedNodes) {
        if (n.classList.contains('toast')) window.__toasts.push(n.textContent);
      }
    }
  }).observe(region, { childList: true });
}
"""

CAMERA_JS = """
() => {
  const e = window.sfu.local.video;
  if (!e) return null;
  const sender = e.transceiver.sender;
  return {
    readyState: e.track.readyState,
    senderTrack: sender.track === null ? null : sender.track.readyState,
    senderIsTrack: sender.track === e.track,
    muted: e.muted,
    tileCamMuted: document.querySelector('.tile.local').dataset.camMuted,
  };
}
"""


async def _frames(page: Any) -> int:
    stats: dict[str, int] = await page.evaluate(INBOUND_JS)
    return stats["video"]


async def _wait_frames(page: Any, *, moving: bool, what: str, timeout_s: float = 15) -> None:
    """Poll the decoded video frames: until they grow across one second (``moving``), or stay
    the same across two seconds (stopped)."""
    deadline = time.monotonic() + timeout_s
    window = 1.0 if moving else 2.0
    before = await _frames(page)
    while time.monotonic() < deadline:
        await asyncio.sleep(window)
        after = await _frames(page)
        if (after > before) == moving:
            return
        before = after
    pytest.fail(f"{what}: decoded frames {'do not grow' if moving else 'keep growing'} ({before})")


# --- pin and speaker view -------------------------------------------------------------------


async def test_pin_tile_and_speaker_view(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    code = await create_invite(server.base_url, "e2e-pin", "owner-pin@example.com")
    alice = await _join(browser, server, code, "alice", DESKTOP)
    bob = await _join(browser, server, code, "bob", DESKTOP)
    carol = await _join(browser, server, code, "carol", DESKTOP)
    await _wait_sees(alice, ["bob", "carol"], "alice")
    bob_sid = await alice.evaluate(SID_BY_NAME_JS, "bob")
    carol_sid = await alice.evaluate(SID_BY_NAME_JS, "carol")
    assert await alice.evaluate("() => document.getElementById('spotlight').hidden")

    # Pin bob with his tile's own button (keyboard-reachable, named after him).
    pin = alice.get_by_role("button", name="Pin bob")
    await pin.focus()
    await alice.keyboard.press("Enter")
    await _wait_js(
        alice,
        f"() => ({TILE_BOX_JS})('{bob_sid}').inSpotlight",
        5,
        "bob's tile to be in the spotlight",
    )
    await _wait_js(
        alice,
        f"""() => {{
          const b = ({TILE_BOX_JS})('{bob_sid}'), c = ({TILE_BOX_JS})('{carol_sid}');
          return b.w > 3 * c.w;
        }}""",
        5,
        "the pinned tile to be large",
    )
    bob_box = await alice.evaluate(TILE_BOX_JS, bob_sid)
    carol_box = await alice.evaluate(TILE_BOX_JS, carol_sid)
    assert bob_box["w"] * bob_box["h"] > 0.25 * DESKTOP["width"] * DESKTOP["height"], bob_box
    assert not carol_box["inSpotlight"]
    assert await alice.get_by_role("button", name="Unpin bob").get_attribute("aria-pressed") == (
        "true"
    )
    assert await alice.evaluate("() => document.getElementById('call-main').dataset.view") == (
        "speaker"
    )
    await alice.screenshot(path=str(screenshot_dir / "60-pinned-tile.png"))

    # Pinning carol moves bob back into the strip.
    await alice.get_by_role("button", name="Pin carol").click()
    await _wait_js(
        alice,
        f"() => ({TILE_BOX_JS})('{carol_sid}').inSpotlight"
        f" && !({TILE_BOX_JS})('{bob_sid}').inSpotlight",
        5,
        "carol to replace bob in the spotlight",
    )

    # Unpin: back to the grid, every tile the same size.
    await alice.get_by_role("button", name="Unpin carol").click()
    await _wait_js(
        alice,
        f"""() => {{
          const b = ({TILE_BOX_JS})('{bob_sid}'), c = ({TILE_BOX_JS})('{carol_sid}');
          return document.getElementById('spotlight').hidden && !b.inSpotlight
            && !c.inSpotlight && Math.abs(b.w - c.w) < 2 && b.w > 250;
        }}""",
        5,
        "the grid to come back",
    )

    # The speaker view from the controls: another participant large, the rest in a strip,
    # and the call still plays (the moved <video> elements keep their streams).
    toggle = alice.get_by_role("button", name="Speaker view")
    assert await toggle.get_attribute("aria-pressed") == "false"
    await toggle.click()
    await _wait_js(
        alice,
        "() => { const t = document.querySelector('#spotlight .tile');"
        " return Boolean(t && !t.classList.contains('local')); }",
        5,
        "a remote tile in the speaker view",
    )
    assert await toggle.get_attribute("aria-pressed") == "true"
    await _wait_js(
        alice,
        "() => { const v = document.querySelector('#spotlight video');"
        " return Boolean(v && !v.paused && v.videoWidth > 0); }",
        10,
        "the spotlight video to play",
    )
    strip = await alice.evaluate(
        "() => [...document.querySelectorAll('#grid .tile')]"
        ".map((t) => t.getBoundingClientRect().width)"
    )
    featured = await alice.evaluate(
        "() => document.querySelector('#spotlight .tile').getBoundingClientRect().width"
    )
    assert len(strip) == 2 and all(featured > 3 * w for w in strip), (featured, strip)
    await alice.screenshot(path=str(screenshot_dir / "61-speaker-view.png"))

    # The speaker view follows the voice: with carol muted only bob talks (besides alice, who
    # never sees herself there), so bob is shown; then the other way round.
    for talker, quiet, talker_sid in ((bob, carol, bob_sid), (carol, bob, carol_sid)):
        await quiet.get_by_role("button", name="Mute mic").click()
        if await talker.get_by_role("button", name="Unmute mic").count():
            await talker.get_by_role("button", name="Unmute mic").click()
        await _wait_js(
            alice,
            f"() => ({TILE_BOX_JS})('{talker_sid}').inSpotlight",
            15,
            f"the speaker view to show {talker_sid}, the only one talking",
        )
    await toggle.click()
    await _wait_js(
        alice,
        "() => document.getElementById('spotlight').hidden"
        " && document.querySelectorAll('#grid .tile').length === 3",
        5,
        "the grid after the speaker view",
    )


# --- join and leave notices -------------------------------------------------------------------


async def test_join_and_leave_notices(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    code = await create_invite(server.base_url, "e2e-notices", "owner-notices@example.com")
    alice = await _join(browser, server, code, "alice", DESKTOP)
    region = alice.locator("#notices")
    assert await region.get_attribute("aria-live") == "polite"
    assert await region.get_attribute("role") == "log"
    # Record every toast put into the live region (they go away after a few seconds).
    await alice.evaluate(TOAST_RECORDER_JS)
    bob = await _join(browser, server, code, "bob", DESKTOP)
    await _wait_js(
        alice, "() => window.__toasts.includes('bob joined')", 10, "the 'bob joined' notice"
    )
    await alice.screenshot(path=str(screenshot_dir / "62-notice-joined.png"))
    # Bob, who came second, is not told that alice "joined": she was there already.
    assert await bob.evaluate("() => window.sfu.notices") == []
    await bob.get_by_role("button", name="Leave").click()
    await _wait_js(alice, "() => window.__toasts.includes('bob left')", 10, "the 'bob left' notice")
    await alice.screenshot(path=str(screenshot_dir / "63-notice-left.png"))
    assert await alice.evaluate("() => window.__toasts") == ["bob joined", "bob left"]


# --- "you are muted" --------------------------------------------------------------------------


async def test_muted_hint_when_talking_while_muted(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    code = await create_invite(server.base_url, "e2e-muted", "owner-muted@example.com")
    alice = await _join(browser, server, code, "alice", DESKTOP)
    await _wait_js(alice, "() => window.sfu.local.audio !== null", 10, "alice's microphone")
    hint = alice.locator("#muted-hint")
    assert await hint.get_attribute("role") == "status"
    assert (await hint.text_content() or "") == ""

    await alice.get_by_role("button", name="Mute mic").click()
    # The fake microphone keeps playing its tone: the hint shows, the track stays muted.
    await _wait_js(
        alice,
        "() => document.getElementById('muted-hint').textContent.includes('You are muted')",
        15,
        "the muted hint",
    )
    state = await alice.evaluate(
        "() => ({ enabled: window.sfu.local.audio.track.enabled,"
        " level: window.sfu.mutedHint.level, visible: (() => {"
        " const r = document.getElementById('muted-hint').getBoundingClientRect();"
        " return r.width > 0 && r.height > 0; })() })"
    )
    assert state["enabled"] is False and state["visible"], state
    assert state["level"] > 0.02, state
    await alice.screenshot(path=str(screenshot_dir / "64-muted-hint.png"))

    # Unmuted: the hint goes and the level is no longer watched (the clone is stopped).
    await alice.get_by_role("button", name="Unmute mic").click()
    await _wait_js(
        alice,
        "() => document.getElementById('muted-hint').textContent === ''"
        " && !window.sfu.mutedHint.watching",
        5,
        "the hint to go after unmuting",
    )


# --- keyboard shortcuts ------------------------------------------------------------------------


async def test_keyboard_shortcuts_and_help_dialog(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    code = await create_invite(server.base_url, "e2e-keys", "owner-keys@example.com")
    alice = await _join(browser, server, code, "alice", DESKTOP)
    await _wait_js(
        alice,
        "() => window.sfu.local.audio !== null && window.sfu.local.video !== null"
        " && window.sfu.local.video.sid !== null",
        10,
        "alice's tracks to be published",
    )
    await alice.locator("body").click(position={"x": 5, "y": 5})

    # "?" opens the help dialog with the four shortcuts; Escape closes it.
    await alice.keyboard.press("?")
    dialog = alice.get_by_role("dialog", name="Keyboard shortcuts")
    await dialog.wait_for(state="visible", timeout=3000)
    listed = await alice.evaluate(
        "() => [...document.querySelectorAll('#shortcut-list .shortcut')].map("
        "(r) => [r.querySelector('kbd').textContent, r.querySelector('dd').textContent])"
    )
    assert [k for k, _ in listed] == ["M", "V", "H", "C", "?"], listed
    await alice.screenshot(path=str(screenshot_dir / "65-shortcuts-dialog.png"))
    await alice.keyboard.press("Escape")
    await dialog.wait_for(state="hidden", timeout=3000)

    # M mutes and unmutes the microphone.
    await alice.keyboard.press("m")
    await _wait_js(alice, "() => window.sfu.local.audio.muted", 3, "M to mute")
    assert await alice.get_by_role("button", name="Unmute mic").get_attribute("aria-pressed") == (
        "true"
    )
    await alice.keyboard.press("m")
    await _wait_js(alice, "() => !window.sfu.local.audio.muted", 3, "M to unmute")

    # V stops the camera (the capture ends) and starts it again.
    await alice.keyboard.press("v")
    await _wait_js(
        alice,
        "() => window.sfu.local.video.muted && window.sfu.local.video.track.readyState === 'ended'",
        5,
        "V to stop the camera",
    )
    await alice.keyboard.press("v")
    await _wait_js(
        alice,
        "() => !window.sfu.local.video.muted && window.sfu.local.video.track.readyState === 'live'",
        10,
        "V to start the camera",
    )

    # C opens the chat (focus goes to the message box); typing there is not a shortcut.
    await alice.keyboard.press("c")
    await _wait_js(alice, "() => window.sfu.panel === 'chat'", 3, "C to open the chat")
    assert await alice.evaluate("() => document.activeElement.id") == "chat-input"
    await alice.keyboard.type("mvhc?")
    assert await alice.locator("#chat-input").input_value() == "mvhc?"
    assert await alice.evaluate(
        "() => !window.sfu.local.audio.muted && !window.sfu.local.video.muted"
        " && window.sfu.panel === 'chat' && !document.getElementById('shortcuts-dialog').open"
    )
    await alice.locator("#chat-input").fill("")
    await alice.keyboard.press("Escape")  # closes the panel; focus back on its toggle
    await _wait_js(alice, "() => window.sfu.panel === null", 3, "Escape to close the chat")
    await alice.keyboard.press("c")
    await _wait_js(alice, "() => window.sfu.panel === 'chat'", 3, "C to open the chat again")
    await alice.locator("#chat-input").press("Escape")
    await _wait_js(alice, "() => window.sfu.panel === null", 3, "the chat to close")

    # H raises the hand: accepted (a `hand` event) or refused with the server's sentence.
    await alice.keyboard.press("h")
    await _wait_js(
        alice,
        "() => window.sfu.events.some((e) => e.type === 'hand')"
        " || window.sfu.notices.some((n) => n.error"
        " && n.text.startsWith('Could not raise your hand: ')"
        " && n.text.length > 'Could not raise your hand: '.length + 5)",
        5,
        "H to raise the hand (or show why not)",
    )
    refused = [n["text"] for n in await alice.evaluate("() => window.sfu.notices") if n["error"]]
    if refused:
        assert "out_of_order" not in refused[0], refused  # a sentence, not a code
        await alice.screenshot(path=str(screenshot_dir / "66-hand-shortcut-refused.png"))

    # Turned off in the dialog (WCAG 2.1.4): M does nothing any more.
    await alice.get_by_role("button", name="Settings").click()
    await alice.get_by_role("button", name="Keyboard shortcuts").click()
    await dialog.wait_for(state="visible", timeout=3000)
    await alice.get_by_role("checkbox", name="Single-key shortcuts on").uncheck()
    await dialog.get_by_role("button", name="Close").click()
    await dialog.wait_for(state="hidden", timeout=3000)
    await alice.locator("body").click(position={"x": 5, "y": 5})
    await alice.keyboard.press("m")
    await asyncio.sleep(0.3)
    assert await alice.evaluate("() => !window.sfu.local.audio.muted")


# --- stop camera ----------------------------------------------------------------------------


async def test_stop_camera_ends_capture_and_start_recaptures(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    code = await create_invite(server.base_url, "e2e-camera", "owner-camera@example.com")
    alice = await _join(browser, server, code, "alice", DESKTOP)
    bob = await _join(browser, server, code, "bob", DESKTOP)
    await _wait_sees(bob, ["alice"], "bob")
    await _wait_media_flowing(bob, "bob")
    transceivers = await alice.evaluate("() => window.sfu.pub.getTransceivers().length")

    await alice.get_by_role("button", name="Stop camera").click()
    await _wait_js(
        alice,
        f"() => {{ const c = ({CAMERA_JS})(); return c.readyState === 'ended'"
        " && c.senderTrack === null && c.muted && c.tileCamMuted === 'true'; }",
        5,
        "the camera capture to end and the sender to send no track",
    )
    # No capture is left anywhere in the page (the camera light goes off).
    live_video = await alice.evaluate(
        "() => (window.sfu.localStream ? window.sfu.localStream.getVideoTracks() : [])"
        ".filter((t) => t.readyState === 'live').length"
    )
    assert live_video == 0
    await _wait_frames(bob, moving=False, what="bob after alice stopped her camera")
    assert await alice.get_by_role("button", name="Start camera").get_attribute("aria-pressed") == (
        "true"
    )
    await alice.screenshot(path=str(screenshot_dir / "67-camera-stopped.png"))

    await alice.get_by_role("button", name="Start camera").click()
    await _wait_js(
        alice,
        f"() => {{ const c = ({CAMERA_JS})(); return c.readyState === 'live'"
        " && c.senderTrack === 'live' && c.senderIsTrack && !c.muted"
        " && c.tileCamMuted === 'false'; }",
        10,
        "a new capture on the same sender",
    )
    await _wait_frames(bob, moving=True, what="bob after alice started her camera again")
    # replaceTrack both ways: no new m-line.
    assert await alice.evaluate("() => window.sfu.pub.getTransceivers().length") == transceivers
    await bob.screenshot(path=str(screenshot_dir / "68-camera-started-again.png"))


# --- active speaker ----------------------------------------------------------------------------


async def test_active_speaker_highlight_is_visible(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    code = await create_invite(server.base_url, "e2e-speaker", "owner-speaker@example.com")
    alice = await _join(browser, server, code, "alice", DESKTOP)
    await _join(browser, server, code, "bob", DESKTOP)
    await _wait_sees(alice, ["bob"], "alice")
    bob_sid = await alice.evaluate(SID_BY_NAME_JS, "bob")
    # Bob's fake microphone plays a tone: the server names him an active speaker. The style is
    # read in the same task that sees the class (speakers change with every level report).
    style_js = f"""() => {{
      const tile = document.querySelector('.tile[data-sid="{bob_sid}"]');
      if (!tile || !tile.classList.contains('speaking')) return null;
      const ring = getComputedStyle(tile, '::after');
      const name = getComputedStyle(tile.querySelector('.name'));
      return {{ ring: parseFloat(ring.borderTopWidth), color: ring.borderTopColor,
               style: ring.borderTopStyle, label: name.backgroundColor }};
    }}"""
    deadline = time.monotonic() + 15
    style = await alice.evaluate(style_js)
    while style is None and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        style = await alice.evaluate(style_js)
    assert style is not None, "bob's tile was never marked speaking"
    # A ring at least 4 px wide in green over the picture, and a green name label.
    assert style["ring"] >= 4 and style["style"] == "solid", style
    assert style["color"] == "rgb(63, 185, 80)", style
    assert style["label"] == "rgb(31, 111, 51)", style
    await alice.screenshot(path=str(screenshot_dir / "69-active-speaker.png"))


# --- chat links --------------------------------------------------------------------------------


async def test_chat_links_are_safe_and_clickable(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    code = await create_invite(server.base_url, "e2e-links", "owner-links@example.com")
    alice = await _join(browser, server, code, "alice", DESKTOP)
    bob = await _join(browser, server, code, "bob", DESKTOP)
    await _wait_sees(bob, ["alice"], "bob")
    await alice.get_by_role("button", name="Chat").click()
    await _send_chat(alice, "notes at https://example.org/a?b=1&c=2, also (http://example.com/x).")
    await _send_chat(alice, "javascript:alert(1) <a href=x>no</a> data:text/html,hi")
    await bob.locator("#chat-button").click()
    await _wait_js(
        bob,
        "() => document.querySelectorAll('#chat-log .msg').length === 2",
        10,
        "bob to get both messages",
    )
    links = await bob.evaluate(
        """() => [...document.querySelectorAll('#chat-log .msg-text a')].map((a) => ({
          href: a.href, text: a.textContent, target: a.target, rel: a.rel }))"""
    )
    assert links == [
        {
            "href": "https://example.org/a?b=1&c=2",
            "text": "https://example.org/a?b=1&c=2",
            "target": "_blank",
            "rel": "noopener noreferrer",
        },
        {
            "href": "http://example.com/x",
            "text": "http://example.com/x",
            "target": "_blank",
            "rel": "noopener noreferrer",
        },
    ], links
    texts = await bob.evaluate(
        "() => [...document.querySelectorAll('#chat-log .msg-text')].map((p) => p.textContent)"
    )
    assert texts == [
        "notes at https://example.org/a?b=1&c=2, also (http://example.com/x).",
        "javascript:alert(1) <a href=x>no</a> data:text/html,hi",
    ]
    # The second message is text only: no element at all inside it.
    assert (
        await bob.evaluate(
            "() => document.querySelectorAll('#chat-log .msg')[1]"
            ".querySelector('.msg-text').children.length"
        )
        == 0
    )
    await bob.screenshot(path=str(screenshot_dir / "70-chat-links.png"))


# --- phones ------------------------------------------------------------------------------------


async def test_phone_grid_has_two_columns(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    code = await create_invite(server.base_url, "e2e-phone-grid", "owner-phone@example.com")
    alice = await _join(browser, server, code, "alice", PHONE)
    await _join(browser, server, code, "bob", DESKTOP)
    await _join(browser, server, code, "carol", DESKTOP)
    await _wait_sees(alice, ["bob", "carol"], "alice")
    boxes_js = """() => [...document.querySelectorAll('#grid .tile')].map((t) => {
      const r = t.getBoundingClientRect(); return { x: r.x, y: r.y, w: r.width, h: r.height }; })"""
    await _wait_js(
        alice,
        f"() => {{ const b = ({boxes_js})(); return b.length === 3"
        " && Math.abs(b[0].y - b[1].y) < 2 && b[1].x > b[0].x + b[0].w; }",
        5,
        "two tiles side by side",
    )
    boxes = await alice.evaluate(boxes_js)
    width = PHONE["width"]
    for box in boxes:
        # Each column takes almost half the screen, inside it, and no tile is a thin strip.
        assert 0.4 * width < box["w"] <= 0.5 * width, boxes
        assert box["x"] >= 0 and box["x"] + box["w"] <= width, boxes
        assert box["h"] >= 0.7 * box["w"], boxes
    # The third starts the second row.
    assert boxes[2]["y"] >= boxes[0]["y"] + boxes[0]["h"], boxes
    await alice.screenshot(path=str(screenshot_dir / "71-phone-two-columns.png"))
