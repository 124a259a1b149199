"""Chromium and ``sfu serve --workers 2`` (issue 12): the media worker holding a page dies.

The room spreads at once (``SFU_WORKER_ROOM_SPREAD_AT=1``): alice lands on worker 0, bob on
worker 1 (``SFU_RTC_PORT`` + 1, so the test finds bob's worker by its UDP port). ``kill -9``
of bob's worker: the server sends bob the typed ``reconnect`` event, his page joins again at
once (no ``resume`` first) and decodes alice's video again (alice's simulcast video crosses
the pipe).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.test_browser_call import INBOUND_JS, _join_pair, _wait_media_flowing
from tests.integration.test_rtc_port import udp_ports_of
from tests.integration.test_workers_media import _descendants
from tests.support.udp import free_udp_port

if TYPE_CHECKING:
    from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

RECOVERY_S = 10.0
# The type of every message the page sends from now on (every socket: the prototype's send).
RECORD_SENT_JS = """() => {
  window.__sent = [];
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    try { window.__sent.push(JSON.parse(data).type); } catch { /* not JSON */ }
    return send.call(this, data);
  };
}"""
REJOINING_JS = "() => window.sfu.session === window.__before || window.sfu.state !== 'joined'"


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    port = free_udp_port()
    while port >= 65535:  # bounded by the range: port + 1 must exist
        port = free_udp_port()
    return {"SFU_WORKERS": "2", "SFU_WORKER_ROOM_SPREAD_AT": "1", "SFU_RTC_PORT": str(port)}


async def test_viewer_page_rejoins_when_its_worker_dies(
    browser: Any, server: ServerProcess, server_env: dict[str, str]
) -> None:
    port = int(server_env["SFU_RTC_PORT"])
    _alice, bob, _alice_sid, _bob_sid = await _join_pair(browser, server, "e2e-worker-lost")
    await _wait_media_flowing(bob, "bob")
    sdp = await bob.evaluate("() => window.sfu.sub.remoteDescription.sdp")
    assert {int(p) for p in re.findall(r"^a=candidate:\S+ \d+ udp \d+ \S+ (\d+) ", sdp, re.M)} == {
        port + 1
    }, "bob is on worker 1"
    workers = [
        pid for pid in _descendants(server.process.pid) if port + 1 in udp_ports_of_safe(pid)
    ]
    assert len(workers) == 1
    await bob.evaluate("() => { window.__before = window.sfu.session; }")
    await bob.evaluate(RECORD_SENT_JS)
    os.kill(workers[0], signal.SIGKILL)
    killed_at = time.monotonic()
    before: dict[str, Any] | None = None
    recovered = False
    while time.monotonic() - killed_at < RECOVERY_S:
        await asyncio.sleep(0.5)
        if await bob.evaluate(
            "() => window.sfu === window.__before || window.sfu.state !== 'joined'"
        ):
            continue  # not rejoined yet
        after = await bob.evaluate(INBOUND_JS)
        if before is not None and after["video"] > before["video"] > 0:
            recovered = True
            break
        before = after
    events = await bob.evaluate("() => (window.__before.events || []).map((e) => e.type)")
    assert "reconnect" in events, "the server told the page to reconnect"
    sent = await bob.evaluate("() => window.__sent")
    assert "join" in sent and "resume" not in sent, f"joined again at once, no resume: {sent}"
    assert recovered, f"bob decodes no video {RECOVERY_S:.0f} s after the kill (last {before})"
    reconnects = await bob.evaluate("() => window.sfu.session.reconnects.map((r) => r.outcome)")
    assert reconnects == ["rejoined"]


def udp_ports_of_safe(pid: int) -> list[int]:
    """:func:`udp_ports_of`, empty for a process that is gone or not ours to read."""
    try:
        return udp_ports_of(pid)
    except OSError:
        return []
