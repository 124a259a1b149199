"""The whiteboard module (static/js/whiteboard.js) in two headless Chromium pages.

The pages are wired to the real server exactly as the app should wire them (SignalClient
events to ``Whiteboard.handle``, ``signal.request`` as the send function), under the server's
own Content-Security-Policy: each page opens a same-origin URL of the server (``/healthz``,
whose response carries the CSP), replaces the document's content and imports the modules.
(A page made up by Playwright's ``route.fulfill`` is not on loopback for Chromium's local
network access checks, which then refuse its WebSocket to 127.0.0.1.) A guest draws with
the mouse (the room admin sees the stroke grow before it is finished), then with the
keyboard; undo, export and the admin's clear follow.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

# The wiring the app is meant to use (see the final report / docs): events to board.handle,
# requests through signal.request so that refused strokes are reported.
START_JS = """
async ([room, token, canClear]) => {
  window.violations = [];
  document.addEventListener('securitypolicyviolation', (e) => {
    window.violations.push(`${e.violatedDirective} ${e.blockedURI}`);
  });
  const sheets = ['/static/css/app.css', '/static/css/whiteboard.css'].map((href) => {
    const link = document.createElement('link');
    link.rel = 'stylesheet';
    link.href = href;
    document.head.append(link);
    return new Promise((resolve) => link.addEventListener('load', resolve));
  });
  const main = document.createElement('main');
  const container = document.createElement('div');
  main.append(container);
  document.body.replaceChildren(main);
  await Promise.all(sheets);
  const { SignalClient, signalingUrl } = await import('/static/js/signal.js');
  const { Whiteboard } = await import('/static/js/whiteboard.js');
  const signal = new SignalClient(signalingUrl());
  const early = [];
  let board = null;
  signal.onevent = (msg) => (board ? board.handle(msg) : early.push(msg));
  await signal.connect();
  const joined = await signal.request({ type: 'join', room, token, subscribe: false });
  board = new Whiteboard(container, (msg) => signal.request(msg), {
    identity: joined.participant.identity,
    canClear,
  });
  for (const msg of early) board.handle(msg);
  window.board = board;
  return joined.participant.sid;
}
"""

STROKES_JS = "() => window.board.strokes.map((i) => [i.identity, i.stroke])"

PIXEL_JS = """
([x, y]) => {
  const canvas = document.querySelector('.wb-base');
  const px = Math.round((x * canvas.width) / 1600);
  const py = Math.round((y * canvas.height) / 900);
  const data = canvas.getContext('2d').getImageData(px - 1, py - 1, 3, 3).data;
  let alpha = 0;
  for (let i = 3; i < data.length; i += 4) alpha = Math.max(alpha, data[i]);
  return alpha;
}
"""


async def _tokens(base_url: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A new room: (room id, the owner's room token body, a guest's room token body)."""
    async with aiohttp.ClientSession(base_url) as http:
        account = {
            "email": f"board-{secrets.token_hex(4)}@example.com",
            "password": "e2e-Quiet-Harbour-42",
            "display_name": "Host",
        }
        async with http.post("/api/register", json=account) as resp:
            assert resp.status == 201, await resp.text()
            auth = {"Authorization": f"Bearer {(await resp.json())['access_token']}"}
        async with http.post("/api/rooms", json={"name": "Sketches"}, headers=auth) as resp:
            assert resp.status == 201, await resp.text()
            room_id: str = (await resp.json())["room"]["id"]
        async with http.post(f"/api/rooms/{room_id}/token", headers=auth) as resp:
            assert resp.status == 200, await resp.text()
            owner: dict[str, Any] = await resp.json()
        invites = f"/api/rooms/{room_id}/invites"
        async with http.post(invites, json={"max_uses": 2}, headers=auth) as resp:
            assert resp.status == 201, await resp.text()
            code = (await resp.json())["code"]
        async with http.post(f"/api/join/{code}", json={"display_name": "Guest"}) as resp:
            assert resp.status == 200, await resp.text()
            guest: dict[str, Any] = await resp.json()
    return room_id, owner, guest


async def _open_board(
    browser: Any, server: ServerProcess, who: str, room: str, body: dict[str, Any]
) -> Any:
    context = await browser.new_context(viewport={"width": 1000, "height": 800})
    page = await context.new_page()
    page.on("console", lambda msg: server.page_logs.append(f"[{who}] {msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: server.page_logs.append(f"[{who}] pageerror: {err}"))
    response = await page.goto(f"{server.base_url}/healthz")
    assert (
        response is not None and "script-src 'self'" in response.headers["content-security-policy"]
    )
    await page.evaluate(START_JS, [room, body["token"], body["grants"]["roomAdmin"]])
    await page.wait_for_function("() => window.board.stage.getBoundingClientRect().width > 0")
    return page


async def test_draw_live_by_mouse_and_keyboard_undo_export_and_clear(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    room, owner_body, guest_body = await _tokens(server.base_url)
    assert owner_body["grants"]["roomAdmin"] and not guest_body["grants"]["roomAdmin"]
    host = await _open_board(browser, server, "host", room, owner_body)
    guest = await _open_board(browser, server, "guest", room, guest_body)
    # board_state told each page what it may do
    assert await host.evaluate("() => [window.board.canDraw, window.board.canClear]") == [
        True,
        True,
    ]
    assert await guest.evaluate("() => [window.board.canDraw, window.board.canClear]") == [
        True,
        False,
    ]
    assert await host.get_by_role("button", name="Clear the whole board").is_visible()
    assert await guest.get_by_role("button", name="Clear the whole board").count() == 0

    # Mouse: the host sees the stroke while the guest is still drawing it.
    box = await guest.locator(".wb-overlay").bounding_box()
    assert box is not None

    def at(x: float, y: float) -> tuple[float, float]:
        return box["x"] + x / 1600 * box["width"], box["y"] + y / 900 * box["height"]

    await guest.mouse.move(*at(200, 200))
    await guest.mouse.down()
    for i in range(1, 11):
        await guest.mouse.move(*at(200 + 40 * i, 200 + 20 * i), steps=2)
    await host.wait_for_function(
        "() => window.board.previews.size === 1"
        " && [...window.board.previews.values()][0].stroke.points.length >= 5",
        timeout=10_000,
    )
    assert await host.evaluate("() => window.board.strokes.length") == 0
    await guest.mouse.up()
    await host.wait_for_function(
        "() => window.board.strokes.length === 1 && window.board.previews.size === 0",
        timeout=10_000,
    )
    await guest.wait_for_function("() => window.board.strokes.length === 1", timeout=10_000)
    ((identity, stroke),) = await host.evaluate(STROKES_JS)
    assert identity == guest_body["identity"]
    assert await guest.evaluate(STROKES_JS) == [[identity, stroke]]
    assert (stroke["tool"], stroke["color"], stroke["width"]) == ("pen", "#1b1f24", 4)
    (x0, y0), (x1, y1) = stroke["points"][0], stroke["points"][-1]
    assert abs(x0 - 200) <= 2 and abs(y0 - 200) <= 2 and abs(x1 - 600) <= 2 and abs(y1 - 400) <= 2
    assert await host.evaluate(PIXEL_JS, [400, 300]) > 0  # painted on the host's canvas
    assert await host.evaluate(PIXEL_JS, [400, 700]) == 0

    # Keyboard: a red line from the centre, 50 right and 50 down.
    await guest.get_by_role("button", name="Red").click()
    await guest.locator(".wb-overlay").focus()
    await guest.keyboard.press("Space")
    for _ in range(5):
        await guest.keyboard.press("ArrowRight")
    await guest.keyboard.press("Shift+ArrowDown")
    await guest.keyboard.press("Space")
    await host.wait_for_function("() => window.board.strokes.length === 2", timeout=10_000)
    keyboard_stroke = (await host.evaluate(STROKES_JS))[1][1]
    assert keyboard_stroke["color"] == "#e5484d"
    # Sent simplified: the points on a straight run go.
    assert keyboard_stroke["points"] == [[800, 450], [850, 450], [850, 500]]

    await guest.keyboard.press("Control+z")  # undo: the guest's last stroke only
    await host.wait_for_function("() => window.board.strokes.length === 1", timeout=10_000)
    assert (await host.evaluate(STROKES_JS))[0][1]["points"] == stroke["points"]

    # Eraser (E key), widest (End on the width slider), over the middle of the first line.
    await guest.keyboard.press("e")
    assert await guest.get_by_role("button", name="Eraser").get_attribute("aria-pressed") == "true"
    await guest.get_by_role("slider", name="Width").focus()
    await guest.keyboard.press("End")
    await guest.mouse.move(*at(350, 275))
    await guest.mouse.down()
    await guest.mouse.move(*at(450, 325), steps=4)
    await guest.mouse.up()
    await host.wait_for_function("() => window.board.strokes.length === 2", timeout=10_000)
    eraser = (await host.evaluate(STROKES_JS))[1][1]
    assert (eraser["tool"], eraser["width"]) == ("eraser", 64)
    assert await host.evaluate(PIXEL_JS, [400, 300]) == 0  # erased
    assert await host.evaluate(PIXEL_JS, [250, 225]) > 0  # the rest of the line stays

    png = await host.evaluate(
        """async () => {
          const blob = await window.board.exportPng();
          const image = await createImageBitmap(blob);
          return [blob.type, blob.size, image.width, image.height];
        }"""
    )
    assert png[0] == "image/png" and png[1] > 0 and png[2:] == [1600, 900]
    async with host.expect_download() as download_info:
        await host.get_by_role("button", name="Export the board as a PNG image").click()
    assert (await download_info.value).suggested_filename.endswith(".png")
    await host.screenshot(path=str(screenshot_dir / "whiteboard.png"))

    await host.get_by_role("button", name="Clear the whole board").click()
    await host.get_by_role("button", name="Confirm: clear the whole board for everyone").click()
    for page in (host, guest):
        await page.wait_for_function("() => window.board.strokes.length === 0", timeout=10_000)
    assert await host.evaluate(PIXEL_JS, [250, 225]) == 0
    assert await guest.locator(".wb-status").text_content() == "The board was cleared."
    for page in (host, guest):
        assert await page.evaluate("() => window.violations") == []
