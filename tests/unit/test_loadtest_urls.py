"""``sfu loadtest --url`` with several servers (nodes of a cluster): peers spread round robin."""

from __future__ import annotations

import pytest

from signaling.cli import build_parser
from signaling.loadtest.cli import config_from_args
from signaling.loadtest.config import ConfigError, LoadTestConfig


def _config(*urls: str) -> LoadTestConfig:
    args = build_parser().parse_args(
        ["loadtest", *[x for u in urls for x in ("--url", u)], "--token-secret", "s" * 32]
    )
    return config_from_args(args)


def test_several_urls_spread_peers_round_robin() -> None:
    config = _config("http://127.0.0.1:8001/", "http://127.0.0.1:8002,http://127.0.0.1:8003")
    assert config.urls == [
        "http://127.0.0.1:8001",
        "http://127.0.0.1:8002",
        "http://127.0.0.1:8003",
    ]
    assert config.url == "http://127.0.0.1:8001"
    spread = [config.url_for(i) for i in range(6)]
    assert spread == config.urls * 2
    assert config.ice_hosts == ["127.0.0.1"]


def test_one_bad_url_among_several_is_refused() -> None:
    with pytest.raises(ConfigError, match="--url"):
        _config("http://127.0.0.1:8001", "ftp://elsewhere")
