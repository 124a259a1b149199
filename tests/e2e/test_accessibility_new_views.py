"""Accessibility of the views added for issue 16 after tests/e2e/test_accessibility.py.

axe-core (tests/e2e/a11y.py) must find no ``serious`` or ``critical`` violation, and Tab must
reach every control, on:

- the start page signed out, with the "Have an invite link?" box and its error sentence;
  the server's invite pages in words (404 not valid, 410 used up);
- the pre-join screen of a speaker (camera preview, level meter, device pickers, "join with
  ... on" boxes) and of a podcast listener (phone width);
- the waiting room (a guest knocking) and the host's Admit/Deny card; the host controls in
  the participants panel (Lock meeting, Waiting room, per-row Mute, Lower hand, Remove), the
  "You are the host" badge and the End-for-all confirmation; the lobby's ended room (Reopen);
- the keyboard-shortcuts help dialog, a pinned tile, the speaker view, a join notice (toast)
  and the "you are muted" hint;
- the lobby's room parts: the Links panel (Revoke), the History panel, the delete
  confirmation.

Screenshots go to artifacts/screenshots/a11y2-*.png.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from tests.e2e.a11y import assert_accessible, assert_keyboard_reachable
from tests.e2e.conftest import CHROMIUM_ARGS, create_room, launch_chromium
from tests.e2e.test_browser_call import _wait_js

if TYPE_CHECKING:
    from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
GOTO_TIMEOUT_MS = 60_000


@pytest.fixture
async def browser(chromium: Path, fake_audio: Path, plain_video: Path) -> AsyncIterator[Any]:
    """A cheap VGA camera clip (conftest's ``plain_video``) and conftest's steady tone as the
    microphone (the level meter and the muted hint need sound)."""
    args = [
        *CHROMIUM_ARGS,
        f"--use-file-for-fake-audio-capture={fake_audio}",
        f"--use-file-for-fake-video-capture={plain_video}",
    ]
    async with launch_chromium(chromium, args) as instance:
        yield instance


async def _page(
    browser: Any,
    server: ServerProcess,
    who: str,
    path: str,
    viewport: dict[str, int] = DESKTOP,
    account: dict[str, Any] | None = None,
) -> Any:
    """A new page at ``path``, signed in with ``account`` (the /api/register reply) if any."""
    context = await browser.new_context(viewport=viewport)
    context.set_default_timeout(30_000)
    page = await context.new_page()
    if account is not None:
        stored = json.dumps(json.dumps(account))
        await page.add_init_script(f"sessionStorage.setItem('sfu.account', {stored});")
    page.on("console", lambda msg: server.page_logs.append(f"[{who}] {msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: server.page_logs.append(f"[{who}] pageerror: {err}"))
    await page.goto(f"{server.base_url}{path}", timeout=GOTO_TIMEOUT_MS)
    return page


async def _settle(page: Any) -> None:
    """Let the last render and CSS transitions finish before axe reads colours."""
    await page.evaluate("() => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 300)))")


async def _check(page: Any, name: str, screenshot_dir: Path, *, keyboard: bool = True) -> None:
    """Screenshot ``a11y2-<name>.png``; axe finds nothing serious; Tab reaches every control."""
    await _settle(page)
    await page.screenshot(path=str(screenshot_dir / f"a11y2-{name}.png"))
    await assert_accessible(page, name)
    if keyboard:
        await assert_keyboard_reachable(page, name)


async def _joined(page: Any, who: str) -> None:
    await _wait_js(page, "() => window.sfu.state === 'joined'", 30, f"{who} to join")


async def _open_people(page: Any) -> None:
    if await page.evaluate("() => window.sfu.panel") != "participants":
        await page.locator("#participants-button").click()
    await _wait_js(page, "() => window.sfu.panel === 'participants'", 5, "the people panel")


# --- signed out: the start page and the invite pages ----------------------------------------


async def test_start_page_invite_box_and_invite_pages(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    page = await _page(browser, server, "start", "/?room=demo&name=you")
    await page.locator("#invite-section").wait_for(state="visible", timeout=10000)
    await page.locator("#landing-note").wait_for(state="visible")
    await page.get_by_label("Invite link", exact=True).fill("hello there")
    await page.get_by_role("button", name="Open the invite").click()
    await page.locator("#invite-error").wait_for(state="visible")
    await _check(page, "start-invite-error", screenshot_dir)

    phone = await _page(browser, server, "bad", "/join/bad$$code", PHONE)
    await phone.get_by_role("heading", name="This invite link does not work").wait_for()
    await _check(phone, "invite-page-404", screenshot_dir)

    _session, invite = await create_room(server.base_url, "a11y2 used", "a11y2-used@example.com")
    async with aiohttp.ClientSession(server.base_url) as http:
        for _ in range(10):  # create_room's invite has 10 uses
            async with http.post(f"/api/join/{invite['code']}", json={}) as resp:
                assert resp.status == 200
    response = await phone.goto(f"{server.base_url}/join/{invite['code']}", timeout=GOTO_TIMEOUT_MS)
    assert response.status == 410
    await phone.get_by_role("heading", name="This invite link has been used up").wait_for()
    await _check(phone, "invite-page-410", screenshot_dir)
    for p in (page, phone):
        await p.context.close()


# --- the pre-join screen ----------------------------------------------------------------------


async def test_prejoin_speaker_and_listener(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    _session, invite = await create_room(server.base_url, "a11y2 sync", "a11y2-pre@example.com")
    page = await _page(browser, server, "speaker", f"/join/{invite['code']}")
    await page.get_by_role("heading", name="You're joining a11y2 sync").wait_for(timeout=15000)
    await _wait_js(page, "() => window.sfu.prejoin.videoLive", 15, "the camera preview")
    await _wait_js(page, "() => window.sfu.prejoin.peak > 20", 15, "the level meter")
    await _wait_js(
        page, "() => document.getElementById('prejoin-mic').options.length > 0", 10, "devices"
    )
    await _check(page, "prejoin-speaker", screenshot_dir)
    await page.get_by_label("Join with my camera on").uncheck()
    await page.get_by_text("Your camera is off").wait_for()
    await _check(page, "prejoin-speaker-camera-off", screenshot_dir)
    await page.context.close()

    _session, pod = await create_room(
        server.base_url, "a11y2 show", "a11y2-pre-pod@example.com", kind="podcast"
    )
    listener = await _page(browser, server, "listener", f"/join/{pod['code']}", PHONE)
    await listener.get_by_role("heading", name="You're joining a11y2 show").wait_for(timeout=15000)
    await _check(listener, "prejoin-listener-phone", screenshot_dir)
    await listener.context.close()


# --- host controls and the waiting room -------------------------------------------------------


async def test_waiting_room_and_host_controls(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    room = "a11y2-host"
    account, invite = await create_room(
        server.base_url, room, "a11y2-host@example.com", display_name="Hana"
    )
    host = await _page(browser, server, "host", "/", account=account)
    await host.get_by_role("button", name=f"Join {room}").click()
    await _joined(host, "host")
    await _wait_js(host, "() => !document.getElementById('end-all-button').hidden", 10, "End")
    assert await host.locator("#my-role-badge").inner_text() == "You are the host"

    await _open_people(host)
    await host.locator("#waiting-switch").click()
    await _wait_js(
        host,
        "() => document.getElementById('waiting-switch').getAttribute('aria-pressed') === 'true'",
        10,
        "the waiting room switch",
    )
    bob = await _page(browser, server, "bob", f"/join/{invite['code']}?name=Bob")
    await bob.get_by_role("heading", name="Waiting for the host to let you in").wait_for(
        timeout=30000
    )
    await _check(bob, "waiting-room", screenshot_dir)
    await host.locator("#knock-list li", has_text="Bob").wait_for(timeout=20000)
    await _check(host, "host-knock-card", screenshot_dir)
    await host.get_by_role("button", name="Admit Bob").click()
    await _joined(bob, "bob")

    # Bob raises his hand; his row has Mute, Lower hand and Remove.
    await bob.get_by_role("button", name="Raise hand").click()
    await host.get_by_role("button", name="Lower hand of Bob").wait_for(timeout=20000)
    await host.get_by_role("button", name="Mute Bob").wait_for(timeout=20000)
    await host.locator("#lock-switch").click()
    await host.get_by_role("button", name="Meeting locked").wait_for(timeout=10000)
    await _check(host, "host-participants-panel", screenshot_dir)

    await host.keyboard.press("Escape")
    await _wait_js(host, "() => window.sfu.panel === null", 5, "the panel to close")
    await _check(host, "host-call-badge", screenshot_dir)

    await host.get_by_role("button", name="End for all").click()
    dialog = host.locator("#host-dialog")
    await dialog.wait_for(state="visible", timeout=10000)
    await _check(host, "host-end-confirm", screenshot_dir)
    await dialog.get_by_role("button", name="End for all").click()
    await _wait_js(bob, "() => window.sfu.state === 'ended'", 20, "bob to see the end")

    # The lobby after the end: the room is Ended, with Reopen.
    lobby = await _page(browser, server, "lobby", "/", account=account)
    await lobby.get_by_role("button", name=f"Reopen room {room}").wait_for(timeout=15000)
    await _check(lobby, "lobby-ended-room-reopen", screenshot_dir)
    for p in (lobby, bob, host):
        await p.context.close()


# --- the call view's new parts ----------------------------------------------------------------


async def test_shortcuts_pin_speaker_view_notice_and_muted_hint(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    _session, invite = await create_room(server.base_url, "a11y2-call", "a11y2-call@example.com")
    link = f"/join/{invite['code']}"
    alice = await _page(browser, server, "alice", f"{link}?name=alice")
    await _joined(alice, "alice")
    await _wait_js(alice, "() => window.sfu.local.audio !== null", 10, "alice's microphone")

    # "You are muted", at once and alone in the room: the fake microphone plays a steady tone,
    # which the browser's noise suppression fades within seconds, and with bob's tone playing
    # in the same browser the echo canceller would quieten it too.
    await alice.get_by_role("button", name="Mute mic").click()
    await _wait_js(
        alice,
        "() => document.getElementById('muted-hint').textContent.includes('You are muted')",
        15,
        "the muted hint",
    )
    await _check(alice, "muted-hint", screenshot_dir)
    await alice.get_by_role("button", name="Unmute mic").click()

    # The help dialog, opened with "?".
    await alice.locator("body").click(position={"x": 5, "y": 5})
    await alice.keyboard.press("?")
    dialog = alice.get_by_role("dialog", name="Keyboard shortcuts")
    await dialog.wait_for(state="visible", timeout=5000)
    await _check(alice, "shortcuts-dialog", screenshot_dir)
    await alice.keyboard.press("Escape")
    await dialog.wait_for(state="hidden", timeout=5000)

    # A join notice: checked while it is on screen (it goes after a few seconds).
    bob = await _page(browser, server, "bob", f"{link}?name=bob")
    await alice.locator("#notices .toast", has_text="bob joined").wait_for(timeout=20000)
    await assert_accessible(alice, "join-notice")
    await alice.screenshot(path=str(screenshot_dir / "a11y2-join-notice.png"))
    await _joined(bob, "bob")

    # A pinned tile.
    await alice.get_by_role("button", name="Pin bob").click()
    await alice.get_by_role("button", name="Unpin bob").wait_for(timeout=10000)
    await _wait_js(
        alice, "() => document.getElementById('call-main').dataset.view === 'speaker'", 5, "pin"
    )
    await _check(alice, "pinned-tile", screenshot_dir)
    await alice.get_by_role("button", name="Unpin bob").click()

    # The speaker view.
    await alice.get_by_role("button", name="Speaker view").click()
    await _wait_js(
        alice, "() => document.querySelector('#spotlight .tile') !== null", 10, "speaker view"
    )
    await _check(alice, "speaker-view", screenshot_dir)
    await alice.get_by_role("button", name="Speaker view").click()

    for p in (bob, alice):
        await p.context.close()


# --- the lobby's room parts ---------------------------------------------------------------------


async def test_lobby_links_history_and_delete(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    name = "a11y2-lobby"
    account, invite = await create_room(
        server.base_url, name, "a11y2-lobby@example.com", display_name="Olga"
    )
    guest = await _page(browser, server, "guest", f"/join/{invite['code']}?name=Gus", PHONE)
    await _joined(guest, "guest")
    owner = await _page(browser, server, "owner", "/", account=account)
    item = owner.locator(".room-item").filter(has=owner.locator(".room-name", has_text=name))
    await item.wait_for(timeout=15000)

    await item.get_by_role("button", name=f"Invite links of {name}").click()
    await item.locator(".room-link").first.wait_for(timeout=15000)
    await item.get_by_role("button", name=f"Revoke the speaker link {invite['code']}").wait_for()
    await _check(owner, "lobby-links-panel", screenshot_dir)

    await item.get_by_role("button", name=f"Meeting history of {name}").click()
    await item.locator(".room-history .room-event").first.wait_for(timeout=15000)
    await _check(owner, "lobby-history-panel", screenshot_dir)

    await item.get_by_role("button", name=f"Delete {name}").click()
    confirm = item.get_by_role("group", name=f"Delete {name}?")
    await confirm.wait_for(timeout=15000)
    await _check(owner, "lobby-delete-confirm", screenshot_dir)
    await confirm.get_by_role("button", name=f"Yes, delete {name}").click()
    await _wait_js(guest, "() => window.sfu.state === 'ended'", 15, "the guest: room ended")
    await item.wait_for(state="detached", timeout=15000)
    for p in (guest, owner):
        await p.context.close()
