"""Roles in the conference client (the `client` and `podcast` branches together).

- A conference room's listener (an invite with role ``listener``: no ``canPublish``) never
  captures and has no publish RTCPeerConnection; the mic, camera and screen-share buttons are
  hidden, chat works. Promoted by the host (``set_role``), the same session captures camera and
  microphone and publishes; the screen-share button appears and works. Demoted while sharing,
  every capture stops (screen included), the publish PC is closed without an error line, and
  the host's stage goes away. Promoted again, the page publishes and shares on a new publish PC.
- A podcast room's listener uses the side panels: chat both ways, the participants list, the
  settings (no camera picker) and reactions; no camera or screen-share button.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.conftest import create_room
from tests.e2e.test_browser_call import _wait_js, _wait_media_flowing
from tests.e2e.test_podcast import _open

if TYPE_CHECKING:
    from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

DESKTOP = {"width": 1280, "height": 720}
PHONE = {"width": 390, "height": 844}

BUTTONS_JS = """
() => Object.fromEntries(['mic-button', 'cam-button', 'screen-button'].map(
  (id) => [id, !document.getElementById(id).hidden]))
"""

SET_ROLE_JS = """
([sid, role]) => window.sfu.session.request({ type: 'set_role', participant: sid, role })
  .then(() => true)
"""


async def _shot(page: Any, directory: Path, name: str) -> None:
    await asyncio.sleep(0.3)
    await page.screenshot(path=str(directory / name))


async def test_conference_listener_promoted_shares_then_demoted(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    account, invite = await create_room(
        server.base_url,
        "e2e-roles",
        "owner-roles@example.com",
        display_name="Hana",
        invite_role="listener",
    )
    assert invite["role"] == "listener"
    host = await _open(
        browser, server, "host", "/", DESKTOP, account=account, join_button="Join e2e-roles"
    )
    lena = await _open(browser, server, "lena", f"/join/{invite['code']}?name=Lena", DESKTOP)

    # A listener: no capture, no publish PC, no buttons to publish with; the grid shows.
    state = await lena.evaluate(
        "() => ({ kind: window.sfu.session.kind, role: window.sfu.session.role,"
        " pub: window.sfu.pub, audio: window.sfu.local.audio, captures: window.__captures,"
        " grid: document.getElementById('grid').hidden,"
        " roomKind: document.body.dataset.roomKind })"
    )
    assert state == {
        "kind": "conference",
        "role": "listener",
        "pub": None,
        "audio": None,
        "captures": 0,
        "grid": False,
        "roomKind": "conference",
    }
    assert await lena.evaluate(BUTTONS_JS) == {
        "mic-button": False,
        "cam-button": False,
        "screen-button": False,
    }
    assert await host.evaluate(BUTTONS_JS) == {
        "mic-button": True,
        "cam-button": True,
        "screen-button": True,
    }
    # Nobody is hidden in a conference room: the host sees her, and her chat.
    await _wait_js(
        host,
        "() => [...window.sfu.participants.values()].some((p) => p.name === 'Lena')",
        10,
        "the host to see Lena",
    )
    lena_sid = await lena.evaluate("() => window.sfu.me.sid")
    await lena.get_by_role("button", name="Chat").click()
    await lena.locator("#chat-input").fill("a listener can still talk here")
    await lena.keyboard.press("Enter")
    await _wait_js(
        host,
        "() => window.sfu.chat.messages.some((m) => m.text === 'a listener can still talk here')",
        10,
        "the host to get Lena's chat message",
    )
    await _shot(lena, screenshot_dir, "r01-conference-listener.png")

    # Promoted: the same session captures the camera and microphone and publishes.
    await lena.evaluate("() => { window.__ws0 = window.sfu.ws; }")
    assert await host.evaluate(SET_ROLE_JS, [lena_sid, "speaker"])
    await _wait_js(
        lena,
        "() => window.sfu.session.role === 'speaker' && window.sfu.pub !== null"
        " && window.sfu.local.audio && window.sfu.local.audio.sid"
        " && window.sfu.local.video && window.sfu.local.video.sid",
        15,
        "Lena to publish camera and microphone after the promotion",
    )
    assert await lena.evaluate("() => window.sfu.ws === window.__ws0 && window.__captures") == 1
    await _wait_js(
        lena,
        "() => !document.getElementById('screen-button').hidden"
        " && !document.getElementById('mic-button').hidden",
        5,
        "Lena's publish buttons to appear",
    )
    await _wait_media_flowing(host, "host receives Lena")

    # She shares her screen; the host sees it large.
    await lena.get_by_role("button", name="Share screen").click()
    await _wait_js(
        lena,
        "() => window.sfu.session.screen !== null && window.sfu.session.screen.sid !== null",
        15,
        "Lena's screen share to be published",
    )
    await _wait_js(
        host,
        f"() => Boolean(document.querySelector('#stage .tile.screen[data-sid=\"{lena_sid}\"]'))",
        15,
        "the host's stage to show Lena's screen",
    )
    await _shot(host, screenshot_dir, "r02-host-sees-promoted-share.png")

    # Demoted while sharing: every capture stops, the publish PC closes, no error line.
    await lena.evaluate(
        "() => { const s = window.sfu.session;"
        " window.__caps = [s.local.audio.track, s.local.video.track, s.screen.track]; }"
    )
    assert await host.evaluate(SET_ROLE_JS, [lena_sid, "listener"])
    await _wait_js(
        lena,
        "() => window.sfu.session.role === 'listener' && window.sfu.pub === null"
        " && window.sfu.local.audio === null && window.sfu.local.video === null"
        " && window.sfu.session.screen === null && !window.sfu.screenShare.active"
        " && window.__caps.every((t) => t.readyState === 'ended')",
        10,
        "Lena's page to stop publishing",
    )
    assert await lena.evaluate(BUTTONS_JS) == {
        "mic-button": False,
        "cam-button": False,
        "screen-button": False,
    }
    assert await lena.evaluate("() => window.sfu.lastError") is None
    assert not await lena.locator("#status").evaluate("(el) => el.classList.contains('error')")
    await _wait_js(
        host,
        f"() => {{ const p = window.sfu.participants.get('{lena_sid}');"
        " return Boolean(p && p.tracks.size === 0)"
        " && document.getElementById('stage').hidden; }",
        10,
        "Lena's tracks and screen to leave the host's page",
    )
    await _shot(lena, screenshot_dir, "r03-demoted-while-sharing.png")

    # Promoted again: a new publish PC, and the screen share works on it.
    assert await host.evaluate(SET_ROLE_JS, [lena_sid, "speaker"])
    await _wait_js(
        lena,
        "() => window.sfu.pub !== null && window.sfu.local.video && window.sfu.local.video.sid",
        15,
        "Lena to publish again",
    )
    assert await lena.evaluate("() => window.__captures") == 2
    await lena.get_by_role("button", name="Share screen").click()
    await _wait_js(
        lena,
        "() => window.sfu.session.screen !== null && window.sfu.session.screen.sid !== null",
        15,
        "Lena's second screen share to be published",
    )
    await _wait_js(
        host,
        f"() => Boolean(document.querySelector('#stage .tile.screen[data-sid=\"{lena_sid}\"]'))",
        15,
        "the host's stage to show Lena's screen again",
    )
    assert await lena.evaluate("() => window.sfu.lastError") is None


async def test_podcast_listener_uses_the_side_panels(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    account, invite = await create_room(
        server.base_url,
        "e2e-pod-panels",
        "owner-pod-panels@example.com",
        kind="podcast",
        display_name="Hana",
    )
    host = await _open(
        browser, server, "host", "/", DESKTOP, account=account, join_button="Join e2e-pod-panels"
    )
    theo = await _open(browser, server, "theo", f"/join/{invite['code']}?name=Theo", PHONE)
    assert await theo.evaluate("() => window.sfu.podcast.role") == "listener"
    assert await theo.evaluate(BUTTONS_JS) == {
        "mic-button": False,
        "cam-button": False,
        "screen-button": False,
    }
    # The host: the podcast mic, no camera or screen share, no grid.
    assert await host.evaluate(BUTTONS_JS) == {
        "mic-button": False,
        "cam-button": False,
        "screen-button": False,
    }
    assert await host.get_by_role("button", name="Mute mic").is_visible()
    assert await host.locator("#grid").is_hidden()
    assert await host.locator("#podcast-section").is_visible()

    # Chat both ways.
    await theo.get_by_role("button", name="Chat").click()
    await theo.locator("#chat-input").fill("greetings from the audience <b>!</b>")
    await theo.keyboard.press("Enter")
    await _wait_js(
        host,
        "() => window.sfu.chat.unread === 1 && window.sfu.chat.messages.some("
        "(m) => m.text === 'greetings from the audience <b>!</b>' && m.name === 'Theo')",
        10,
        "the host to get Theo's message (unread)",
    )
    await host.get_by_role("button", name="Chat, 1 unread").click()
    await host.locator("#chat-input").fill("welcome, Theo")
    await host.keyboard.press("Enter")
    await _wait_js(
        theo,
        "() => window.sfu.chat.messages.some((m) => m.text === 'welcome, Theo')",
        10,
        "Theo to get the host's reply",
    )
    assert await host.locator("#chat-log b").count() == 0
    await _shot(theo, screenshot_dir, "r04-podcast-listener-chat-phone.png")
    await _shot(host, screenshot_dir, "r05-podcast-host-chat.png")

    # Participants: the listener sees himself and the stage.
    await theo.keyboard.press("Escape")
    await theo.get_by_role("button", name="Participants, 2 in the room").click()
    names = await theo.locator("#people-list .person-name").all_text_contents()
    assert sorted(names) == ["Hana", "Theo"]
    await theo.keyboard.press("Escape")

    # Settings: a microphone picker, no camera in a podcast room.
    await theo.get_by_role("button", name="Settings").click()
    assert await theo.locator("#mic-select").is_visible()
    assert await theo.locator("#cam-select").is_hidden()
    await theo.keyboard.press("Escape")

    # Reactions from the audience reach the host.
    await theo.get_by_role("button", name="React").click()
    await theo.get_by_role("button", name="React: Applause").click()
    theo_sid = await theo.evaluate("() => window.sfu.me.sid")
    await _wait_js(
        host,
        f"() => window.sfu.reactions.some((r) => r.participant === '{theo_sid}')",
        10,
        "the host to get Theo's reaction",
    )
    assert await theo.evaluate("() => window.sfu.lastError") is None
