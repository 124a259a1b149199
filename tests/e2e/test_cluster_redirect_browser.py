"""A browser joining a full cluster node follows its ``redirect`` to another node (issue 13,
docs/cluster.md, docs/protocol.md ``redirect``).

Two ``sfu serve`` nodes share Redis, MongoDB and the JWT secret; node A admits one
participant and already has one. Chromium opens A's token link: A answers the join with
``redirect`` (capacity) naming B, the page loads itself from B (the CSP allows sockets to the
page's own origin only) and joins there with the same room token.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from signaling.client import RoomClient
from signaling.serverproc import start_server, stop_server, wait_healthy
from tests.e2e.conftest import CHROMIUM_ARGS, launch_chromium
from tests.support.redis import RedisServer, find_redis_server, start_redis
from tests.support.tokens import room_token

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        find_redis_server() is None, reason="redis-server missing (scripts/test.sh installs it)"
    ),
]

ROOM = "redirect-room"
SECRET = "cluster-redirect-" + secrets.token_urlsafe(32)


def _token(identity: str) -> str:
    return room_token(SECRET, ROOM, identity, publish=False)


@pytest.fixture
def two_nodes(mongo_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Nodes a (capacity 1) and b on one Redis and one MongoDB: their base URLs."""
    redis: RedisServer = start_redis(tmp_path)
    db = f"redirect_{uuid.uuid4().hex[:12]}"
    procs = []
    urls: list[str] = []
    try:
        for name, extra in (("a", {"SFU_MAX_PARTICIPANTS": "1"}), ("b", {})):
            env = {
                "SFU_JWT_SECRET": SECRET,
                "MONGO_URL": mongo_url,
                "SFU_MONGO_DB": db,
                "SFU_REDIS_URL": redis.url,
                "SFU_NODE_ID": name,
                **extra,
            }
            with (tmp_path / f"node-{name}.log").open("wb") as log:
                process, url = start_server(tmp_path / name, env=env, output=log)
            procs.append(process)
            urls.append(url)
        for process, url in zip(procs, urls, strict=True):
            wait_healthy(url, process, timeout_s=30)
        yield urls[0], urls[1]
    finally:
        for process in procs:
            stop_server(process)
        redis.stop()


async def test_browser_follows_capacity_redirect(
    two_nodes: tuple[str, str], chromium: Path
) -> None:
    a, b = two_nodes
    first = RoomClient(a, ROOM, "first", token=_token("first"))
    await first.connect()  # a is now at capacity
    try:
        async with launch_chromium(chromium, list(CHROMIUM_ARGS)) as browser:
            page: Any = await browser.new_page()
            logs: list[str] = []
            page.on("console", lambda msg: logs.append(f"{msg.type}: {msg.text}"))
            await page.goto(f"{a}/?room={ROOM}&name=browser#token={quote(_token('browser'))}")
            deadline = time.monotonic() + 15
            state: list[Any] = []
            while time.monotonic() < deadline:
                try:
                    state = await page.evaluate(
                        "() => [location.origin, window.sfu && window.sfu.state,"
                        " !document.getElementById('call-section').hidden]"
                    )
                except Exception:  # the page is navigating to b
                    state = []
                if state and state[1] == "joined" and state[2]:
                    break
                await asyncio.sleep(0.2)
            b_origin = f"{urlsplit(b).scheme}://{urlsplit(b).netloc}"
            assert state == [b_origin, "joined", True], (state, logs)
            me = await page.evaluate("() => window.sfu.me && window.sfu.me.identity")
            assert me == "browser"
            # Leave as a user does: a session that just drops is kept for its resume window,
            # and node b's drain at teardown would wait for it (10 s, then killed).
            await page.click("#leave-button")
            await page.wait_for_function("() => window.sfu.state === 'left'", timeout=10_000)
    finally:
        await first.close()
