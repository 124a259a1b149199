"""TURN REST API credentials (draft-uberti-behave-turn-rest-00, coturn --use-auth-secret),
the settings that enable them, and their WHIP/WHEP ``Link`` header form (RFC 9725 §4.6).

The expected passwords were computed independently with OpenSSL:
``printf '%s' '1700003600:alice' | openssl dgst -sha1 -hmac 'north-wind-secret' -binary | base64``.
That coturn accepts them is checked against a real ``turnserver`` in
tests/integration/test_turn_tls.py and tests/e2e/test_turn_tls_browser.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from pydantic import ValidationError

from signaling.settings import Settings
from signaling.turn import (
    client_ice_servers,
    ice_server_link_headers,
    turn_credentials,
    turn_ice_server,
)

SECRET = "north-wind-secret"


def test_credentials_match_openssl_vectors() -> None:
    assert turn_credentials(SECRET, "alice", 3600, 1_700_000_000.9) == (
        "1700003600:alice",
        "Ev9WJy6IiNjALah9jF2ImB4FP0Y=",
    )
    # An identity holding the separator: coturn reads the expiry up to the first ':'.
    assert turn_credentials(SECRET, "room:bob", 86400, 1_700_000_000) == (
        "1700086400:room:bob",
        "R2O+H3I+vq3Ok8BXPZhk/t6uAg8=",
    )


def test_password_is_hmac_sha1_of_the_username() -> None:
    username, password = turn_credentials("s3cr3t", "carol", 60, 1_000)
    assert username == "1060:carol"
    expected = hmac.new(b"s3cr3t", b"1060:carol", hashlib.sha1).digest()
    assert base64.b64decode(password) == expected


@pytest.mark.parametrize(
    ("secret", "identity", "ttl_s"),
    [("", "alice", 60), (SECRET, "alice", 0), (SECRET, "alice", -5), (SECRET, "x" * 600, 60)],
)
def test_bad_arguments_raise_value_error(secret: str, identity: str, ttl_s: int) -> None:
    with pytest.raises(ValueError):
        turn_credentials(secret, identity, ttl_s, 1_000)


def test_ice_server_entry() -> None:
    entry = turn_ice_server(["turn:t.example:3478"], SECRET, "alice", 3600, 1_700_000_000)
    assert entry == {
        "urls": ["turn:t.example:3478"],
        "username": "1700003600:alice",
        "credential": "Ev9WJy6IiNjALah9jF2ImB4FP0Y=",
    }


def test_client_ice_servers_without_turn_is_the_base_list() -> None:
    base: list[dict[str, object]] = [{"urls": "stun:s.example:3478"}]
    assert client_ice_servers(Settings(), base, "alice") == base


def test_client_ice_servers_adds_fresh_turn_credentials() -> None:
    settings = Settings(
        turn_urls="turn:t.example:3478?transport=udp,turns:t.example:5349",  # type: ignore[arg-type]
        turn_secret=SECRET,  # type: ignore[arg-type]
        turn_ttl_s=3600,
    )
    base: list[dict[str, object]] = [{"urls": "stun:s.example:3478"}]
    servers = client_ice_servers(settings, base, "alice", now_s=1_700_000_000)
    assert servers == [
        {"urls": "stun:s.example:3478"},
        {
            "urls": ["turn:t.example:3478?transport=udp", "turns:t.example:5349"],
            "username": "1700003600:alice",
            "credential": "Ev9WJy6IiNjALah9jF2ImB4FP0Y=",
        },
    ]
    # A huge identity is cut to fit a STUN USERNAME instead of failing the join.
    long = client_ice_servers(settings, [], "é" * 400, now_s=1_700_000_000)
    username = str(long[0]["username"])
    assert username.startswith("1700003600:é") and len(username.encode()) <= 508


def test_turn_settings_are_validated() -> None:
    with pytest.raises(ValidationError, match="SFU_TURN_SECRET"):
        Settings(turn_urls="turn:t.example:3478")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="not a turn"):
        Settings(turn_urls="stun:t.example:3478", turn_secret="x")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="not a turn"):
        Settings(turn_urls="turn:u:p@t.example:3478", turn_secret="x")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="not a turn"):
        Settings(turn_urls="turn:t.example:3478>", turn_secret="x")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Settings(turn_ttl_s=0)
    with pytest.raises(ValidationError, match="SFU_TLS_CERT and SFU_TLS_KEY"):
        Settings(tls_cert="cert.pem")  # type: ignore[arg-type]


def test_link_headers_rfc9725() -> None:
    servers: list[dict[str, object]] = [
        {"urls": "stun:s.example:3478"},
        {
            "urls": ["turn:t.example:3478?transport=udp", "turns:t.example:5349"],
            "username": '1700003600:al"ice',
            "credential": "pw\\x",
        },
    ]
    assert ice_server_link_headers(servers) == [
        '<stun:s.example:3478>; rel="ice-server"',
        '<turn:t.example:3478?transport=udp>; rel="ice-server"; username="1700003600:al\\"ice"; '
        'credential="pw\\\\x"; credential-type="password"',
        '<turns:t.example:5349>; rel="ice-server"; username="1700003600:al\\"ice"; '
        'credential="pw\\\\x"; credential-type="password"',
    ]
