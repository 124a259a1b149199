"""Accessibility of every view of the browser client: axe-core and the keyboard (issue 16).

axe-core (tests/e2e/a11y.py, pinned, installed by scripts/test.sh) runs on each view as a
person would see it, and no view may have a ``serious`` or ``critical`` violation:

- signed out: the sign-in page (with a wrong-password error), the one-time-code forms, the
  registration form (with a weak-password error), the invite link's join form;
- the lobby, signed in, with a room and its invite link open;
- a conference call of two: the call view (desktop, with an unread chat badge, and phone
  width), each side panel open
  (participants, chat with a message, files with a shared file, settings), the reactions bar,
  a screen share (on the stage of a phone, and the sharer's view), the whiteboard (and its
  armed "clear" button), and the chat as a phone-width overlay;
- a podcast room: the host's view with the raised-hands queue and the audience list, a
  listener's view (desktop and phone), a listener's stage invitation dialog, a promoted
  speaker's view, the host's menu on a speaker's card, the host's "End room" confirmation
  dialog and the "room ended" screen.

The keyboard test tabs through the call view and must reach every control (mute, camera,
share, whiteboard, reactions, each panel's toggle, leave) in the order they are shown; a panel
opens with Enter (focus moves into it) and Escape closes it, giving focus back to its toggle;
the reactions bar opens, its emoji are reachable with Tab, and Escape gives focus back.
Screenshots of every checked view go to artifacts/screenshots/a11y-*.png.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.a11y import assert_accessible, assert_keyboard_reachable
from tests.e2e.conftest import CHROMIUM_ARGS, create_room, launch_chromium
from tests.e2e.test_browser_call import PARTICIPANT_NAMES_JS, _open, _wait_js

if TYPE_CHECKING:
    from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
MAX_TABS = 60  # more than the call view has controls: a bound for the Tab loops


@pytest.fixture
async def browser(chromium: Path, plain_video: Path) -> AsyncIterator[Any]:
    """Chromium with a cheap VGA camera clip (conftest's ``plain_video``, not the noise clip nor
    the built-in camera's 720p) and its built-in microphone: the views need a picture, not one
    that is costly to encode, and these tests run many pages."""
    args = [*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={plain_video}"]
    async with launch_chromium(chromium, args) as instance:
        yield instance


# What has the keyboard focus: its id, else its accessible name.
FOCUSED_JS = """
() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  return el.id || el.getAttribute('aria-label') || el.textContent.trim().slice(0, 40);
}
"""


async def _signed_in(browser: Any, server: ServerProcess, account: dict[str, Any]) -> Any:
    """A desktop page at / with ``account`` (the /api/register reply) in sessionStorage: the
    lobby."""
    context = await browser.new_context(viewport=DESKTOP)
    stored = json.dumps(json.dumps(account))
    await context.add_init_script(f"sessionStorage.setItem('sfu.account', {stored});")
    page = await context.new_page()
    page.on("console", lambda msg: server.page_logs.append(f"[owner] {msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: server.page_logs.append(f"[owner] pageerror: {err}"))
    await page.goto(f"{server.base_url}/")
    await page.locator("#lobby-section").wait_for(state="visible", timeout=10000)
    return page


async def _join_from_lobby(page: Any, room_name: str) -> None:
    await page.get_by_role("button", name=f"Join {room_name}").click()
    await _wait_js(page, "() => window.sfu.state === 'joined'", 15, f"joining {room_name}")


async def _guest(
    browser: Any, server: ServerProcess, code: str, name: str, viewport: dict[str, int]
) -> Any:
    page = await _open(browser, server, f"/join/{code}?name={name}", viewport)
    await _wait_js(page, "() => window.sfu.state === 'joined'", 15, f"{name} to join")
    return page


async def _settle(page: Any) -> None:
    """Let the last render and CSS transitions finish before axe reads colours."""
    await page.evaluate("() => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 300)))")


async def _check(page: Any, name: str, screenshot_dir: Path) -> None:
    """axe-core finds nothing serious, and Tab reaches every control of the view."""
    await _settle(page)
    await assert_accessible(page, name, screenshot_dir=screenshot_dir)
    await assert_keyboard_reachable(page, name)


# --- signed out ---------------------------------------------------------------------------


async def test_signed_out_views(browser: Any, server: ServerProcess, screenshot_dir: Path) -> None:
    page = await _open(browser, server, "/", DESKTOP)
    await page.locator("#auth-section").wait_for(state="visible", timeout=10000)
    await _check(page, "landing", screenshot_dir)

    login = page.locator("#login-form")
    await login.get_by_label("Email").fill("nobody@example.com")
    await login.get_by_label("Password").fill("not-the-password-1")
    await login.get_by_role("button", name="Sign in").click()
    await page.locator("#login-error").wait_for(state="visible", timeout=10000)
    await _check(page, "landing-sign-in-error", screenshot_dir)

    await page.get_by_role("button", name="One-time code").click()
    await page.locator("#otp-request-form").wait_for(state="visible")
    await _check(page, "landing-one-time-code", screenshot_dir)
    await page.locator("#otp-email").fill("code@example.com")
    await page.get_by_role("button", name="Send code").click()
    await page.locator("#otp-verify-form").wait_for(state="visible", timeout=10000)
    await _check(page, "landing-one-time-code-verify", screenshot_dir)

    await page.get_by_role("button", name="Create account", exact=True).click()
    register = page.locator("#register-form")
    await register.get_by_label("Email").fill("weak@example.com")
    await register.get_by_label("Password").fill("short")
    await register.get_by_label("Name shown to others").fill("Weak")
    await register.get_by_role("button", name="Create account").click()
    await page.locator("#register-error").wait_for(state="visible", timeout=10000)
    await _check(page, "landing-register-error", screenshot_dir)

    _account, invite = await create_room(server.base_url, "a11y-invite", "a11y-inv@example.com")
    guest = await _open(browser, server, f"/join/{invite['code']}", PHONE)
    await guest.locator("#prejoin-section").wait_for(state="visible", timeout=10000)
    await _check(guest, "invite-join-form", screenshot_dir)


# --- the lobby ----------------------------------------------------------------------------


async def test_lobby(browser: Any, server: ServerProcess, screenshot_dir: Path) -> None:
    account, _invite = await create_room(server.base_url, "a11y-lobby", "a11y-lobby@example.com")
    page = await _signed_in(browser, server, account)
    item = page.locator(".room-item").filter(has_text="a11y-lobby")
    await item.wait_for(timeout=10000)
    await item.get_by_role("button", name="Invite link for a11y-lobby").click()
    await item.locator(".invite-url").wait_for(state="visible", timeout=10000)
    await _check(page, "lobby", screenshot_dir)


# --- a conference call --------------------------------------------------------------------


async def _conference(browser: Any, server: ServerProcess, room: str) -> tuple[Any, Any]:
    """The room's owner (desktop, joined from the lobby) and Bob (phone, by the invite link),
    each seeing the other; returns (owner, bob)."""
    account, invite = await create_room(server.base_url, room, f"{room}@example.com")
    owner = await _signed_in(browser, server, account)
    await _join_from_lobby(owner, room)
    bob = await _guest(browser, server, invite["code"], "Bob", PHONE)
    await _wait_js(bob, "() => window.sfu.participants.size === 1", 15, "Bob to see the owner")
    await _wait_js(
        owner, f"() => ({PARTICIPANT_NAMES_JS})().includes('Bob')", 15, "the owner to see Bob"
    )
    await _wait_js(owner, "() => document.querySelectorAll('#grid video').length >= 2", 15, "tiles")
    return owner, bob


async def test_conference_call_and_panels(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    owner, bob = await _conference(browser, server, "a11y-call")
    await _check(bob, "call-phone", screenshot_dir)

    # Bob writes: the owner's Chat button shows an unread badge.
    await bob.get_by_role("button", name="Chat").click()
    await bob.locator("#chat-input").fill("hello from Bob, https://example.com/agenda")
    await bob.locator("#chat-input").press("Enter")
    await owner.get_by_role("button", name="Chat, 1 unread").wait_for(timeout=10000)
    await _check(owner, "call", screenshot_dir)
    await _check(bob, "call-phone-chat-overlay", screenshot_dir)
    await bob.keyboard.press("Escape")

    await owner.get_by_role("button", name="Participants, 2 in the room").click()
    await owner.locator("#people-list .person").nth(1).wait_for(timeout=5000)
    await _check(owner, "panel-participants", screenshot_dir)

    await owner.get_by_role("button", name="Chat, 1 unread").click()
    await owner.locator("#chat-log li").first.wait_for(timeout=5000)
    await _check(owner, "panel-chat", screenshot_dir)

    # A shared file, listed in the Files panel.
    await owner.set_input_files(
        "#chat-file-input",
        files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"agenda\n" * 100}],
    )
    await _wait_js(
        owner, "() => window.sfu.chat.messages.some((m) => m.file)", 15, "the file's announcement"
    )
    await owner.get_by_role("button", name="Files").click()
    await owner.locator("#panel-files .file-row").first.wait_for(timeout=10000)
    await _check(owner, "panel-files", screenshot_dir)

    await owner.get_by_role("button", name="Settings").click()
    await _wait_js(
        owner, "() => document.getElementById('mic-select').options.length > 0", 10, "devices"
    )
    await _check(owner, "panel-settings", screenshot_dir)
    await owner.keyboard.press("Escape")
    await _wait_js(owner, "() => window.sfu.panel === null", 5, "the panel to close")

    await owner.get_by_role("button", name="React").click()
    await owner.locator("#reaction-bar").wait_for(state="visible")
    await _check(owner, "reactions", screenshot_dir)
    await owner.keyboard.press("Escape")
    await owner.locator("#reaction-bar").wait_for(state="hidden")


async def test_conference_screen_share_and_whiteboard(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    owner, bob = await _conference(browser, server, "a11y-share")

    # The owner shares the screen: Bob's phone shows it large on the stage.
    await owner.get_by_role("button", name="Share screen").click()
    await bob.locator("#stage .tile.screen video").wait_for(timeout=30000)
    await _check(bob, "call-phone-screen-share", screenshot_dir)
    await _check(owner, "call-sharing-screen", screenshot_dir)
    await owner.get_by_role("button", name="Stop sharing").click()

    await owner.get_by_role("button", name="Whiteboard").click()
    await owner.locator("#board-area .wb-overlay").wait_for(state="visible", timeout=5000)
    await _check(owner, "whiteboard", screenshot_dir)
    await owner.get_by_role("button", name="Clear the whole board").click()
    confirm = owner.get_by_role("button", name="Confirm: clear the whole board for everyone")
    await confirm.wait_for(timeout=5000)
    await _check(owner, "whiteboard-clear-armed", screenshot_dir)


# --- a podcast room -----------------------------------------------------------------------


async def test_podcast_views(browser: Any, server: ServerProcess, screenshot_dir: Path) -> None:
    account, invite = await create_room(
        server.base_url, "a11y-pod", "a11y-pod@example.com", kind="podcast", display_name="Hana"
    )
    host = await _signed_in(browser, server, account)
    await _join_from_lobby(host, "a11y-pod")
    lena = await _guest(browser, server, invite["code"], "Lena", DESKTOP)
    theo = await _guest(browser, server, invite["code"], "Theo", PHONE)
    await _wait_js(host, "() => window.sfu.podcast.audienceList.length === 2", 15, "audience")

    await lena.get_by_role("button", name="Raise hand").click()
    await host.get_by_role("button", name="Invite Lena to speak").wait_for(timeout=10000)
    await _check(host, "podcast-host", screenshot_dir)
    await _check(lena, "podcast-listener-hand-raised", screenshot_dir)
    await _check(theo, "podcast-listener-phone", screenshot_dir)

    # Theo is invited to the stage: his invitation dialog (phone width); he declines.
    await host.get_by_role("button", name="Invite Theo to speak").click()
    invitation = theo.get_by_role("dialog", name="Join the stage?")
    await invitation.wait_for(timeout=10000)
    await _check(theo, "podcast-invite-dialog", screenshot_dir)
    await invitation.get_by_role("button", name="Decline").click()
    await invitation.wait_for(state="hidden", timeout=5000)

    # Lena is promoted: her speaker view, and the host's menu on her card.
    await host.get_by_role("button", name="Promote Lena to speaker").click()
    await _wait_js(
        lena,
        "() => window.sfu.podcast.role === 'speaker' && window.sfu.local.audio"
        " && window.sfu.local.audio.sid",
        15,
        "Lena to speak",
    )
    await _check(lena, "podcast-speaker", screenshot_dir)
    await host.get_by_role("button", name="Manage Lena").click()
    await host.get_by_role("group", name="Actions for Lena").wait_for(timeout=5000)
    await _check(host, "podcast-host-manage-menu", screenshot_dir)
    await host.get_by_role("button", name="Manage Lena").click()

    await host.get_by_role("button", name="End room").click()
    confirm = host.get_by_role("dialog", name="End the room for everyone?")
    await confirm.wait_for(timeout=5000)
    await _check(host, "podcast-confirm-dialog", screenshot_dir)
    await confirm.get_by_role("button", name="End room").click()
    await theo.locator("#ended-section").wait_for(state="visible", timeout=10000)
    await _check(theo, "podcast-ended", screenshot_dir)


# --- the keyboard -------------------------------------------------------------------------


async def _tab_until(page: Any, target: str) -> list[str | None]:
    """Press Tab until the element whose id (or name) is ``target`` has the focus; returns
    what had the focus on the way (at most MAX_TABS presses)."""
    seen: list[str | None] = []
    for _ in range(MAX_TABS):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(FOCUSED_JS)
        seen.append(focused)
        if focused == target:
            return seen
    pytest.fail(f"Tab never reached {target!r} in {MAX_TABS} presses; focus went: {seen}")


async def test_keyboard_reaches_every_call_control(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    _account, invite = await create_room(server.base_url, "a11y-keys", "a11y-keys@example.com")
    page = await _guest(browser, server, invite["code"], "Kim", DESKTOP)
    await _wait_js(page, "() => window.sfu.local.video && window.sfu.local.video.sid", 15, "cam")

    # From the top of the page, Tab reaches every control, in the order they are shown.
    await page.evaluate("() => document.activeElement && document.activeElement.blur()")
    required = [
        "mic-button",
        "cam-button",
        "screen-button",
        "board-button",
        "react-button",
        "participants-button",
        "chat-button",
        "settings-button",
        "files-button",
        "leave-button",
    ]
    # Every control shown in the bar, in order (the required ones and any added later).
    shown = await page.evaluate(
        "() => [...document.querySelectorAll('#controls button')]"
        ".filter((b) => b.offsetParent !== null)"
        ".map((b) => b.id || b.getAttribute('aria-label') || b.textContent.trim().slice(0, 40))"
    )
    assert [x for x in shown if x in required] == required, shown
    seen = await _tab_until(page, shown[-1])
    order = [x for x in seen if x in shown]
    assert order == shown, f"controls reached by Tab: {order}; focus went: {seen}"
    await page.screenshot(path=str(screenshot_dir / "a11y-keyboard-leave-focused.png"))

    # A panel: Enter on its toggle opens it and moves focus in; Escape closes it and gives
    # focus back to the toggle. Tab then moves on from the toggle.
    for button, panel, inside in (
        ("chat-button", "chat", "chat-input"),
        ("participants-button", "participants", "side-title"),
        ("settings-button", "settings", "mic-select"),
        ("files-button", "files", None),
    ):
        await page.locator(f"#{button}").focus()
        await page.keyboard.press("Enter")
        await _wait_js(page, f"() => window.sfu.panel === '{panel}'", 5, f"{panel} to open")
        assert await page.locator(f"#{button}").get_attribute("aria-expanded") == "true"
        focused = await page.evaluate(FOCUSED_JS)
        in_panel = await page.evaluate(
            "() => document.getElementById('side-panel').contains(document.activeElement)"
        )
        assert in_panel, f"Enter on #{button}: focus is on {focused}, not in the panel"
        if inside is not None:
            assert focused == inside, (button, focused)
        if panel == "participants":
            # Tab goes on inside the open panel: from its heading to its close button.
            await _tab_until(page, "side-close")
        await page.keyboard.press("Escape")
        await _wait_js(page, "() => window.sfu.panel === null", 5, f"{panel} to close")
        assert await page.locator("#side-panel").is_hidden()
        assert await page.evaluate(FOCUSED_JS) == button, f"Escape: focus is not on #{button}"
        assert await page.locator(f"#{button}").get_attribute("aria-expanded") == "false"

    # The reactions bar: Enter opens it, Tab reaches the emoji, Escape closes and returns.
    await page.locator("#react-button").focus()
    await page.keyboard.press("Enter")
    await page.locator("#reaction-bar").wait_for(state="visible", timeout=5000)
    await _tab_until(page, "React: Applause")
    await page.keyboard.press("Enter")
    await _wait_js(
        page, "() => window.sfu.reactions.some((r) => r.emoji === '👏')", 10, "the applause"
    )
    await page.keyboard.press("Escape")
    await page.locator("#reaction-bar").wait_for(state="hidden", timeout=5000)
    assert await page.evaluate(FOCUSED_JS) == "react-button"

    # Mute and unmute by keyboard (Space on the focused button).
    await page.locator("#mic-button").focus()
    await page.keyboard.press("Space")
    await page.get_by_role("button", name="Unmute mic").wait_for(timeout=5000)
    assert await page.evaluate("() => window.sfu.local.audio.muted") is True
    await page.keyboard.press("Space")
    await page.get_by_role("button", name="Mute mic").wait_for(timeout=5000)

    # Leave by keyboard.
    await page.locator("#leave-button").focus()
    await page.keyboard.press("Enter")
    await _wait_js(page, "() => window.sfu.state !== 'joined'", 10, "leaving")


# --- the checks themselves ------------------------------------------------------------------

BREAK_PAGE_JS = """
() => {
  const faint = document.createElement('button');
  faint.id = 'faint';
  faint.textContent = 'Faint';
  faint.style.cssText = 'color: #777; background: #888';
  const unnamed = document.createElement('button');
  unnamed.id = 'unnamed';
  const untabbable = document.createElement('button');
  untabbable.id = 'untabbable';
  untabbable.textContent = 'Out of the tab order';
  untabbable.tabIndex = -1;
  document.getElementById('auth-section').prepend(faint, unnamed, untabbable);
}
"""


async def test_the_checks_catch_broken_controls(browser: Any, server: ServerProcess) -> None:
    """The real page (axe is injected under its CSP) with three broken buttons added: both
    checks fail and name them, so a check that silently ran nothing could not pass."""
    page = await _open(browser, server, "/", DESKTOP)
    await page.locator("#auth-section").wait_for(state="visible", timeout=10000)
    await page.evaluate(BREAK_PAGE_JS)

    with pytest.raises(pytest.fail.Exception) as axe_failure:
        await assert_accessible(page, "broken")
    report = str(axe_failure.value)
    assert "color-contrast (serious)" in report and "#faint" in report, report
    assert "button-name (critical)" in report and "#unnamed" in report, report
    assert "#untabbable" not in report, report  # axe has no rule for this: the Tab check does

    with pytest.raises(pytest.fail.Exception) as tab_failure:
        await assert_keyboard_reachable(page, "broken")
    report = str(tab_failure.value)
    assert 'button#untabbable "Out of the tab order"' in report, report
    assert "Tab never reaches 1 of" in report, report
