"""A browser whose publish media path dies gets its media back on its own (issue 11), measured.

Alice's page reaches the server's publish port only through a user-space UDP relay
(:class:`tests.support.udprelay.RelaySet`): an init script rewrites the server's candidates in
every publish answer the page applies to a relay port (asked from the test through an exposed
function), and moves the page's own publish candidates to 127.0.0.2 in what it sends, so the
server can reach that connection only at the relay's address. The test then drops every
datagram of that relay both ways, for good, and later answers get a fresh relay: a network
change. The WebSocket and Alice's subscribe connection are untouched (the subscribe side is
covered by tests/integration/test_media_restart.py).

The server (liveness watchdog) or the page (its RTCPeerConnection ``disconnected`` for 2 s)
notices, the page makes a new publish RTCPeerConnection with the same tracks, and Bob decodes
Alice's video again on the *same* inbound stream (same SSRC, same track sid, no
participant_left or track_unpublished). The figures are printed.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.conftest import create_invite
from tests.support.udprelay import RelaySet

if TYPE_CHECKING:
    from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

RELAY_JS = """
(() => {
  const CANDIDATE = /^(a=candidate:\\S+ \\d+ udp \\d+ )127\\.0\\.0\\.1 (\\d+)( typ .*)$/i;
  async function viaRelay(sdp) {
    const out = [];
    for (const line of sdp.split('\\r\\n')) {
      const m = line.match(CANDIDATE);
      if (m) {
        const asked = performance.now();
        const port = await window.sfuRelayPort(Number(m[2]));
        window.sfuRelayWaitMs = (window.sfuRelayWaitMs || 0) + performance.now() - asked;
        out.push(`${m[1]}127.0.0.1 ${port}${m[3]}`);
      } else {
        out.push(line);
      }
    }
    return out.join('\\r\\n');
  }
  const setRemote = RTCPeerConnection.prototype.setRemoteDescription;
  RTCPeerConnection.prototype.setRemoteDescription = async function (desc) {
    if (desc && desc.type === 'answer' && desc.sdp) {
      desc = { type: desc.type, sdp: await viaRelay(desc.sdp) };
    }
    return setRemote.call(this, desc);
  };
  const hide = (text) => text.replace(/( udp \\d+ )127\\.0\\.0\\.1 /gi, '$1127.0.0.2 ');
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    try {
      const msg = JSON.parse(data);
      if (msg.type === 'offer' && typeof msg.sdp === 'string') msg.sdp = hide(msg.sdp);
      if (msg.transport === 'publish' && msg.candidate && msg.candidate.candidate) {
        msg.candidate.candidate = hide(msg.candidate.candidate);
      }
      data = JSON.stringify(msg);
    } catch (err) {
      // not JSON: sent as is
    }
    return send.call(this, data);
  };
})();
"""

INBOUND_JS = """
async () => {
  const sub = window.sfu.sub;
  const out = { frames: 0, audioPackets: 0, ssrcs: [] };
  if (!sub) return out;
  (await sub.getStats()).forEach((r) => {
    if (r.type !== 'inbound-rtp') return;
    out.ssrcs.push(r.ssrc);
    if (r.kind === 'video') out.frames += r.framesDecoded || 0;
    if (r.kind === 'audio') out.audioPackets += r.packetsReceived || 0;
  });
  return out;
}
"""

SID_BY_NAME_JS = """
(name) => {
  for (const [sid, p] of window.sfu.participants) if (p.name === name) return sid;
  return null;
}
"""


class Paths:
    """Alice's network: the current relay set, and a way to kill it for good."""

    def __init__(self) -> None:
        self.sets = [RelaySet(seed=1)]

    async def relay_port(self, port: int) -> int:
        relays = self.sets[-1]
        await relays.rewrite(f"a=candidate:1 1 udp 1 127.0.0.1 {port} typ host\n")
        return relays.relays[port].port

    def change(self) -> None:
        dead = self.sets[-1]
        dead.uplink.set(loss=1.0)
        dead.downlink.set(loss=1.0)
        self.sets.append(RelaySet(seed=len(self.sets) + 1))

    def close(self) -> None:
        for relays in self.sets:
            relays.close()


async def _open(browser: Any, server: ServerProcess, path: str, paths: Paths | None) -> Any:
    context = await browser.new_context(viewport={"width": 960, "height": 640})
    if paths is not None:
        await context.expose_function("sfuRelayPort", paths.relay_port)
        await context.add_init_script(RELAY_JS)
    page = await context.new_page()
    page.on("console", lambda msg: server.page_logs.append(f"[{path}] {msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: server.page_logs.append(f"[{path}] pageerror: {err}"))
    await page.goto(f"{server.base_url}{path}")
    return page


async def _until(page: Any, expression: str, timeout_s: float, what: str) -> float:
    """Poll ``expression`` every 0.1 s; the monotonic time it first held."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await page.evaluate(expression):
            return time.monotonic()
        await asyncio.sleep(0.1)
    state = await page.evaluate("() => [window.sfu.state, window.sfu.lastError]")
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}; [state, lastError]={state}")


async def _growing(page: Any, key: str, timeout_s: float, what: str, above: int = 0) -> float:
    """The monotonic time ``INBOUND_JS()[key]`` first exceeds ``above`` by a margin."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = await page.evaluate(INBOUND_JS)
        if stats[key] > above + 2:
            return time.monotonic()
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


async def test_browser_media_comes_back_after_its_path_dies(
    browser: Any, server: ServerProcess
) -> None:
    paths = Paths()
    try:
        code = await create_invite(server.base_url, "restart", "owner-restart@example.com")
        alice = await _open(browser, server, f"/join/{code}?name=alice", paths)
        bob = await _open(browser, server, f"/join/{code}?name=bob", None)
        for page, who in ((alice, "alice"), (bob, "bob")):
            await _until(page, "() => window.sfu.state === 'joined'", 15, f"{who} to join")
        await _until(bob, "() => window.sfu.participants.size === 1", 15, "bob to see alice")
        await _until(alice, "() => window.sfu.participants.size === 1", 15, "alice to see bob")
        alice_sid = await bob.evaluate(SID_BY_NAME_JS, "alice")
        for page, who in ((bob, "bob"), (alice, "alice")):
            await _growing(page, "frames", 30, f"{who} to decode video", above=10)
        assert paths.sets[0].relays, "alice's media does not go through the relay"
        up, down = paths.sets[0].stats()
        assert up.sent > 100 and down.sent > 10, (up, down)  # media up, RTCP and STUN down
        bob_before = await bob.evaluate(INBOUND_JS)
        alice_sids = await alice.evaluate(
            "() => window.sfu.session.publisher.sending().map((e) => e.sid).sort()"
        )

        broke = time.monotonic()
        paths.change()
        # Bob's decoder stalls, then resumes on the same inbound stream.
        stalled = bob_before["frames"]
        while time.monotonic() - broke < 10:
            frames = (await bob.evaluate(INBOUND_JS))["frames"]
            if frames == stalled:
                break
            stalled = frames
            await asyncio.sleep(0.3)
        restarted = await _until(
            alice,
            "() => window.sfu.session.publisher.restarts > 0",
            20,
            "alice's page to restart its publish connection",
        )
        wait_before = await alice.evaluate("() => window.sfuRelayWaitMs || 0")
        connected = await _until(
            alice,
            "() => window.sfu.pub !== null && window.sfu.pub.connectionState === 'connected'",
            20,
            "alice's new publish connection",
        )
        bob_back = await _growing(bob, "frames", 20, "bob to decode alice again", above=stalled)
        relay_wait = (await alice.evaluate("() => window.sfuRelayWaitMs || 0")) - wait_before
        print(
            f"media restart (Chromium): alice's page restarted publishing "
            f"{restarted - broke:.2f} s after the break, its new connection was connected "
            f"{connected - restarted:.2f} s later (of which {relay_wait / 1000:.2f} s the test "
            f"spent setting up the new relay), bob decoded alice's video again "
            f"{bob_back - connected:.2f} s after that: {bob_back - broke:.2f} s after the break"
        )
        assert paths.sets[1].relays, "alice's new connections do not use the new path"

        # No churn for Bob: same inbound SSRCs, same track sids, no leave or unpublish.
        bob_after = await bob.evaluate(INBOUND_JS)
        assert sorted(bob_after["ssrcs"]) == sorted(bob_before["ssrcs"])
        assert (
            await alice.evaluate(
                "() => window.sfu.session.publisher.sending().map((e) => e.sid).sort()"
            )
            == alice_sids
        )
        churn = await bob.evaluate(
            """(sid) => window.sfu.events.filter((e) => e.participant === sid
                 && ['participant_left', 'track_unpublished'].includes(e.type))""",
            alice_sid,
        )
        assert churn == []
        assert await bob.evaluate(SID_BY_NAME_JS, "alice") == alice_sid
        assert await alice.evaluate("() => window.sfu.state") == "joined"
    finally:
        paths.close()
