"""Encrypted file sharing in rooms: HTTP handlers and file names (encryption at rest is in
:mod:`signaling.files_crypto`).

=======  ============================  =======================================================
method   path                          request -> answer
=======  ============================  =======================================================
POST     /api/rooms/{room}/files       [room token with canPublishData] raw body = the file,
                                       ``X-Filename`` (percent-encoded UTF-8) or ``?name=``,
                                       ``Content-Type`` -> 201 file
GET      /api/rooms/{room}/files       [room token] -> ``{files: [file]}`` newest first
GET      /api/rooms/{room}/files/{id}  [room token] -> the bytes, as an attachment
=======  ============================  =======================================================

A *file* is ``{id, name, size, content_type, uploaded_by, at}`` (size in bytes, ``at`` ISO 8601
UTC). Tokens are the room tokens that join the WebSocket (``Authorization: Bearer <token>``,
checked by :func:`signaling.accounts.authorize_join`). Errors are RFC 9457 problem details:
401 ``token_*``, 403 ``wrong_room`` / ``cannot_publish_data``, 404 ``file_not_found``,
400 ``empty_file`` / ``invalid_filename`` / ``upload_interrupted``, 413 ``file_too_large``.
After an upload the server posts a chat message with the file attached (``ChatMessage.file``).

Encryption at rest (AES-256-GCM, NIST SP 800-38D):

* every room has a random 256-bit *data key*, created on the room's first upload and stored in
  ``room_keys`` sealed by the server's *master key* (AES-256-GCM, 96-bit random nonce, the room
  name as associated data): see :func:`wrap_room_key`;
* the master key is ``SFU_FILE_MASTER_KEY`` (32 bytes, hex or base64); in development, when
  unset, it is derived from the JWT secret with HKDF-SHA256 (RFC 5869); production refuses to
  start without it (:func:`resolve_master_key`);
* a file is cut into :data:`CHUNK_SIZE` plaintext chunks, each sealed on its own (see
  :class:`FileCipher`): nonce = 8 random bytes per file + the 4-byte chunk index, associated
  data = format, room, file id, chunk index and a *final* flag, so that chunks cannot be
  swapped between files, reordered, dropped or the file truncated or extended undetected.

Uploads are streamed: the body is read in pieces, at most one chunk is held in memory, each
sealed chunk is inserted at once and the files document is written last, so a listing never
shows a partial file; on any failure (client gone, size limit, store error) the chunks already
written are deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import unicodedata
import urllib.parse
from collections.abc import AsyncIterator

from aiohttp import HttpVersion11, web
from aiohttp.http_exceptions import HttpProcessingError
from bson import ObjectId
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pymongo.errors import PyMongoError

from signaling import keys
from signaling.accounts import JWT_SECRET, STORE, authorize_join, bearer_token
from signaling.auth.tokens import AccessClaims, TokenError
from signaling.file_announce import announce_file
from signaling.file_quota import FileQuota
from signaling.files_crypto import (
    CHUNK_SIZE,
    FILE_ALG,
    KEY_ALG,
    KEY_BYTES,
    TAG_BYTES,
    FileCipher,
    FileCryptoError,
    key_id,
    resolve_master_key,
    unwrap_room_key,
    wrap_room_key,
)
from signaling.problems import ProblemError, problem
from signaling.stage import STAGES
from signaling.store.files import FileStore, StoredFile, WrappedKey

log = logging.getLogger(__name__)

MAX_RAW_NAME_CHARS = 4096
MAX_NAME_BYTES = 255
FALLBACK_NAME = "file"
DOWNLOAD_CONTENT_TYPE = "application/octet-stream"

_FILE_ID = re.compile(r"^f_[0-9a-f]{24}$")
_ROOM = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")  # as JoinRequest.room
_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$")


# --------------------------------------------------------------------------------------------
# File names (RFC 6266 / RFC 5987 for the download header)
# --------------------------------------------------------------------------------------------

_STRIPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})


def _truncate_utf8(text: str, limit: int) -> str:
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", errors="ignore")


def sanitize_filename(raw: str) -> str:
    """A safe display and download name for a user-supplied file name.

    NFC-normalises; keeps only the last path component (``/`` and ``\\`` both separate);
    removes control, format (e.g. bidi overrides, zero-width), surrogate, private-use and
    line/paragraph-separator characters; trims whitespace and leading dots; limits the result to
    :data:`MAX_NAME_BYTES` UTF-8 bytes on a character boundary, keeping a short extension; never
    returns an empty name (:data:`FALLBACK_NAME`).
    """
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch) not in _STRIPPED_CATEGORIES)
    name = name.strip().lstrip(".").strip()
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        if dot and stem and 0 < len(ext.encode("utf-8")) <= 16:
            room = MAX_NAME_BYTES - len(ext.encode("utf-8")) - 1
            name = _truncate_utf8(stem, room).rstrip() + "." + ext
        else:
            name = _truncate_utf8(name, MAX_NAME_BYTES).rstrip()
    return name or FALLBACK_NAME


_ATTR_CHAR_SAFE = "!#$&+-.^_`|~"  # RFC 5987 attr-char, besides ALPHA and DIGIT


def content_disposition(name: str) -> str:
    """``Content-Disposition`` for downloading ``name`` (RFC 6266 with RFC 5987 encoding).

    ``attachment; filename="<ASCII fallback>"; filename*=UTF-8''<percent-encoded>``: the
    fallback folds accents (NFKD), replaces other non-ASCII characters and ``"``, ``\\``,
    ``%`` with ``_``; the ``filename*`` form carries the exact (sanitised) name.
    """
    name = sanitize_filename(name)
    fallback = []
    for ch in unicodedata.normalize("NFKD", name):
        if unicodedata.combining(ch):
            continue
        fallback.append(ch if " " <= ch <= "~" and ch not in '"\\%' else "_")
    ascii_name = "".join(fallback).strip() or FALLBACK_NAME
    encoded = urllib.parse.quote(name, safe=_ATTR_CHAR_SAFE, encoding="utf-8")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{encoded}"


def _requested_name(request: web.Request) -> str:
    header = request.headers.get("X-Filename")
    if header is not None:
        if not header.isascii() or len(header) > MAX_RAW_NAME_CHARS:
            raise ProblemError(400, "invalid_filename", "X-Filename must be percent-encoded UTF-8")
        try:
            raw = urllib.parse.unquote(header, encoding="utf-8", errors="strict")
        except UnicodeDecodeError as exc:
            raise ProblemError(
                400, "invalid_filename", "X-Filename is not percent-encoded UTF-8"
            ) from exc
    else:
        raw = request.query.get("name", "")
        if len(raw) > MAX_RAW_NAME_CHARS:
            raise ProblemError(400, "invalid_filename", "the file name is too long")
    return sanitize_filename(raw)


def _declared_type(request: web.Request) -> str:
    value = request.content_type.lower()  # media type only, parameters dropped
    return value if _MEDIA_TYPE.match(value) else DOWNLOAD_CONTENT_TYPE


# --------------------------------------------------------------------------------------------
# The service: store + keys
# --------------------------------------------------------------------------------------------


class FileService:
    """The app's encrypted file storage: the :class:`FileStore`, the master key and limits.

    ``max_upload_bytes``: largest accepted file (plaintext bytes); ``quota``: the storage
    quotas (:mod:`signaling.file_quota`; None: none).
    """

    def __init__(
        self,
        store: FileStore,
        master_key: bytes,
        max_upload_bytes: int,
        quota: FileQuota | None = None,
    ) -> None:
        if len(master_key) != KEY_BYTES:
            raise ValueError("the master key is 32 bytes")
        self.store = store
        self.max_upload_bytes = max_upload_bytes
        self.quota = quota
        self._master_key = master_key
        self._kid = key_id(master_key)

    async def room_key(self, room: str, *, create: bool) -> bytes | None:
        """The room's data key; with ``create``, made (32 random bytes) on first use.

        Raises :class:`FileCryptoError` when the stored key was wrapped with another master
        key or does not open; ``PyMongoError`` from the store.
        """
        stored = await self.store.get_room_key(room)
        if stored is None:
            if not create:
                return None
            data_key = AESGCM.generate_key(bit_length=256)
            candidate = WrappedKey(
                room, wrap_room_key(self._master_key, room, data_key), KEY_ALG, self._kid
            )
            stored = await self.store.add_room_key(candidate)
            if stored is candidate:
                return data_key
        if stored.kid != self._kid or stored.alg != KEY_ALG:
            raise FileCryptoError(
                f"the key of room {room!r} was wrapped with another master key ({stored.kid})"
            )
        return unwrap_room_key(self._master_key, room, stored.wrapped)


FILES: web.AppKey[FileService] = web.AppKey("files", FileService)


async def files_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx`` (after the accounts store): master key, :class:`FileService`, indexes.

    Raises :class:`SecretError` for a missing (production) or malformed master key: the
    server refuses to start.
    """
    settings = app[keys.SETTINGS]
    master_key = resolve_master_key(settings, app[JWT_SECRET])
    store = FileStore(app[STORE].db)
    await store.ensure_indexes()
    quota = FileQuota(
        store, settings.file_quota_per_identity_bytes, settings.file_quota_per_room_bytes
    )
    app[FILES] = FileService(store, master_key, settings.max_upload_bytes, quota)
    yield


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------

routes = web.RouteTableDef()

_UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="sfu"'}


def _room(request: web.Request) -> str:
    room = request.match_info.get("room", "")
    if not _ROOM.match(room):
        raise ProblemError(404, "room_not_found", "room not found")
    return room


async def _authorize(request: web.Request, room: str) -> AccessClaims:
    try:
        return await authorize_join(request.app, bearer_token(request), room)
    except TokenError as exc:
        raise ProblemError(
            exc.status, exc.code, exc.message, headers=_UNAUTHORIZED_HEADERS
        ) from exc


def _too_large(limit: int) -> ProblemError:
    return ProblemError(
        413, "file_too_large", f"files are limited to {limit} bytes", max_bytes=limit
    )


async def _expect_continue(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue`` handler of the upload route: refuse an announced body over the
    limit before the client sends it (curl asks for large bodies), else let it come."""
    if request.version != HttpVersion11:
        return None
    expect = request.headers.get("Expect", "").lower()
    if expect != "100-continue":
        return problem(417, "expectation_failed", "only Expect: 100-continue is understood")
    limit = request.app[FILES].max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        return _too_large(limit).response()
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0
    return None


_READ_ERRORS = (OSError, asyncio.IncompleteReadError, HttpProcessingError)
"""What reading a body raises when the client goes away or sends a malformed body (aiohttp
cancels the handler instead in some setups: the upload's ``except BaseException`` cleans up)."""


@routes.post("/api/rooms/{room}/files", expect_handler=_expect_continue)
async def upload_file(request: web.Request) -> web.Response:
    """Store the request body as an encrypted file of the room; 201 file, then announce it.

    401/403 token problems, 403 ``cannot_publish_data``, 403 ``listeners_cannot_share`` (a
    podcast listener while the host does not allow it), 400 ``invalid_filename`` /
    ``empty_file`` / ``upload_interrupted``, 413 ``file_too_large`` (from ``Content-Length``
    before reading, or when the streamed body passes the limit), 413 ``quota_exceeded`` (the
    uploader's or the room's storage quota, :mod:`signaling.file_quota`).
    """
    room = _room(request)
    claims = await _authorize(request, room)
    if not claims.video.canPublishData:
        raise ProblemError(403, "cannot_publish_data", "this token may not share files")
    if not request.app[STAGES].may_share(room, claims.sub, claims.video):
        raise ProblemError(
            403, "listeners_cannot_share", "listeners share files only when the host allows it"
        )
    service = request.app[FILES]
    limit = service.max_upload_bytes
    name = _requested_name(request)
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _too_large(limit)
    quota = service.quota
    if quota is not None:
        await quota.check(room, claims.sub, declared or 1)
        limit = min(limit, await quota.remaining(room, claims.sub))
    if declared == 0:
        raise ProblemError(400, "empty_file", "the file is empty")
    content_type = _declared_type(request)
    try:
        key = await service.room_key(room, create=True)
    except FileCryptoError as exc:
        log.error("cannot store files for room %s: %s", room, exc)
        raise ProblemError(500, "file_key_unavailable", "files cannot be stored now") from exc
    assert key is not None
    file_id = "f_" + str(ObjectId())
    cipher = FileCipher.new(key, room, file_id)
    store = service.store
    buffer = bytearray()
    total = stored = chunks = 0
    try:
        try:
            while True:
                piece = await request.content.readany()
                if not piece:
                    break
                total += len(piece)
                if total > limit:
                    if quota is not None and limit < service.max_upload_bytes:
                        await quota.check(room, claims.sub, total)  # raises quota_exceeded
                    raise _too_large(limit)
                buffer += piece
                while len(buffer) > CHUNK_SIZE:  # more than a chunk: this one is not the last
                    sealed = cipher.seal(chunks, bytes(buffer[:CHUNK_SIZE]), final=False)
                    del buffer[:CHUNK_SIZE]
                    await store.put_chunk(file_id, chunks, sealed)
                    stored += len(sealed)
                    chunks += 1
        except _READ_ERRORS as exc:
            raise ProblemError(
                400, "upload_interrupted", "the upload ended before its body was complete"
            ) from exc
        if total == 0:
            raise ProblemError(400, "empty_file", "the file is empty")
        sealed = cipher.seal(chunks, bytes(buffer), final=True)
        buffer.clear()
        await store.put_chunk(file_id, chunks, sealed)
        stored += len(sealed)
        chunks += 1
        async with (
            quota.reserve(room, claims.sub, total)
            if quota is not None
            else contextlib.nullcontext()
        ):
            record = await store.add_file(
                file_id=file_id,
                room=room,
                name=name,
                size=total,
                content_type=content_type,
                uploaded_by=claims.sub,
                uploader_name=claims.name or claims.sub,
                stored_bytes=stored,
                stored_chunk_size=CHUNK_SIZE + TAG_BYTES,
                chunks=chunks,
                plain_chunk_size=CHUNK_SIZE,
                nonce_prefix=cipher.nonce_prefix,
                alg=FILE_ALG,
            )
    except BaseException:
        if chunks:
            # Shielded: a handler cancelled mid-upload still removes what it wrote.
            await asyncio.shield(_discard(store, file_id))
        raise
    await announce_file(request.app, room, claims, record)
    return web.json_response(
        record.public(),
        status=201,
        headers={"Location": f"/api/rooms/{room}/files/{file_id}"},
    )


async def _discard(store: FileStore, file_id: str) -> None:
    try:
        deleted = await store.delete_chunks(file_id)
    except PyMongoError:
        log.exception("could not delete the chunks of the failed upload %s", file_id)
        return
    log.info("upload %s failed: deleted %d stored chunks", file_id, deleted)


@routes.get("/api/rooms/{room}/files")
async def list_files(request: web.Request) -> web.Response:
    """The room's files, newest first: ``{files: [file]}``; 401/403 token problems."""
    room = _room(request)
    await _authorize(request, room)
    files = await request.app[FILES].store.list_files(room)
    return web.json_response({"files": [f.public() for f in files]})


@routes.get("/api/rooms/{room}/files/{file_id}")
async def download_file(request: web.Request) -> web.StreamResponse:
    """Decrypt and stream one file as ``application/octet-stream`` attachment.

    404 ``file_not_found`` (also for another room's file); 401/403 token problems; 500
    ``file_unreadable`` when the first chunk does not verify. A later chunk that does not
    verify (tampering) aborts the connection, so the client sees a short body, never a
    silently altered one.
    """
    room = _room(request)
    await _authorize(request, room)
    file_id = request.match_info["file_id"]
    service = request.app[FILES]
    record = await service.store.get_file(room, file_id) if _FILE_ID.match(file_id) else None
    if record is None:
        raise ProblemError(404, "file_not_found", "file not found")
    try:
        key = await service.room_key(room, create=False)
        if key is None or record.alg != FILE_ALG:
            raise FileCryptoError("no key for this room")
        cipher = FileCipher(key, room, record.id, record.nonce_prefix)
        first = await _open_chunk(service.store, cipher, record, 0)
    except FileCryptoError as exc:
        log.error("file %s of room %s is unreadable: %s", file_id, room, exc)
        raise ProblemError(500, "file_unreadable", "the file cannot be decrypted") from exc
    response = web.StreamResponse(
        headers={
            "Content-Type": DOWNLOAD_CONTENT_TYPE,
            "Content-Disposition": content_disposition(record.name),
            "X-Content-Type-Options": "nosniff",
        }
    )
    response.content_length = record.size
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    sent = 0
    try:
        chunk = first
        for index in range(1, record.chunks + 1):
            await response.write(chunk)
            sent += len(chunk)
            if index < record.chunks:
                chunk = await _open_chunk(service.store, cipher, record, index)
        if sent != record.size:
            raise FileCryptoError(f"decrypted {sent} bytes, expected {record.size}")
    except FileCryptoError as exc:
        log.error("download of %s aborted after %d bytes: %s", file_id, sent, exc)
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


async def _open_chunk(
    store: FileStore, cipher: FileCipher, record: StoredFile, index: int
) -> bytes:
    sealed = await store.get_chunk(record.id, index)
    if sealed is None:
        raise FileCryptoError(f"chunk {index} is missing")
    return cipher.open(index, sealed, final=index == record.chunks - 1)
