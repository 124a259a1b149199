"""The lobby and the podcast room's finishing touches in headless Chromium (issue 16).

- The lobby makes speaker and moderator invite links (the links work: the guests join with
  that role), shows each room live with how many are in it, lists a room's invite links and
  revokes one (the link then shows its error), shows the meeting history and deletes a room
  (a live room ends for everyone in it).
- A room its host ended is not walked back into: Join answers with a sentence, and the owner
  reopens it on purpose (Reopen room).
- In a podcast room the host sees a declined invitation, the participant count is the same
  on the host's, a speaker's and a listener's page, and the host's long name is shown whole
  on the host's own stage card.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from tests.e2e.conftest import create_room
from tests.e2e.test_browser_call import _wait_js
from tests.e2e.test_podcast import DESKTOP, _open, _shot

if TYPE_CHECKING:
    from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

LONG_NAME = "Maximiliana Alexandrovna Featherstonehaugh-Worthington the Third"


async def _invite(base_url: str, session: dict[str, Any], room_id: str, role: str) -> str:
    auth = {"Authorization": f"Bearer {session['access_token']}"}
    async with aiohttp.ClientSession(base_url) as http:
        async with http.post(
            f"/api/rooms/{room_id}/invites", json={"role": role}, headers=auth
        ) as resp:
            assert resp.status == 201, await resp.text()
            return str((await resp.json())["code"])


async def _lobby(browser: Any, server: ServerProcess, account: dict[str, Any]) -> Any:
    """The owner's page, signed in, on the lobby."""
    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    stored = json.dumps(json.dumps(account))
    await page.add_init_script(f"sessionStorage.setItem('sfu.account', {stored});")
    page.on("console", lambda msg: server.page_logs.append(f"[owner] {msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: server.page_logs.append(f"[owner] pageerror: {err}"))
    await page.goto(f"{server.base_url}/")
    await page.locator("#lobby-section").wait_for(state="visible", timeout=10000)
    return page


def _item(page: Any, name: str) -> Any:
    return page.locator(".room-item").filter(has=page.locator(".room-name", has_text=name))


async def _new_link(page: Any, name: str, role: str) -> str:
    """Make an invite link of ``role`` in the lobby; returns its code."""
    item = _item(page, name)
    await item.get_by_label(f"Role for a new invite link to {name}").select_option(role)
    await item.get_by_role("button", name=f"Invite link for {name}", exact=True).click()
    url = item.locator(".invite-url")
    await _wait_js(
        page,
        f"() => document.querySelector('.invite-url') &&"
        f" document.querySelector('.room-item .invite-url').dataset.role === '{role}'",
        10,
        f"a {role} invite link",
    )
    value = str(await url.input_value())
    assert "/join/" in value
    return value.rsplit("/join/", 1)[1]


async def test_lobby_invites_by_role_live_count_revoke_history_and_delete(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    name = "e2e-lobby"
    account, listener_invite = await create_room(
        server.base_url, name, "owner-lobby@example.com", kind="podcast", display_name="Olga"
    )
    owner = await _lobby(browser, server, account)
    item = _item(owner, name)
    await item.locator(".room-live", has_text="Nobody in it").wait_for(timeout=10000)

    # A speaker link and a moderator link from the lobby; both work.
    speaker_code = await _new_link(owner, name, "speaker")
    await _shot(owner, screenshot_dir, "l01-lobby-speaker-invite.png")
    moderator_code = await _new_link(owner, name, "moderator")
    sam = await _open(browser, server, "sam", f"/join/{speaker_code}?name=Sam", DESKTOP)
    mo = await _open(browser, server, "mo", f"/join/{moderator_code}?name=Mo", DESKTOP)
    assert await sam.evaluate("() => window.sfu.podcast.role") == "speaker"
    assert await mo.evaluate("() => window.sfu.podcast.role") == "moderator"
    lee = await _open(browser, server, "lee", f"/join/{listener_invite['code']}?name=Lee", DESKTOP)
    assert await lee.evaluate("() => window.sfu.podcast.role") == "listener"

    # The lobby shows the room live with everyone counted (the hidden listener too).
    await item.locator(".room-live", has_text="Live · 3 people in the room").wait_for(timeout=15000)
    assert await item.get_attribute("data-participants") == "3"
    await _shot(owner, screenshot_dir, "l02-lobby-live-count.png")

    # The room's links: the three made so far; revoking the speaker link kills it.
    await item.get_by_role("button", name=f"Invite links of {name}").click()
    links = item.locator(".room-link")
    await links.first.wait_for(timeout=15000)
    roles = sorted(await links.evaluate_all("(els) => els.map((e) => e.dataset.role)"))
    assert roles == ["listener", "moderator", "speaker"]
    await item.get_by_role("button", name=f"Revoke the speaker link {speaker_code}").click()
    await _wait_js(
        owner,
        "() => [...document.querySelectorAll('.room-link')].map((e) => e.dataset.role)"
        ".sort().join() === 'listener,moderator'",
        10,
        "the speaker link to leave the list",
    )
    await _shot(owner, screenshot_dir, "l03-lobby-link-revoked.png")
    fresh = await (await browser.new_context(viewport=DESKTOP)).new_page()
    response = await fresh.goto(f"{server.base_url}/join/{speaker_code}?name=Late")
    assert response.status == 410  # the server's page in words: used up or withdrawn
    await fresh.get_by_role("heading", name="This invite link has been used up").wait_for(
        timeout=10000
    )
    assert await fresh.get_by_role("button", name="Join now").count() == 0  # no client, no join
    await _shot(fresh, screenshot_dir, "l04-revoked-link-error.png")
    await fresh.context.close()

    # The meeting history: who joined.
    await item.get_by_role("button", name=f"Meeting history of {name}").click()
    history = item.locator(".room-history")
    await history.locator(".room-event").first.wait_for(timeout=15000)
    text = await history.inner_text()
    for who in ("Sam joined", "Mo joined", "Lee joined"):
        assert who in text, text
    await _shot(owner, screenshot_dir, "l05-lobby-history.png")

    # The lobby's periodic refresh keeps the keyboard focus where it was.
    history_button = item.get_by_role("button", name=f"Meeting history of {name}")
    await history_button.focus()
    async with owner.expect_response(
        lambda r: r.url.endswith("/api/rooms") and r.request.method == "GET", timeout=15000
    ):
        pass
    await owner.wait_for_timeout(300)  # let the refreshed list render
    assert await owner.evaluate("() => document.activeElement.getAttribute('aria-label')") == (
        f"Meeting history of {name}"
    )

    # Delete the live room: everyone in it sees it end; it leaves the lobby.
    await item.get_by_role("button", name=f"Delete {name}").click()
    confirm = item.get_by_role("group", name=f"Delete {name}?")
    await confirm.wait_for(timeout=15000)
    assert "ends for everyone" in await confirm.inner_text()
    await _shot(owner, screenshot_dir, "l06-lobby-delete-confirm.png")
    await confirm.get_by_role("button", name=f"Yes, delete {name}").click()
    for page, who in ((sam, "sam"), (mo, "mo"), (lee, "lee")):
        await _wait_js(page, "() => window.sfu.state === 'ended'", 10, f"{who}: room ended")
    await item.wait_for(state="detached", timeout=10000)
    await _shot(owner, screenshot_dir, "l07-lobby-room-deleted.png")
    for page in (sam, mo, lee, owner):
        await page.context.close()


async def test_an_ended_room_needs_reopen_from_the_lobby(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    name = "e2e-reopen"
    account, _invite_body = await create_room(
        server.base_url, name, "owner-reopen@example.com", kind="podcast", display_name="Rita"
    )
    lobby = await _lobby(browser, server, account)  # a lobby tab opened before the end
    host = await _open(
        browser, server, "host", "/", DESKTOP, account=account, join_button=f"Join {name}"
    )
    await host.get_by_role("button", name="End room").click()
    await (
        host.get_by_role("dialog", name="End the room for everyone?")
        .get_by_role("button", name="End room")
        .click()
    )
    await _wait_js(host, "() => window.sfu.state === 'ended'", 10, "the room to end")

    # Join from the lobby tab: refused in words, pointing at Reopen (no silent reopening).
    item = _item(lobby, name)
    await item.get_by_role("button", name=f"Join {name}").click()
    error = item.locator(".form-error")
    await error.wait_for(state="visible", timeout=10000)
    sentence = await error.inner_text()
    assert "This room has ended" in sentence and "Reopen room" in sentence, sentence
    reopen = item.get_by_role("button", name=f"Reopen room {name}")
    await reopen.wait_for(timeout=15000)
    assert await item.locator(".room-live").inner_text() == "Ended"
    await _shot(lobby, screenshot_dir, "l08-lobby-ended-room-needs-reopen.png")
    assert await lobby.evaluate("() => window.sfu.state") != "joined"

    # Reopened on purpose: Join works again.
    await reopen.click()
    await reopen.wait_for(state="hidden", timeout=10000)
    await item.get_by_role("button", name=f"Join {name}").click()
    await _wait_js(lobby, "() => window.sfu.state === 'joined'", 15, "the owner to join again")
    assert await lobby.evaluate("() => window.sfu.podcast.role") == "host"
    for page in (host, lobby):
        await page.context.close()


async def test_podcast_declined_invite_equal_counts_and_long_host_name(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    name = "e2e-podcast-polish"
    account, invite = await create_room(
        server.base_url, name, "owner-polish@example.com", kind="podcast", display_name=LONG_NAME
    )
    speaker_code = await _invite(server.base_url, account, invite["room"], "speaker")
    host = await _open(
        browser, server, "host", "/", DESKTOP, account=account, join_button=f"Join {name}"
    )
    sam = await _open(browser, server, "sam", f"/join/{speaker_code}?name=Sam", DESKTOP)
    lena = await _open(browser, server, "lena", f"/join/{invite['code']}?name=Lena", DESKTOP)

    # Everyone counts the same people: the host, Sam on stage and Lena in the audience.
    count_js = "() => document.getElementById('participants-button').dataset.count"
    for page, who in ((host, "host"), (sam, "sam"), (lena, "lena")):
        await _wait_js(page, f"() => ({count_js})() === '3'", 10, f"{who}: 3 participants")
    await host.get_by_role("button", name="Participants").click()
    await lena.get_by_role("button", name="Participants").click()
    await _shot(host, screenshot_dir, "l09-host-participant-count.png")
    await _shot(lena, screenshot_dir, "l10-listener-participant-count.png")

    # The host's long name is shown whole on the host's own card (wrapped, not cut off).
    card = host.locator(".pod-card.me")
    await card.wait_for(timeout=15000)
    shown = await card.locator(".pod-name").evaluate(
        "(el) => ({ text: (el.querySelector('.pod-name-text') || el).textContent,"
        " title: el.title, clipped: el.scrollWidth > el.clientWidth + 1"
        " || el.scrollHeight > el.clientHeight + 1,"
        " inside: el.getBoundingClientRect().right <= el.closest('.pod-card')"
        ".getBoundingClientRect().right + 0.5 })"
    )
    assert shown == {
        "text": LONG_NAME,
        "title": f"{LONG_NAME} (you)",
        "clipped": False,
        "inside": True,
    }
    await _shot(host, screenshot_dir, "l11-host-long-name-card.png")

    # The host invites Lena; she declines; the host is told.
    await _wait_js(
        host,
        "() => window.sfu.podcast.audienceList.some((m) => m.name === 'Lena')",
        10,
        "Lena in the host's audience list",
    )
    await host.get_by_role("button", name="Invite Lena to speak").click()
    dialog = lena.get_by_role("dialog", name="Join the stage?")
    await dialog.wait_for(timeout=10000)
    await dialog.get_by_role("button", name="Decline").click()
    notice = host.locator(".pod-notice")
    await notice.get_by_text("Lena declined your invitation to speak.").wait_for(timeout=10000)
    await _shot(host, screenshot_dir, "l12-host-sees-declined-invite.png")
    assert await lena.evaluate("() => window.sfu.podcast.role") == "listener"
    for page in (lena, sam, host):
        await page.context.close()
