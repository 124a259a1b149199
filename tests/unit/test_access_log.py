"""Credentials never reach the access log: query tokens, invite codes (issue 10, item 14)."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from signaling.access_log import RedactingAccessLogger, redact_target


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/join?token=eyJ.a.b", "/join?token=REDACTED"),
        ("/x?room=r&access_token=s3&name=n", "/x?room=r&access_token=REDACTED&name=n"),
        ("/x?Refresh_Token=a&CODE=123456&sessionToken=z", None),
        ("/join/INVITECODE", "/join/REDACTED"),
        ("/api/join/INVITECODE", "/api/join/REDACTED"),
        ("/static/app.js?v=3", "/static/app.js?v=3"),
        ("https://sfu.example/join?token=abc#token=def", "https://sfu.example/join?token=REDACTED"),
        ("/x?token", "/x?token"),  # no value, nothing to hide
    ],
)
def test_redact_target(target: str, expected: str | None) -> None:
    redacted = redact_target(target)
    if expected is not None:
        assert redacted == expected
    for secret in ("eyJ.a.b", "s3", "INVITECODE", "123456", "abc", "def"):
        assert secret not in redacted
    if expected is None:
        assert redacted.count("REDACTED") == 3


def test_logger_line_has_no_token(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.access")
    access = RedactingAccessLogger(logger, "")
    request = make_mocked_request(
        "GET",
        "/join?token=SECRET1&room=r",
        headers={"Referer": "http://h/join?token=SECRET2", "User-Agent": "ua/1"},
    )
    with caplog.at_level(logging.INFO, logger="test.access"):
        assert access.enabled
        access.log(request, web.Response(status=200, body=b"hello"), 0.01)
    (record,) = caplog.records
    line = record.getMessage()
    assert "SECRET" not in line
    assert '"GET /join?token=REDACTED&room=r HTTP/1.1" 200 ' in line
    assert '"http://h/join?token=REDACTED" "ua/1"' in line
