"""``sfu token create``: prints a token that the server (same secret resolution) accepts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from signaling.auth.secrets import resolve_jwt_secret
from signaling.auth.tokens import verify_access_token
from signaling.cli import main
from signaling.settings import Settings


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["token", "create", *args])
    out, err = capsys.readouterr()
    return code, out.strip(), err


def test_token_create_uses_data_dir_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SFU_JWT_SECRET", raising=False)
    monkeypatch.delenv("MONGO_URL", raising=False)
    code, token, _ = _run(
        capsys,
        "--room", "r1", "--identity", "alice", "--name", "Alice", "--publish",
        "--ttl", "15m", "--data-dir", str(tmp_path),
    )  # fmt: skip
    assert code == 0
    secret = resolve_jwt_secret(Settings(data_dir=tmp_path))  # the server's resolution
    claims = verify_access_token(token, secret, room="r1")
    assert claims.sub == "alice" and claims.name == "Alice"
    assert claims.video.canPublish and not claims.video.canSubscribe
    assert not claims.video.roomAdmin
    assert 15 * 60 - 5 <= claims.exp - claims.nbf <= 15 * 60


def test_token_create_uses_env_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SFU_JWT_SECRET", "e" * 40)
    code, token, _ = _run(
        capsys, "--room", "r2", "--identity", "bob", "--admin", "--data-dir", str(tmp_path)
    )
    assert code == 0
    claims = verify_access_token(token, "e" * 40, room="r2")
    assert claims.video.roomAdmin and claims.video.canPublish and claims.video.canSubscribe
    assert not (tmp_path / "jwt_secret").exists()


def test_token_create_bad_ttl_and_missing_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SFU_JWT_SECRET", raising=False)
    code, _, err = _run(capsys, "--room", "r", "--identity", "i", "--ttl", "soon")
    assert code == 2 and "invalid duration" in err
    monkeypatch.setenv("SFU_ENV", "production")
    code, out, err = _run(capsys, "--room", "r", "--identity", "i", "--data-dir", str(tmp_path))
    assert code == 1 and out == "" and "SFU_JWT_SECRET" in err


def test_console_script(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "sfu"
    result = subprocess.run(
        [
            str(exe),
            "token",
            "create",
            "--room",
            "r",
            "--identity",
            "i",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    secret = (tmp_path / "jwt_secret").read_text().strip()
    assert verify_access_token(result.stdout.strip(), secret, room="r").sub == "i"
