"""Issue 16, "First minute", in Chromium: the development demo link opens a working call in
one click (through the pre-join screen); the start page offers an account or an invite link,
never a form that cannot work; the pre-join screen previews the camera and the microphone
(level meter), lets one pick devices and join with them off, and names the room; a podcast
listener's pre-join never captures; unusable links and lost connections read as sentences;
"Stay signed in" keeps one sign-in for the new tabs of the browser (localStorage, no cookie).

Screenshots: ``artifacts/screenshots/16-*.png``.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from signaling.client import RoomClient
from tests.e2e.conftest import create_room
from tests.e2e.test_browser_call import _wait_js

if TYPE_CHECKING:
    from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

PASSWORD = "e2e-Quiet-Harbour-42"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Page loads fetch ~30 ES modules: allow for a machine shared by many test runs.
GOTO_TIMEOUT_MS = 60000
DEMO_LINK = re.compile(r"Demo room \(development\): open (http://\S+/join/[A-Za-z0-9_-]+)")

COUNT_CAPTURE_JS = """
(() => {
  window.__captures = 0;
  const md = navigator.mediaDevices;
  const original = md.getUserMedia.bind(md);
  md.getUserMedia = (constraints) => {
    window.__captures += 1;
    return original(constraints);
  };
})();
"""

# A code, not a sentence: "code 1001", "(1006)", "invite_not_found", "HTTP 404".
CODE_LIKE = re.compile(r"\bcode \d{3,4}\b|\(\d{3,4}\)|\b[a-z]+_[a-z_]+\b|HTTP \d{3}")


async def _page(browser: Any, server: ServerProcess, viewport: dict[str, int], who: str) -> Any:
    context = await browser.new_context(viewport=viewport)
    page = await context.new_page()
    await page.add_init_script(COUNT_CAPTURE_JS)
    page.on("console", lambda msg: server.page_logs.append(f"[{who}] {msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: server.page_logs.append(f"[{who}] pageerror: {err}"))
    return page


async def _visible_text(page: Any) -> str:
    text: str = await page.locator("body").inner_text()
    return text


async def test_dev_link_opens_a_working_call_in_one_click(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    found = DEMO_LINK.search(server.log())
    assert found is not None, "sfu serve printed no demo link in development"
    link = found.group(1)
    assert link.startswith(server.base_url)
    ann = await _page(browser, server, DESKTOP, "ann")
    await ann.goto(link, timeout=GOTO_TIMEOUT_MS)
    await ann.get_by_role("heading", name="You're joining Demo room").wait_for(timeout=10000)
    # The preview: camera frames and a microphone level above silence.
    await _wait_js(ann, "() => window.sfu.prejoin.videoLive", 10, "the camera preview")
    await _wait_js(
        ann, "() => document.getElementById('prejoin-video').videoWidth > 0", 10, "preview frames"
    )
    await _wait_js(ann, "() => window.sfu.prejoin.peak > 20", 10, "the level meter to move")
    assert await ann.evaluate("() => window.sfu.state") == "idle"  # nothing joined yet
    await ann.screenshot(path=str(screenshot_dir / "16-01-demo-link-prejoin.png"))
    # The one click.
    await ann.get_by_label("Display name", exact=True).fill("Ann")
    await ann.get_by_role("button", name="Join now").click()
    await _wait_js(ann, "() => window.sfu.state === 'joined'", 15, "ann to join the demo room")
    await _wait_js(ann, "() => window.sfu.local.video !== null", 10, "ann's camera")
    # A second newcomer with the same link: they see each other.
    ben = await _page(browser, server, PHONE, "ben")
    await ben.goto(link, timeout=GOTO_TIMEOUT_MS)
    await ben.get_by_label("Display name", exact=True).fill("Ben")
    await ben.get_by_role("button", name="Join now").click()
    await _wait_js(ben, "() => window.sfu.state === 'joined'", 15, "ben to join")
    await _wait_js(
        ann,
        "() => [...window.sfu.participants.values()].some((p) => p.name === 'Ben')",
        10,
        "ann to see ben",
    )
    assert await ann.locator("#room-label").text_content() == "Room: Demo room"
    await ann.screenshot(path=str(screenshot_dir / "16-02-demo-call.png"))
    await ben.context.close()
    await ann.context.close()


async def test_start_page_offers_an_account_or_an_invite_link(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    session, invite = await create_room(
        server.base_url, "Weekly sync", f"owner-{secrets.token_hex(4)}@example.com"
    )
    page = await _page(browser, server, PHONE, "start")
    # The README's old first link: a room without a credential says what works instead.
    await page.goto(f"{server.base_url}/?room=demo&name=you", timeout=GOTO_TIMEOUT_MS)
    await page.locator("#auth-section").wait_for(state="visible", timeout=10000)
    note = page.locator("#landing-note")
    await note.wait_for(state="visible")
    assert "invite link" in (await note.text_content() or "")
    assert await page.get_by_label("Room", exact=True).count() == 0  # no dead-end room form
    assert await page.get_by_role("button", name="Create account", exact=True).is_visible()
    assert await page.evaluate("() => window.sfu.state") == "idle"
    await page.screenshot(path=str(screenshot_dir / "16-03-start-page-phone.png"), full_page=True)
    # Something that is not a link: a sentence, and nothing happens.
    await page.get_by_label("Invite link", exact=True).fill("hello there")
    await page.get_by_role("button", name="Open the invite").click()
    error = page.locator("#invite-error")
    await error.wait_for(state="visible")
    assert "not an invite link" in (await error.text_content() or "")
    # Pasting the link opens the pre-join screen of that room.
    pasted = f"{server.base_url}/join/{invite['code']}"
    await page.get_by_label("Invite link", exact=True).fill(pasted)
    await page.get_by_role("button", name="Open the invite").click()
    await page.get_by_role("heading", name="You're joining Weekly sync").wait_for(timeout=10000)
    # A room token in the fragment (no name): the same pre-join screen, titled from the server.
    auth = {"Authorization": f"Bearer {session['access_token']}"}
    async with aiohttp.ClientSession(server.base_url) as http:
        async with http.post(f"/api/rooms/{invite['room']}/token", headers=auth) as resp:
            assert resp.status == 200, await resp.text()
            token = (await resp.json())["token"]
    await page.goto(
        f"{server.base_url}/?room={invite['room']}#token={token}", timeout=GOTO_TIMEOUT_MS
    )
    await page.get_by_role("heading", name="You're joining Weekly sync").wait_for(timeout=10000)
    await page.get_by_role("button", name="Join now").click()
    await _wait_js(page, "() => window.sfu.state === 'joined'", 15, "the token link to join")
    assert await page.locator("#room-label").text_content() == "Room: Weekly sync"
    await page.context.close()


async def test_prejoin_picks_devices_and_joins_with_mic_and_camera_off(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    _session, invite = await create_room(
        server.base_url, "Weekly sync", f"owner-{secrets.token_hex(4)}@example.com"
    )
    page = await _page(browser, server, DESKTOP, "muted")
    await page.goto(f"{server.base_url}/join/{invite['code']}", timeout=GOTO_TIMEOUT_MS)
    await page.get_by_role("heading", name="You're joining Weekly sync").wait_for(timeout=10000)
    await _wait_js(page, "() => window.sfu.prejoin.peak > 20", 10, "the level meter")
    # Device pickers list the fake devices by name.
    mic = page.get_by_label("Microphone to use", exact=True)
    cam = page.get_by_label("Camera to use", exact=True)
    assert await mic.locator("option").count() >= 1
    assert await cam.locator("option").count() >= 1
    # Choosing a microphone re-captures it; the choice is kept for the call.
    first_mic = await mic.locator("option").first.get_attribute("value")
    await mic.select_option(first_mic)
    assert await page.evaluate("() => localStorage.getItem('sfu.device.audioinput')") == first_mic
    await _wait_js(page, "() => window.sfu.prejoin.audioLive", 10, "the new microphone")
    # Microphone off: the meter drops to zero. Camera off: the capture stops.
    await page.get_by_label("Join with my microphone on").uncheck()
    await _wait_js(page, "() => window.sfu.prejoin.level === 0", 5, "the meter at zero")
    await page.get_by_label("Join with my camera on").uncheck()
    await _wait_js(page, "() => !window.sfu.prejoin.videoLive", 5, "the camera to stop")
    assert await page.get_by_text("Your camera is off").is_visible()
    await page.screenshot(path=str(screenshot_dir / "16-04-prejoin-mic-cam-off.png"))
    # Camera on again captures again.
    await page.get_by_label("Join with my camera on").check()
    await _wait_js(page, "() => window.sfu.prejoin.videoLive", 10, "the camera again")
    await page.get_by_label("Join with my camera on").uncheck()
    await page.get_by_label("Display name", exact=True).fill("Quiet Quinn")
    await page.get_by_role("button", name="Join now").click()
    await _wait_js(page, "() => window.sfu.state === 'joined'", 15, "the muted join")
    await _wait_js(page, "() => window.sfu.local.audio !== null", 10, "the microphone sender")
    assert await page.evaluate("() => window.sfu.local.audio.muted") is True
    assert await page.evaluate("() => window.sfu.local.video.muted") is True
    # The room sees it too: the tracks were published muted.
    ben = await _page(browser, server, PHONE, "ben")
    await ben.goto(f"{server.base_url}/join/{invite['code']}?name=Ben", timeout=GOTO_TIMEOUT_MS)
    await _wait_js(ben, "() => window.sfu.state === 'joined'", 15, "ben to join")
    await _wait_js(
        ben,
        """() => {
          const q = [...window.sfu.participants.values()].find((p) => p.name === 'Quiet Quinn');
          if (!q) return false;
          const tracks = [...q.tracks.values()].filter((t) => t.source !== 'screen');
          return tracks.length === 2 && tracks.every((t) => t.muted === true);
        }""",
        10,
        "ben to see quinn's microphone and camera muted",
    )
    await ben.context.close()
    assert await page.get_by_role("button", name="Unmute mic").is_visible()
    assert await page.get_by_role("button", name="Start camera").is_visible()
    assert await page.evaluate("() => window.sfu.prejoin.open") is False  # preview stopped
    await page.screenshot(path=str(screenshot_dir / "16-05-joined-muted.png"))
    await page.context.close()


async def test_listener_prejoin_never_captures(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    _session, invite = await create_room(
        server.base_url,
        "Friday show",
        f"host-{secrets.token_hex(4)}@example.com",
        kind="podcast",
    )
    assert invite["role"] == "listener"
    page = await _page(browser, server, PHONE, "listener")
    await page.goto(f"{server.base_url}/join/{invite['code']}", timeout=GOTO_TIMEOUT_MS)
    await page.get_by_role("heading", name="You're joining Friday show").wait_for(timeout=10000)
    assert "listener" in (await page.locator("#prejoin-role").text_content() or "")
    assert not await page.locator("#prejoin-media").is_visible()
    assert not await page.get_by_label("Microphone to use", exact=True).is_visible()
    await page.screenshot(path=str(screenshot_dir / "16-06-listener-prejoin-phone.png"))
    await page.get_by_label("Display name", exact=True).fill("Lou")
    await page.get_by_role("button", name="Join now").click()
    await _wait_js(page, "() => window.sfu.state === 'joined'", 15, "the listener to join")
    assert await page.evaluate("() => window.__captures") == 0
    await page.context.close()


async def test_unusable_links_and_lost_connections_read_as_sentences(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    page = await _page(browser, server, PHONE, "bad")
    # A malformed invite link: the server's page in words, 404.
    resp = await page.goto(f"{server.base_url}/join/bad$$code", timeout=GOTO_TIMEOUT_MS)
    assert resp.status == 404
    await page.get_by_role("heading", name="This invite link does not work").wait_for()
    text = await _visible_text(page)
    assert not CODE_LIKE.search(text), text
    await page.screenshot(path=str(screenshot_dir / "16-07-bad-invite-phone.png"))
    # A used-up invite: 410, and no Join button to tempt anyone.
    _session, invite = await create_room(
        server.base_url, "Weekly sync", f"owner-{secrets.token_hex(4)}@example.com"
    )
    async with aiohttp.ClientSession(server.base_url) as http:
        for _ in range(10):  # create_room's invite has 10 uses
            async with http.post(f"/api/join/{invite['code']}", json={}) as r:
                assert r.status == 200
    resp = await page.goto(f"{server.base_url}/join/{invite['code']}", timeout=GOTO_TIMEOUT_MS)
    assert resp.status == 410
    await page.get_by_role("heading", name="This invite link has been used up").wait_for()
    assert await page.get_by_role("button", name="Join now").count() == 0
    await page.screenshot(path=str(screenshot_dir / "16-08-used-invite-phone.png"))
    # A room token that is not valid: the client's notice, in words.
    await page.goto(f"{server.base_url}/?room=abc#token=not.a.token", timeout=GOTO_TIMEOUT_MS)
    await page.get_by_role("heading", name="This link does not work").wait_for(timeout=10000)
    text = await _visible_text(page)
    assert not CODE_LIKE.search(text), text
    await page.screenshot(path=str(screenshot_dir / "16-09-bad-token-phone.png"))
    # Every close code and error code the client knows maps to a sentence.
    sentences = await page.evaluate(
        """async () => {
          const m = await import('/static/js/errors.js');
          const out = [];
          for (const c of [1000, 1001, 1006, 1008, 1011, 1013, 4000]) {
            out.push(m.closeSentence(c, ''));
          }
          out.push(m.closeSentence(1000, 'removed'));
          for (const code of Object.keys(m.SENTENCES)) {
            out.push(m.describeError({ name: 'SignalError', code }));
          }
          out.push(m.describeError({ name: 'ApiError', code: 'http_502', status: 502 }));
          out.push(m.describeError({ name: 'NotAllowedError' }));
          return out;
        }"""
    )
    for sentence in sentences:
        assert re.fullmatch(r"[A-Z].*[.!?]", sentence) and not CODE_LIKE.search(sentence), sentence
    # A call the server ends for good (the same person joined from another device; a dropped
    # socket alone resumes on its own): a sentence and a way back in, never "(code 4001)".
    _session, invite = await create_room(
        server.base_url, "Drop room", f"owner-{secrets.token_hex(4)}@example.com"
    )
    await page.goto(f"{server.base_url}/join/{invite['code']}?name=Dee", timeout=GOTO_TIMEOUT_MS)
    await _wait_js(page, "() => window.sfu.state === 'joined'", 15, "dee to join")
    call = await page.evaluate("() => JSON.parse(sessionStorage.getItem('sfu.call'))")
    elsewhere = RoomClient(
        server.base_url, call["room"], "Dee", token=call["token"], subscribe=False
    )
    try:
        await elsewhere.connect()  # the server closes the page's session: duplicate_identity
        await page.get_by_role("heading", name="You are no longer in the room").wait_for(
            timeout=10000
        )
    finally:
        await elsewhere.close()
    text = await _visible_text(page)
    assert not CODE_LIKE.search(text), text
    assert await page.get_by_role("button", name="Join again").is_visible()
    await page.screenshot(path=str(screenshot_dir / "16-10-connection-lost-phone.png"))
    # "Join again" goes back through the pre-join screen.
    await page.get_by_role("button", name="Join again").click()
    await page.get_by_role("heading", name="You're joining Drop room").wait_for(timeout=10000)
    # The invite is used up while the pre-join screen is open: Join says so, in words.
    _session, last = await create_room(
        server.base_url, "Last seat", f"owner-{secrets.token_hex(4)}@example.com"
    )
    await page.goto(f"{server.base_url}/join/{last['code']}", timeout=GOTO_TIMEOUT_MS)
    await page.get_by_role("heading", name="You're joining Last seat").wait_for(timeout=10000)
    async with aiohttp.ClientSession(server.base_url) as http:
        for _ in range(10):
            async with http.post(f"/api/join/{last['code']}", json={}) as r:
                assert r.status == 200
    await page.get_by_role("button", name="Join now").click()
    await page.get_by_role("heading", name="This invite link has been used up").wait_for(
        timeout=10000
    )
    assert await page.evaluate("() => window.sfu.state") == "idle"
    text = await _visible_text(page)
    assert not CODE_LIKE.search(text), text
    await page.screenshot(path=str(screenshot_dir / "16-13-invite-used-meanwhile-phone.png"))
    await page.context.close()


async def _sign_in(page: Any, email: str, remember: bool) -> None:
    await page.locator("#auth-section").wait_for(state="visible", timeout=10000)
    if remember:
        await page.get_by_label("Stay signed in on this browser").check()
    form = page.locator("#login-form")
    await form.get_by_label("Email").fill(email)
    await form.get_by_label("Password").fill(PASSWORD)
    await form.get_by_role("button", name="Sign in").click()
    await page.locator("#lobby-section").wait_for(state="visible", timeout=10000)


async def test_stay_signed_in_covers_new_tabs_without_cookies(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    email = f"tabs-{secrets.token_hex(4)}@example.com"
    async with aiohttp.ClientSession(server.base_url) as http:
        account = {"email": email, "password": PASSWORD, "display_name": "Tabby"}
        async with http.post("/api/register", json=account) as resp:
            assert resp.status == 201, await resp.text()

    # Not ticked: the session ends with the tab; a new tab asks again.
    first = await _page(browser, server, DESKTOP, "tab1")
    await first.goto(f"{server.base_url}/", timeout=GOTO_TIMEOUT_MS)
    await _sign_in(first, email, remember=False)
    other = await first.context.new_page()
    await other.goto(f"{server.base_url}/", timeout=GOTO_TIMEOUT_MS)
    await other.locator("#auth-section").wait_for(state="visible", timeout=10000)
    await first.context.close()

    # Ticked: a new tab of the same browser opens in the lobby.
    page = await _page(browser, server, DESKTOP, "tab2")
    await page.goto(f"{server.base_url}/", timeout=GOTO_TIMEOUT_MS)
    await _sign_in(page, email, remember=True)
    await page.screenshot(path=str(screenshot_dir / "16-11-stay-signed-in.png"))
    tab = await page.context.new_page()
    await tab.goto(f"{server.base_url}/", timeout=GOTO_TIMEOUT_MS)
    await tab.locator("#lobby-section").wait_for(state="visible", timeout=10000)
    assert "Tabby" in (await tab.locator("#who").text_content() or "")
    await tab.screenshot(path=str(screenshot_dir / "16-12-new-tab-signed-in.png"))
    # The tokens are in localStorage, never in a cookie a cross-site request could carry.
    assert await page.context.cookies() == []
    stored = await tab.evaluate("() => localStorage.getItem('sfu.account')")
    assert stored is not None and "refresh_token" in stored
    # A refresh in one tab does not sign the other out (Web Locks serialise the rotation).
    await tab.evaluate(
        """() => {
          const s = JSON.parse(localStorage.getItem('sfu.account'));
          s.access_token = 'not-a-valid-token';
          localStorage.setItem('sfu.account', JSON.stringify(s));
        }"""
    )
    await page.get_by_label("Room name").fill("two tabs")
    await page.get_by_role("button", name="Create room").click()
    await page.locator(".room-item").filter(has_text="two tabs").wait_for(timeout=10000)
    await tab.reload()
    await tab.locator("#lobby-section").wait_for(state="visible", timeout=10000)
    # Signing out in one tab signs the browser out.
    await tab.get_by_role("button", name="Sign out").click()
    await tab.locator("#auth-section").wait_for(state="visible", timeout=10000)
    assert await page.evaluate("() => localStorage.getItem('sfu.account')") is None
    await page.context.close()
