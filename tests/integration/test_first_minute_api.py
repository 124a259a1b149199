"""Issue 16, "First minute": invite links that cannot be used answer with a page in words
(never JSON), the pre-join screen learns the room's title from a credential, and ``sfu serve``
prints a working demo link in development only."""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from signaling.serverproc import start_server, stop_server, wait_healthy
from tests.conftest import Api


async def _room_and_invite(
    api: Api, **invite: Any
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    owner = await api.register(f"owner-{uuid.uuid4().hex[:8]}@example.com")
    resp = await api.client.post(
        "/api/rooms", headers=api.auth(owner), json={"name": "Weekly sync", "kind": "conference"}
    )
    assert resp.status == 201, await resp.text()
    room: dict[str, Any] = (await resp.json())["room"]
    resp = await api.client.post(
        f"/api/rooms/{room['id']}/invites", headers=api.auth(owner), json=invite
    )
    assert resp.status == 201, await resp.text()
    return owner, room, await resp.json()


async def _page(api: Api, path: str) -> tuple[int, str, str]:
    resp = await api.client.get(path)
    return resp.status, resp.content_type, await resp.text()


async def test_a_malformed_invite_link_is_a_page_in_words(api: Api) -> None:
    status, ctype, text = await _page(api, "/join/bad$$code")
    assert status == 404 and ctype == "text/html"
    assert "This invite link does not work" in text
    assert "Ask the person who invited you for a new link." in text
    assert '"code"' not in text and "invite_not_found" not in text  # no problem JSON


async def test_an_unknown_invite_link_is_a_404_page(api: Api) -> None:
    status, ctype, text = await _page(api, "/join/" + secrets.token_urlsafe(16))
    assert status == 404 and ctype == "text/html"
    assert "This invite link does not work" in text


async def test_a_used_up_or_revoked_invite_link_is_a_410_page(api: Api) -> None:
    _owner, _room, invite = await _room_and_invite(api, max_uses=1)
    status, ctype, text = await _page(api, f"/join/{invite['code']}")
    assert status == 200 and ctype == "text/html" and 'src="/static/js/app.js"' in text
    assert (await api.client.post(f"/api/join/{invite['code']}", json={})).status == 200
    status, ctype, text = await _page(api, f"/join/{invite['code']}")
    assert status == 410 and ctype == "text/html"
    assert "This invite link has been used up" in text and "app.js" not in text

    _owner2, _room2, revoked = await _room_and_invite(api)
    assert await api.store.revoke_invite(revoked["code"])
    status, _ctype, text = await _page(api, f"/join/{revoked['code']}")
    assert status == 410 and "This invite link has been used up" in text


async def test_an_expired_invite_link_is_a_404_page(api: Api) -> None:
    _owner, _room, invite = await _room_and_invite(api)
    past = datetime.now(UTC) - timedelta(seconds=1)
    await api.store.db.invites.update_one({"_id": invite["code"]}, {"$set": {"expires_at": past}})
    status, ctype, text = await _page(api, f"/join/{invite['code']}")
    assert status == 404 and ctype == "text/html"
    assert "This invite link does not work" in text and "expired" in text


async def test_invite_preview_names_the_room_without_using_the_invite(api: Api) -> None:
    _owner, room, invite = await _room_and_invite(api, max_uses=1)
    resp = await api.client.get(f"/api/join/{invite['code']}")
    assert resp.status == 200, await resp.text()
    preview = await resp.json()
    assert preview == {
        "room": {"id": room["id"], "name": "Weekly sync", "kind": "conference"},
        "role": "speaker",
        "can_publish": True,
    }
    # The preview did not use the only redemption.
    assert (await api.client.post(f"/api/join/{invite['code']}", json={})).status == 200
    used = await api.client.get(f"/api/join/{invite['code']}")
    assert used.status == 410 and (await used.json())["code"] == "invite_used_up"
    unknown = await api.client.get("/api/join/" + secrets.token_urlsafe(16))
    assert unknown.status == 404 and (await unknown.json())["code"] == "invite_not_found"
    assert unknown.content_type == "application/problem+json"


async def test_listener_invite_preview_says_no_publishing(api: Api) -> None:
    _owner, _room, invite = await _room_and_invite(api, role="listener")
    preview = await (await api.client.get(f"/api/join/{invite['code']}")).json()
    assert preview["role"] == "listener" and preview["can_publish"] is False


async def test_room_token_preview_needs_that_rooms_token(api: Api) -> None:
    owner, room, invite = await _room_and_invite(api)
    grant = await (await api.client.post(f"/api/join/{invite['code']}", json={})).json()
    path = f"/api/rooms/{room['id']}/preview"
    resp = await api.client.get(path, headers={"Authorization": f"Bearer {grant['token']}"})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["room"]["name"] == "Weekly sync"
    # No credential, an account token, another room's token: nothing about the room.
    missing = await api.client.get(path)
    assert missing.status == 401 and "Weekly sync" not in await missing.text()
    account = await api.client.get(path, headers=api.auth(owner))
    assert account.status in (401, 403) and "Weekly sync" not in await account.text()
    _o2, other_room, other_invite = await _room_and_invite(api)
    other = await (await api.client.post(f"/api/join/{other_invite['code']}", json={})).json()
    wrong = await api.client.get(path, headers={"Authorization": f"Bearer {other['token']}"})
    assert wrong.status == 403 and "Weekly sync" not in await wrong.text()
    assert other_room["id"] != room["id"]


_LINK = re.compile(
    r"Demo room \(development\): open (http://127\.0\.0\.1:\d+/join/([A-Za-z0-9_-]+))"
)


def _serve(tmp_path: Path, mongo_url: str, db: str, secret: str, **env: str) -> tuple[str, str]:
    """Run ``sfu serve`` until healthy; returns (its output, its base URL)."""
    log_path = tmp_path / f"serve-{uuid.uuid4().hex[:6]}.log"
    full = {"MONGO_URL": mongo_url, "SFU_MONGO_DB": db, "SFU_JWT_SECRET": secret, **env}
    with log_path.open("wb") as out:
        proc, url = start_server(tmp_path / "data", env=full, output=out, log_level="info")
        try:
            wait_healthy(url, proc, timeout_s=30)
        except Exception as exc:
            raise AssertionError(log_path.read_text(errors="replace")) from exc
        finally:
            stop_server(proc)
    return log_path.read_text(errors="replace"), url


async def test_development_serve_prints_a_working_demo_link(tmp_path: Path, mongo_url: str) -> None:
    db = f"demo_{uuid.uuid4().hex[:12]}"
    secret = secrets.token_urlsafe(48)
    log_path = tmp_path / "serve.log"
    env = {"MONGO_URL": mongo_url, "SFU_MONGO_DB": db, "SFU_JWT_SECRET": secret}
    with log_path.open("wb") as out:
        proc, url = start_server(tmp_path / "data", env=env, output=out, log_level="info")
        try:
            wait_healthy(url, proc, timeout_s=30)
            text = log_path.read_text(errors="replace")
            found = _LINK.search(text)
            assert found is not None, text
            link, code = found.group(1), found.group(2)
            assert link.startswith(url)
            # One click: the link serves the client and redeems for a room token.
            async with aiohttp.ClientSession() as http:
                async with http.get(link) as resp:
                    assert resp.status == 200 and 'src="/static/js/app.js"' in await resp.text()
                async with http.get(f"{url}/api/join/{code}") as resp:
                    assert (await resp.json())["room"]["name"] == "Demo room"
                async with http.post(
                    f"{url}/api/join/{code}", json={"display_name": "you"}
                ) as resp:
                    assert resp.status == 200
                    grant = await resp.json()
                    assert grant["grants"]["canPublish"] and grant["room"]["name"] == "Demo room"
        finally:
            stop_server(proc)
    # A restart on the same database reuses the room and the link.
    again, _url = _serve(tmp_path, mongo_url, db, secret)
    second = _LINK.search(again)
    assert second is not None and second.group(2) == code


async def test_production_serve_prints_no_demo_link(tmp_path: Path, mongo_url: str) -> None:
    db = f"prod_{uuid.uuid4().hex[:12]}"
    text, _url = _serve(
        tmp_path,
        mongo_url,
        db,
        secrets.token_urlsafe(48),
        SFU_ENV="production",
        SFU_FILE_MASTER_KEY=secrets.token_hex(32),
    )
    assert "Demo room" not in text and "/join/" not in text
