"""``sfu serve`` keeps room tokens and invite codes out of its access log (issue 10, item 14)."""

from __future__ import annotations

import secrets
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from signaling.serverproc import start_server, stop_server, wait_healthy


def _get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> int:
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            status: int = resp.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_access_log_has_no_tokens(tmp_path: Path, mongo_url: str) -> None:
    room_token = "eyJroomtoken." + secrets.token_urlsafe(16)
    invite = "INV" + secrets.token_hex(8)
    log_path = tmp_path / "server.log"
    env = {
        "SFU_JWT_SECRET": secrets.token_urlsafe(48),
        "MONGO_URL": mongo_url,
        "SFU_MONGO_DB": f"access_{uuid.uuid4().hex[:12]}",
    }
    with log_path.open("wb") as out:
        proc, url = start_server(tmp_path / "data", env=env, output=out, log_level="info")
        try:
            wait_healthy(url, proc, timeout_s=30)
            assert _get(f"{url}/join?token={room_token}&x=1") == 200
            referer = {"Referer": f"{url}/join?token={room_token}"}
            _get(f"{url}/static/js/app.js", headers=referer)
            _get(f"{url}/join/{invite}")
            _get(f"{url}/api/join/{invite}", method="POST")
            _get(f"{url}/metrics?access_token={room_token}")
        finally:
            stop_server(proc)
    text = log_path.read_text(errors="replace")
    assert "GET /join?token=REDACTED&x=1 HTTP/1.1" in text  # the access log is on
    assert "/join/REDACTED" in text and "/api/join/REDACTED" in text
    assert room_token not in text
    assert invite not in text
