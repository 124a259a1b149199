"""Encryption at rest of room files (signaling/files.py): chunk sealing, key wrapping, master
key resolution, and the file names used for storage and downloads."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from signaling.auth.secrets import SecretError
from signaling.files import content_disposition, sanitize_filename
from signaling.files_crypto import (
    CHUNK_SIZE,
    TAG_BYTES,
    FileCipher,
    FileCryptoError,
    parse_master_key,
    resolve_master_key,
    unwrap_room_key,
    wrap_room_key,
)
from signaling.settings import Settings

KEY = bytes(range(32))
SMALL = 64  # chunk size for fast tests (bytes)


def cipher(key: bytes = KEY, room: str = "room", file_id: str = "f_1") -> FileCipher:
    return FileCipher(key, room, file_id, b"\x01" * 8)


def test_round_trip_over_chunk_boundaries() -> None:
    c = FileCipher.new(KEY, "room", "f_1")
    for size in (1, SMALL - 1, SMALL, SMALL + 1, 3 * SMALL, 3 * SMALL + 5):
        data = os.urandom(size)
        sealed = c.encrypt(data, SMALL)
        assert len(sealed) == -(-size // SMALL)
        assert sum(len(s) for s in sealed) == size + TAG_BYTES * len(sealed)
        assert c.decrypt(sealed) == data
    big = os.urandom(CHUNK_SIZE + 1)
    assert c.decrypt(c.encrypt(big)) == big


def test_ciphertext_hides_the_plaintext_and_differs_per_file() -> None:
    data = b"attack at dawn! " * 16
    a = FileCipher.new(KEY, "room", "f_1").encrypt(data, SMALL)
    b = FileCipher.new(KEY, "room", "f_1").encrypt(data, SMALL)  # a new random nonce prefix
    assert all(b"attack" not in chunk for chunk in a)
    assert a != b


def test_tampering_is_detected() -> None:
    sealed = cipher().encrypt(os.urandom(3 * SMALL), SMALL)
    for index in range(3):
        for position in (0, SMALL // 2, SMALL + TAG_BYTES - 1):  # body and tag bytes
            altered = list(sealed)
            chunk = bytearray(altered[index])
            chunk[position] ^= 0x01
            altered[index] = bytes(chunk)
            with pytest.raises(FileCryptoError):
                cipher().decrypt(altered)


def test_reordered_truncated_extended_or_moved_chunks_are_detected() -> None:
    data = os.urandom(3 * SMALL)
    sealed = cipher().encrypt(data, SMALL)
    with pytest.raises(FileCryptoError):
        cipher().decrypt([sealed[1], sealed[0], sealed[2]])  # reordered
    with pytest.raises(FileCryptoError):
        cipher().decrypt(sealed[:2])  # truncated at a chunk boundary: no final chunk
    with pytest.raises(FileCryptoError):
        cipher().decrypt([])
    extra = cipher().seal(3, b"more", final=True)
    with pytest.raises(FileCryptoError):
        cipher().decrypt([*sealed, extra])  # extended: chunk 2 was sealed as the final one
    with pytest.raises(FileCryptoError):
        cipher(file_id="f_2").decrypt(sealed)  # the chunks of another file
    with pytest.raises(FileCryptoError):
        cipher(room="other").decrypt(sealed)  # the same file id in another room
    with pytest.raises(FileCryptoError):
        cipher().open(0, sealed[0], final=True)  # claimed final when it was not


def test_wrong_key_is_detected() -> None:
    sealed = cipher().encrypt(b"secret", SMALL)
    with pytest.raises(FileCryptoError):
        cipher(key=bytes(32)).decrypt(sealed)


def test_room_key_wrapping() -> None:
    master = os.urandom(32)
    data_key = os.urandom(32)
    wrapped = wrap_room_key(master, "room", data_key)
    assert len(wrapped) == 60
    assert data_key not in wrapped
    assert unwrap_room_key(master, "room", wrapped) == data_key
    with pytest.raises(FileCryptoError):
        unwrap_room_key(os.urandom(32), "room", wrapped)  # another master key
    with pytest.raises(FileCryptoError):
        unwrap_room_key(master, "other", wrapped)  # copied to another room
    with pytest.raises(FileCryptoError):
        unwrap_room_key(master, "room", wrapped[:-1])
    with pytest.raises(ValueError):
        wrap_room_key(master, "room", b"short")


def test_master_key_parsing_and_resolution(tmp_path: Path) -> None:
    raw = os.urandom(32)
    assert parse_master_key(raw.hex()) == raw
    assert parse_master_key(base64.b64encode(raw).decode()) == raw
    assert parse_master_key(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == raw
    for bad in ("", "abc", raw.hex()[:-2], base64.b64encode(raw[:16]).decode(), "é" * 44):
        with pytest.raises(SecretError):
            parse_master_key(bad)

    dev = Settings(data_dir=tmp_path)
    derived = resolve_master_key(dev, "j" * 40)
    assert len(derived) == 32
    assert derived == resolve_master_key(dev, "j" * 40)
    assert derived != resolve_master_key(dev, "k" * 40)
    assert resolve_master_key(Settings(file_master_key=raw.hex()), "j" * 40) == raw

    with pytest.raises(SecretError, match="SFU_FILE_MASTER_KEY is required"):
        resolve_master_key(Settings(env="production"), "j" * 40)
    prod = Settings(env="production", file_master_key=base64.b64encode(raw).decode())
    assert resolve_master_key(prod, "j" * 40) == raw
    with pytest.raises(SecretError):
        resolve_master_key(Settings(env="production", file_master_key="weak"), "j" * 40)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\eve\\evil.exe", "evil.exe"),
        ("dir/sub\\..\\x.txt", "x.txt"),
        (".htaccess", "htaccess"),
        ("...", "file"),
        ("", "file"),
        ("dir/", "file"),
        ("  spaced name.txt  ", "spaced name.txt"),
        ("a\x00b\r\nc\x7f.txt", "abc.txt"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),  # a bidi override hiding ".exe"
        ("zero\u200bwidth", "zerowidth"),
        ("cafe\u0301.txt", "caf\u00e9.txt"),  # NFC
        ("日本語.txt", "日本語.txt"),
    ],
)
def test_sanitize_filename(raw: str, expected: str) -> None:
    assert sanitize_filename(raw) == expected


def test_sanitize_filename_limits_bytes_on_character_boundaries() -> None:
    long_ascii = sanitize_filename("a" * 300 + ".txt")
    assert long_ascii.endswith(".txt") and len(long_ascii.encode()) == 255
    long_utf8 = sanitize_filename("é" * 200)  # 400 bytes
    assert len(long_utf8.encode()) <= 255 and set(long_utf8) == {"é"}
    no_ext = sanitize_filename("x" * 1000)
    assert no_ext == "x" * 255


def test_content_disposition() -> None:
    assert content_disposition("report.pdf") == (
        "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
    )
    assert content_disposition("résumé 2024.pdf") == (
        "attachment; filename=\"resume 2024.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%202024.pdf"
    )
    assert content_disposition('a"b%c;d.txt') == (
        "attachment; filename=\"a_b_c;d.txt\"; filename*=UTF-8''a%22b%25c%3Bd.txt"
    )
    header = content_disposition("日本.txt\r\nSet-Cookie: x=y")
    assert "\r" not in header and "\n" not in header
    assert header.startswith('attachment; filename="__.txtSet-Cookie: x=y";')
    assert content_disposition("../secret") == (
        "attachment; filename=\"secret\"; filename*=UTF-8''secret"
    )
