"""Password rules and bcrypt hashing (in a thread)."""

from __future__ import annotations

import pytest

from signaling.auth.passwords import (
    PasswordRuleError,
    check_password_rules,
    hash_password,
    verify_password,
)


@pytest.mark.parametrize(
    "password",
    ["correct horse battery", "Tr0ub4dor&3xyz", "längeres passwort ✓", "x" * 6 + "yzwv"],
)
def test_acceptable(password: str) -> None:
    check_password_rules(password, email="alice@example.com")


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short1!", "at least 10"),
        ("a" * 73, "72 bytes"),
        ("é" * 37, "72 bytes"),
        ("abcdefghij\x00", "control"),
        ("          ", "whitespace"),
        ("abababababab", "4 different"),
        ("alice@example.com", "email"),
        ("ALICE@EXAMPLE.COM", "email"),
        ("password123", "common"),
    ],
)
def test_rejected(password: str, reason: str) -> None:
    with pytest.raises(PasswordRuleError, match=reason):
        check_password_rules(password, email="alice@example.com")


async def test_hash_and_verify() -> None:
    hashed = await hash_password("correct horse battery", cost=4)
    assert hashed.startswith("$2b$04$") and len(hashed) == 60
    assert await verify_password("correct horse battery", hashed)
    assert not await verify_password("correct horse batterY", hashed)
    assert not await verify_password("", hashed, dummy_cost=4)
    assert not await verify_password("x" * 100, hashed, dummy_cost=4)
    assert not await verify_password("\ud800" * 10, hashed, dummy_cost=4)
    assert not await verify_password("anything at all", None, dummy_cost=4)
    assert not await verify_password("anything at all", "not-a-bcrypt-hash", dummy_cost=4)
