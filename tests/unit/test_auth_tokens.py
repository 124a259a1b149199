"""Access tokens (RFC 7519): claims shape, expiry, not-before, secret, room, revocation."""

from __future__ import annotations

import time

import jwt
import pytest

from signaling.auth.tokens import (
    TokenError,
    TokenExpired,
    TokenInvalid,
    TokenMissing,
    TokenNotYetValid,
    TokenRevoked,
    VideoGrant,
    WrongRoom,
    check_not_revoked,
    create_access_token,
    parse_ttl,
    verify_access_token,
)

SECRET = "unit-test-secret-" + "s" * 32
GRANT = VideoGrant(room="r1", roomJoin=True, canPublish=True, canSubscribe=True)


def test_claims_are_livekit_shaped() -> None:
    token, claims = create_access_token(
        SECRET, identity="alice", name="Alice", ttl_s=900, video=GRANT
    )
    payload = jwt.decode(token, SECRET, algorithms=["HS256"], issuer="sfu")
    assert {"sub", "name", "exp", "nbf", "iss", "jti", "iat", "video"} <= set(payload)
    assert payload["exp"] - payload["nbf"] == 900
    assert set(payload["video"]) == {
        "room", "roomJoin", "roomCreate", "roomAdmin", "canPublish", "canSubscribe",
        "canPublishData",
    }  # fmt: skip
    verified = verify_access_token(token, SECRET, room="r1")
    assert verified == claims


def test_unique_jti() -> None:
    a = create_access_token(SECRET, identity="a", ttl_s=60, video=GRANT)[1]
    b = create_access_token(SECRET, identity="a", ttl_s=60, video=GRANT)[1]
    assert a.jti != b.jti


@pytest.mark.parametrize(
    ("make", "error", "code"),
    [
        (lambda: None, TokenMissing, "token_missing"),
        (lambda: "", TokenMissing, "token_missing"),
        (lambda: "x" * 5000, TokenInvalid, "token_invalid"),
        (lambda: "a.b.c", TokenInvalid, "token_invalid"),
        (
            lambda: create_access_token(
                SECRET, identity="a", ttl_s=5, video=GRANT, now=time.time() - 60
            )[0],
            TokenExpired,
            "token_expired",
        ),
        (
            lambda: create_access_token(
                SECRET, identity="a", ttl_s=600, video=GRANT, not_before=time.time() + 120
            )[0],
            TokenNotYetValid,
            "token_not_yet_valid",
        ),
        (
            lambda: create_access_token(
                "other-secret-" + "o" * 32, identity="a", ttl_s=60, video=GRANT
            )[0],
            TokenInvalid,
            "token_invalid",
        ),
        (
            lambda: create_access_token(
                SECRET, identity="a", ttl_s=60, video=VideoGrant(room="r2", roomJoin=True)
            )[0],
            WrongRoom,
            "wrong_room",
        ),
        (
            lambda: create_access_token(
                SECRET, identity="a", ttl_s=60, video=VideoGrant(room="r1")
            )[0],
            WrongRoom,
            "wrong_room",
        ),
        (
            lambda: jwt.encode({"sub": "a", "exp": time.time() + 60}, SECRET, algorithm="HS256"),
            TokenInvalid,
            "token_invalid",
        ),
        (
            lambda: jwt.encode(
                {"sub": "a", "iss": "sfu", "jti": "j", "nbf": 0, "exp": time.time() + 60},
                SECRET,
                algorithm="HS512",
            ),
            TokenInvalid,
            "token_invalid",
        ),
    ],
)
@pytest.mark.filterwarnings("ignore:The HMAC key")
def test_refusals(make: object, error: type[TokenError], code: str) -> None:
    token = make()  # type: ignore[operator]
    with pytest.raises(error) as info:
        verify_access_token(token, SECRET, room="r1")
    assert info.value.code == code
    assert info.value.status == (403 if code == "wrong_room" else 401)


def test_alg_none_refused() -> None:
    token = jwt.encode(
        {"sub": "a", "iss": "sfu", "jti": "j", "nbf": 0, "exp": int(time.time()) + 60,
         "video": {"room": "r1", "roomJoin": True}},
        "",
        algorithm="none",
    )  # fmt: skip
    with pytest.raises(TokenInvalid):
        verify_access_token(token, SECRET, room="r1")


def test_account_token_only_where_no_room() -> None:
    account, _ = create_access_token(
        SECRET, identity="a", ttl_s=60, video=VideoGrant(roomCreate=True)
    )
    assert verify_access_token(account, SECRET, room=None).sub == "a"
    with pytest.raises(WrongRoom):
        verify_access_token(account, SECRET, room="r1")
    room_token, _ = create_access_token(SECRET, identity="a", ttl_s=60, video=GRANT)
    with pytest.raises(TokenInvalid):
        verify_access_token(room_token, SECRET, room=None)


class _Denylist:
    def __init__(self, revoked: set[str]) -> None:
        self.revoked = revoked

    async def is_revoked(self, jti: str) -> bool:
        return jti in self.revoked


async def test_check_not_revoked() -> None:
    _, claims = create_access_token(SECRET, identity="a", ttl_s=60, video=GRANT)
    await check_not_revoked(claims, _Denylist(set()))
    with pytest.raises(TokenRevoked) as info:
        await check_not_revoked(claims, _Denylist({claims.jti}))
    assert info.value.code == "token_revoked"


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("1h", 3600), ("7d", 604800)]
)
def test_parse_ttl(text: str, seconds: int) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "-1h", "0", "1.5h", "1w", "abc"])
def test_parse_ttl_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ttl(text)
