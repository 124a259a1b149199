"""A podcast room in three headless Chromium pages (issues 5 and 6).

The host (the room's owner, joining from the lobby; desktop) and two listeners who opened the
room's invite link (Lena, desktop; Theo, phone width). Listeners never capture or get a publish
RTCPeerConnection.
Lena raises her hand, the host promotes her from the hands queue, and Lena's page publishes its
fake microphone (a 440 Hz tone) on the same WebSocket session, muted: everyone sees her muted
until she unmutes (issue 16); then Theo's page receives and decodes it (inbound-rtp energy
grows). The host mutes her (a notice, the mic button muted, she unmutes),
demotes her (her track leaves Theo's page, her capture stops), invites her back (the invitation
dialog) and she publishes again on a new publish PC. The audience count follows along, and
ending the room shows everyone the "room ended" screen.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.conftest import create_room
from tests.e2e.test_browser_call import _wait_js

if TYPE_CHECKING:
    from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
AUDIO_TIMEOUT_S = 20.0

# Count getUserMedia calls: a listener must never capture.
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

# Decoded audio received from one participant, summed over its live subscribe transceivers.
AUDIO_FROM_JS = """
async (sid) => {
  const s = window.sfu.session;
  const out = { tracks: 0, packets: 0, energy: 0, level: 0 };
  if (!s || !s.sub) return out;
  for (const tr of s.sub.getTransceivers()) {
    const info = tr.mid ? s.subMids.get(tr.mid) : null;
    if (!info || info.participant !== sid || info.kind !== 'audio') continue;
    if (!['recvonly', 'sendrecv'].includes(tr.currentDirection)) continue;
    out.tracks += 1;
    const stats = await tr.receiver.getStats();
    stats.forEach((r) => {
      if (r.type !== 'inbound-rtp') return;
      out.packets += r.packetsReceived || 0;
      out.energy += r.totalAudioEnergy || 0;
      out.level = Math.max(out.level, r.audioLevel || 0);
    });
  }
  return out;
}
"""

STAGE_ROLE_JS = """
(name) => {
  const m = window.sfu.podcast.stage.find((x) => x.name === name);
  return m ? m.role : null;
}
"""


async def _podcast_room(base_url: str, name: str) -> tuple[dict[str, Any], str]:
    """Register an owner (Hana), create a podcast room; returns (the owner's account session,
    an invite code). The invite of a podcast room makes listeners; the owner is the host."""
    session, invite = await create_room(
        base_url, name, f"owner-{name}@example.com", kind="podcast", display_name="Hana"
    )
    assert invite["role"] == "listener"
    return session, str(invite["code"])


async def _open(
    browser: Any,
    server: ServerProcess,
    who: str,
    path: str,
    viewport: Any,
    account: dict[str, Any] | None = None,
    join_button: str | None = None,
) -> Any:
    """A page that opens ``path`` and joins: by itself (an invite link), or signed in with
    ``account`` by clicking ``join_button`` in the lobby."""
    context = await browser.new_context(viewport=viewport)
    page = await context.new_page()
    await page.add_init_script(COUNT_CAPTURE_JS)
    if account is not None:
        stored = json.dumps(json.dumps(account))
        await page.add_init_script(f"sessionStorage.setItem('sfu.account', {stored});")
    page.on("console", lambda msg: server.page_logs.append(f"[{who}] {msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: server.page_logs.append(f"[{who}] pageerror: {err}"))
    await page.goto(f"{server.base_url}{path}")
    if join_button is not None:
        await page.get_by_role("button", name=join_button).click()
    await _wait_js(page, "() => window.sfu.state === 'joined'", 15, f"{who} to join")
    return page


async def _podcast(page: Any) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate("() => window.sfu.podcast")
    return result


async def _wait_audio(page: Any, sid: str, who: str) -> dict[str, Any]:
    """Poll until audio from ``sid`` is received and decoded as sound: packets and energy grow
    across one second and the level is well above silence (the fake microphone's tone comes
    out at about 0.03 after Chromium's noise suppression; silence is 0)."""
    deadline = time.monotonic() + AUDIO_TIMEOUT_S
    before = await page.evaluate(AUDIO_FROM_JS, sid)
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        after = await page.evaluate(AUDIO_FROM_JS, sid)
        if (
            after["tracks"] == 1
            and after["packets"] > before["packets"] + 10
            and after["energy"] > before["energy"]
            and after["level"] > 0.01
        ):
            return after
        before = after
    pytest.fail(f"{who}: no audible audio from {sid} within {AUDIO_TIMEOUT_S:.0f} s: {before}")


async def _until_muted_on_stage(speaker: Any, others: list[Any], name: str, mic: str) -> None:
    """Wait until ``speaker``'s own microphone is ``mic`` ('muted' or 'on': its track
    disabled or not, its mic button saying so) and every page of ``others`` shows the
    ``name`` stage card with that microphone state (from the server's mute state)."""
    muted = "true" if mic == "muted" else "false"
    await _wait_js(
        speaker,
        f"() => window.sfu.local.audio && window.sfu.local.audio.sid"
        f" && window.sfu.local.audio.muted === {muted}"
        f" && window.sfu.local.audio.track.enabled === !{muted}",
        15,
        f"{name}'s microphone to be {mic}",
    )
    button = "Unmute mic" if mic == "muted" else "Mute mic"
    await speaker.get_by_role("button", name=button).wait_for(timeout=5000)
    for page in others:
        await _wait_js(
            page,
            f"() => window.sfu.podcast.stage.some((m) => m.name === '{name}' && m.mic === '{mic}')",
            10,
            f"the others to see {name}'s microphone {mic}",
        )


async def _shot(page: Any, directory: Path, name: str) -> None:
    await asyncio.sleep(0.3)  # let the last render settle
    await page.screenshot(path=str(directory / name))


async def test_podcast_raise_hand_promote_hear_demote_end(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    account, code = await _podcast_room(server.base_url, "e2e-podcast")
    host = await _open(
        browser, server, "host", "/", DESKTOP, account=account, join_button="Join e2e-podcast"
    )
    lena = await _open(browser, server, "lena", f"/join/{code}?name=Lena", DESKTOP)
    theo = await _open(browser, server, "theo", f"/join/{code}?name=Theo", PHONE)

    # Roles from the tokens; the host publishes audio only, listeners nothing at all.
    assert (await _podcast(host))["role"] == "host"
    for page, who in ((lena, "lena"), (theo, "theo")):
        state = await page.evaluate(
            "() => ({ kind: window.sfu.podcast.kind, role: window.sfu.podcast.role,"
            " pub: window.sfu.pub, audio: window.sfu.local.audio, captures: window.__captures,"
            " grid: document.getElementById('grid').hidden })"
        )
        assert state == {
            "kind": "podcast",
            "role": "listener",
            "pub": None,
            "audio": None,
            "captures": 0,
            "grid": True,
        }, (who, state)
    await _wait_js(
        host, "() => window.sfu.local.audio && window.sfu.local.audio.sid", 15, "host mic"
    )
    assert await host.evaluate("() => window.sfu.local.video") is None
    host_sid = await host.evaluate("() => window.sfu.me.sid")
    lena_sid = await lena.evaluate("() => window.sfu.me.sid")

    # Everyone sees the host on stage and the audience of two; the host hears nobody else.
    for page, who in ((host, "host"), (lena, "lena"), (theo, "theo")):
        await _wait_js(page, "() => window.sfu.podcast.audience === 2", 10, f"{who}: 2 listeners")
        assert await page.locator("#pod-audience-count").text_content() == "2 listeners"
    assert await theo.evaluate(STAGE_ROLE_JS, "Hana") == "host"
    await _wait_js(host, "() => window.sfu.podcast.audienceList.length === 2", 10, "audience list")
    assert await host.evaluate("() => window.sfu.participants.size") == 0  # listeners are hidden
    await _wait_audio(theo, host_sid, "theo hears the host")

    # Lena raises her hand; only the host's page shows the queue.
    await _shot(lena, screenshot_dir, "p01-listener-raise-hand.png")
    await lena.get_by_role("button", name="Raise hand").click()
    await lena.get_by_role("button", name="Lower hand").wait_for(timeout=5000)
    await _wait_js(
        host,
        "() => window.sfu.podcast.hands.map((m) => m.name).join() === 'Lena'",
        10,
        "the host's page to show Lena's raised hand",
    )
    assert (await _podcast(theo))["hands"] == []
    await _shot(host, screenshot_dir, "p02-host-hands-queue.png")
    await _shot(lena, screenshot_dir, "p03-listener-hand-raised.png")

    # The host promotes her: Lena publishes her microphone on the same session.
    ws_before = await lena.evaluate("() => { window.__ws0 = window.sfu.ws; return true; }")
    assert ws_before
    await host.get_by_role("button", name="Promote Lena to speaker").click()
    await _wait_js(
        lena,
        "() => window.sfu.podcast.role === 'speaker' && window.sfu.pub !== null"
        " && window.sfu.local.audio && window.sfu.local.audio.sid",
        15,
        "Lena to publish after the promotion",
    )
    same = await lena.evaluate(
        "() => ({ ws: window.sfu.ws === window.__ws0, open: window.sfu.ws.readyState === 1,"
        " sid: window.sfu.me.sid, captures: window.__captures, video: window.sfu.local.video })"
    )
    assert same == {"ws": True, "open": True, "sid": lena_sid, "captures": 1, "video": None}
    # On stage muted (issue 16): her microphone is published muted, and the others see it
    # muted, until she unmutes when she is ready.
    await _until_muted_on_stage(lena, [host, theo], "Lena", "muted")
    notice = await lena.locator(".pod-notice").text_content()
    assert notice is not None and "muted" in notice and "Unmute" in notice
    await _shot(lena, screenshot_dir, "p05b-promoted-starts-muted.png")
    await _shot(theo, screenshot_dir, "p05c-listener-sees-new-speaker-muted.png")
    await lena.get_by_role("button", name="Unmute mic").click()
    await _until_muted_on_stage(lena, [host, theo], "Lena", "on")
    heard = await _wait_audio(theo, lena_sid, "theo hears Lena")
    assert heard["tracks"] == 1
    await _wait_js(
        theo,
        f"() => window.sfu.heardSpeaking.has('{lena_sid}')",
        15,
        "Theo's page to see Lena speaking (active_speakers)",
    )
    assert await theo.evaluate(STAGE_ROLE_JS, "Lena") == "speaker"
    for page, who in ((host, "host"), (theo, "theo")):
        await _wait_js(page, "() => window.sfu.podcast.audience === 1", 10, f"{who}: 1 listener")
    assert (await _podcast(host))["hands"] == []
    await _shot(host, screenshot_dir, "p04-host-with-speaker.png")
    await host.set_viewport_size(PHONE)
    await _shot(host, screenshot_dir, "p04b-host-phone.png")
    await host.set_viewport_size(DESKTOP)
    await _shot(theo, screenshot_dir, "p05-listener-phone.png")
    await _shot(lena, screenshot_dir, "p06-speaker.png")

    # The host mutes her: a notice on her page, her mic button muted; she unmutes herself.
    await host.get_by_role("button", name="Mute Lena").click()
    await lena.get_by_role("button", name="Unmute mic").wait_for(timeout=10000)
    notice = await lena.locator(".pod-notice").text_content()
    assert notice is not None and "A moderator muted you" in notice
    await _wait_js(
        theo,
        "() => window.sfu.podcast.stage.some((m) => m.name === 'Lena' && m.mic === 'muted')",
        10,
        "Theo's page to show Lena muted",
    )
    await _shot(lena, screenshot_dir, "p07-speaker-muted-by-moderator.png")
    await lena.get_by_role("button", name="Unmute mic").click()
    await _wait_js(
        theo,
        "() => window.sfu.podcast.stage.some((m) => m.name === 'Lena' && m.mic === 'on')",
        10,
        "Theo's page to show Lena unmuted",
    )

    # The host demotes her from her card's menu, by keyboard: her track leaves Theo's page
    # and her capture stops.
    await lena.evaluate("() => { window.__mic0 = window.sfu.local.audio.track; }")
    focused_label = "() => document.activeElement.getAttribute('aria-label')"
    manage = host.get_by_role("button", name="Manage Lena")
    await manage.focus()
    await host.keyboard.press("Enter")
    assert await host.evaluate(focused_label) == "Make listener: Lena"
    await host.keyboard.press("Escape")  # closes the menu, back on its button
    assert await manage.get_attribute("aria-expanded") == "false"
    assert await host.evaluate(focused_label) == "Manage Lena"
    await host.keyboard.press("Enter")
    await _shot(host, screenshot_dir, "p08-host-manage-menu.png")
    await host.keyboard.press("Enter")
    await _wait_js(
        theo,
        f"() => !window.sfu.participants.has('{lena_sid}')"
        " && !window.sfu.podcast.stage.some((m) => m.name === 'Lena')",
        10,
        "Lena to leave the stage on Theo's page",
    )
    gone = await theo.evaluate(AUDIO_FROM_JS, lena_sid)
    assert gone["tracks"] == 0, gone
    await _wait_js(
        lena,
        "() => window.sfu.podcast.role === 'listener' && window.sfu.pub === null"
        " && window.sfu.local.audio === null && window.__mic0.readyState === 'ended'",
        10,
        "Lena's page to stop publishing",
    )
    for page, who in ((host, "host"), (theo, "theo"), (lena, "lena")):
        await _wait_js(page, "() => window.sfu.podcast.audience === 2", 10, f"{who}: 2 again")
    assert await lena.evaluate("() => window.sfu.ws === window.__ws0")

    # The host invites her back from the audience list; she accepts in the dialog and
    # publishes again, on a new publish PC.
    await _wait_js(
        host,
        "() => window.sfu.podcast.audienceList.some((m) => m.name === 'Lena')",
        10,
        "Lena in the host's audience list",
    )
    await host.get_by_role("button", name="Invite Lena to speak").click()
    dialog = lena.get_by_role("dialog", name="Join the stage?")
    await dialog.wait_for(timeout=10000)
    assert await lena.evaluate("() => document.activeElement.textContent") == "Accept"
    await _shot(lena, screenshot_dir, "p09-invite-dialog.png")
    await dialog.get_by_role("button", name="Accept").click()
    await _wait_js(
        lena,
        "() => window.sfu.podcast.role === 'speaker' && window.sfu.local.audio"
        " && window.sfu.local.audio.sid",
        15,
        "Lena to publish again",
    )
    assert await lena.evaluate("() => window.__captures") == 2
    await _until_muted_on_stage(lena, [host, theo], "Lena", "muted")  # accepted: muted too
    await lena.get_by_role("button", name="Unmute mic").click()
    await _wait_audio(theo, lena_sid, "theo hears Lena again")

    # Lena leaves the stage herself, then the host ends the room (after confirming).
    await lena.get_by_role("button", name="Leave stage").click()
    await _wait_js(lena, "() => window.sfu.pub === null", 10, "Lena to step down")
    await host.get_by_role("button", name="End room").click()
    confirm = host.get_by_role("dialog", name="End the room for everyone?")
    await confirm.wait_for(timeout=5000)
    assert await host.evaluate("() => document.activeElement.textContent") == "Cancel"
    await _shot(host, screenshot_dir, "p10-end-room-confirm.png")
    await confirm.get_by_role("button", name="End room").click()
    for page, who in ((host, "host"), (lena, "lena"), (theo, "theo")):
        await _wait_js(page, "() => window.sfu.state === 'ended'", 10, f"{who}: room ended")
        await page.locator("#ended-section").wait_for(state="visible", timeout=5000)
    assert await theo.locator("#pod-ended-title").text_content() == "The host ended the room"
    assert await host.locator("#pod-ended-title").text_content() == "You ended the room"
    assert await theo.locator("#call-section").is_hidden()
    await _shot(theo, screenshot_dir, "p11-room-ended-phone.png")
    await _shot(host, screenshot_dir, "p12-room-ended-host.png")


async def test_removed_listener_is_told_and_cannot_come_back(
    browser: Any, server: ServerProcess
) -> None:
    account, code = await _podcast_room(server.base_url, "e2e-removal")
    host = await _open(
        browser, server, "host", "/", DESKTOP, account=account, join_button="Join e2e-removal"
    )
    troll = await _open(browser, server, "troll", f"/join/{code}?name=Troll", DESKTOP)
    await _wait_js(host, "() => window.sfu.podcast.audience === 1", 10, "host: 1 listener")
    # A listener draws only once the host lets listeners share (the stage bar's toggle).
    stroke_js = (
        "(id) => window.sfu.session.request({ type: 'board_stroke',"
        " stroke: { id, points: [[1, 1], [2, 2]] } }).then(() => 'ok', (e) => e.code)"
    )
    assert await troll.evaluate(stroke_js, "s1") == "forbidden"
    await host.get_by_role("button", name="Let listeners draw and share files").click()
    await _wait_js(troll, "() => window.sfu.session.listenerSharing", 10, "troll: sharing on")
    assert await troll.evaluate(stroke_js, "s2") == "ok"
    # The host removes Troll from the audience list and revokes the link in the same step.
    await _wait_js(host, "() => window.sfu.podcast.audienceList.length === 1", 10, "audience")
    await host.get_by_role("button", name="Remove Troll from the room").click()
    await host.get_by_label("Also revoke the invite link they joined with").check()
    await host.get_by_role("button", name="Remove", exact=True).click()
    # The removed page says so (not "Disconnected from the server (code 1000)").
    await troll.get_by_text("You were removed from this room").first.wait_for(timeout=10000)
    assert "code 1000" not in (await troll.locator("body").inner_text())
    # The link was revoked: opening it again (in the same browser, or a fresh profile) shows
    # the used-up page in words (HTTP 410), with no client to join from.
    resp = await troll.goto(f"{server.base_url}/join/{code}?name=Troll")
    assert resp.status == 410
    await troll.get_by_text("This invite link has been used up").first.wait_for(timeout=10000)
    fresh = await (await browser.new_context(viewport=DESKTOP)).new_page()
    resp = await fresh.goto(f"{server.base_url}/join/{code}?name=Other")
    assert resp.status == 410
    await fresh.get_by_text("This invite link has been used up").first.wait_for(timeout=10000)
    await fresh.context.close()
    await troll.context.close()
    await host.context.close()
