"""Accounts in the browser: sign-in, registration, the lobby, invite links and room tokens.

Page A registers through the sign-in page, creates a room in the lobby and copies its invite
link; page B (another browser context, no account) opens the link and joins; both decode the
other's video. Also: a wrong password and an unknown email show the same error text, sign-out
returns to the sign-in view, a one-time code (read from the server log, where the default
CodeSender writes it) signs in, and ``/join?token=`` opens a room straight from a room token.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from tests.e2e.test_browser_call import (
    PARTICIPANT_NAMES_JS,
    _open,
    _wait_js,
    _wait_media_flowing,
)

if TYPE_CHECKING:
    from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

PASSWORD = "e2e-Quiet-Harbour-42"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def _email(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}@example.com"


async def _register(page: Any, email: str, name: str, password: str = PASSWORD) -> None:
    await page.get_by_role("button", name="Create account", exact=True).click()
    form = page.locator("#register-form")
    await form.get_by_label("Email").fill(email)
    await form.get_by_label("Password").fill(password)
    await form.get_by_label("Name shown to others").fill(name)
    await form.get_by_label("Name shown to others").press("Enter")


async def _wait_lobby(page: Any) -> None:
    await page.locator("#lobby-section").wait_for(state="visible", timeout=10000)
    await _wait_js(page, "() => window.sfu.account === 'in'", 10, "the account to sign in")


async def test_register_create_invite_and_call(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    owner_email = _email("owner")
    a = await _open(browser, server, "/", DESKTOP)
    # (CDP grants exactly the listed permissions and denies the others: list the media ones.)
    permissions = ["clipboard-read", "clipboard-write", "camera", "microphone"]
    await a.context.grant_permissions(permissions, origin=server.base_url)
    await a.locator("#auth-section").wait_for(state="visible")
    await a.screenshot(path=str(screenshot_dir / "1x-01-sign-in.png"))

    # A weak password: the server's problem detail is shown.
    await _register(a, owner_email, "Alice", password="short")
    error = a.locator("#register-error")
    await error.wait_for(state="visible")
    assert "at least 10 characters" in (await error.text_content() or "")
    await a.screenshot(path=str(screenshot_dir / "1x-02-register-weak-password.png"))

    # Registration signs in and opens the lobby, with no rooms yet.
    form = a.locator("#register-form")
    await form.get_by_label("Password").fill(PASSWORD)
    await form.get_by_role("button", name="Create account").click()
    await _wait_lobby(a)
    assert "Alice" in (await a.locator("#who").text_content() or "")
    await a.locator("#no-rooms").wait_for(state="visible", timeout=10000)
    stored = await a.evaluate("() => JSON.parse(sessionStorage.getItem('sfu.account'))")
    assert stored["access_token"] and stored["refresh_token"]
    assert await a.evaluate("() => document.cookie") == ""

    # Create a room by keyboard: name, kind, Enter.
    await a.get_by_label("Room name").fill("Design <b>review</b>")
    await a.get_by_label("Kind").select_option("conference")
    await a.get_by_label("Room name").press("Enter")
    item = a.locator(".room-item").filter(has_text="Design <b>review</b>")
    await item.wait_for(timeout=10000)
    assert await a.locator(".room-name b").count() == 0  # server text is never markup

    # The invite link: an absolute /join/<code> URL, copied with the Copy button.
    await item.get_by_role("button", name="Invite link for Design <b>review</b>").click()
    url_input = item.locator(".invite-url")
    await url_input.wait_for(state="visible")
    invite_url = await url_input.input_value()
    assert re.fullmatch(re.escape(server.base_url) + r"/join/[A-Za-z0-9_-]+", invite_url), (
        invite_url
    )
    await item.get_by_role("button", name="Copy the invite link for Design <b>review</b>").click()
    await item.locator(".copy-note").filter(has_text="Copied").wait_for(timeout=5000)
    copied = await a.evaluate("() => navigator.clipboard.readText()")
    assert copied == invite_url
    await a.screenshot(path=str(screenshot_dir / "1x-03-lobby-invite.png"))

    # The owner joins from the lobby (POST /api/rooms/{room}/token).
    await item.get_by_role("button", name="Join Design <b>review</b>").click()
    await _wait_js(a, "() => window.sfu.state === 'joined'", 15, "the owner to join")
    assert await a.locator("#room-label").text_content() == "Room: Design <b>review</b>"

    # Page B: another context without an account opens the copied link and joins. The owner
    # already publishes, so B's first subscribe offer can overtake its `joined` reply (the
    # client must keep it, not drop it).
    b = await _open(browser, server, copied.removeprefix(server.base_url), PHONE)
    assert not await b.get_by_label("Room", exact=True).is_visible()
    await b.screenshot(path=str(screenshot_dir / "1x-04-guest-invite-phone.png"))
    await b.get_by_label("Display name", exact=True).fill("Bob")
    await b.get_by_label("Display name", exact=True).press("Enter")
    await _wait_js(b, "() => window.sfu.state === 'joined'", 15, "the guest to join")

    await _wait_js(a, f"() => ({PARTICIPANT_NAMES_JS})().includes('Bob')", 15, "A to see Bob")
    await _wait_js(b, f"() => ({PARTICIPANT_NAMES_JS})().includes('Alice')", 15, "B to see Alice")
    a_in = await _wait_media_flowing(a, "owner")
    b_in = await _wait_media_flowing(b, "guest")
    assert a_in["videoStreams"] >= 1 and b_in["videoStreams"] >= 1
    await a.screenshot(path=str(screenshot_dir / "1x-05-owner-call.png"))
    await b.screenshot(path=str(screenshot_dir / "1x-06-guest-call-phone.png"))

    # Leaving returns the owner to the lobby; signing out to the sign-in view.
    await a.get_by_role("button", name="Leave").click()
    await _wait_js(a, "() => window.sfu.state === 'left'", 10, "the owner to leave")
    await _wait_lobby(a)
    await a.get_by_role("button", name="Sign out").click()
    await a.locator("#auth-section").wait_for(state="visible", timeout=10000)
    assert await a.locator("#lobby-section").is_hidden()
    assert await a.evaluate("() => sessionStorage.getItem('sfu.account')") is None
    assert await a.evaluate("() => window.sfu.account") == "out"
    await a.screenshot(path=str(screenshot_dir / "1x-07-signed-out.png"))
    await a.context.close()
    await b.context.close()


async def test_wrong_password_refresh_and_logout(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    email = _email("carol")
    async with aiohttp.ClientSession(server.base_url) as http:
        account = {"email": email, "password": PASSWORD, "display_name": "Carol"}
        async with http.post("/api/register", json=account) as resp:
            assert resp.status == 201, await resp.text()

    page = await _open(browser, server, "/", PHONE)
    form = page.locator("#login-form")
    error = page.locator("#login-error")

    # A wrong password and an unknown email get the same, uniform error text.
    texts = []
    for who, password in ((email, "not-the-Password-1"), (_email("nobody"), PASSWORD)):
        await form.get_by_label("Email").fill(who)
        await form.get_by_label("Password").fill(password)
        await form.get_by_label("Password").press("Enter")
        await error.wait_for(state="visible")
        await _wait_js(page, "() => !document.querySelector('#login-form button').disabled", 10, "")
        texts.append(await error.text_content())
        await page.screenshot(path=str(screenshot_dir / "1x-08-wrong-password-phone.png"))
        await error.evaluate("el => { el.hidden = true; el.textContent = ''; }")
    assert texts[0] == texts[1] == "Sign-in failed: wrong email or password", texts

    # The right password opens the lobby.
    await form.get_by_label("Email").fill(email)
    await form.get_by_label("Password").fill(PASSWORD)
    await form.get_by_role("button", name="Sign in").click()
    await _wait_lobby(page)
    await page.screenshot(path=str(screenshot_dir / "1x-09-lobby-phone.png"))

    # An access token the server refuses is refreshed once (rotating the refresh token).
    before = await page.evaluate("() => JSON.parse(sessionStorage.getItem('sfu.account'))")
    await page.evaluate(
        """() => {
          const s = JSON.parse(sessionStorage.getItem('sfu.account'));
          s.access_token = 'not-a-valid-token';
          sessionStorage.setItem('sfu.account', JSON.stringify(s));
        }"""
    )
    await page.get_by_label("Room name").fill("after refresh")
    await page.get_by_role("button", name="Create room").click()
    await page.locator(".room-item").filter(has_text="after refresh").wait_for(timeout=10000)
    after = await page.evaluate("() => JSON.parse(sessionStorage.getItem('sfu.account'))")
    assert after["refresh_token"] != before["refresh_token"]
    assert after["access_token"] != "not-a-valid-token"

    # Reloading the tab keeps the session (sessionStorage); sign-out clears it.
    await page.reload()
    await _wait_lobby(page)
    await page.get_by_role("button", name="Sign out").click()
    await page.locator("#auth-section").wait_for(state="visible", timeout=10000)
    assert await page.evaluate("() => sessionStorage.length") == 0
    # The old refresh token was revoked by the logout.
    async with aiohttp.ClientSession(server.base_url) as http:
        body = {"refresh_token": after["refresh_token"]}
        async with http.post("/api/token/refresh", json=body) as resp:
            assert resp.status == 401
    await page.context.close()


async def test_one_time_code_and_token_link(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    email = _email("dora")
    page = await _open(browser, server, "/", DESKTOP)
    await page.get_by_role("button", name="One-time code").click()
    await page.locator("#otp-request-form").get_by_label("Email").fill(email)
    await page.get_by_role("button", name="Send code").click()
    code_input = page.get_by_label("6-digit code")
    await code_input.wait_for(state="visible", timeout=10000)

    # The default CodeSender writes the code to the server log.
    pattern = re.compile(rf"one-time login code for email {re.escape(email)}: ([0-9]{{6}})")
    deadline = time.monotonic() + 10
    match = None
    while match is None and time.monotonic() < deadline:
        match = pattern.search(server.log())
        if match is None:
            await asyncio.sleep(0.2)
    assert match is not None, "no one-time code in the server log"
    await page.screenshot(path=str(screenshot_dir / "1x-10-one-time-code.png"))
    await code_input.fill("000000" if match.group(1) != "000000" else "111111")
    await code_input.press("Enter")
    await page.locator("#otp-verify-error").filter(has_text="wrong code").wait_for(timeout=10000)
    await code_input.fill(match.group(1))
    await code_input.press("Enter")
    await _wait_lobby(page)
    assert "dora" in (await page.locator("#who").text_content() or "")

    # A room token in the query (/join?token=) opens the room straight away.
    token = await page.evaluate(
        """async () => {
          const s = JSON.parse(sessionStorage.getItem('sfu.account'));
          const auth = { Authorization: `Bearer ${s.access_token}`,
                         'Content-Type': 'application/json' };
          let r = await fetch('/api/rooms', { method: 'POST', headers: auth,
                                              body: JSON.stringify({ name: 'token room' }) });
          const room = (await r.json()).room;
          r = await fetch(`/api/rooms/${room.id}/token`, { method: 'POST', headers: auth });
          return (await r.json()).token;
        }"""
    )
    guest = await _open(browser, server, f"/join?token={token}", PHONE)
    await _wait_js(guest, "() => window.sfu.state === 'joined'", 15, "the token link to join")
    assert "token=" not in guest.url  # the token is taken out of the address bar
    await _wait_js(guest, "() => window.sfu.local.video !== null", 10, "the camera")
    await guest.screenshot(path=str(screenshot_dir / "1x-11-token-link-phone.png"))
    await guest.context.close()
    await page.context.close()
