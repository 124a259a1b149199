"""File sharing in the call view (static/js/roomfiles.js over files.js), two Chromium pages.

Alice attaches a file of random bytes with a hostile name in the chat (upload throttled so the
progress bar shows); Bob's open Files panel lists it as soon as the chat announces it; Bob
downloads it from the chat link and from the panel, byte for byte, under a sanitised name, and
no markup from the name reaches the DOM. An upload over the server's limit (the module's
server runs with a small ``SFU_MAX_UPLOAD_BYTES``) and an empty file show typed errors inline.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.conftest import create_invite
from tests.e2e.test_browser_call import _open, _wait_js

if TYPE_CHECKING:
    from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

DESKTOP = {"width": 1280, "height": 720}
PHONE = {"width": 390, "height": 844}
MAX_UPLOAD = 1024 * 1024
HOSTILE_NAME = '../../<img src=x onerror="window.__xss=1">evil.txt'
STORED_NAME = '<img src=x onerror="window.__xss=1">evil.txt'  # the last path component


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    return {"SFU_MAX_UPLOAD_BYTES": str(MAX_UPLOAD)}


async def _join(browser: Any, server: ServerProcess, code: str, name: str, viewport: Any) -> Any:
    page = await _open(browser, server, f"/join/{code}?name={name}", viewport)
    await _wait_js(page, "() => window.sfu.state === 'joined'", 15, f"{name} to join")
    return page


async def _download(page: Any, locator: Any) -> tuple[bytes, str]:
    async with page.expect_download(timeout=15000) as info:
        await locator.click()
    download = await info.value
    assert await download.failure() is None
    path = await download.path()
    data = await asyncio.to_thread(Path(path).read_bytes)
    return data, download.suggested_filename


async def test_share_download_and_errors(
    browser: Any, server: ServerProcess, screenshot_dir: Path
) -> None:
    code = await create_invite(server.base_url, "e2e-files-ui", "owner-files-ui@example.com")
    alice = await _join(browser, server, code, "alice", DESKTOP)
    bob = await _join(browser, server, code, "bob", DESKTOP)

    # Bob keeps the Files panel open: nothing shared yet.
    await bob.get_by_role("button", name="Files").click()
    await bob.locator("#panel-files .files-empty").wait_for(state="visible", timeout=5000)
    assert await bob.locator("#panel-files .file-row").count() == 0

    # Alice attaches a file from the chat; her upload is throttled so the bar is seen moving.
    await alice.get_by_role("button", name="Chat").click()
    attach = alice.get_by_role("button", name="Attach a file")
    assert await attach.is_visible()
    cdp = await alice.context.new_cdp_session(alice)
    await cdp.send("Network.enable")
    await cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": 150 * 1024,
        },
    )
    data = os.urandom(300 * 1024 + 7)
    await alice.set_input_files(
        "#chat-file-input",
        files=[{"name": HOSTILE_NAME, "mimeType": "text/plain", "buffer": data}],
    )
    progress = alice.locator("#upload-progress")
    await progress.wait_for(state="visible", timeout=5000)
    assert await progress.locator(".upload-name").text_content() == HOSTILE_NAME
    # One upload at a time: its progress row takes the attach button's place.
    assert await alice.locator("#attach-button").is_hidden()
    await _wait_js(
        alice,
        "() => { const v = document.querySelector('#upload-progress progress').value;"
        " return v > 0 && v < 1; }",
        10,
        "the upload bar to be part-way",
    )
    await alice.screenshot(path=str(screenshot_dir / "f01-upload-progress.png"))
    await progress.wait_for(state="hidden", timeout=20000)
    await cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    assert await alice.locator("#upload-error").is_hidden()

    # The chat announces it; Bob's open panel lists it without being reopened.
    await _wait_js(
        bob,
        "() => window.sfu.chat.messages.some((m) => m.file)",
        10,
        "bob to get the file announcement",
    )
    row = bob.locator("#panel-files .file-row")
    await row.first.wait_for(timeout=10000)
    assert await row.count() == 1
    assert await row.locator(".file-name").text_content() == STORED_NAME
    meta = await row.locator(".file-meta").text_content()
    assert meta is not None and meta.startswith("300 KB · ")
    assert await bob.evaluate("() => window.sfu.files.map((f) => f.name)") == [STORED_NAME]
    await bob.screenshot(path=str(screenshot_dir / "f02-files-panel.png"))

    # Bob downloads it from the panel, then from the chat link: the same bytes, a safe name.
    got, suggested = await _download(bob, row.get_by_role("button", name=f"Download {STORED_NAME}"))
    assert got == data
    assert "/" not in suggested and "\\" not in suggested and not suggested.startswith(".")
    assert suggested.endswith("evil.txt")
    await bob.get_by_role("button", name="Chat").click()
    link = bob.locator("#chat-log .file-link")
    assert await link.locator(".file-name").text_content() == STORED_NAME
    got, suggested_chat = await _download(bob, link)
    assert got == data
    assert suggested_chat == suggested
    for page in (alice, bob):
        assert await page.locator("#chat-log img, #panel-files img").count() == 0
        assert await page.evaluate("() => window.__xss") is None
    await bob.screenshot(path=str(screenshot_dir / "f03-chat-file-link.png"))

    # Over the server's limit: a typed error inline, with the limit.
    await alice.set_input_files(
        "#chat-file-input",
        files=[
            {
                "name": "big.bin",
                "mimeType": "application/octet-stream",
                "buffer": os.urandom(MAX_UPLOAD + 200 * 1024),
            }
        ],
    )
    error = alice.locator("#upload-error")
    await error.wait_for(state="visible", timeout=15000)
    assert await error.get_attribute("data-code") == "file_too_large"
    assert await error.text_content() == "“big.bin” is too large to share: at most 1.0 MB."
    assert await attach.is_visible() and await attach.is_enabled()
    await alice.screenshot(path=str(screenshot_dir / "f04-upload-too-large.png"))

    # An empty file: another typed error, replacing the first.
    await alice.set_input_files(
        "#chat-file-input",
        files=[{"name": "empty.txt", "mimeType": "text/plain", "buffer": b""}],
    )
    await _wait_js(
        alice,
        "() => document.getElementById('upload-error').dataset.code === 'empty_file'",
        10,
        "the empty-file error",
    )
    assert await error.text_content() == "“empty.txt” is empty: there is nothing to share."

    # Neither refused upload is listed.
    await asyncio.sleep(0.5)
    await alice.get_by_role("button", name="Files").click()
    await alice.locator("#panel-files .file-row").first.wait_for(timeout=5000)
    assert await alice.locator("#panel-files .file-row").count() == 1
    await alice.set_viewport_size(PHONE)
    await alice.screenshot(path=str(screenshot_dir / "f05-files-panel-phone.png"))
