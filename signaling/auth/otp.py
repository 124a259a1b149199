"""Passwordless login with one-time codes, verified statelessly.

Request: the server draws a 6-digit code (``secrets.randbelow``), delivers it through a
``CodeSender`` and returns ``{hash, expires}`` to the client, where::

    hash = HMAC-SHA256(key, "sfu-otp-v1\\n" + identity + "\\n" + code + "\\n" + str(expires))

``key`` is derived from the JWT secret, ``identity`` is ``"email:<addr>"`` or
``"phone:<e164>"`` and ``expires`` is integer Unix seconds. Nothing is stored at request time.

Verify: the client sends identity, code, hash and expires back; the server recomputes the HMAC
and compares in constant time (``hmac.compare_digest``). Single use and the attempt limit are
enforced by the store (``otp_spent``: one record per hash, kept until ``expires`` by a TTL
index). This module holds the pure parts.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

CODE_DIGITS = 6


def generate_code() -> str:
    """A uniformly random 6-digit code, zero-padded (``"004217"``)."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def code_hash(key: bytes, identity: str, code: str, expires: int) -> str:
    """The 64-character lowercase hex HMAC-SHA256 binding identity, code and expiry."""
    message = f"sfu-otp-v1\n{identity}\n{code}\n{int(expires)}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def check_code(key: bytes, identity: str, code: str, expires: int, presented_hash: str) -> bool:
    """True when ``presented_hash`` is the HMAC of (identity, code, expires); constant time."""
    expected = code_hash(key, identity, code, expires)
    return hmac.compare_digest(expected.encode("ascii"), presented_hash.encode("utf-8"))
