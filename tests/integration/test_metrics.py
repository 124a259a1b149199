"""/metrics, /healthz and /readyz against a running server with real media."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from signaling.app import create_app
from signaling.client import RoomClient
from signaling.settings import Settings
from tests.support.media import ToneTrack


async def scrape(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.labels or sample.name.endswith("_count"):
                values[sample.name] = sample.value
    return values


async def test_metrics_follow_real_media(
    sfu_url: str, room_client: Callable[..., RoomClient]
) -> None:
    speaker = room_client("metrics", "speaker")
    listener = room_client("metrics", "listener", count_only=True)
    try:
        before = await scrape(sfu_url)
        assert before["sfu_participants"] == 0
        assert before["sfu_packets_forwarded_total"] == 0
        assert before["process_cpu_seconds_total"] > 0
        assert before["process_resident_memory_bytes"] > 10_000_000
        assert before["process_open_fds"] > 0
        assert before["sfu_asyncio_tasks"] >= 1  # at least the lag watcher and this handler
        await speaker.connect()
        await speaker.publish([ToneTrack(440.0)])
        await listener.connect()
        await listener.wait_for(lambda: sum(listener.counter.packets.values()) >= 50)
        during = await scrape(sfu_url)
        assert during["sfu_rooms"] == 1
        assert during["sfu_participants"] == 2
        assert during["sfu_producers"] == 1
        assert during["sfu_consumers"] == 1
        assert during["sfu_packets_received_total"] >= 50
        assert during["sfu_packets_forwarded_total"] >= 45
        assert during["sfu_packets_sent_total"] >= during["sfu_packets_forwarded_total"] - 5
        assert during["sfu_join_seconds_count"] == 2
        assert during["sfu_event_loop_lag_seconds_count"] > 0
        # Two participants own tasks (WebSocket handlers, ICE, DTLS, RTCP): more than before.
        assert during["sfu_asyncio_tasks"] > before["sfu_asyncio_tasks"]
        await listener.close()
        await speaker.close()
        after = await scrape(sfu_url)
        assert after["sfu_participants"] == 0
        # Counters are monotonic: closed objects keep counting in the totals.
        for name in ("sfu_packets_received_total", "sfu_packets_forwarded_total"):
            assert after[name] >= during[name], name
    finally:
        await listener.close()
        await speaker.close()


async def test_health_and_readiness(sfu_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(sfu_url + "/healthz") as resp:
            assert resp.status == 200
        async with http.get(sfu_url + "/readyz") as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] == "ready"


async def test_metrics_token_required_when_set(
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
    accounts_settings: Settings,
) -> None:
    """``SFU_METRICS_TOKEN`` set: /metrics answers only to ``Authorization: Bearer <token>``."""
    token = "metrics-" + "m" * 32
    settings = accounts_settings.model_copy(update={"metrics_token": SecretStr(token)})
    client = await aiohttp_client(create_app(settings))
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {token}"},
        {"Authorization": f"Bearer {token}x"},
    ):
        resp = await client.get("/metrics", headers=headers)
        assert resp.status == 401, headers
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        body = await resp.json(content_type=None)
        assert body["code"] == "unauthorized"
        assert "sfu_" not in await resp.text()
    resp = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200
    assert "sfu_packets_forwarded_total" in await resp.text()
    resp = await client.get("/healthz")  # liveness probes stay open
    assert resp.status == 200


async def test_metrics_open_without_token(
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
    accounts_settings: Settings,
) -> None:
    client = await aiohttp_client(create_app(accounts_settings))
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert "sfu_packets_forwarded_total" in await resp.text()
