"""Resolution of the JWT signing secret (shared by ``sfu serve`` and ``sfu token create``).

Order:

1. ``SFU_JWT_SECRET`` (``settings.jwt_secret``) when set. It must be at least
   :data:`MIN_SECRET_BYTES` bytes in every mode: RFC 7518 §3.2 requires an HS256 key of at
   least the hash size (256 bits), and a short secret can be brute-forced offline from any
   token. (Development used to accept any non-empty secret silently.)
2. Otherwise, only in the embedded default (development mode and no ``MONGO_URL``): the secret
   kept in ``<data_dir>/jwt_secret``, generated once (384 random bits, URL-safe) and written
   with file mode 0600. A file with wider permissions is tightened to 0600.
3. Otherwise :class:`SecretError`: production, or a real MongoDB, needs an explicit secret.

The one-time-code HMAC key is derived from the JWT secret (:func:`derive_key`) so that the two
uses never share a key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets as _random
import stat
from pathlib import Path

from signaling.settings import Settings

MIN_SECRET_BYTES = 32
SECRET_FILE_NAME = "jwt_secret"


class SecretError(RuntimeError):
    """The JWT secret is missing or too weak for this mode (message says what to set)."""


def secret_file(data_dir: Path) -> Path:
    """Where the generated secret lives inside ``data_dir``."""
    return Path(data_dir) / SECRET_FILE_NAME


def _read_or_create(path: Path) -> str:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(_random.token_urlsafe(48))
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(0o600)
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SecretError(f"cannot read or create the JWT secret file {path}: {exc}") from exc
    if len(value.encode("utf-8")) < MIN_SECRET_BYTES:
        raise SecretError(f"the JWT secret in {path} is shorter than {MIN_SECRET_BYTES} bytes")
    return value


def resolve_jwt_secret(settings: Settings) -> str:
    """The secret that signs and verifies access tokens (see the module docstring).

    Raises :class:`SecretError` when it is missing (production, ``MONGO_URL``), empty, or
    shorter than :data:`MIN_SECRET_BYTES` bytes (any mode).
    """
    production = settings.env == "production"
    if settings.jwt_secret is not None:
        secret = settings.jwt_secret
        if not secret:
            raise SecretError("SFU_JWT_SECRET is empty")
        size = len(secret.encode("utf-8"))
        if production and size < MIN_SECRET_BYTES:
            raise SecretError(
                f"SFU_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes in production"
            )
        if size < MIN_SECRET_BYTES:
            raise SecretError(
                f"SFU_JWT_SECRET is {size} bytes; it must be at least {MIN_SECRET_BYTES} "
                "(RFC 7518 §3.2: an HS256 key is at least 256 bits). Unset it in development "
                "to use a generated secret kept in the data directory"
            )
        return secret
    if production:
        raise SecretError("SFU_JWT_SECRET is required in production mode")
    if settings.mongo_url is not None:
        raise SecretError(
            "SFU_JWT_SECRET is required with MONGO_URL (a generated secret is only kept for the "
            "embedded store)"
        )
    return _read_or_create(secret_file(settings.data_dir))


def derive_key(secret: str, purpose: str) -> bytes:
    """A 32-byte sub-key of ``secret`` for ``purpose`` (HMAC-SHA256 of a label)."""
    return hmac.new(
        secret.encode("utf-8"), b"sfu:" + purpose.encode("utf-8"), hashlib.sha256
    ).digest()
