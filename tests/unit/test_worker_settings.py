"""``SFU_WORKERS`` / ``sfu serve --workers`` (issue 12): parsed and validated, and the server
says at start where media runs."""

from __future__ import annotations

import logging
import os

import pytest
from pydantic import ValidationError

from signaling.cli import build_parser, log_workers
from signaling.settings import Settings


def test_default_is_the_usable_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SFU_WORKERS", raising=False)
    assert Settings().workers == len(os.sched_getaffinity(0)) >= 1


def test_env_and_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFU_WORKERS", "0")
    assert Settings().workers == 0
    monkeypatch.setenv("SFU_WORKERS", "3")
    assert Settings().workers == 3
    monkeypatch.setenv("SFU_WORKERS", "-1")
    with pytest.raises(ValidationError, match="workers"):
        Settings()


def test_cli_flag() -> None:
    assert build_parser().parse_args(["serve", "--workers", "2"]).workers == 2
    assert build_parser().parse_args(["serve"]).workers is None


def test_start_log_says_where_media_runs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="signaling.cli"):
        local = log_workers(Settings(workers=0))
        message = log_workers(Settings(workers=4))
    assert "control process" in local
    assert "SFU_WORKERS=4" in message and "4 worker processes" in message
    assert [record.getMessage() for record in caplog.records] == [local, message]
