"""Staying connected in the browser (issue 11): a signaling drop, a reload, a server restart.

* The page's WebSocket closes without ``leave`` (new sockets refused for a while): the page
  shows "Reconnecting…", resumes the same session on a new socket (missed chat replayed), its
  media never stops, and the other page sees no leave or join.
* A reload rejoins the same call with the same identity, for a guest and for the room's owner
  (not the lobby, not the join form).
* ``sfu serve`` restarts on the same port and data: both pages show "Reconnecting…", rejoin,
  their media comes back and the chat history is still there.

Times are printed (``-s``) for the report.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from signaling.serverproc import start_server, stop_server
from tests.e2e.conftest import ServerProcess, _wait_healthy, create_invite
from tests.e2e.test_accounts_flow import _email, _register, _wait_lobby
from tests.e2e.test_browser_call import (
    INBOUND_JS,
    PARTICIPANT_NAMES_JS,
    SID_BY_NAME_JS,
    _open,
    _wait_js,
    _wait_media_flowing,
)

pytestmark = pytest.mark.e2e

DESKTOP = {"width": 1280, "height": 800}

# Record every text the status line shows, and let a test refuse new WebSockets for a while.
WATCH_JS = r"""
() => {
  window.__statuses = [];
  const status = document.getElementById('status');
  new MutationObserver(() => window.__statuses.push(status.textContent)).observe(status, {
    childList: true, characterData: true, subtree: true,
  });
  const Real = window.WebSocket;
  window.__blockSockets = false;
  window.WebSocket = class extends Real {
    constructor(url, protocols) {
      // A same-origin path that is no WebSocket endpoint (the CSP allows only this origin).
      super(window.__blockSockets ? String(url).replace(/\/ws$/, '/ws-blocked') : url, protocols);
    }
  };
}
"""


# Before the page loads: sockets that a test can make deaf (nothing goes out or comes in, the
# TCP connection stays open), as after a network change.
DEAF_SOCKETS_JS = r"""
(() => {
  const Real = window.WebSocket;
  window.WebSocket = class extends Real {
    send(data) {
      if (!this.deaf) super.send(data);
    }
    addEventListener(type, listener, options) {
      if (type !== 'message') return super.addEventListener(type, listener, options);
      return super.addEventListener(type, (ev) => { if (!this.deaf) listener(ev); }, options);
    }
  };
})();
"""


class Restartable:
    """``sfu serve`` on a fixed port, data dir and secret, that a test can restart."""

    def __init__(self, tmp: Path) -> None:
        self.data_dir = tmp / "data"
        self.data_dir.mkdir()
        self.log_path = tmp / "server.log"
        self.env = {"SFU_BCRYPT_COST": "4", "SFU_JWT_SECRET": secrets.token_urlsafe(48)}
        self.port: int | None = None
        self.server: ServerProcess | None = None

    def start(self) -> ServerProcess:
        with self.log_path.open("ab") as log_file:
            process, url = start_server(
                self.data_dir, env=self.env, output=log_file, log_level="info", port=self.port
            )
        self.port = urlsplit(url).port
        self.server = ServerProcess(url, process, self.log_path)
        _wait_healthy(self.server)
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            stop_server(self.server.process)


@pytest.fixture(scope="module")
def restartable(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Restartable]:
    srv = Restartable(tmp_path_factory.mktemp("sfu-restart"))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def server(restartable: Restartable, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    assert restartable.server is not None
    current = restartable.server
    start = len(current.log())
    yield current
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print("----- sfu serve log (this test) -----")
        print(current.log()[start:])
        print("----- browser console -----")
        print("\n".join(current.page_logs))


async def _pair(browser: Any, server: ServerProcess, room: str) -> tuple[Any, Any, str]:
    code = await create_invite(server.base_url, room, f"owner-{room}@example.com")
    alice = await _open(browser, server, f"/join/{code}?name=alice", DESKTOP)
    bob = await _open(browser, server, f"/join/{code}?name=bob", DESKTOP)
    for page, who in ((alice, "alice"), (bob, "bob")):
        await _wait_js(page, "() => window.sfu.state === 'joined'", 15, f"{who} to join")
    await _wait_js(alice, f"() => ({PARTICIPANT_NAMES_JS})().includes('bob')", 15, "bob seen")
    await _wait_js(bob, f"() => ({PARTICIPANT_NAMES_JS})().includes('alice')", 15, "alice seen")
    bob_sid = await alice.evaluate(SID_BY_NAME_JS, "bob")
    return alice, bob, bob_sid


async def _media_back_s(page: Any, since: float, timeout_s: float = 20) -> float:
    """Seconds from ``since`` (monotonic) until decoded video frames and audio samples grow."""
    deadline = time.monotonic() + timeout_s
    before = await page.evaluate(INBOUND_JS)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        after = await page.evaluate(INBOUND_JS)
        if after["video"] > before["video"] and after["audio"] > before["audio"]:
            return time.monotonic() - since
        before = after
    pytest.fail(f"media not back within {timeout_s:.0f} s: {before}")


def _chat_texts(page: Any) -> Any:
    return page.evaluate("() => window.sfu.chat.messages.map((m) => m.text)")


async def test_signaling_drop_resumes_without_interrupting_media(
    browser: Any, server: ServerProcess
) -> None:
    alice, bob, bob_sid = await _pair(browser, server, "e2e-drop")
    await _wait_media_flowing(bob, "bob")
    await bob.evaluate(WATCH_JS)
    me_before = await bob.evaluate("() => window.sfu.me")
    left_before = await alice.evaluate(
        "(sid) => window.sfu.events.filter((e) => e.participant === sid).map((e) => e.type)",
        bob_sid,
    )

    # The socket drops (no leave) and new sockets are refused for a while.
    await bob.evaluate("() => { window.__blockSockets = true; window.sfu.ws.close(); }")
    dropped = time.monotonic()
    await _wait_js(
        bob, "() => document.body.dataset.connection === 'reconnecting'", 5, "Reconnecting"
    )
    status = await bob.locator("#status").text_content()
    assert status is not None and "Reconnecting" in status, status
    # Meanwhile alice chats; bob's media keeps flowing without any socket.
    await alice.evaluate("() => window.sfu.session.sendChat('while you were away')")
    during = await _media_back_s(bob, time.monotonic(), timeout_s=5)
    assert await bob.evaluate("() => window.sfu.ws.readyState") != 1  # still no socket

    await bob.evaluate("() => { window.__blockSockets = false; }")
    await _wait_js(bob, "() => window.sfu.session.reconnects.length === 1", 15, "the resume")
    resumed_at = time.monotonic()
    reconnect = await bob.evaluate("() => window.sfu.session.reconnects[0]")
    assert reconnect["outcome"] == "resumed"
    assert await bob.evaluate("() => window.sfu.me") == me_before  # the same session
    # The chat message sent during the drop was replayed.
    await _wait_js(
        bob,
        "() => window.sfu.chat.messages.some((m) => m.text === 'while you were away')",
        5,
        "the missed chat message",
    )
    assert "Reconnecting" not in (await bob.locator("#status").text_content() or "")
    assert "connection" not in await bob.evaluate("() => Object.keys(document.body.dataset)")
    media_after = await _media_back_s(bob, resumed_at, timeout_s=3)
    # Alice never saw bob leave or join again.
    assert (
        await alice.evaluate(
            "(sid) => window.sfu.events.filter((e) => e.participant === sid).map((e) => e.type)",
            bob_sid,
        )
        == left_before
    )
    statuses = await bob.evaluate("() => window.__statuses")
    assert any("Reconnecting" in s for s in statuses), statuses
    print(
        f"\nsignaling drop: media kept flowing during the drop (frames grew {during:.2f} s "
        f"after the check started); socket down {resumed_at - dropped:.1f} s (refused on "
        f"purpose); resume {reconnect['ms']} ms from the start of reconnection; media "
        f"growing {media_after:.2f} s after the resume"
    )
    await alice.context.close()
    await bob.context.close()


async def test_reload_rejoins_the_same_call_with_the_same_identity(
    browser: Any, server: ServerProcess
) -> None:
    alice, bob, _ = await _pair(browser, server, "e2e-reload")
    identity = await bob.evaluate("() => window.sfu.me.identity")
    started = time.monotonic()
    await bob.reload()
    await _wait_js(bob, "() => window.sfu.state === 'joined'", 20, "bob to rejoin after reload")
    rejoined = time.monotonic() - started
    assert await bob.evaluate("() => window.sfu.me.identity") == identity
    assert await bob.locator("#join-section").is_hidden()
    await _wait_js(alice, f"() => ({PARTICIPANT_NAMES_JS})().includes('bob')", 15, "bob back")
    assert (await alice.evaluate(PARTICIPANT_NAMES_JS)).count("bob") == 1
    back = await _media_back_s(bob, started)
    # The stored call is in sessionStorage, never in a cookie.
    assert await bob.evaluate("() => document.cookie") == ""
    assert await bob.evaluate("() => JSON.parse(sessionStorage.getItem('sfu.call')).room")
    # Leaving forgets it.
    await bob.get_by_role("button", name="Leave").click()
    await _wait_js(bob, "() => window.sfu.state === 'left'", 10, "bob to leave")
    assert await bob.evaluate("() => sessionStorage.getItem('sfu.call')") is None
    print(f"\nreload (guest): joined {rejoined:.1f} s, media {back:.1f} s after reload()")
    await alice.context.close()
    await bob.context.close()


async def test_owner_reload_returns_to_the_call_not_the_lobby(
    browser: Any, server: ServerProcess
) -> None:
    owner = await _open(browser, server, "/", DESKTOP)
    await owner.locator("#auth-section").wait_for(state="visible")
    await _register(owner, _email("reload-owner"), "Olivia")
    await _wait_lobby(owner)
    await owner.get_by_label("Room name").fill("Reload room")
    await owner.get_by_label("Room name").press("Enter")
    item = owner.locator(".room-item").filter(has_text="Reload room")
    await item.wait_for(timeout=10000)
    await item.get_by_role("button", name="Join Reload room").click()
    await _wait_js(owner, "() => window.sfu.state === 'joined'", 15, "the owner to join")
    identity = await owner.evaluate("() => window.sfu.me.identity")
    await owner.reload()
    await _wait_js(owner, "() => window.sfu.state === 'joined'", 20, "the owner to rejoin")
    assert await owner.evaluate("() => window.sfu.me.identity") == identity
    assert await owner.locator("#lobby-section").is_hidden()
    assert await owner.locator("#room-label").text_content() == "Room: Reload room"
    assert await owner.evaluate("() => window.sfu.session.roomAdmin")
    await owner.context.close()


async def test_server_restart_rejoins_with_media_and_chat(
    browser: Any, server: ServerProcess, restartable: Restartable
) -> None:
    alice, bob, _ = await _pair(browser, server, "e2e-restart")
    await _wait_media_flowing(bob, "bob")
    await alice.evaluate("() => window.sfu.session.sendChat('before the restart')")
    for page in (alice, bob):
        await _wait_js(page, "() => window.sfu.chat.messages.length === 1", 10, "the chat message")
        await page.evaluate(WATCH_JS)

    stopped = time.monotonic()
    await asyncio.to_thread(restartable.stop)
    for page in (alice, bob):
        await _wait_js(
            page, "() => document.body.dataset.connection === 'reconnecting'", 10, "Reconnecting"
        )
    await asyncio.to_thread(restartable.start)
    healthy = time.monotonic()
    for page, who in ((alice, "alice"), (bob, "bob")):
        await _wait_js(
            page,
            "() => window.sfu.state === 'joined' && !window.sfu.session.reconnecting",
            20,
            f"{who} to rejoin",
        )
    media = await _media_back_s(bob, stopped)
    assert await _chat_texts(bob) == ["before the restart"]
    assert await _chat_texts(alice) == ["before the restart"]
    names = await bob.evaluate(PARTICIPANT_NAMES_JS)
    assert names == ["alice"], names
    for page in (alice, bob):
        statuses = await page.evaluate("() => window.__statuses")
        assert any("Reconnecting" in s for s in statuses), statuses
    print(
        f"\nserver restart: down {healthy - stopped:.1f} s (stop + start until /healthz); "
        f"bob's media back {media:.1f} s after the stop, {media - (healthy - stopped):.1f} s "
        f"after the new server answered"
    )
    await alice.context.close()
    await bob.context.close()


async def test_a_silent_socket_is_detected_by_ping_and_resumed(
    browser: Any, server: ServerProcess
) -> None:
    """After a network change the old socket may stay open and silent: no pong within the
    ping timeout makes the page resume on a new socket; the server closes the old one."""
    code = await create_invite(server.base_url, "e2e-silent", "owner-silent@example.com")
    alice = await _open(browser, server, f"/join/{code}?name=alice", DESKTOP)
    context = await browser.new_context(viewport=DESKTOP)
    await context.add_init_script(DEAF_SOCKETS_JS)
    bob = await context.new_page()
    bob.on("console", lambda msg: server.page_logs.append(f"[bob] {msg.type}: {msg.text}"))
    await bob.goto(f"{server.base_url}/join/{code}?name=bob")
    for page, who in ((alice, "alice"), (bob, "bob")):
        await _wait_js(page, "() => window.sfu.state === 'joined'", 15, f"{who} to join")
    await _wait_media_flowing(bob, "bob")
    bob_sid = await bob.evaluate("() => window.sfu.me.sid")
    await bob.evaluate(WATCH_JS)

    silent = time.monotonic()
    await bob.evaluate("() => { window.sfu.ws.deaf = true; }")
    # One ping interval (10 s) and the ping timeout (8 s) at most, with slack for a slow host.
    await _wait_js(bob, "() => window.sfu.session.reconnects.length === 1", 40, "the resume")
    detected = time.monotonic() - silent
    reconnect = await bob.evaluate("() => window.sfu.session.reconnects[0]")
    assert reconnect["outcome"] == "resumed"
    assert await bob.evaluate("() => window.sfu.me.sid") == bob_sid
    statuses = await bob.evaluate("() => window.__statuses")
    assert any("Reconnecting" in s for s in statuses), statuses
    media = await _media_back_s(bob, time.monotonic(), timeout_s=5)
    # Chat still flows both ways on the new socket.
    await alice.evaluate("() => window.sfu.session.sendChat('after the switch')")
    await _wait_js(
        bob,
        "() => window.sfu.chat.messages.some((m) => m.text === 'after the switch')",
        10,
        "chat on the new socket",
    )
    assert "participant_left" not in await alice.evaluate(
        "(sid) => window.sfu.events.filter((e) => e.participant === sid).map((e) => e.type)",
        bob_sid,
    )
    print(
        f"\nsilent socket: resumed {detected:.1f} s after it went silent (resume itself "
        f"{reconnect['ms']} ms); media growing {media:.2f} s later"
    )
    await alice.context.close()
    await context.close()
