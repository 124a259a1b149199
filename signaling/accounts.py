"""The accounts service (issue 3): users, logins, tokens; the shared request parsing.

Everything lives under ``/api`` (JSON in, JSON out; errors are RFC 9457 problem details, see
``signaling.problems``). Authenticated endpoints take ``Authorization: Bearer <access token>``;
there is no auth cookie, so there is no CSRF surface.

=======  ==============================  =====================================================
method   path                            body -> answer
=======  ==============================  =====================================================
POST     /api/register                   {email, password, display_name} -> 201 session
POST     /api/login                      {email, password} -> 200 session | 401 | 429
                                         (back-off: ``signaling.auth.limits``)
POST     /api/otp/request                {email} | {phone} -> 200 {hash, expires}
POST     /api/otp/verify                 {email|phone, code, hash, expires, display_name?}
                                         -> 200 session (first login creates the user)
POST     /api/token/refresh              {refresh_token} -> 200 session (rotated)
POST     /api/logout                     [Bearer] {refresh_token?} -> 204
GET      /api/me                         [Bearer] -> {user}
(rooms, invites, owner tokens, history: ``signaling.rooms``)
POST     /api/join/{code}                [Bearer optional] {display_name?, device?} -> 200
                                         room token + device | 403 removed_from_room
                                         (``signaling.join``)
GET      /api/join/{code}                -> 200 {room: {id, name, kind}, role, can_publish}
                                         without using the invite | 404 invite_not_found |
                                         410 invite_used_up (``signaling.join``)
GET      /api/rooms/{room}/preview       [Bearer room token] -> {room: {id, name, kind}}
GET      /join/{code}                    the browser client page (invite link); an HTML page
                                         in words when it cannot be used: 404 (not valid,
                                         expired) or 410 (used up, revoked)
=======  ==============================  =====================================================

A *session* is ``{token_type: "Bearer", access_token, expires_in, refresh_token,
refresh_expires_in, user}``; a *room token* answer is ``{token, expires_in, identity, name,
room, grants}``. Times are seconds.

Start-up (:func:`accounts_ctx`) resolves the JWT secret (refusing to start without a usable
one), starts the embedded ``nx-27017`` when ``settings.mongo_url`` is None, connects and
creates the indexes. The WebSocket, WHIP and WHEP handlers call :func:`authorize_join`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import time
import unicodedata
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

from aiohttp import web
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from pymongo.errors import PyMongoError

from signaling import keys
from signaling.auth import otp
from signaling.auth.limits import (
    LIMITERS,
    Limiters,
    check_login,
    client_address,
    login_failed,
    login_succeeded,
    rate_limit,
)
from signaling.auth.passwords import (
    PasswordRuleError,
    check_password_rules,
    hash_password,
    verify_password,
)
from signaling.auth.secrets import derive_key, resolve_jwt_secret
from signaling.auth.sender import Channel, CodeSender, sender_from_settings
from signaling.auth.tokens import (
    AccessClaims,
    TokenError,
    VideoGrant,
    check_not_revoked,
    create_access_token,
    verify_access_token,
)
from signaling.problems import ProblemError
from signaling.store.embedded import EmbeddedMongo, StoreStartError
from signaling.store.limits import LimitStore
from signaling.store.mongo import DuplicateError, PresenceEvent, Store, User, utcnow

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


STORE: web.AppKey[Store] = web.AppKey("accounts_store", Store)
JWT_SECRET: web.AppKey[str] = web.AppKey("accounts_jwt_secret", str)
OTP_KEY: web.AppKey[bytes] = web.AppKey("accounts_otp_key", bytes)
CODE_SENDER: web.AppKey[CodeSender] = web.AppKey("accounts_code_sender", object)  # type: ignore[arg-type]
EMBEDDED: web.AppKey[EmbeddedMongo | None] = web.AppKey("accounts_embedded", object)  # type: ignore[arg-type]

# --------------------------------------------------------------------------------------------
# Start-up and the public helpers used by the WebSocket / WHIP / WHEP handlers
# --------------------------------------------------------------------------------------------


async def accounts_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: secret, store (embedded or ``MONGO_URL``), indexes; stop on teardown.

    Raises ``SecretError`` or ``StoreStartError`` (the server refuses to start). A code sender
    already set on ``app[CODE_SENDER]`` (tests) is kept; otherwise it follows the settings.
    """
    settings = app[keys.SETTINGS]
    secret = resolve_jwt_secret(settings)
    embedded: EmbeddedMongo | None = None
    url = settings.mongo_url
    if url is None:
        embedded = EmbeddedMongo(settings.data_dir / "mongo")
        url = await embedded.start()
    try:
        try:
            store = await Store.connect(url, settings.mongo_db)
        except PyMongoError as exc:
            raise StoreStartError(f"cannot reach MongoDB: {exc}") from exc
        try:
            await store.ensure_indexes()
        except BaseException:
            await store.close()
            raise
    except BaseException:
        if embedded is not None:
            await embedded.stop()
        raise
    app[STORE] = store
    app[JWT_SECRET] = secret
    app[OTP_KEY] = derive_key(secret, "otp")
    limit_store = LimitStore(store.db)
    await limit_store.ensure_indexes()
    app[LIMITERS] = Limiters.from_settings(settings, limit_store)
    app[EMBEDDED] = embedded
    if CODE_SENDER not in app:
        app[CODE_SENDER] = sender_from_settings(settings)
    try:
        yield
    finally:
        await store.close()
        if embedded is not None:
            await embedded.stop()


async def authorize_join(app: web.Application, token: str | None, room: str) -> AccessClaims:
    """Check a room token for ``room`` (WebSocket join, WHIP, WHEP); returns its claims.

    Verifies signature, issuer, ``exp``/``nbf``, ``video.room == room`` and ``roomJoin``, and
    that the ``jti`` was not revoked. Raises ``TokenError`` (``token_missing``,
    ``token_invalid``, ``token_expired``, ``token_not_yet_valid``, ``token_revoked``: HTTP 401;
    ``wrong_room``: 403); ``exc.code``/``exc.status``/``exc.message`` are ready for the wire.
    Use ``claims.sub`` as the participant identity and ``claims.video`` for permissions.
    """
    claims = verify_access_token(token, app[JWT_SECRET], room=room)
    await check_not_revoked(claims, app[STORE])
    return claims


def bearer_token(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def record_presence(
    app: web.Application, room: str, identity: str, event: PresenceEvent, name: str | None = None
) -> None:
    """Append ``joined``/``left`` to the meeting history; store errors are logged, not raised."""
    try:
        await app[STORE].record_presence(room, identity, event, name)
    except PyMongoError:
        log.warning("could not record %s of %s in room %s", event, identity, room, exc_info=True)


# --------------------------------------------------------------------------------------------
# Request models and parsing
# --------------------------------------------------------------------------------------------

_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")
_SLUG = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _email(value: str) -> str:
    value = value.strip().lower()
    if len(value) > 254 or not _EMAIL.match(value):
        raise ValueError("not a valid email address")
    return value


def _phone(value: str) -> str:
    if not _PHONE.match(value):
        raise ValueError("not an E.164 phone number (+ and 7 to 15 digits)")
    return value


def _text(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn") and ch != " ":
            raise ValueError("must not contain control or unassigned characters")
    return unicodedata.normalize("NFC", value)


def _password(value: str) -> str:
    if any(unicodedata.category(ch) == "Cs" for ch in value):
        raise ValueError("must be valid Unicode text")
    return value


Email = Annotated[StrictStr, Field(max_length=320), AfterValidator(_email)]
Phone = Annotated[StrictStr, Field(max_length=16), AfterValidator(_phone)]
DisplayName = Annotated[StrictStr, Field(max_length=64), AfterValidator(_text)]
Password = Annotated[StrictStr, Field(max_length=1024), AfterValidator(_password)]
RoomName = Annotated[StrictStr, Field(max_length=100), AfterValidator(_text)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RegisterBody(_Body):
    """``POST /api/register``."""

    email: Email
    password: Password
    display_name: DisplayName


class LoginBody(_Body):
    """``POST /api/login``."""

    email: Email
    password: Password


class _IdentityBody(_Body):
    email: Email | None = None
    phone: Phone | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> _IdentityBody:
        if (self.email is None) == (self.phone is None):
            raise ValueError("give exactly one of email or phone")
        return self

    def identity(self) -> tuple[Channel, str]:
        """``("email", addr)`` or ``("phone", number)``."""
        if self.email is not None:
            return "email", self.email
        assert self.phone is not None
        return "phone", self.phone


class OtpRequestBody(_IdentityBody):
    """``POST /api/otp/request``: exactly one of ``email``/``phone``."""


class OtpVerifyBody(_IdentityBody):
    """``POST /api/otp/verify``: the identity, the code and the ``{hash, expires}`` received."""

    code: Annotated[StrictStr, Field(pattern=r"^[0-9]{6}$")]
    hash: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]
    expires: Annotated[StrictInt, Field(ge=0, le=2**40)]
    display_name: DisplayName | None = None


class RefreshBody(_Body):
    """``POST /api/token/refresh``."""

    refresh_token: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_-]{16,128}$")]


class LogoutBody(_Body):
    """``POST /api/logout`` (body optional)."""

    refresh_token: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_-]{16,128}$")] | None = None


class EmptyBody(_Body):
    """Endpoints that take no fields (body optional)."""


M = TypeVar("M", bound=BaseModel)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _clip(value: object, limit: int = 64) -> object:
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "…"
    return value


async def read_body(request: web.Request, model: type[M], *, optional: bool = False) -> M:
    """Parse the request body as JSON into ``model``.

    Raises :class:`ProblemError`: 400 ``malformed_json`` (not UTF-8 / not JSON / too deeply
    nested), 422 ``validation_failed`` (not an object, wrong fields or types; the body lists
    ``errors`` as ``{loc, msg, type}`` without echoing input). ``optional``: an empty body
    counts as ``{}``. aiohttp answers 413 for a body over ``client_max_size``.
    """
    raw = await request.read()
    if optional and not raw.strip():
        data: Any = {}
    else:
        try:
            data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ProblemError(400, "malformed_json", "the body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise ProblemError(422, "validation_failed", "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {
                "loc": [_clip(part) for part in err["loc"]],
                "msg": str(_clip(err["msg"], 200)),
                "type": err["type"],
            }
            for err in exc.errors(include_url=False, include_input=False, include_context=False)[
                :10
            ]
        ]
        raise ProblemError(
            422, "validation_failed", "the request body is invalid", errors=errors
        ) from exc
    except RecursionError as exc:
        raise ProblemError(400, "malformed_json", "the body is nested too deeply") from exc


def _slug(request: web.Request, name: str, code: str, what: str) -> str:
    value = request.match_info.get(name, "")
    if not _SLUG.match(value):
        raise ProblemError(404, code, f"{what} not found")
    return value


def _token_problem(exc: TokenError) -> ProblemError:
    return ProblemError(
        exc.status, exc.code, exc.message, headers={"WWW-Authenticate": 'Bearer realm="sfu"'}
    )


async def require_account(request: web.Request) -> tuple[AccessClaims, User]:
    """The verified account token and its user; raises a 401 :class:`ProblemError` otherwise."""
    app = request.app
    try:
        claims = verify_access_token(bearer_token(request), app[JWT_SECRET], room=None)
        await check_not_revoked(claims, app[STORE])
    except TokenError as exc:
        raise _token_problem(exc) from exc
    user = await app[STORE].get_user(claims.sub)
    if user is None:
        raise ProblemError(401, "token_invalid", "the account no longer exists")
    return claims, user


# --------------------------------------------------------------------------------------------
# Tokens and sessions
# --------------------------------------------------------------------------------------------


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


async def _session(app: web.Application, user: User, family: str | None = None) -> dict[str, Any]:
    settings = app[keys.SETTINGS]
    access, _claims = create_access_token(
        app[JWT_SECRET],
        identity=user.id,
        name=user.display_name,
        ttl_s=settings.access_token_ttl_s,
        video=VideoGrant(roomCreate=True),
    )
    refresh = secrets.token_urlsafe(32)
    await app[STORE].add_refresh_token(
        _sha256(refresh),
        user_id=user.id,
        family=family or secrets.token_urlsafe(12),
        expires_at=utcnow() + timedelta(seconds=settings.refresh_token_ttl_s),
    )
    return {
        "token_type": "Bearer",
        "access_token": access,
        "expires_in": settings.access_token_ttl_s,
        "refresh_token": refresh,
        "refresh_expires_in": settings.refresh_token_ttl_s,
        "user": user.public(),
    }


# --------------------------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------------------------

routes = web.RouteTableDef()


@routes.post("/api/register")
async def register(request: web.Request) -> web.Response:
    """Create a password account; 201 session, 409 ``email_taken``, 422 ``weak_password``."""
    app = request.app
    body = await read_body(request, RegisterBody)
    limiters = app[LIMITERS]
    await rate_limit(limiters, [(limiters.register_address, client_address(request))])
    try:
        check_password_rules(body.password, email=body.email)
    except PasswordRuleError as exc:
        raise ProblemError(422, "weak_password", str(exc)) from exc
    hashed = await hash_password(body.password, app[keys.SETTINGS].bcrypt_cost)
    try:
        user = await app[STORE].create_user(
            email=body.email, password_hash=hashed, display_name=body.display_name
        )
    except DuplicateError as exc:
        raise ProblemError(409, "email_taken", "an account with this email exists") from exc
    return web.json_response(await _session(app, user), status=201)


@routes.post("/api/login")
async def login(request: web.Request) -> web.Response:
    """Password login; 200 session or 401 ``invalid_credentials`` (same for unknown email)."""
    app = request.app
    body = await read_body(request, LoginBody)
    limiters = app[LIMITERS]
    address = client_address(request)
    await check_login(limiters, body.email, address)
    user = await app[STORE].find_user(email=body.email)
    ok = await verify_password(
        body.password,
        user.password_hash if user else None,
        dummy_cost=app[keys.SETTINGS].bcrypt_cost,
    )
    if user is None or not ok:
        await login_failed(limiters, body.email, address)
        raise ProblemError(401, "invalid_credentials", "wrong email or password")
    await login_succeeded(limiters, body.email, address)
    return web.json_response(await _session(app, user))


@routes.post("/api/otp/request")
async def otp_request(request: web.Request) -> web.Response:
    """Send a one-time code; 200 ``{hash, expires}`` (expires: Unix seconds), 429 when limited."""
    app = request.app
    body = await read_body(request, OtpRequestBody)
    channel, address = body.identity()
    identity = f"{channel}:{address}"
    limiters = app[LIMITERS]
    await rate_limit(
        limiters,
        [(limiters.otp_identity, identity), (limiters.otp_address, client_address(request))],
    )
    code = otp.generate_code()
    expires = int(time.time()) + app[keys.SETTINGS].otp_ttl_s
    try:
        await app[CODE_SENDER].send(channel, address, code, datetime.fromtimestamp(expires, UTC))
    except OSError as exc:
        log.warning("could not deliver a one-time code to %s: %s", channel, exc)
        raise ProblemError(503, "code_delivery_failed", "the code could not be sent") from exc
    return web.json_response(
        {"hash": otp.code_hash(app[OTP_KEY], identity, code, expires), "expires": expires}
    )


@routes.post("/api/otp/verify")
async def otp_verify(request: web.Request) -> web.Response:
    """Check a one-time code; 200 session (creating the user on first login).

    401 ``otp_expired`` / ``otp_invalid`` / ``otp_used``; 429 ``otp_attempts_exceeded``.
    """
    app = request.app
    settings = app[keys.SETTINGS]
    body = await read_body(request, OtpVerifyBody)
    channel, address = body.identity()
    identity = f"{channel}:{address}"
    now = int(time.time())
    if body.expires <= now:
        raise ProblemError(401, "otp_expired", "the code has expired; request a new one")
    if body.expires > now + settings.otp_ttl_s + 60:
        raise ProblemError(401, "otp_invalid", "wrong code")
    store = app[STORE]
    expires_at = datetime.fromtimestamp(body.expires, UTC)
    outcome = await store.otp_attempt(body.hash, expires_at, settings.otp_max_attempts)
    if outcome == "spent":
        raise ProblemError(401, "otp_used", "this code was already used")
    if outcome == "exhausted":
        raise ProblemError(429, "otp_attempts_exceeded", "too many attempts; request a new code")
    if not otp.check_code(app[OTP_KEY], identity, body.code, body.expires, body.hash):
        raise ProblemError(401, "otp_invalid", "wrong code")
    if not await store.otp_spend(body.hash):
        raise ProblemError(401, "otp_used", "this code was already used")
    lookup = {"email": address} if channel == "email" else {"phone": address}
    user = await store.find_user(**lookup)
    if user is None:
        name = body.display_name or (address.split("@", 1)[0] if channel == "email" else "Guest")
        try:
            user = await store.create_user(display_name=name[:64], **lookup)
        except DuplicateError:
            user = await store.find_user(**lookup)
            if user is None:
                raise
    return web.json_response(await _session(app, user))


@routes.post("/api/token/refresh")
async def refresh(request: web.Request) -> web.Response:
    """Rotate a refresh token: 200 new session; 401 ``refresh_invalid`` or ``refresh_reused``.

    Presenting a spent token again revokes its whole family (every session descended from
    the same login).
    """
    app = request.app
    body = await read_body(request, RefreshBody)
    outcome = await app[STORE].use_refresh_token(_sha256(body.refresh_token))
    if outcome.status == "reused":
        log.warning("refresh token reuse for user %s: family revoked", outcome.user_id)
        raise ProblemError(401, "refresh_reused", "refresh token reuse detected; log in again")
    if outcome.status != "ok" or outcome.user_id is None:
        raise ProblemError(401, "refresh_invalid", "invalid or expired refresh token")
    user = await app[STORE].get_user(outcome.user_id)
    if user is None:
        raise ProblemError(401, "refresh_invalid", "invalid or expired refresh token")
    return web.json_response(await _session(app, user, family=outcome.family))


@routes.post("/api/logout")
async def logout(request: web.Request) -> web.Response:
    """Revoke the presented access token and, if given, its refresh-token family; 204."""
    app = request.app
    claims, user = await require_account(request)
    body = await read_body(request, LogoutBody, optional=True)
    store = app[STORE]
    await store.revoke_jti(claims.jti, datetime.fromtimestamp(claims.exp, UTC))
    if body.refresh_token is not None:
        family = await store.refresh_family_of(_sha256(body.refresh_token), user.id)
        if family is not None:
            await store.revoke_family(family)
    return web.Response(status=204)


@routes.get("/api/me")
async def me(request: web.Request) -> web.Response:
    """The signed-in user: ``{user}``."""
    _claims, user = await require_account(request)
    return web.json_response({"user": user.public()})


# --------------------------------------------------------------------------------------------
# Web security: security headers (CORS is in signaling.cors)
# --------------------------------------------------------------------------------------------

_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob: mediastream:; font-src 'self'; manifest-src 'self'; "
    "worker-src 'self' blob:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
    "object-src 'none'; connect-src 'self'"
)
"""The client loads only same-origin scripts and styles, plays getUserMedia streams and blob:
URLs, and talks to the same host over fetch and WebSocket (``connect-src``)."""


def _csp(request: web.Request) -> str:
    host = request.host
    if _HOST.match(host):
        # Older Safari does not match ws(s): against 'self': name the same host explicitly.
        return f"{CONTENT_SECURITY_POLICY} ws://{host} wss://{host}"
    return CONTENT_SECURITY_POLICY


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: CSP and the usual security headers on every response.

    (A signal rather than a middleware so that static files, the WebSocket handshake and error
    pages get the headers too, before they are sent.)
    """
    headers = response.headers
    headers.setdefault("Content-Security-Policy", _csp(request))
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
    headers.setdefault(
        "Permissions-Policy",
        "camera=(self), microphone=(self), display-capture=(self), geolocation=(), payment=()",
    )
    if request.secure:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    if request.path.startswith("/api/"):
        headers.setdefault("Cache-Control", "no-store")
