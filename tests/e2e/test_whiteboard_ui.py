"""The whiteboard in the call view (static/js/boardview.js around whiteboard.js), three pages.

Alice (a guest) opens the Whiteboard from the controls: it takes the call area like a screen
share (the tiles in a strip). She draws with the mouse while the host's board is closed (the
host's toggle counts the new stroke), then again while the host watches (the host sees the
stroke grow, then the committed stroke's pixels on the canvas, with the chat open beside
it). Carol joins late and gets the whole board. Alice undoes her last stroke everywhere; she
has no Clear button and the server refuses her `board_clear`; Carol exports a 1600x900 PNG;
the host clears the board for everyone.
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.conftest import create_room
from tests.e2e.test_browser_call import _wait_js
from tests.e2e.test_podcast import _open

if TYPE_CHECKING:
    from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

DESKTOP = {"width": 1280, "height": 720}
PHONE = {"width": 390, "height": 844}

STROKES_JS = "() => window.sfu.board.board.strokes.length"

# The alpha of the 3x3 pixels around board point (x, y) on the page's committed-strokes canvas.
PIXEL_JS = """
([x, y]) => {
  const canvas = document.querySelector('#board-area .wb-base');
  const px = Math.round((x * canvas.width) / 1600);
  const py = Math.round((y * canvas.height) / 900);
  const data = canvas.getContext('2d').getImageData(px - 1, py - 1, 3, 3).data;
  let alpha = 0;
  for (let i = 3; i < data.length; i += 4) alpha = Math.max(alpha, data[i]);
  return alpha;
}
"""


async def _shot(page: Any, directory: Path, name: str) -> None:
    await asyncio.sleep(0.3)
    await page.screenshot(path=str(directory / name))


async def _open_board(page: Any) -> None:
    await page.get_by_role("button", name="Whiteboard").click()
    await page.locator("#board-area .wb-overlay").wait_for(state="visible", timeout=5000)
    await page.wait_for_function(
        "() => document.querySelector('#board-area .wb-stage').getBoundingClientRect().width > 0"
    )


async def _draw(page: Any, points: list[tuple[float, float]], release: bool = True) -> None:
    """Drag the mouse through board points (board pixels, 1600x900)."""
    box = await page.locator("#board-area .wb-overlay").bounding_box()
    assert box is not None

    def at(x: float, y: float) -> tuple[float, float]:
        return box["x"] + x / 1600 * box["width"], box["y"] + y / 900 * box["height"]

    await page.mouse.move(*at(*points[0]))
    await page.mouse.down()
    for point in points[1:]:
        await page.mouse.move(*at(*point), steps=3)
    if release:
        await page.mouse.up()


async def test_whiteboard_in_the_call_view(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    account, invite = await create_room(
        server.base_url, "e2e-board", "owner-board@example.com", display_name="Hana"
    )
    host = await _open(
        browser, server, "host", "/", DESKTOP, account=account, join_button="Join e2e-board"
    )
    alice = await _open(browser, server, "alice", f"/join/{invite['code']}?name=alice", DESKTOP)
    await _wait_js(host, "() => window.sfu.participants.size === 1", 10, "the host to see alice")

    # Alice opens the board: it takes the call area, the tiles go to the strip below it.
    await _open_board(alice)
    layout = await alice.evaluate(
        """() => {
          const board = document.querySelector('#board-area .wb-stage').getBoundingClientRect();
          const tile = document.querySelector('#grid .tile').getBoundingClientRect();
          return { layout: document.getElementById('call-main').dataset.layout,
                   boardW: board.width, tileW: tile.width, below: tile.top >= board.bottom };
        }"""
    )
    assert layout["layout"] == "board" and layout["below"], layout
    assert layout["boardW"] > 3 * layout["tileW"], layout
    assert await alice.get_by_role("button", name="Whiteboard").get_attribute("aria-pressed") == (
        "true"
    )
    # Alice may draw, not clear: no Clear button.
    assert await alice.evaluate(
        "() => [window.sfu.board.board.canDraw, window.sfu.board.board.canClear]"
    ) == [True, False]
    assert await alice.get_by_role("button", name="Clear the whole board").count() == 0

    # A stroke while the host's board is closed: the host's toggle counts it.
    await _draw(alice, [(200, 200), (300, 250), (400, 300), (500, 350), (600, 400)])
    await _wait_js(alice, f"() => ({STROKES_JS})() === 1", 10, "alice's stroke to be committed")
    await _wait_js(host, f"() => ({STROKES_JS})() === 1", 10, "the host's board to get it")
    await host.get_by_role("button", name="Whiteboard, 1 new").wait_for(timeout=5000)
    await _shot(alice, screenshot_dir, "w01-alice-draws.png")

    # The host opens it (chat beside it) and sees the first stroke's pixels; Alice's second
    # stroke grows on the host's page before she lets go.
    await host.get_by_role("button", name="Chat").click()
    await _open_board(host)
    assert await host.get_by_role("button", name="Whiteboard").get_attribute("data-unseen") == "0"
    assert await host.evaluate(PIXEL_JS, [400, 300]) > 0
    assert await host.evaluate(PIXEL_JS, [400, 700]) == 0
    assert await host.get_by_role("button", name="Clear the whole board").is_visible()
    await alice.get_by_role("button", name="Blue").click()
    await _draw(alice, [(300, 650), (500, 650), (700, 650), (900, 650), (1100, 650)], False)
    await _wait_js(
        host,
        "() => window.sfu.board.board.previews.size === 1",
        10,
        "the host to see alice's stroke while she draws it",
    )
    await _shot(host, screenshot_dir, "w02-host-sees-live-stroke.png")
    await alice.mouse.up()
    await _wait_js(host, f"() => ({STROKES_JS})() === 2", 10, "the second stroke on the host")
    await _wait_js(
        host,
        "() => window.sfu.board.board.previews.size === 0",
        5,
        "the preview to give way to the stroke",
    )
    assert await host.evaluate(PIXEL_JS, [700, 650]) > 0
    await _shot(host, screenshot_dir, "w03-host-board-and-chat.png")

    # Carol joins late (a phone) and gets the whole board.
    carol = await _open(browser, server, "carol", f"/join/{invite['code']}?name=carol", PHONE)
    await _wait_js(carol, f"() => ({STROKES_JS})() === 2", 10, "carol to get the board")
    await _open_board(carol)
    for x, y in ((400, 300), (700, 650)):
        assert await carol.evaluate(PIXEL_JS, [x, y]) > 0
    await _shot(carol, screenshot_dir, "w04-late-joiner-phone.png")

    # Alice undoes her last stroke: gone everywhere, the first one stays.
    await alice.get_by_role("button", name="Undo my last stroke").click()
    for page, who in ((host, "host"), (alice, "alice"), (carol, "carol")):
        await _wait_js(page, f"() => ({STROKES_JS})() === 1", 10, f"{who}: the undo")
    assert await host.evaluate(PIXEL_JS, [700, 650]) == 0
    assert await carol.evaluate(PIXEL_JS, [400, 300]) > 0

    # The server refuses a clear from Alice (not a room admin), whatever her page sends.
    refused = await alice.evaluate(
        "() => window.sfu.session.request({ type: 'board_clear' }).then(() => null,"
        " (err) => err.code)"
    )
    assert refused == "forbidden"
    assert await host.evaluate(STROKES_JS) == 1

    # Carol exports the board as a PNG: 1600x900.
    async with carol.expect_download(timeout=10000) as info:
        await carol.get_by_role("button", name="Export the board as a PNG image").click()
    download = await info.value
    assert download.suggested_filename.startswith("whiteboard-")
    assert download.suggested_filename.endswith(".png")
    png = await asyncio.to_thread(Path(await download.path()).read_bytes)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png[12:16] == b"IHDR" and struct.unpack(">II", png[16:24]) == (1600, 900)

    # The host clears it for everyone (two steps).
    await host.get_by_role("button", name="Clear the whole board").click()
    await host.get_by_role("button", name="Confirm: clear the whole board for everyone").click()
    for page, who in ((host, "host"), (alice, "alice"), (carol, "carol")):
        await _wait_js(page, f"() => ({STROKES_JS})() === 0", 10, f"{who}: the clear")
    assert await carol.evaluate(PIXEL_JS, [400, 300]) == 0

    # Closing the board gives the call area back to the grid.
    await alice.get_by_role("button", name="Whiteboard").click()
    assert await alice.locator("#board-area").is_hidden()
    assert await alice.evaluate("() => document.getElementById('call-main').dataset.layout") == (
        "grid"
    )
    for page in (host, alice, carol):
        assert await page.evaluate("() => window.sfu.lastError") is None
