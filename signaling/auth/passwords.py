"""Password hashing with bcrypt and the password rules.

bcrypt is deliberately slow (cost 12 is ~250 ms), so hashing and checking run in a worker
thread (``asyncio.to_thread``) and never block the event loop. bcrypt only reads the first 72
bytes of a password (and bcrypt >= 5 refuses longer input), so the rules cap passwords at 72
UTF-8 bytes rather than silently ignoring the tail.

Rules (after NIST SP 800-63B: length over composition): 10 to 72 UTF-8 bytes and at least
10 characters, no NUL or other control characters, not only whitespace, at least 4 distinct
characters, not the email address (or its local part), not a well-known password.
"""

from __future__ import annotations

import asyncio
import functools

import bcrypt

MIN_CHARS = 10
MAX_BYTES = 72

_COMMON = frozenset(
    {
        "1234567890",
        "12345678910",
        "0123456789",
        "password123",
        "password1234",
        "passw0rd123",
        "qwertyuiop",
        "1q2w3e4r5t",
        "qwerty1234",
        "iloveyou123",
        "letmein123",
        "administrator",
        "welcome123",
        "changeme123",
    }
)


@functools.lru_cache(maxsize=4)
def _dummy_hash(cost: int) -> bytes:
    """A valid hash to check against when the user does not exist, so that a wrong email costs
    as much time as a wrong password (uniform error, no user enumeration by timing)."""
    return bcrypt.hashpw(b"not-a-real-password", bcrypt.gensalt(cost))


class PasswordRuleError(ValueError):
    """The password breaks a rule; ``str(exc)`` says which, without echoing the password."""


def check_password_rules(password: str, *, email: str | None = None) -> None:
    """Raise :class:`PasswordRuleError` if ``password`` breaks a rule (see the module doc)."""
    if len(password) < MIN_CHARS:
        raise PasswordRuleError(f"password must have at least {MIN_CHARS} characters")
    try:
        encoded = password.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PasswordRuleError("password must be valid Unicode text") from exc
    if len(encoded) > MAX_BYTES:
        raise PasswordRuleError(f"password must be at most {MAX_BYTES} bytes in UTF-8")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in password):
        raise PasswordRuleError("password must not contain control characters")
    if not password.strip():
        raise PasswordRuleError("password must not be only whitespace")
    if len(set(password)) < 4:
        raise PasswordRuleError("password must use at least 4 different characters")
    lowered = password.lower()
    if email is not None:
        local = email.split("@", 1)[0].lower()
        if lowered in (email.lower(), local):
            raise PasswordRuleError("password must not be your email address")
    if lowered in _COMMON:
        raise PasswordRuleError("password is too common")


def _hash_sync(password: str, cost: int) -> str:
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(cost)).decode("ascii")


def _check_sync(password: str, hashed: str | None, dummy_cost: int) -> bool:
    try:
        candidate = password.encode("utf-8")
    except UnicodeEncodeError:
        candidate = b""
    if not candidate or len(candidate) > MAX_BYTES or b"\x00" in candidate:
        bcrypt.checkpw(b"x", _dummy_hash(dummy_cost))  # same cost as a real miss
        return False
    if hashed is None:
        bcrypt.checkpw(candidate, _dummy_hash(dummy_cost))
        return False
    try:
        return bcrypt.checkpw(candidate, hashed.encode("ascii"))
    except ValueError:
        return False


async def hash_password(password: str, cost: int = 12) -> str:
    """bcrypt hash (``$2b$<cost>$...``, 60 ASCII chars) of ``password``; runs in a thread.

    ``cost`` is bcrypt's log2 work factor (4..31). Call :func:`check_password_rules` first.
    """
    return await asyncio.to_thread(_hash_sync, password, cost)


async def verify_password(password: str, hashed: str | None, *, dummy_cost: int = 12) -> bool:
    """True if ``password`` matches the bcrypt hash ``hashed``; runs in a thread.

    With ``hashed=None`` (unknown user) it still spends a bcrypt check at ``dummy_cost`` (pass
    the configured cost) and returns False, so a wrong email and a wrong password look alike.
    """
    return await asyncio.to_thread(_check_sync, password, hashed, dummy_cost)
