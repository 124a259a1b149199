"""Authentication: bcrypt passwords, stateless one-time codes, JWT access tokens (RFC 7519),
the JWT secret's resolution, rate limiting and one-time-code delivery."""

from signaling.auth.tokens import (
    AccessClaims,
    TokenError,
    VideoGrant,
    create_access_token,
    verify_access_token,
)

__all__ = [
    "AccessClaims",
    "TokenError",
    "VideoGrant",
    "create_access_token",
    "verify_access_token",
]
