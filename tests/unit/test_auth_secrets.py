"""JWT secret resolution: env, generated file (0600), refusals."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from signaling.auth.secrets import SecretError, derive_key, resolve_jwt_secret, secret_file
from signaling.settings import Settings


def test_generated_once_with_mode_0600(tmp_path: Path) -> None:
    first = resolve_jwt_secret(Settings(data_dir=tmp_path))
    path = secret_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert resolve_jwt_secret(Settings(data_dir=tmp_path)) == first


def test_loose_permissions_are_tightened(tmp_path: Path) -> None:
    path = secret_file(tmp_path)
    path.write_text("z" * 40)
    path.chmod(0o644)
    assert resolve_jwt_secret(Settings(data_dir=tmp_path)) == "z" * 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_explicit_secret_wins(tmp_path: Path) -> None:
    assert resolve_jwt_secret(Settings(data_dir=tmp_path, jwt_secret="a" * 32)) == "a" * 32
    assert not secret_file(tmp_path).exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"env": "production"}, "required in production"),
        ({"env": "production", "jwt_secret": "x" * 31}, "at least 32"),
        ({"mongo_url": "mongodb://db/"}, "required with MONGO_URL"),
        ({"jwt_secret": ""}, "empty"),
        # development too: RFC 7518 §3.2 (HS256 keys of at least 256 bits)
        ({"jwt_secret": "x"}, "1 bytes; it must be at least 32"),
        ({"jwt_secret": "x" * 31}, "31 bytes; it must be at least 32"),
        ({"jwt_secret": "é" * 15}, "30 bytes"),  # counted in UTF-8 bytes, not characters
    ],
)
def test_refusals(tmp_path: Path, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(SecretError, match=match):
        resolve_jwt_secret(Settings(data_dir=tmp_path, **kwargs))  # type: ignore[arg-type]


def test_production_accepts_long_secret(tmp_path: Path) -> None:
    assert resolve_jwt_secret(Settings(data_dir=tmp_path, env="production", jwt_secret="x" * 32))


def test_short_generated_file_refused(tmp_path: Path) -> None:
    secret_file(tmp_path).write_text("tiny")
    with pytest.raises(SecretError, match="shorter"):
        resolve_jwt_secret(Settings(data_dir=tmp_path))


def test_derive_key_separates_purposes() -> None:
    assert derive_key("s" * 40, "otp") != derive_key("s" * 40, "other")
    assert len(derive_key("s" * 40, "otp")) == 32
