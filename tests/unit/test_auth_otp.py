"""One-time codes: generation and the stateless HMAC binding."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from signaling.auth.otp import check_code, code_hash, generate_code

KEY = b"k" * 32


def test_codes_are_six_digits_and_vary() -> None:
    codes = {generate_code() for _ in range(200)}
    assert all(len(c) == 6 and c.isdigit() for c in codes)
    assert len(codes) > 150


def test_hash_binds_identity_code_expiry_and_key() -> None:
    h = code_hash(KEY, "email:a@example.com", "123456", 1_700_000_000)
    assert len(h) == 64 and int(h, 16) >= 0
    assert check_code(KEY, "email:a@example.com", "123456", 1_700_000_000, h)
    assert not check_code(KEY, "email:b@example.com", "123456", 1_700_000_000, h)
    assert not check_code(KEY, "email:a@example.com", "123457", 1_700_000_000, h)
    assert not check_code(KEY, "email:a@example.com", "123456", 1_700_000_001, h)
    assert not check_code(b"j" * 32, "email:a@example.com", "123456", 1_700_000_000, h)
    assert not check_code(KEY, "email:a@example.com", "123456", 1_700_000_000, h.upper())


@given(st.text(max_size=100))
def test_check_code_never_raises_on_hostile_hash(presented: str) -> None:
    assert check_code(KEY, "phone:+15550001", "000000", 1, presented) is (
        presented == code_hash(KEY, "phone:+15550001", "000000", 1)
    )
