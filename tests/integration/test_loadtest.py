"""The CI short load test: ``sfu loadtest`` against a real ``sfu serve`` subprocess.

The server runs as in bench/fanout.py (its own process, SFU_ICE_HOSTS=127.0.0.1, a random
SFU_JWT_SECRET) against the session's MongoDB-wire server. Everything is on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from signaling.loadtest.config import LoadTestConfig
from signaling.loadtest.runner import run_loadtest
from signaling.serverproc import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(sfu_server: tuple[str, str]) -> tuple[str, str]:
    """``(url, secret)`` of a running ``sfu serve`` subprocess."""
    return sfu_server


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signaling.cli", "loadtest", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if k != "SFU_JWT_SECRET"},
    )


@pytest.mark.timeout(90)
async def test_short_load_test_delivers_to_every_listener(server: tuple[str, str]) -> None:
    url, secret = server
    config = LoadTestConfig(
        url=url,
        room="ci-loadtest",
        audio_publishers=1,
        video_publishers=0,
        listeners=20,
        duration_s=5.0,
        join_rate=50.0,
        processes=1,
        token_secret=secret,
        ice_hosts=["127.0.0.1"],
    ).validate()
    report = await run_loadtest(config)

    assert not report["interrupted"]
    assert report["peers"]["failed"] == 0, report["join"]["failures"]
    assert report["peers"]["joined_publishers"] == 1
    assert report["peers"]["joined_listeners"] == 20
    [track] = report["tracks"]
    assert track["kind"] == "audio"
    assert track["packets_sent"] >= 5.0 * 50 * 0.9
    delivery = report["delivery"]
    assert delivery["delivery_pct"] >= 99.0, delivery
    assert delivery["listener_min_pct"] >= 99.0, delivery
    subscribers = report["subscribers"]
    assert subscribers["listeners_reporting"] == 19  # plus the decoding listener
    assert subscribers["tracks_expected"] == 1
    assert subscribers["tracks_received_min"] == 1  # every listener receives
    assert track["listeners_receiving"] == 19
    assert report["decoder"] is not None and report["decoder"]["frames"]["audio"] > 50
    assert report["latency_ms"]["samples"] > 100
    assert report["latency_ms"]["p50"] is not None and report["latency_ms"]["p50"] < 50
    assert report["join"]["count"] == 21 and report["join"]["p99_ms"] is not None
    server_stats = report["server"]
    assert server_stats["metrics"] == "available"
    assert isinstance(server_stats["cpu_cores_avg"], float)
    assert report["tester"]["cpu_s"] > 0
    assert len(report["timeline"]) >= 5


@pytest.mark.timeout(60)
def test_cli_writes_a_parseable_json_report(server: tuple[str, str], tmp_path: Path) -> None:
    url, secret = server
    out = tmp_path / "report.json"
    result = _cli(
        "--url",
        url,
        "--room",
        "ci-json",
        "--audio-publishers",
        "1",
        "--listeners",
        "2",
        "--duration",
        "2s",
        f"--token-secret={secret}",  # a secret may begin with "-": never a separate argv word
        "--quiet",
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["tool"] == "sfu loadtest"
    assert report["config"]["token_secret"] == "***"  # never the secret itself
    assert report["peers"]["joined_listeners"] == 2
    assert report["delivery"]["delivery_pct"] >= 99.0
    assert "Published tracks" in result.stdout


def test_unreachable_server_is_one_line_and_exit_code_2() -> None:
    port = free_port()  # nothing listens there
    result = _cli("--url", f"http://127.0.0.1:{port}", "--token-secret", "s" * 40, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot reach" in lines[0] and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--token-secret", "x"],  # no --url
        ["--url", "http://127.0.0.1:9", "--token-secret", "x", "--duration", "soon"],
        ["--url", "http://127.0.0.1:9", "--token", "t", "--listeners", "5"],
        ["--url", "http://127.0.0.1:9"],  # no secret nor token
    ],
)
def test_bad_arguments_are_one_line_and_exit_code_2(args: list[str]) -> None:
    result = _cli(*args, timeout=30)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
