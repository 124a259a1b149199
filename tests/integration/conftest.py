"""Fixtures for integration tests: a real server on loopback, real aiortc peers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer

from signaling.app import create_app
from signaling.settings import Settings


@pytest.fixture
def sfu_settings(tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    return Settings(ice_hosts=["127.0.0.1"], ice_servers=[], data_dir=tmp_path)


@pytest.fixture
async def sfu_url(sfu_settings: Settings) -> AsyncIterator[str]:
    """Base URL of a running server (HTTP + WebSocket) on 127.0.0.1."""
    app = create_app(sfu_settings)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()
