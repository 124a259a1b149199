"""JWT access tokens (RFC 7519, HS256) with grants shaped like LiveKit's.

A token's claims (:class:`AccessClaims`)::

    {"sub": "<identity>", "name": "<display name>", "iss": "sfu", "jti": "<random>",
     "iat": 1700000000, "nbf": 1700000000, "exp": 1700000900,
     "video": {"room": "<room id>" | null, "roomJoin": true, "roomCreate": false,
               "roomAdmin": false, "canPublish": true, "canSubscribe": true,
               "canPublishData": true}}

Two kinds are issued: *account* tokens (``video.room`` is null, ``roomCreate`` true) authorise
the ``/api`` endpoints; *room* tokens (``video.room`` set, ``roomJoin`` true) authorise a
WebSocket join, WHIP or WHEP for that room only.

Verification (:func:`verify_access_token`) is pure and synchronous; revocation (a ``jti``
denylist in MongoDB) is checked by :func:`check_not_revoked` with any object that has an async
``is_revoked(jti)`` (:class:`RevocationChecker`, implemented by ``signaling.store.Store``).

Errors: every failure raises a :class:`TokenError` subclass with a stable ``code``
(``token_missing``, ``token_invalid``, ``token_expired``, ``token_not_yet_valid``,
``token_revoked``, ``wrong_room``) and the HTTP ``status`` to answer with (401, or 403 for a
valid token for another room).
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Literal, Protocol

import jwt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ALGORITHM = "HS256"
ISSUER = "sfu"
MAX_TOKEN_CHARS = 4096
"""Longer strings are refused before any parsing."""


class TokenError(Exception):
    """A token was refused. ``code`` is stable (API clients switch on it); ``status`` is HTTP."""

    code = "token_invalid"
    status = 401

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class TokenMissing(TokenError):
    """No token was presented."""

    code = "token_missing"


class TokenInvalid(TokenError):
    """Malformed, wrongly signed, wrong issuer, or wrong kind of token."""

    code = "token_invalid"


class TokenExpired(TokenError):
    """``exp`` is in the past."""

    code = "token_expired"


class TokenNotYetValid(TokenError):
    """``nbf`` (or ``iat``) is in the future."""

    code = "token_not_yet_valid"


class TokenRevoked(TokenError):
    """The token's ``jti`` was revoked (logout)."""

    code = "token_revoked"


class WrongRoom(TokenError):
    """A valid token, but not for this room (or without ``roomJoin``)."""

    code = "wrong_room"
    status = 403


class VideoGrant(BaseModel):
    """LiveKit-shaped video grant. ``room`` None means "no particular room" (account token).

    Two fields go beyond LiveKit's grant: ``roomKind`` (``conference`` or ``podcast``, the
    kind of the room the token admits to; the first join decides a live room's kind) and
    ``role`` (the stage role to start with: ``host``, ``moderator``, ``speaker`` or
    ``listener``; None: ``host`` with ``roomAdmin``, else ``speaker`` with ``canPublish``,
    else ``listener``). Tokens from an invite (``POST /api/join/{code}``) also carry
    ``invite`` (the code that admitted the holder, so a removal can revoke it) and, for a
    guest, ``device`` (the key the guest's browser keeps, so a removal bars that browser).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    room: str | None = None
    roomJoin: bool = False
    roomCreate: bool = False
    roomAdmin: bool = False
    canPublish: bool = False
    canSubscribe: bool = False
    canPublishData: bool = False
    roomKind: Literal["conference", "podcast"] | None = None
    role: Literal["host", "moderator", "speaker", "listener"] | None = None
    invite: str | None = None
    device: str | None = None


class AccessClaims(BaseModel):
    """The verified claims of an access token (times are integer Unix seconds)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sub: str = Field(min_length=1, max_length=256)
    name: str | None = None
    iss: str
    jti: str = Field(min_length=1, max_length=128)
    iat: int | None = None
    nbf: int
    exp: int
    video: VideoGrant = Field(default_factory=VideoGrant)


class RevocationChecker(Protocol):
    """Anything that can tell whether a ``jti`` was revoked."""

    async def is_revoked(self, jti: str) -> bool:
        """True when the token with this ``jti`` must be refused."""
        ...


def create_access_token(
    secret: str,
    *,
    identity: str,
    ttl_s: int,
    video: VideoGrant,
    name: str | None = None,
    now: float | None = None,
    not_before: float | None = None,
    jti: str | None = None,
) -> tuple[str, AccessClaims]:
    """Sign a new HS256 token; returns ``(token, claims)``.

    ``ttl_s``: lifetime in seconds from ``now`` (default: the current time). ``not_before``
    defaults to ``now``. ``jti`` defaults to 128 random bits, URL-safe.
    """
    issued = int(time.time() if now is None else now)
    claims = AccessClaims(
        sub=identity,
        name=name,
        iss=ISSUER,
        jti=jti or secrets.token_urlsafe(16),
        iat=issued,
        nbf=int(issued if not_before is None else not_before),
        exp=issued + int(ttl_s),
        video=video,
    )
    payload: dict[str, Any] = claims.model_dump(exclude_none=True)
    # LiveKit's grant fields always; our extensions only when set.
    payload["video"] = {
        k: v
        for k, v in claims.video.model_dump().items()
        if v is not None or k not in ("roomKind", "role", "invite", "device")
    }
    token = jwt.encode(payload, secret, algorithm=ALGORITHM)
    return token, claims


def verify_access_token(
    token: str | None,
    secret: str,
    *,
    room: str | None,
    leeway_s: float = 0.0,
) -> AccessClaims:
    """Verify signature, issuer, ``exp`` and ``nbf``, and the room; returns the claims.

    ``room`` None accepts only *account* tokens (``video.room`` null); a room name requires
    ``video.room == room`` and ``roomJoin``. Does not check revocation (see
    :func:`check_not_revoked`). Raises a :class:`TokenError` subclass.
    """
    if not token:
        raise TokenMissing("an access token is required")
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise TokenInvalid("malformed token")
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            leeway=leeway_s,
            options={"require": ["exp", "nbf", "iss", "sub", "jti"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpired("token has expired") from exc
    except jwt.ImmatureSignatureError as exc:
        raise TokenNotYetValid("token is not yet valid") from exc
    except (jwt.InvalidTokenError, ValueError, TypeError) as exc:
        raise TokenInvalid("invalid token") from exc
    try:
        claims = AccessClaims.model_validate(payload)
    except ValidationError as exc:
        raise TokenInvalid("invalid token claims") from exc
    if room is None:
        if claims.video.room is not None:
            raise TokenInvalid("a room token cannot be used here; use an account token")
    elif claims.video.room != room or not claims.video.roomJoin:
        raise WrongRoom("token does not grant joining this room")
    return claims


async def check_not_revoked(claims: AccessClaims, checker: RevocationChecker) -> None:
    """Raise :class:`TokenRevoked` if ``claims.jti`` is on the denylist."""
    if await checker.is_revoked(claims.jti):
        raise TokenRevoked("token has been revoked")


def parse_ttl(text: str) -> int:
    """Parse a duration like ``90``, ``90s``, ``15m``, ``1h``, ``7d`` into seconds (> 0).

    Raises ``ValueError`` for anything else.
    """
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    raw = text.strip().lower()
    factor = 1
    if raw and raw[-1] in units:
        factor = units[raw[-1]]
        raw = raw[:-1]
    if not raw.isdigit():
        raise ValueError(f"invalid duration {text!r} (use e.g. 90s, 15m, 1h, 7d)")
    seconds = int(raw) * factor
    if seconds <= 0:
        raise ValueError("duration must be positive")
    return seconds
