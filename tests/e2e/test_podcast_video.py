"""Stage video in a podcast room, in headless Chromium pages.

The host (the room's owner, joining from the lobby) and a listener (the invite link). The room
starts audio only: the listener receives no video track and the host has no camera button.
The host presses "Show video to audience" (both pages follow `stage_settings`) and starts her
camera; the listener's stage card shows the host's video playing instead of the avatar, and a
listener who joins now (phone width) sees it at once (`joined.stage_video`). The host hides
the video again: her camera stops and is unpublished, and the listeners' video goes away (the
card falls back to the avatar, no video track is received). Shown again, the camera restarts
on the same publish m-line.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.test_browser_call import _wait_js
from tests.e2e.test_podcast import DESKTOP, PHONE, _open, _podcast_room, _shot

if TYPE_CHECKING:
    from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

# The kinds of the tracks the subscribe PC receives now (live transceivers of the last offer).
RECEIVED_KINDS_JS = """
() => {
  const s = window.sfu.session;
  const kinds = [];
  for (const tr of s.sub.getTransceivers()) {
    const info = tr.mid ? s.subMids.get(tr.mid) : null;
    if (!info || !['recvonly', 'sendrecv'].includes(tr.currentDirection)) continue;
    kinds.push(tr.receiver.track.kind);
  }
  return kinds.sort();
}
"""

# The stage card of `sid`: whether its <video> or its avatar shows, and the video's size.
CARD_JS = """
(sid) => {
  const card = document.querySelector(`.pod-card[data-sid="${sid}"]`);
  if (!card) return null;
  const video = card.querySelector('video');
  return {
    video: !video.hidden,
    avatar: !card.querySelector('.pod-avatar').hidden,
    width: video.videoWidth,
    playing: !video.paused && video.readyState >= 2,
    tracks: video.srcObject ? video.srcObject.getVideoTracks().length : 0,
  };
}
"""

SHOW_VIDEO = "Show video to audience"


async def _card(page: Any, sid: str) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate(CARD_JS, sid)
    return result


async def test_stage_video_shown_to_the_audience_and_hidden_again(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    account, code = await _podcast_room(server.base_url, "e2e-stage-video")
    host = await _open(
        browser, server, "host", "/", DESKTOP, account=account, join_button="Join e2e-stage-video"
    )
    ana = await _open(browser, server, "ana", f"/join/{code}?name=Ana", DESKTOP)
    host_sid = await host.evaluate("() => window.sfu.me.sid")

    # Audio only by default: the host publishes her microphone alone, Ana receives only it.
    await _wait_js(
        host, "() => window.sfu.local.audio && window.sfu.local.audio.sid", 15, "host mic"
    )
    await _wait_js(
        ana,
        "() => window.sfu.session.subOffers > 0"
        " && window.sfu.session.sub.getReceivers().some((r) => r.track.kind === 'audio')",
        15,
        "Ana to receive the host's audio",
    )
    assert await ana.evaluate(RECEIVED_KINDS_JS) == ["audio"]
    for page in (host, ana):
        state = await page.evaluate("() => window.sfu.podcast")
        assert state["stageVideo"] is False and state["camera"] is False
    toggle = host.get_by_role("button", name=SHOW_VIDEO)
    assert await toggle.get_attribute("aria-pressed") == "false"
    assert await host.get_by_role("button", name="Start camera").count() == 0
    assert await ana.get_by_role("button", name=SHOW_VIDEO).count() == 0
    assert await ana.get_by_role("button", name="Start camera").count() == 0
    card = await _card(ana, host_sid)
    assert card["avatar"] and not card["video"], card

    # The host shows the stage's video: both pages follow; she starts her camera.
    await toggle.click()
    for page, who in ((host, "host"), (ana, "ana")):
        await _wait_js(page, "() => window.sfu.podcast.stageVideo === true", 10, f"{who}: on")
    assert await toggle.get_attribute("aria-pressed") == "true"
    assert await ana.get_by_role("button", name="Start camera").count() == 0  # a listener
    await host.get_by_role("button", name="Start camera").click()
    await _wait_js(
        host,
        "() => window.sfu.local.video && window.sfu.local.video.sid"
        " && window.sfu.local.video.source === 'camera'",
        15,
        "the host to publish her camera",
    )
    await host.get_by_role("button", name="Stop camera").wait_for(timeout=5000)
    await _wait_js(
        host,
        f"() => document.querySelector('.pod-card[data-sid=\"{host_sid}\"] video').videoWidth > 0",
        10,
        "the host's own card to show her camera",
    )

    # Ana's card of the host plays the video (decoded frames), the avatar is gone.
    await _wait_js(
        ana,
        f"""() => {{
          const v = document.querySelector('.pod-card[data-sid="{host_sid}"] video');
          return v && !v.hidden && v.videoWidth > 0 && !v.paused;
        }}""",
        20,
        "Ana's stage card to play the host's video",
    )
    assert await ana.evaluate(RECEIVED_KINDS_JS) == ["audio", "video"]
    card = await _card(ana, host_sid)
    assert card["video"] and not card["avatar"] and card["width"] > 0 and card["playing"], card
    stage = (await ana.evaluate("() => window.sfu.podcast"))["stage"]
    assert [(m["name"], m["video"]) for m in stage] == [("Hana", True)]
    await _shot(host, screenshot_dir, "pv01-host-stage-video.png")
    await _shot(ana, screenshot_dir, "pv02-listener-stage-video.png")
    await ana.set_viewport_size(PHONE)
    await _shot(ana, screenshot_dir, "pv03-listener-stage-video-phone.png")
    await host.set_viewport_size(PHONE)
    await _shot(host, screenshot_dir, "pv04-host-stage-video-phone.png")
    await host.set_viewport_size(DESKTOP)

    # A listener who joins now learns the setting from `joined` and sees the video at once.
    bo = await _open(browser, server, "bo", f"/join/{code}?name=Bo", PHONE)
    assert (await bo.evaluate("() => window.sfu.podcast"))["stageVideo"] is True
    await _wait_js(
        bo,
        f"() => document.querySelector('.pod-card[data-sid=\"{host_sid}\"] video').videoWidth > 0",
        20,
        "Bo's stage card to play the host's video",
    )

    # The host hides the video again: her camera stops and is unpublished; Ana's video goes.
    await host.evaluate("() => { window.__cam = window.sfu.local.video.track; }")
    await toggle.click()
    for page, who in ((host, "host"), (ana, "ana"), (bo, "bo")):
        await _wait_js(page, "() => window.sfu.podcast.stageVideo === false", 10, f"{who}: off")
    assert await toggle.get_attribute("aria-pressed") == "false"
    await _wait_js(
        host,
        "() => window.sfu.local.video === null && window.__cam.readyState === 'ended'",
        10,
        "the host's camera to stop",
    )
    assert await host.get_by_role("button", name="Stop camera").count() == 0
    await _wait_js(
        ana,
        f"""() => {{
          const card = document.querySelector('.pod-card[data-sid="{host_sid}"]');
          return card.querySelector('video').hidden && !card.querySelector('.pod-avatar').hidden;
        }}""",
        15,
        "Ana's card to fall back to the avatar",
    )
    await _wait_js(
        ana,
        f"() => JSON.stringify(({RECEIVED_KINDS_JS})()) === '[\"audio\"]'",
        15,
        "Ana to receive audio only again",
    )
    card = await _card(ana, host_sid)
    assert card["avatar"] and not card["video"] and card["tracks"] == 0, card
    await _shot(ana, screenshot_dir, "pv05-listener-video-off-phone.png")

    # Shown again, the host restarts her camera on the same m-line; Ana sees it once more.
    await toggle.click()
    await _wait_js(ana, "() => window.sfu.podcast.stageVideo === true", 10, "ana: on again")
    await host.get_by_role("button", name="Start camera").click()
    await _wait_js(
        ana,
        f"""() => {{
          const v = document.querySelector('.pod-card[data-sid="{host_sid}"] video');
          return v && !v.hidden && v.videoWidth > 0;
        }}""",
        20,
        "Ana to see the host's camera again",
    )
    assert await host.evaluate("() => window.sfu.pub.getTransceivers().length") == 2
