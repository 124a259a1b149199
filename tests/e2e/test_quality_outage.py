"""The connection-quality badge shows an outage when no media arrives, not "Good".

Alice and bob are in a call; bob's subscribe transport goes through the impairing UDP relay
(tests/e2e/relaypage.py). With the relay dropping everything both ways (loss 1.0) nothing of
alice's reaches bob: within ~4 s (the badge samples getStats every 2 s and calls a stream
stalled after 2 s without inbound bytes; the test counts samples, not seconds) bob's badge
says "No media" and its accessible name says how long nothing has arrived; alice's tile on
bob's page says the same. When the link comes back the badge leaves the outage for a measured
level ("Good" on an idle machine).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.conftest import create_invite
from tests.e2e.relaypage import open_through_relay
from tests.e2e.test_browser_call import (
    PARTICIPANT_NAMES_JS,
    SID_BY_NAME_JS,
    _open,
    _wait_js,
    _wait_media_flowing,
)
from tests.support.udprelay import RelaySet

if TYPE_CHECKING:
    from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

DESKTOP = {"width": 1280, "height": 720}
OUTAGE_WITHIN_SAMPLES = 3  # see the comment at the assertion
WAIT_BOUND_S = 30.0  # wall-clock bound of every wait (the page may be slowed by load)
STALL_S = 8.0
INTERVAL_S = 2.0  # static/js/quality.js INTERVAL_MS
LEVEL_JS = "() => document.querySelector('#quality').dataset.level"
MEASURED = {"good", "fair", "poor"}
BADGE_JS = """() => {
  const b = document.querySelector('#quality');
  const text = b.querySelector('.quality-label');
  return { level: b.dataset.level, text: text && text.textContent,
           label: b.getAttribute('aria-label') || '' };
}"""


async def _level_within(page: Any, level: str | set[str], timeout_s: float) -> float | None:
    """Seconds until bob's badge shows ``level`` (or one of them); None if it does not
    within ``timeout_s``."""
    levels = {level} if isinstance(level, str) else level
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if await page.evaluate(LEVEL_JS) in levels:
            return time.monotonic() - start
        await asyncio.sleep(0.1)
    return None


async def test_badge_shows_outage_when_no_media_arrives(
    browser: Any, server: ServerProcess
) -> None:
    relays = RelaySet(seed=3)
    try:
        code = await create_invite(server.base_url, "e2e-outage", "owner-outage@example.com")
        alice = await _open(browser, server, f"/join/{code}?name=alice", DESKTOP)
        bob = await open_through_relay(browser, server, f"/join/{code}?name=bob", DESKTOP, relays)
        for page, who in ((alice, "alice"), (bob, "bob")):
            await _wait_js(page, "() => window.sfu.state === 'joined'", 15, f"{who} to join")
        await _wait_js(
            bob, f"() => ({PARTICIPANT_NAMES_JS})().includes('alice')", 15, "bob to see alice"
        )
        alice_sid = await bob.evaluate(SID_BY_NAME_JS, "alice")
        await _wait_media_flowing(bob, "bob")
        # Bob's media crosses the relay: more than 100 datagrams within 10 s (bounded wait).
        deadline = time.monotonic() + 10
        while relays.stats()[1].sent <= 100 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        _, down = relays.stats()
        assert relays.relays and down.sent > 100, "bob's media does not cross the relay"
        # Measured and flowing (on an idle machine "good"; a loaded one may say "fair" or
        # "poor" from the round-trip time alone, which is not what this test is about).
        assert await _level_within(bob, MEASURED, WAIT_BOUND_S) is not None, await bob.evaluate(
            "() => window.sfu.qualityHistory"
        )

        # --- the link goes dead both ways: an outage within ~4 s, for as long as it lasts ---
        for link in (relays.uplink, relays.downlink):
            link.set(loss=1.0)
        dead_at = await bob.evaluate("() => Date.now()")
        took = await _level_within(bob, "outage", WAIT_BOUND_S)
        history = await bob.evaluate("() => window.sfu.qualityHistory")
        assert took is not None, f"no outage shown: {history[-4:]}"
        print(f"outage shown {took:.1f} s after the link died")
        # Every 2 s sample: the first after the link died may still see bytes that were on
        # their way (one getStats may be in flight across the death), the next one 2 s later
        # sees none. So the outage shows by the third sample at the latest (4 s at the 2 s
        # cadence; counted in samples because a loaded machine delays the page's timers).
        after = [q["level"] for q in history if q["at"] > dead_at]
        assert "outage" in after[:OUTAGE_WITHIN_SAMPLES], history[-6:]
        badge = bob.locator("#quality")
        assert (await badge.locator(".quality-label").text_content()) == "No media"
        label = await badge.get_attribute("aria-label") or ""
        assert label.startswith("Connection outage: nothing received for "), label
        assert (await bob.evaluate("() => window.sfu.quality.remote"))[alice_sid][
            "level"
        ] == "outage"
        # Alice's tile on bob's page: its quality indicator says so too.
        await _wait_js(
            bob,
            f"""() => {{
              const tile = document.querySelector('.tile[data-sid="{alice_sid}"]');
              const ind = tile && tile.querySelector('.ind-quality');
              return Boolean(ind && tile.dataset.quality === 'outage' && !ind.hidden
                && ind.getAttribute('aria-label') === 'No media arriving from this participant');
            }}""",
            5,
            "alice's tile on bob's page to show the outage",
        )
        # It stays an outage while the link is dead: never "Good" with 0 kbit/s.
        deadline = time.monotonic() + max(STALL_S - took, 2 * INTERVAL_S)
        while time.monotonic() < deadline:
            assert await bob.evaluate(LEVEL_JS) == "outage"
            await asyncio.sleep(0.25)
        stalled = await bob.evaluate("() => window.sfu.quality")
        assert stalled["recvKbps"] == 0 and stalled["stalledMs"] >= 2 * INTERVAL_S * 1000, stalled

        # --- the link heals: media flows again and the badge says so ---
        for link in (relays.uplink, relays.downlink):
            link.clear()
        await _wait_media_flowing(bob, "bob (after the outage)")
        back = await _level_within(bob, MEASURED, WAIT_BOUND_S)
        history = await bob.evaluate("() => window.sfu.qualityHistory")
        assert back is not None, f"badge did not leave the outage: {history[-5:]}"
        badge_now = await bob.evaluate(BADGE_JS)  # one read: level, text and label agree
        print(f"after the outage: {badge_now}")
        level = badge_now["level"]
        assert level in MEASURED, badge_now
        assert badge_now["text"] == {"good": "Good", "fair": "Fair", "poor": "Poor"}[level]
        assert badge_now["label"].startswith(f"Connection {level}: "), badge_now
    finally:
        relays.close()
