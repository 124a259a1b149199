"""static/js/files.js in Chromium against ``sfu serve``: upload with progress, list, download
byte-for-byte, and problem details surfacing as ApiError."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from tests.e2e.conftest import create_invite

if TYPE_CHECKING:
    from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

FILES_JS = """
async ({room, token}) => {
  const m = await import('/static/js/files.js');
  const bytes = new Uint8Array(3 * 1024 * 1024 + 5);
  for (let i = 0; i < bytes.length; i += 65536) {
    crypto.getRandomValues(bytes.subarray(i, Math.min(i + 65536, bytes.length)));
  }
  const name = '<img src=x onerror=alert(1)> résumé.bin';
  const file = new File([bytes], name, {type: 'application/pdf'});
  let progress = 0;
  const stored = await m.uploadFile(room, token, file, (sent) => { progress = sent; });
  const listed = await m.listFiles(room, token);
  const blob = await m.downloadFile(room, token, stored.id);
  const back = new Uint8Array(await blob.arrayBuffer());
  let same = back.length === bytes.length;
  for (let i = 0; same && i < bytes.length; i++) same = back[i] === bytes[i];
  const failure = await m.listFiles(room, 'not-a-token').then(() => null, (err) => err);
  const aborter = new AbortController();
  aborter.abort();
  const cancelled = await m.uploadFile(room, token, file, null, {signal: aborter.signal})
    .then(() => null, (err) => err.code);
  return {
    stored, listed, same, progress, blobType: blob.type,
    failure: failure && {name: failure.name, status: failure.status, code: failure.code},
    cancelled, size: m.formatSize(stored.size),
  };
}
"""


async def test_files_module_round_trip(browser: Any, server: ServerProcess) -> None:
    code = await create_invite(server.base_url, "Files", "files-owner@example.com")
    async with aiohttp.ClientSession(server.base_url) as http:
        async with http.post(f"/api/join/{code}", json={"display_name": "Guest"}) as resp:
            assert resp.status == 200, await resp.text()
            joined = await resp.json()
    room, token = joined["room"]["id"], joined["token"]

    page = await browser.new_page()
    page.on("console", lambda msg: server.page_logs.append(f"{msg.type}: {msg.text}"))
    try:
        await page.goto(server.base_url + "/")
        result = await page.evaluate(FILES_JS, {"room": room, "token": token})
    finally:
        await page.close()

    stored = result["stored"]
    assert stored["name"] == "<img src=x onerror=alert(1)> résumé.bin"  # text, as sent
    assert stored["size"] == 3 * 1024 * 1024 + 5
    assert stored["content_type"] == "application/pdf"
    assert result["listed"] == [stored]
    assert result["same"] is True
    assert result["progress"] == stored["size"]
    assert result["blobType"] == "application/octet-stream"
    assert result["failure"] == {"name": "ApiError", "status": 401, "code": "token_invalid"}
    assert result["cancelled"] == "aborted"
    assert result["size"] == "3.0 MB"
