"""Conference host controls in Chromium (hostcontrols.js, waitingroom.js).

The room's owner joins from the lobby as the host; guests join with the room's invite link.
The host sees the host badge and "End for all" in the top bar; a guest raises a hand, the host
sees it in the participants list and lowers it; the host mutes a guest (who is told, and
unmutes itself); turns the waiting room on and admits one guest and denies another (who reads
"The host did not let you in"); locks the room (a newcomer reads "This meeting is locked");
removes a guest; ends the meeting for all (the "ended" screen). On a phone the End button is
in the top bar, apart from the everyday controls at the bottom. Screenshots go to
``artifacts/screenshots/host-*.png``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.conftest import CHROMIUM_ARGS, create_room, launch_chromium, write_noise_y4m
from tests.e2e.test_browser_call import _wait_js

if TYPE_CHECKING:
    from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

DESKTOP = {"width": 1280, "height": 720}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
async def browser(
    chromium: Path, fake_audio: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Any]:
    """Chromium with a small fake camera (160x120: up to five pages share two cores here;
    the controls, not the video, are under test) and the fake microphone."""
    video = write_noise_y4m(tmp_path_factory.mktemp("cam") / "small.y4m", 160, 120)
    args = [
        *CHROMIUM_ARGS,
        f"--use-file-for-fake-video-capture={video}",
        f"--use-file-for-fake-audio-capture={fake_audio}",
    ]
    async with launch_chromium(chromium, args) as launched:
        yield launched


async def _page(
    browser: Any,
    server: ServerProcess,
    who: str,
    path: str,
    viewport: Any,
    account: dict[str, Any] | None = None,
    join_button: str | None = None,
) -> Any:
    """A page that opens ``path`` (and, signed in with ``account``, clicks ``join_button`` in
    the lobby); it does not wait for the join (a waiting room may hold it)."""
    context = await browser.new_context(viewport=viewport)
    context.set_default_timeout(60_000)  # two shared cores: clicks can wait for a frame
    page = await context.new_page()
    if account is not None:
        stored = json.dumps(json.dumps(account))
        await page.add_init_script(f"sessionStorage.setItem('sfu.account', {stored});")
    page.on("console", lambda msg: server.page_logs.append(f"[{who}] {msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: server.page_logs.append(f"[{who}] pageerror: {err}"))
    await page.goto(f"{server.base_url}{path}", timeout=90_000)
    if join_button is not None:
        await page.get_by_role("button", name=join_button).click()
    return page


async def _joined(page: Any, who: str) -> None:
    await _wait_js(page, "() => window.sfu.state === 'joined'", 45, f"{who} to join")


async def _shot(page: Any, directory: Path, name: str) -> None:
    await asyncio.sleep(0.3)
    await page.screenshot(path=str(directory / name), timeout=90_000)


async def _visible(page: Any, selector: str) -> bool:
    return bool(await page.locator(selector).is_visible())


async def _open_people(page: Any) -> None:
    if await page.evaluate("() => window.sfu.panel") != "participants":
        await page.locator("#participants-button").click()
    await _wait_js(page, "() => window.sfu.panel === 'participants'", 5, "the people panel")


async def _host_and_link(
    browser: Any, server: ServerProcess, room: str, invite_role: str | None = None
) -> tuple[Any, str]:
    """A room owned by Hana, who joins it from the lobby as its host; and its invite link
    (``invite_role``: the role it gives, default speaker)."""
    account, invite = await create_room(
        server.base_url,
        room,
        f"owner-{room}@example.com",
        display_name="Hana",
        invite_role=invite_role,
    )
    host = await _page(
        browser, server, "host", "/", DESKTOP, account=account, join_button=f"Join {room}"
    )
    await _joined(host, "host")
    return host, f"/join/{invite['code']}"


def _no_page_errors(server: ServerProcess) -> None:
    errors = [line for line in server.page_logs if "pageerror" in line]
    assert not errors, errors


async def test_host_badge_hands_and_mute(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    host, link = await _host_and_link(browser, server, "e2e-host")
    alice = await _page(browser, server, "alice", f"{link}?name=Alice", DESKTOP)
    await _joined(alice, "alice")

    # Who is host: the badge and End for all for the host only.
    await _wait_js(host, "() => !document.getElementById('end-all-button').hidden", 5, "End")
    assert await host.locator("#my-role-badge").inner_text() == "You are the host"
    assert not await _visible(alice, "#end-all-button")
    assert not await _visible(alice, "#my-role-badge")

    # Alice raises her hand: the host sees it in the participants list and lowers it.
    await alice.get_by_role("button", name="Raise hand").click()
    await _open_people(host)
    alice_row = host.locator("#people-list li", has_text="Alice")
    await alice_row.locator(".person-hand").wait_for(timeout=20_000)
    hana_row = host.locator("#people-list li", has_text="Hana")
    assert await hana_row.locator(".person-role").inner_text() == "Host"
    await _shot(host, screenshot_dir, "host-hand-raised.png")
    await host.get_by_role("button", name="Lower hand of Alice").click()
    await alice.get_by_role("button", name="Raise hand").wait_for(timeout=20_000)
    await alice_row.locator(".person-hand").wait_for(state="detached", timeout=20_000)

    # The host mutes Alice: she is told, her mic button says so, and she unmutes herself.
    await _wait_js(
        host,
        '() => document.querySelector(\'#people-list li[data-mic="on"] [data-action="mute"]\')'
        " !== null",
        30,
        "Alice's microphone to be on",
    )
    await host.get_by_role("button", name="Mute Alice").click()
    await alice.locator("#host-notice").wait_for(timeout=20_000)
    assert "The host muted your microphone" in await alice.locator("#host-notice").inner_text()
    await _wait_js(alice, "() => window.sfu.local.audio.muted === true", 10, "Alice muted")
    await _shot(alice, screenshot_dir, "host-muted-notice.png")
    await alice.get_by_role("button", name="Unmute mic").click()
    await _wait_js(alice, "() => window.sfu.local.audio.muted === false", 10, "Alice unmuted")
    _no_page_errors(server)
    for page in (alice, host):
        await page.context.close()


async def test_waiting_room_admit_and_deny(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    host, link = await _host_and_link(browser, server, "e2e-host-wait")
    # Waiting room on: Bob waits (no media), the host admits him.
    await _open_people(host)
    await host.locator("#waiting-switch").click()
    await _wait_js(
        host,
        "() => document.getElementById('waiting-switch').getAttribute('aria-pressed') === 'true'",
        10,
        "the waiting room switch",
    )
    bob = await _page(browser, server, "bob", f"{link}?name=Bob", DESKTOP)
    await bob.get_by_role("heading", name="Waiting for the host to let you in").wait_for(
        timeout=45_000
    )
    assert await bob.evaluate("() => [window.sfu.state, window.sfu.pub, window.sfu.sub]") == [
        "joining",
        None,
        None,
    ]
    await _shot(bob, screenshot_dir, "host-waiting.png")
    knock = host.locator("#knock-list li", has_text="Bob")
    await knock.wait_for(timeout=20_000)
    await _shot(host, screenshot_dir, "host-knock.png")
    await host.get_by_role("button", name="Admit Bob").click()
    await _joined(bob, "bob")
    await knock.wait_for(state="detached", timeout=20_000)
    assert not await _visible(bob, "#waiting-section")
    await bob.context.close()

    # Carol is turned away, in words.
    carol = await _page(browser, server, "carol", f"{link}?name=Carol", DESKTOP)
    await host.locator("#knock-list li", has_text="Carol").wait_for(timeout=45_000)
    await host.get_by_role("button", name="Deny Carol").click()
    await carol.get_by_role("heading", name="The host did not let you in").wait_for(timeout=20_000)
    assert await carol.evaluate("() => window.sfu.state") == "failed"
    await _shot(carol, screenshot_dir, "host-denied.png")
    _no_page_errors(server)
    for page in (carol, host):
        await page.context.close()


async def test_lock_remove_and_end_for_all(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    # The guests need no camera here (listeners: no capture, no publish transport), which
    # keeps the test light on a busy machine; the host still publishes.
    host, link = await _host_and_link(browser, server, "e2e-host-end", invite_role="listener")
    alice = await _page(browser, server, "alice", f"{link}?name=Alice", DESKTOP)
    bob = await _page(browser, server, "bob", f"{link}?name=Bob", DESKTOP)
    await _joined(alice, "alice")
    await _joined(bob, "bob")

    # Locked: everyone sees it, a newcomer reads why it cannot join.
    await _open_people(host)
    await host.locator("#lock-switch").click()
    await alice.locator("#lock-badge").wait_for(timeout=20_000)
    dave = await _page(browser, server, "dave", f"{link}?name=Dave", DESKTOP)
    await dave.get_by_role("heading", name="This meeting is locked").wait_for(timeout=45_000)
    await _shot(dave, screenshot_dir, "host-locked.png")
    await dave.context.close()

    # Remove Bob (confirmed in a dialog): he is told.
    await host.get_by_role("button", name="Remove Bob").click()
    await host.locator("#host-dialog").get_by_role("button", name="Remove").click()
    await _wait_js(bob, "() => window.sfu.state === 'disconnected'", 20, "Bob removed")
    assert "removed" in (await bob.locator("#status").inner_text()).lower()
    await bob.context.close()

    # End for all: confirmed, then everyone sees the ended screen.
    await host.get_by_role("button", name="End for all").click()
    await _shot(host, screenshot_dir, "host-end-confirm.png")
    await host.locator("#host-dialog").get_by_role("button", name="End for all").click()
    for page, who in ((alice, "alice"), (host, "host")):
        await _wait_js(page, "() => window.sfu.state === 'ended'", 20, f"{who} to see the end")
    await alice.get_by_role("heading", name="The host ended the room").wait_for(timeout=10_000)
    await _shot(alice, screenshot_dir, "host-ended.png")
    _no_page_errors(server)
    for page in (alice, host):
        await page.context.close()


async def test_phone_end_button_apart_from_everyday_controls(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    account, invite = await create_room(
        server.base_url, "e2e-host-phone", "owner-host-phone@example.com", display_name="Hana"
    )
    host = await _page(
        browser, server, "host", "/", PHONE, account=account, join_button="Join e2e-host-phone"
    )
    await _joined(host, "host")
    guest = await _page(browser, server, "guest", f"/join/{invite['code']}?name=Guest", PHONE)
    await _joined(guest, "guest")
    end = host.locator("#end-all-button")
    await end.wait_for(timeout=5_000)
    layout = await host.evaluate(
        """() => {
          const end = document.getElementById('end-all-button').getBoundingClientRect();
          const bar = document.getElementById('controls').getBoundingClientRect();
          const leave = document.getElementById('leave-button').getBoundingClientRect();
          return { inBar: document.getElementById('controls').contains(
                     document.getElementById('end-all-button')),
                   endBottom: end.bottom, barTop: bar.top, leaveTop: leave.top,
                   endWidth: end.width, endHeight: end.height };
        }"""
    )
    assert layout["inBar"] is False
    assert layout["endBottom"] < layout["barTop"] - 100  # far from the everyday controls
    assert layout["endWidth"] >= 44 and layout["endHeight"] >= 30
    # The hand button is there for the guest too, in the bar.
    assert await guest.locator("#controls #hand-button").is_visible()
    assert not await guest.locator("#end-all-button").is_visible()
    await _shot(host, screenshot_dir, "host-phone.png")
    for page in (guest, host):
        await page.context.close()
