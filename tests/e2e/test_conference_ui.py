"""The conference-room features of the browser client, in headless Chromium through the server.

- Screen sharing: alice shares (getDisplayMedia, auto-accepted by ``--use-fake-ui-for-media-
  stream``), bob sees it large on the stage with moving frames; alice stops it from the
  browser's side (the track's ``ended`` event) and then again with the button, and bob's stage
  goes away after the server's ``track_unpublished``.
- Chat and the participants panel: names, count, unread badge, hostile text shown as text,
  typed errors inline (rate limit, 2 KB), a late joiner's history, reactions, a phone-width
  overlay panel, Escape and focus.
- Devices and connection quality: two fake cameras, switching camera and microphone with
  replaceTrack keeps the call alive (no new m-line, same track sid); the quality indicator
  shows numbers and "good" on loopback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.conftest import CHROMIUM_ARGS, create_invite, launch_chromium
from tests.e2e.test_browser_call import (
    PARTICIPANT_NAMES_JS,
    SID_BY_NAME_JS,
    _open,
    _wait_js,
    _wait_media_flowing,
)

if TYPE_CHECKING:
    from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

DESKTOP = {"width": 1280, "height": 720}
PHONE = {"width": 390, "height": 844}
HOSTILE = "<img src=x onerror=alert(1)> & <b>bold</b>"

STAGE_FRAMES_JS = """
() => {
  const v = document.querySelector('#stage video');
  if (!v || v.videoWidth === 0) return -1;
  return v.getVideoPlaybackQuality().totalVideoFrames;
}
"""


async def _join(browser: Any, server: ServerProcess, code: str, name: str, viewport: Any) -> Any:
    page = await _open(browser, server, f"/join/{code}?name={name}", viewport)
    await _wait_js(page, "() => window.sfu.state === 'joined'", 15, f"{name} to join")
    return page


async def _wait_sees(page: Any, names: list[str], who: str) -> None:
    await _wait_js(
        page,
        f"() => {{ const n = ({PARTICIPANT_NAMES_JS})();"
        f" return {names!r}.every((x) => n.includes(x)); }}",
        15,
        f"{who} to see {names}",
    )


async def _wait_frames_advance(
    page: Any, expression: str, what: str, timeout_s: float = 15
) -> None:
    """Poll a frame counter until it grows across one second (the picture moves)."""
    deadline = time.monotonic() + timeout_s
    before = await page.evaluate(expression)
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        after = await page.evaluate(expression)
        if before >= 0 and after > before:
            return
        before = after
    pytest.fail(f"{what}: frames do not advance (last: {before})")


# --- screen sharing ----------------------------------------------------------------------

SCREEN_PARAMETERS_JS = """
() => {
  const p = window.sfu.session.screen.transceiver.sender.getParameters();
  return {
    encodings: p.encodings.map((e) => [e.maxFramerate, e.maxBitrate, e.scaleResolutionDownBy]),
    degradation: p.degradationPreference || null,
  };
}
"""
SCREEN_PARAMETERS = {
    # one full-resolution layer at 10 frames/s, 2 Mbit/s (static/js/publisher.js
    # SCREEN_ENCODING), keeping its resolution under congestion (webrtc-pc)
    "encodings": [[10, 2_000_000, 1]],
    "degradation": "maintain-resolution",
}


async def test_screen_share_shown_large_then_unpublished(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    code = await create_invite(server.base_url, "e2e-screen", "owner-screen@example.com")
    alice = await _join(browser, server, code, "alice", DESKTOP)
    bob = await _join(browser, server, code, "bob", DESKTOP)
    await _wait_sees(bob, ["alice"], "bob")
    alice_sid = await bob.evaluate(SID_BY_NAME_JS, "alice")
    await _wait_media_flowing(bob, "bob")
    assert await bob.locator("#stage").is_hidden()

    # The real button; Chromium's fake UI picks the screen without a dialog.
    await alice.get_by_role("button", name="Share screen").click()
    await _wait_js(
        alice,
        "() => window.sfu.screenShare.active && window.sfu.session.screen !== null"
        " && window.sfu.session.screen.sid !== null",
        15,
        "alice's screen share to be published",
    )
    screen_sid = await alice.evaluate("() => window.sfu.session.screen.sid")
    assert await alice.evaluate(SCREEN_PARAMETERS_JS) == SCREEN_PARAMETERS
    stop_button = alice.get_by_role("button", name="Stop sharing")
    assert await stop_button.get_attribute("aria-pressed") == "true"
    # Her publish offer described the new m-line as a screen: bob learnt the source.
    await _wait_js(
        bob,
        f"""() => {{
          const p = window.sfu.participants.get('{alice_sid}');
          const t = p && p.tracks.get('{screen_sid}');
          return Boolean(t && t.source === 'screen' && t.kind === 'video');
        }}""",
        10,
        "bob to learn alice's screen track (track_published, source screen)",
    )

    # Bob: the share is on the stage, large, live and moving; alice's camera is in the strip.
    await _wait_js(
        bob,
        f"""() => {{
          const tile = document.querySelector('#stage .tile.screen[data-sid="{alice_sid}"]');
          const v = tile && tile.querySelector('video');
          return Boolean(v && v.videoWidth > 0 && v.srcObject
            && v.srcObject.getVideoTracks().some((t) => t.readyState === 'live'));
        }}""",
        15,
        "bob's stage to show alice's screen",
    )
    await _wait_frames_advance(bob, STAGE_FRAMES_JS, "bob's stage video")
    assert (
        await bob.evaluate("() => document.getElementById('call-main').dataset.layout") == "stage"
    )
    stage_box = await bob.locator("#stage video").bounding_box()
    camera_tile = bob.locator(f'#grid .tile[data-sid="{alice_sid}"]:not(.screen)')
    camera_box = await camera_tile.bounding_box()
    assert stage_box is not None and camera_box is not None
    assert stage_box["width"] > 3 * camera_box["width"], (stage_box, camera_box)
    assert stage_box["width"] * stage_box["height"] > 0.3 * DESKTOP["width"] * DESKTOP["height"]
    # The fake screen is 16:9 (maybe scaled down by the encoder), not the 4:3 camera.
    width, height = await bob.locator("#stage video").evaluate("v => [v.videoWidth, v.videoHeight]")
    assert abs(width / height - 16 / 9) < 0.02, (width, height)
    await _wait_js(
        bob,
        "() => document.querySelector('#participants-button') !== null",
        2,
        "the participants button",
    )
    await alice.screenshot(path=str(screenshot_dir / "20-alice-sharing.png"))
    await bob.screenshot(path=str(screenshot_dir / "21-bob-sees-screen-share.png"))

    # Stop from "the browser's bar": the capture ends (stop() fires no `ended` event by itself,
    # so the test dispatches the event the browser would fire).
    await alice.evaluate(
        """() => {
          const t = window.sfu.screenShare.track;
          t.stop();
          t.dispatchEvent(new Event('ended'));
        }"""
    )
    await _wait_js(
        bob,
        f"""() => window.sfu.events.some(
          (e) => e.type === 'track_unpublished' && e.track === '{screen_sid}')""",
        10,
        "bob to get track_unpublished for the screen",
    )
    await _wait_js(
        bob,
        "() => document.getElementById('stage').hidden"
        " && document.querySelectorAll('.tile.screen').length === 0"
        " && document.getElementById('call-main').dataset.layout === 'grid'",
        10,
        "bob's stage to go away",
    )
    await _wait_js(
        alice,
        "() => !window.sfu.screenShare.active && window.sfu.session.screen === null"
        " && document.querySelectorAll('.tile.screen').length === 0",
        5,
        "alice's share to end",
    )
    assert await alice.get_by_role("button", name="Share screen").get_attribute("aria-pressed") == (
        "false"
    )
    await bob.screenshot(path=str(screenshot_dir / "22-bob-after-share-ended.png"))

    # Share again (the ended share's m-line is reused) and stop with the button this time.
    transceivers = await alice.evaluate("() => window.sfu.pub.getTransceivers().length")
    await alice.get_by_role("button", name="Share screen").click()
    await _wait_js(
        alice,
        "() => window.sfu.session.screen !== null && window.sfu.session.screen.sid !== null",
        15,
        "the second share to be published",
    )
    second_sid = await alice.evaluate("() => window.sfu.session.screen.sid")
    assert await alice.evaluate(SCREEN_PARAMETERS_JS) == SCREEN_PARAMETERS  # reused m-line
    assert second_sid != screen_sid
    assert await alice.evaluate("() => window.sfu.pub.getTransceivers().length") == transceivers
    await _wait_frames_advance(bob, STAGE_FRAMES_JS, "bob's stage video (second share)")
    await alice.get_by_role("button", name="Stop sharing").click()
    await _wait_js(
        bob,
        f"""() => window.sfu.events.some(
          (e) => e.type === 'track_unpublished' && e.track === '{second_sid}')
          && document.getElementById('stage').hidden""",
        10,
        "bob's stage to go away after the button",
    )
    # The call goes on: alice's camera still reaches bob.
    await _wait_media_flowing(bob, "bob (after the shares)")


# --- chat, participants, reactions ----------------------------------------------------------


async def _send_chat(page: Any, text: str) -> None:
    box = page.locator("#chat-input")
    await box.fill(text)
    await box.press("Enter")
    await _wait_js(page, "() => document.getElementById('chat-input').value === ''", 5, "send")


async def _chat_texts(page: Any) -> list[str]:
    result: list[str] = await page.evaluate(
        "() => [...document.querySelectorAll('#chat-log .msg-text')].map((e) => e.textContent)"
    )
    return result


async def test_chat_participants_and_reactions(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    code = await create_invite(server.base_url, "e2e-chat", "owner-chat@example.com")
    alice = await _join(browser, server, code, "alice", DESKTOP)
    bob = await _join(browser, server, code, "bob", PHONE)
    await _wait_sees(alice, ["bob"], "alice")
    await _wait_sees(bob, ["alice"], "bob")
    bob_sid = await alice.evaluate(SID_BY_NAME_JS, "bob")

    # --- participants panel: both names, "you", the count 2 on its toggle ---
    toggle = alice.locator("#participants-button")
    await _wait_js(
        alice,
        "() => document.querySelector('#participants-button').dataset.count === '2'",
        5,
        "count",
    )
    assert await toggle.locator(".badge").text_content() == "2"
    assert await toggle.get_attribute("aria-label") == "Participants, 2 in the room"
    assert await toggle.get_attribute("aria-expanded") == "false"
    await toggle.click()
    assert await toggle.get_attribute("aria-expanded") == "true"
    people = alice.locator("#people-list .person")
    await _wait_js(
        alice, "() => document.querySelectorAll('#people-list .person').length === 2", 5, "2 rows"
    )
    names = await alice.locator("#people-list .person-name").all_text_contents()
    assert names == ["alice", "bob"]
    assert await people.nth(0).locator(".person-you").text_content() == "(you)"
    assert await people.nth(1).get_attribute("data-sid") == bob_sid
    assert await people.nth(1).get_attribute("data-mic") == "on"
    assert await people.nth(1).get_attribute("data-cam") == "on"
    # Bob mutes his microphone: alice's list shows it.
    await bob.locator("#mic-button").click()
    await _wait_js(
        alice,
        f"""() => document.querySelector(
          '#people-list .person[data-sid="{bob_sid}"]').dataset.mic === 'off'""",
        10,
        "bob's muted microphone in alice's list",
    )
    await alice.screenshot(path=str(screenshot_dir / "30-participants-panel.png"))
    # Escape closes the panel and gives focus back to its toggle.
    await alice.keyboard.press("Escape")
    await _wait_js(
        alice, "() => document.getElementById('side-panel').hidden", 2, "the panel to close"
    )
    assert await alice.evaluate("() => document.activeElement.id") == "participants-button"
    assert await toggle.get_attribute("aria-expanded") == "false"

    # --- chat: alice writes, bob's panel is closed so his unread badge counts up ---
    await alice.locator("#chat-button").click()
    assert await alice.evaluate("() => document.activeElement.id") == "chat-input"
    await _send_chat(alice, "hello bob")
    await _send_chat(alice, HOSTILE)
    await _wait_js(bob, "() => window.sfu.chat.unread === 2", 10, "bob's unread count to reach 2")
    assert await bob.locator("#chat-button .badge").text_content() == "2"
    assert await bob.locator("#chat-button").get_attribute("aria-label") == "Chat, 2 unread"
    assert await bob.locator("#side-panel").is_hidden()
    await bob.screenshot(path=str(screenshot_dir / "31-phone-unread-badge.png"))

    # Bob opens the chat (a full-screen overlay at phone width): the badge clears.
    await bob.locator("#chat-button").click()
    await _wait_js(bob, "() => window.sfu.chat.unread === 0", 2, "the unread count to clear")
    assert await bob.locator("#chat-button .badge").count() == 0
    assert await _chat_texts(bob) == ["hello bob", HOSTILE]
    # The hostile text is text: no element was made from it, nothing ran.
    assert await bob.locator("#chat-log img, #chat-log b").count() == 0
    assert await bob.evaluate("() => document.querySelectorAll('img').length") == 0
    names = await bob.locator("#chat-log .msg-name").all_text_contents()
    assert names[0] == "alice"
    box = await bob.locator("#side-panel").bounding_box()
    assert box is not None and box["width"] == PHONE["width"] and box["height"] == PHONE["height"]
    await bob.screenshot(path=str(screenshot_dir / "32-phone-chat-open.png"))

    # Bob answers with two lines (Shift+Enter); alice's open panel shows it, nothing unread.
    bob_input = bob.locator("#chat-input")
    await bob_input.fill("hi alice")
    await bob_input.press("Shift+Enter")
    await bob_input.press_sequentially("second line")
    await bob_input.press("Enter")
    await _wait_js(
        alice,
        "() => window.sfu.chat.messages.some((m) => m.text === 'hi alice\\nsecond line')",
        10,
        "alice to get bob's answer",
    )
    assert await alice.evaluate("() => window.sfu.chat.unread") == 0
    # Escape on the phone closes the overlay.
    await bob.keyboard.press("Escape")
    await _wait_js(
        bob, "() => document.getElementById('side-panel').hidden", 2, "bob's panel to close"
    )

    # --- the 2 KB limit counts UTF-8 bytes, not characters: nothing is sent ---
    sent_before = await alice.evaluate("() => window.sfu.chat.messages.length")
    euros = "€" * 700  # 700 characters, 2100 bytes
    await alice.locator("#chat-input").fill(euros)
    assert await alice.locator("#chat-counter").text_content() == "2100 / 2048 bytes"
    assert await alice.locator("#chat-input").get_attribute("aria-invalid") == "true"
    await alice.locator("#chat-input").press("Enter")
    error = alice.locator("#chat-error")
    await error.wait_for(state="visible", timeout=2000)
    assert "too long" in (await error.text_content() or "")
    assert await alice.locator("#chat-input").input_value() == euros  # kept for editing
    await asyncio.sleep(0.5)
    assert await alice.evaluate("() => window.sfu.chat.messages.length") == sent_before

    # --- the server's rate limit (5 messages in 5 s) is shown inline, typed ---
    for i in range(12):
        await alice.locator("#chat-input").fill(f"spam {i}")
        await alice.locator("#chat-input").press("Enter")
        await _wait_js(
            alice,
            "() => document.getElementById('chat-input').value === ''"
            " || !document.getElementById('chat-error').hidden",
            5,
            "a reply to the chat request",
        )
        if await error.is_visible():
            break
    assert await error.get_attribute("data-code") == "rate_limited"
    assert "too fast" in (await error.text_content() or "")
    await alice.screenshot(path=str(screenshot_dir / "33-chat-rate-limited.png"))

    # --- reactions: bob reacts, alice sees a floating bubble with his name ---
    await bob.get_by_role("button", name="React").click()
    assert await bob.locator("#react-button").get_attribute("aria-expanded") == "true"
    await bob.get_by_role("button", name="React: Applause").click()
    await bob.get_by_role("button", name="React: Applause").click()
    await _wait_js(
        alice,
        f"""() => window.sfu.reactions.some(
          (r) => r.participant === '{bob_sid}' && r.emoji === '👏')""",
        10,
        "alice to get bob's reaction",
    )
    bubble = alice.locator(f'#reactions-layer .reaction[data-participant="{bob_sid}"]')
    await bubble.first.wait_for(state="attached", timeout=2000)
    assert await bubble.first.locator(".reaction-name").text_content() == "bob"
    await alice.screenshot(path=str(screenshot_dir / "34-reaction-bubble.png"))
    await bob.screenshot(path=str(screenshot_dir / "35-phone-reaction-bar.png"))
    await bob.keyboard.press("Escape")
    assert await bob.locator("#reaction-bar").is_hidden()
    assert await bob.evaluate("() => document.activeElement.id") == "react-button"

    # --- a late joiner gets the history, as text ---
    carol = await _join(browser, server, code, "carol", DESKTOP)
    await _wait_js(carol, "() => window.sfu.chat.messages.length >= 3", 10, "carol's history")
    assert await carol.evaluate("() => window.sfu.chat.unread") == 0  # history is not unread
    await carol.locator("#chat-button").click()
    texts = await _chat_texts(carol)
    assert texts[:3] == ["hello bob", HOSTILE, "hi alice\nsecond line"], texts
    assert await carol.locator("#chat-log img").count() == 0
    await _wait_js(
        carol, "() => document.querySelector('#participants-button').dataset.count === '3'", 10, "3"
    )
    await carol.screenshot(path=str(screenshot_dir / "36-late-joiner-history.png"))


async def test_chat_attachment_link_calls_the_hook(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    """A message with `file` shows a download link (name as text) that calls onDownloadFile."""
    code = await create_invite(server.base_url, "e2e-file", "owner-file@example.com")
    page = await _join(browser, server, code, "dana", PHONE)
    await page.locator("#chat-button").click()
    clicked = await page.evaluate(
        """async () => {
          const chat = await import('/static/js/chat.js');
          const got = [];
          chat.setDownloadFileHandler((file) => got.push(file.id));
          window.sfu.session.dispatchEvent(new CustomEvent('chat', { detail: { message: {
            id: 'm_file', participant: 'PA_other', identity: 'erin', name: 'erin',
            text: 'the slides', at: new Date().toISOString(),
            file: { id: 'F_1', name: '<img src=x>.pdf', size: 123456,
                    content_type: 'application/pdf' },
          } } }));
          document.querySelector('#chat-log .file-link').click();
          return got;
        }"""
    )
    assert clicked == ["F_1"]
    link = page.locator("#chat-log .file-link")
    assert await link.locator(".file-name").text_content() == "<img src=x>.pdf"
    assert await page.locator("#chat-log img").count() == 0
    assert await page.locator("#chat-log .file-size").text_content() == "121 KB"
    assert await page.locator("#chat-attachments-slot").count() == 1
    await page.screenshot(path=str(screenshot_dir / "37-phone-chat-attachment.png"))


# --- devices and connection quality ------------------------------------------------------------


@pytest.fixture
async def fake_cameras_browser(chromium: Path, fake_audio: Path) -> AsyncIterator[Any]:
    """Chromium with three fake cameras (its built-in moving pattern) and the fake tone.

    Chromium's second fake camera (``fake_device_1``) is a depth camera (16-bit grey frames)
    that no video encoder takes: a track from it is live but nothing is sent. The test switches
    to the third, an ordinary camera.
    """
    args = [a for a in CHROMIUM_ARGS if a != "--use-fake-device-for-media-stream"]
    args += [
        "--use-fake-device-for-media-stream=device-count=3",
        f"--use-file-for-fake-audio-capture={fake_audio}",
    ]
    async with launch_chromium(chromium, args) as browser:
        yield browser


LOCAL_JS = """
(kind) => {
  const e = window.sfu.local[kind];
  return e && {
    device: e.track.getSettings().deviceId,
    sid: e.sid,
    live: e.track.readyState === 'live',
    sent: e.transceiver.sender.track === e.track,
  };
}
"""


async def test_device_switch_and_quality_indicator(
    fake_cameras_browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    code = await create_invite(server.base_url, "e2e-devices", "owner-devices@example.com")
    alice = await _join(fake_cameras_browser, server, code, "alice", DESKTOP)
    bob = await _join(fake_cameras_browser, server, code, "bob", DESKTOP)
    await _wait_sees(bob, ["alice"], "bob")
    bob_sid = await alice.evaluate(SID_BY_NAME_JS, "bob")
    await _wait_js(
        alice, "() => window.sfu.local.video && window.sfu.local.video.sid", 15, "publish"
    )
    await _wait_media_flowing(bob, "bob")

    # --- the settings panel lists the fake devices ---
    await alice.get_by_role("button", name="Settings").click()
    cam_select = alice.get_by_label("Camera", exact=True)
    mic_select = alice.get_by_label("Microphone", exact=True)
    await _wait_js(
        alice, "() => document.querySelectorAll('#cam-select option').length >= 2", 5, "cameras"
    )
    cameras = await cam_select.locator("option").evaluate_all(
        "os => os.map((o) => [o.value, o.textContent])"
    )
    mics = await mic_select.locator("option").evaluate_all("os => os.map((o) => o.value)")
    assert len(cameras) >= 2 and len(mics) >= 1, (cameras, mics)
    assert all(label for _, label in cameras), cameras  # labelled (permission granted)
    before = await alice.evaluate(LOCAL_JS, "video")
    assert await cam_select.input_value() == before["device"]
    transceivers = await alice.evaluate("() => window.sfu.pub.getTransceivers().length")
    await alice.screenshot(path=str(screenshot_dir / "40-settings-panel.png"))

    # --- switch camera: replaceTrack, same m-line and track sid, the call goes on ---
    other = next(value for value, label in cameras if label == "fake_device_2")
    assert other != before["device"]
    await cam_select.select_option(other)
    await _wait_js(
        alice,
        f"""() => {{ const s = ({LOCAL_JS})('video');
          return s && s.device === '{other}' && s.live && s.sent; }}""",
        10,
        "alice's camera to switch",
    )
    after = await alice.evaluate(LOCAL_JS, "video")
    assert after["sid"] == before["sid"]  # no renegotiation: the same published track
    assert await alice.evaluate("() => window.sfu.pub.getTransceivers().length") == transceivers
    assert await alice.evaluate("() => localStorage.getItem('sfu.device.videoinput')") == other
    assert await alice.locator("#device-error").is_hidden()
    await _wait_media_flowing(bob, "bob (after alice switched camera)")
    alice_sid = await bob.evaluate(SID_BY_NAME_JS, "alice")
    await _wait_frames_advance(
        bob,
        f"""() => {{
          const v = document.querySelector('.tile[data-sid="{alice_sid}"] video');
          return v && v.videoWidth > 0 ? v.getVideoPlaybackQuality().totalVideoFrames : -1;
        }}""",
        "alice's video on bob's page after the switch",
    )

    # --- switch microphone the same way ---
    mic_before = await alice.evaluate(LOCAL_JS, "audio")
    other_mic = next((m for m in mics if m != mic_before["device"]), None)
    if other_mic is not None:
        await mic_select.select_option(other_mic)
        await _wait_js(
            alice,
            f"""() => {{ const s = ({LOCAL_JS})('audio');
              return s && s.device === '{other_mic}' && s.sent; }}""",
            10,
            "alice's microphone to switch",
        )
        assert (await alice.evaluate(LOCAL_JS, "audio"))["sid"] == mic_before["sid"]
        await _wait_media_flowing(bob, "bob (after alice switched microphone)")

    # A device plugged in or out: the lists refresh (still both cameras here).
    await alice.evaluate("() => navigator.mediaDevices.dispatchEvent(new Event('devicechange'))")
    await _wait_js(
        alice, "() => document.querySelectorAll('#cam-select option').length >= 2", 5, "refresh"
    )
    assert await cam_select.input_value() == other
    await alice.screenshot(path=str(screenshot_dir / "41-settings-after-switch.png"))

    # --- connection quality: numbers after a few seconds, "good" on loopback ---
    for page, who in ((alice, "alice"), (bob, "bob")):
        await _wait_js(
            page,
            """() => { const q = window.sfu.quality;
              return Boolean(q && q.level !== 'unknown' && typeof q.rtt === 'number'
                && typeof q.loss === 'number' && typeof q.jitter === 'number'); }""",
            20,
            f"{who}'s connection quality numbers",
        )
        q = await page.evaluate("() => window.sfu.quality")
        history = await page.evaluate("() => window.sfu.qualityHistory")
        assert q["level"] == "good", history
        assert 0 <= q["rtt"] < 250 and 0 <= q["loss"] < 2, q
        assert q["sendKbps"] > 0 and q["recvKbps"] > 0, q
        indicator = page.locator("#quality")
        assert await indicator.get_attribute("data-level") == "good"
        label = await indicator.get_attribute("aria-label") or ""
        assert label.startswith("Connection good: RTT "), label
        assert "loss" in label and "jitter" in label
    remote = (await alice.evaluate("() => window.sfu.quality.remote"))[bob_sid]
    assert isinstance(remote["loss"], int | float) and remote["level"] == "good", remote
    await alice.locator("#quality").focus()
    await alice.screenshot(path=str(screenshot_dir / "42-quality-good.png"))
