"""The connection-quality badge shows an outage when no media arrives, not "Good".

Alice and bob are in a call; bob's subscribe transport goes through the impairing UDP relay
(tests/e2e/relaypage.py). With the relay dropping everything both ways (loss 1.0) nothing of
alice's reaches bob: within ~4 s (the badge samples getStats every 2 s and calls a stream
stalled after 2 s without inbound bytes) bob's badge says "No media" and its accessible name
says how long nothing has arrived; alice's tile on bob's page says the same. When the link
comes back the badge returns to "Good".
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
OUTAGE_WITHIN_S = 4.5  # a 2 s stall, seen by the next 2 s sample (and a little slack)
STALL_S = 8.0
LEVEL_JS = "() => document.querySelector('#quality').dataset.level"


async def _level_within(page: Any, level: str, timeout_s: float) -> float | None:
    """Seconds until bob's badge shows ``level`` (None if it does not within ``timeout_s``)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if await page.evaluate(LEVEL_JS) == level:
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
        _, down = relays.stats()
        assert relays.relays and down.sent > 100, "bob's media does not cross the relay"
        assert await _level_within(bob, "good", 15) is not None, await bob.evaluate(
            "() => window.sfu.qualityHistory"
        )

        # --- the link goes dead both ways: an outage within ~4 s, for as long as it lasts ---
        for link in (relays.uplink, relays.downlink):
            link.set(loss=1.0)
        took = await _level_within(bob, "outage", OUTAGE_WITHIN_S + 2)
        history = await bob.evaluate("() => window.sfu.qualityHistory")
        assert took is not None, f"no outage shown: {history[-4:]}"
        assert took <= OUTAGE_WITHIN_S, f"outage shown after {took:.1f} s"
        badge = bob.locator("#quality")
        assert (await badge.locator(".quality-label").text_content()) == "No media"
        label = await badge.get_attribute("aria-label") or ""
        assert label.startswith("Connection outage: nothing received for "), label
        assert (await bob.evaluate("() => window.sfu.quality.remote"))[alice_sid][
            "level"
        ] == "outage"
        tile = bob.locator(f'.tile[data-sid="{alice_sid}"]')
        assert await tile.get_attribute("data-quality") == "outage"
        assert (
            await tile.locator(".ind-quality").get_attribute("aria-label")
            == "No media arriving from this participant"
        )
        # It stays an outage while the link is dead: never "Good" with 0 kbit/s.
        deadline = time.monotonic() + STALL_S - took
        while time.monotonic() < deadline:
            assert await bob.evaluate(LEVEL_JS) == "outage"
            await asyncio.sleep(0.25)
        stalled = await bob.evaluate("() => window.sfu.quality")
        assert stalled["recvKbps"] == 0 and stalled["stalledMs"] >= 4000, stalled

        # --- the link heals: media flows again and the badge says so ---
        for link in (relays.uplink, relays.downlink):
            link.clear()
        await _wait_media_flowing(bob, "bob (after the outage)")
        back = await _level_within(bob, "good", 15)
        history = await bob.evaluate("() => window.sfu.qualityHistory")
        assert back is not None, f"badge did not return to good: {history[-5:]}"
        assert await badge.locator(".quality-label").text_content() == "Good"
        assert (await badge.get_attribute("aria-label") or "").startswith("Connection good: ")
    finally:
        relays.close()
