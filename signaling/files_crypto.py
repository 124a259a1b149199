"""Encryption at rest of room files (AES-256-GCM, NIST SP 800-38D): the master key, the
room data keys it wraps, and the chunked file cipher.

* every room has a random 256-bit *data key*, stored in ``room_keys`` sealed by the server's
  *master key* (AES-256-GCM, 96-bit random nonce, the room name as associated data):
  :func:`wrap_room_key`;
* the master key is ``SFU_FILE_MASTER_KEY`` (32 bytes, hex or base64); in development, when
  unset, it is derived from the JWT secret with HKDF-SHA256 (RFC 5869); production refuses to
  start without it (:func:`resolve_master_key`);
* a file is cut into :data:`CHUNK_SIZE` plaintext chunks, each sealed on its own
  (:class:`FileCipher`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from signaling.auth.secrets import SecretError
from signaling.settings import Settings

CHUNK_SIZE = 1 << 20
"""Plaintext bytes per sealed chunk (1 MiB); the last chunk of a file may be shorter."""
TAG_BYTES = 16
"""GCM authentication tag appended to every sealed chunk (bytes)."""
KEY_BYTES = 32
"""AES-256 key size (bytes), for the master key and the room data keys."""
NONCE_PREFIX_BYTES = 8
"""Random per-file part of each chunk nonce; the other 4 bytes are the chunk index."""
MAX_CHUNKS = 1 << 32
FILE_ALG = "A256GCM-chunked-v1"
"""Name of the chunk format in each files document (:class:`FileCipher`)."""
KEY_ALG = "A256GCM"
"""Name of the room-key wrapping in ``room_keys`` (:func:`wrap_room_key`)."""
HKDF_INFO = b"sfu file master key"

_HEX_KEY = re.compile(r"^[0-9A-Fa-f]{64}$")


class FileCryptoError(Exception):
    """Decryption failed: wrong key, or a chunk that was altered, moved, dropped or added."""


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------


def parse_master_key(text: str) -> bytes:
    """Decode ``SFU_FILE_MASTER_KEY``: 64 hex digits, or standard/URL-safe base64 (padding
    optional) of exactly 32 bytes.

    Raises :class:`SecretError` otherwise (the message never echoes the value).
    """
    value = text.strip()
    if _HEX_KEY.match(value):
        return bytes.fromhex(value)
    padded = (value + "=" * (-len(value) % 4)).replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(padded.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raw = b""
    if len(raw) == KEY_BYTES:
        return raw
    raise SecretError(
        f"SFU_FILE_MASTER_KEY must be {KEY_BYTES} bytes, written as 64 hex digits or base64"
    )


def resolve_master_key(settings: Settings, jwt_secret: str) -> bytes:
    """The 32-byte key that wraps the room data keys.

    ``SFU_FILE_MASTER_KEY`` when set (see :func:`parse_master_key`). Unset: production mode
    raises :class:`SecretError` (the server refuses to start, as for ``SFU_JWT_SECRET``);
    development derives it from ``jwt_secret`` with HKDF-SHA256 (RFC 5869, no salt,
    ``info=b"sfu file master key"``), so changing the JWT secret makes stored files unreadable.
    """
    if settings.file_master_key is not None:
        return parse_master_key(settings.file_master_key.get_secret_value())
    if settings.env == "production":
        raise SecretError("SFU_FILE_MASTER_KEY is required in production mode")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=HKDF_INFO)
    return hkdf.derive(jwt_secret.encode("utf-8"))


def key_id(master_key: bytes) -> str:
    """A short public identifier of a master key (16 hex digits of SHA-256 over a label and
    the key), stored next to each wrapped key so a changed master key is reported as such."""
    return hashlib.sha256(b"sfu file master key id\x00" + master_key).hexdigest()[:16]


def _room_key_aad(room: str) -> bytes:
    return b"sfu-room-key\x00v1\x00" + room.encode("utf-8")


def wrap_room_key(master_key: bytes, room: str, data_key: bytes) -> bytes:
    """Seal a room's 32-byte ``data_key`` under the 32-byte ``master_key``.

    AES-256-GCM (NIST SP 800-38D) with a random 96-bit nonce and the room name as associated
    data, so a wrapped key copied to another room does not open. Returns
    ``nonce (12) || ciphertext (32) || tag (16)``, 60 bytes.
    """
    if len(data_key) != KEY_BYTES:
        raise ValueError("a room data key is 32 bytes")
    nonce = os.urandom(12)
    return nonce + AESGCM(master_key).encrypt(nonce, data_key, _room_key_aad(room))


def unwrap_room_key(master_key: bytes, room: str, wrapped: bytes) -> bytes:
    """Open a key sealed by :func:`wrap_room_key`; returns the 32-byte data key.

    Raises :class:`FileCryptoError` for another master key, another room or altered bytes.
    """
    if len(wrapped) != 12 + KEY_BYTES + TAG_BYTES:
        raise FileCryptoError("wrapped room key has the wrong length")
    try:
        return AESGCM(master_key).decrypt(wrapped[:12], wrapped[12:], _room_key_aad(room))
    except InvalidTag as exc:
        raise FileCryptoError("room key does not open with this master key") from exc


# --------------------------------------------------------------------------------------------
# Chunked file encryption
# --------------------------------------------------------------------------------------------


def _part(value: str) -> bytes:
    raw = value.encode("utf-8")
    return len(raw).to_bytes(2, "big") + raw


@dataclass(frozen=True, slots=True)
class FileCipher:
    """AES-256-GCM over one file's chunks (NIST SP 800-38D; the STREAM construction of
    Hoang, Reyhanitabar, Rogaway and Vizár, "Online Authenticated-Encryption and its
    Nonce-Reuse Misuse-Resistance", CRYPTO 2015).

    ``key``: the room's 32-byte data key; ``room`` and ``file_id`` are bound into every chunk;
    ``nonce_prefix``: 8 random bytes chosen per file. Chunk ``i`` (0 <= i < 2**32) uses the
    96-bit nonce ``nonce_prefix || i`` (big-endian) and the associated data
    ``"sfu-file\\0v1" || len||room || len||file_id || i (4 bytes) || final (1 byte)``. A sealed
    chunk is the plaintext length plus :data:`TAG_BYTES`. With random prefixes, nonces of one
    room key collide with probability about ``files**2 / 2**65``.
    """

    key: bytes
    room: str
    file_id: str
    nonce_prefix: bytes

    def __post_init__(self) -> None:
        if len(self.key) != KEY_BYTES or len(self.nonce_prefix) != NONCE_PREFIX_BYTES:
            raise ValueError("FileCipher needs a 32-byte key and an 8-byte nonce prefix")

    @classmethod
    def new(cls, key: bytes, room: str, file_id: str) -> FileCipher:
        """A cipher for a new file, with a fresh random nonce prefix."""
        return cls(key, room, file_id, os.urandom(NONCE_PREFIX_BYTES))

    def _nonce_aad(self, index: int, final: bool) -> tuple[bytes, bytes]:
        if not 0 <= index < MAX_CHUNKS:
            raise ValueError("chunk index out of range")
        counter = index.to_bytes(4, "big")
        aad = (
            b"sfu-file\x00v1"
            + _part(self.room)
            + _part(self.file_id)
            + counter
            + (b"\x01" if final else b"\x00")
        )
        return self.nonce_prefix + counter, aad

    def seal(self, index: int, plaintext: bytes, *, final: bool) -> bytes:
        """Encrypt chunk ``index``; ``final`` marks the file's last chunk."""
        nonce, aad = self._nonce_aad(index, final)
        return AESGCM(self.key).encrypt(nonce, plaintext, aad)

    def open(self, index: int, sealed: bytes, *, final: bool) -> bytes:
        """Decrypt chunk ``index``, expected to be the last one when ``final``.

        Raises :class:`FileCryptoError` when the tag does not verify: wrong key, altered bytes,
        a chunk of another file or position, or a final flag that does not match (truncation
        or extension).
        """
        nonce, aad = self._nonce_aad(index, final)
        try:
            return AESGCM(self.key).decrypt(nonce, sealed, aad)
        except InvalidTag as exc:
            raise FileCryptoError(f"chunk {index} does not verify") from exc

    def encrypt(self, data: bytes, chunk_size: int = CHUNK_SIZE) -> list[bytes]:
        """Seal a whole (non-empty) byte string into chunks (for tests and small payloads)."""
        if not data:
            raise ValueError("empty files are not stored")
        pieces = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]
        return [self.seal(i, piece, final=i == len(pieces) - 1) for i, piece in enumerate(pieces)]

    def decrypt(self, sealed_chunks: list[bytes]) -> bytes:
        """Open chunks sealed by :meth:`encrypt`/:meth:`seal` in order; the last must be final.

        Raises :class:`FileCryptoError` (see :meth:`open`); an empty list is truncation.
        """
        if not sealed_chunks:
            raise FileCryptoError("no chunks")
        last = len(sealed_chunks) - 1
        return b"".join(
            self.open(i, chunk, final=i == last) for i, chunk in enumerate(sealed_chunks)
        )
