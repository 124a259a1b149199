"""Server settings, read from the environment (pydantic-settings).

Every field is documented in README.md. Environment variables use the ``SFU_`` prefix, except
``MONGO_URL`` which keeps its conventional name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    Field,
    IPvAnyAddress,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def default_workers() -> int:
    """The CPUs this process may run on (``os.sched_getaffinity``), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


class Settings(BaseSettings):
    """Process-wide settings.

    Fields:
        host, port: where ``sfu serve`` listens (HTTP and WebSocket).
        data_dir: directory for the embedded MongoDB data and generated secrets.
        ice_hosts: addresses on which ICE host candidates are gathered. Empty means the
            machine's non-loopback addresses, as aioice does; tests use ``["127.0.0.1"]``.
        ice_servers: STUN/TURN URLs (``stun:host:port``, ``turn:user:pass@host:port``) handed to
            clients and used by the server. Empty by default: aiortc falls back to a public STUN
            server when given ``None``, so we always pass an explicit (possibly empty) list.
        jwt_secret: HMAC secret for access tokens (RFC 7519); see issue 3.
        mongo_url: a MongoDB URL; unset means start the embedded ``nx-27017`` server.
        max_message_bytes: largest accepted WebSocket message (bytes).
        ws_heartbeat_s: WebSocket ping interval (seconds); a peer that misses a pong is closed.
        ws_outbox_max_messages, ws_outbox_max_bytes: most messages / UTF-8 bytes queued for one
            socket that the client has not read yet; past either the socket is closed (1008).
        ws_request_rate, ws_request_burst: each socket's token bucket (requests/s, and how
            many may arrive back to back); a request beyond it gets ``rate_limited``.
        ws_join_timeout_s: a socket that has not joined this long after connecting is closed
            (1008, seconds).
        ws_max_connections_per_address: open sockets per client address (``request.remote``,
            X-Forwarded-For is not trusted); more are closed with 1013. 0: no cap.
        resume_grace_s: how long a joined session is kept (participant, media, stage role)
            after its WebSocket drops without ``leave``, waiting for a ``resume`` (seconds;
            0: never, the participant leaves at once).
        resume_buffer_messages, resume_buffer_bytes: the most recent messages / UTF-8 bytes a
            session keeps for a resume to replay; a held session that would forget a message
            it sent since the drop is given up.
        keyframe_min_interval_ms: minimum interval between keyframe requests sent to one
            producer (ms).
        nack_buffer_packets: size of each video consumer's retransmission buffer (packets,
            power of two).
        max_publish_bitrate_bps: the most a video publisher is told to send (REMB cap, bits/s).
        dynacast: tell simulcast publishers to pause the layers no subscriber uses.
        ice_connect_timeout_s: a WebRTC transport not connected (ICE and DTLS) this many
            seconds after it was created is closed as failed, releasing its UDP port.
        media_timeout_s: a connected WebRTC transport whose peer has sent nothing and answered
            no STUN consent check for this many seconds has lost its media path (s); 0 leaves
            it to aioice's 30 s consent expiry.
        media_restart_grace_s: after a media path failure the participant stays in the room
            this long (s) for its client to renegotiate on new transports; then it is removed
            with ``transport_failed``.
        rtc_port: ``SFU_RTC_PORT``: when set, every WebRTC transport of the process receives
            its media (STUN, DTLS, SRTP) on this one UDP port, bound on each ICE host address
            and demultiplexed by ICE ufrag and remote address (``sfu.udp_mux``); with worker
            processes (issue 12) worker k uses ``rtc_port + k``. Unset: each transport binds
            its own ephemeral ports.
        rtc_announced_address: ``SFU_RTC_ANNOUNCED_ADDRESS``: with ``rtc_port``, the IP
            address the ICE host candidates name instead of the bound one (``ice_hosts``): the
            public address of a NAT or of the host of a container that publishes the port.
        audio_loss_proxying: the RTCP receiver reports sent to an Opus publisher carry the
            worst fraction lost its subscribers report (fresh within 10 s), so its encoder
            turns on in-band FEC (RFC 6716 LBRR) for them.
        fast_path: forward RTP with the compiled fan-out ``sfu._fastpath`` (issue 14) when it
            is built; ``false`` selects the pure-Python path (also used, and logged once at
            start, when the extension is missing).
        max_producers_per_participant: most tracks (sending m-lines) one participant may
            publish at once; a publish offer with more gets ``too_large`` (WHIP: 400). It bounds
            what one publisher adds to every subscriber's SDP.
        env: ``development`` or ``production`` (production refuses weak secrets).
        workers: media worker processes (``SFU_WORKERS``, ``sfu serve --workers``; default:
            the CPUs this process may use, ``os.sched_getaffinity``); 0 keeps media in the
            control process (issue 12, README "Scaling on one machine").
        worker_room_spread_at: with workers, participants of one room on one worker before
            the room spreads to another worker (``SFU_WORKER_ROOM_SPREAD_AT``); a smaller
            room stays on one worker.
        metrics_token: when set (``SFU_METRICS_TOKEN``), ``GET /metrics`` requires
            ``Authorization: Bearer <metrics_token>`` and answers 401 otherwise. Unset: open.
        allowed_origins: CORS allow-list of ``/api`` (``SFU_ALLOWED_ORIGINS``, comma separated,
            exact ``scheme://host[:port]`` origins; ``*`` allows any origin). Empty: same-origin
            only. ``/whip`` and ``/whep`` allow any origin (``signaling.cors``).

    Accounts (issue 3):
        mongo_db: database name inside ``mongo_url`` (or the embedded server).
        bcrypt_cost: bcrypt work factor (log2 rounds, 4..31); tests use 4.
        access_token_ttl_s: lifetime of account access JWTs (seconds, default 15 min).
        room_token_ttl_s: lifetime of room JWTs issued by join codes (seconds).
        refresh_token_ttl_s: lifetime of a refresh-token family member (seconds, 30 days).
        otp_ttl_s: validity of a one-time login code (seconds).
        otp_max_attempts: verification attempts allowed per one-time code hash.
        rate_window_s: sliding window for the rate limits below (seconds).
        otp_rate_per_identity, otp_rate_per_address: one-time code requests allowed per
            window per email/phone and per client address.
        login_rate_per_address: failed password logins (and registrations) allowed per window
            per client address.
        login_free_failures: failed logins of one account from one client address before
            backing off; then each attempt waits ``login_backoff_base_s * 2**(failures -
            login_free_failures)`` seconds after the last failure, at most
            ``login_backoff_max_s``. A success resets the count.
        invite_ttl_s: default lifetime of a room invite code (seconds).
        stage_state_ttl_s: longest a remembered stage role, a removal (ban) or an ended room
            is kept in MongoDB (seconds, default 30 days).
        smtp_host, smtp_port, smtp_username, smtp_password, smtp_from, smtp_starttls: when
            ``smtp_host`` is set, one-time codes for email identities are mailed (``SFU_SMTP_*``);
            otherwise they are written to the server log.

    Quotas (shared room content):
        board_max_points: points one whiteboard holds (all strokes, all authors).
        board_points_per_identity: points one identity may have on one whiteboard.
        file_quota_per_identity_bytes: file bytes one identity may keep in one room.
        file_quota_per_room_bytes: file bytes one room may keep (all uploaders).

    Files (encrypted file sharing, ``signaling/files.py``):
        max_upload_bytes: largest file accepted by ``POST /api/rooms/{room}/files`` (bytes,
            default 25 MiB).
        file_master_key: the 32-byte key (64 hex digits or base64) that wraps each room's file
            key (``SFU_FILE_MASTER_KEY``). Unset: derived from the JWT secret with HKDF in
            development; required in production.

    Cluster (issue 13, :mod:`signaling.cluster`, docs/cluster.md):
        redis_url: a Redis URL (``redis://host:6379/0``); set, the node joins the cluster of
            every node sharing it (and ``SFU_JWT_SECRET`` and ``MONGO_URL``). Unset: the node
            runs alone and needs no Redis.
        node_id: this node's id in the registry (default: random per start).
        node_url: the base URL clients use to reach this node's signaling (``https://a.example``);
            ``redirect`` messages carry it. Default ``http://<host>:<port>``.
        node_media_host: the address other nodes use to reach this node's media pipes
            (default: ``host``).
        max_participants: participants this node admits before redirecting new joins to the
            least-loaded serving node (0: no cap).
        drain_timeout_s: after SIGTERM a clustered node drains (redirects new joins, hands its
            participants to other nodes at most 200 a second) and exits when empty or after
            this many seconds.

    TURN and TLS (issue 11):
        turn_urls: TURN server URLs (``turn:host:3478?transport=udp``, ``turns:...``) for which
            each join hands the client short-lived credentials (``SFU_TURN_URLS``, comma
            separated); see :mod:`signaling.turn`.
        turn_secret: the secret shared with the TURN server (coturn ``--static-auth-secret``);
            required when ``turn_urls`` is set.
        turn_ttl_s: lifetime of the handed-out TURN credentials (seconds, default 24 h). The TURN
            server checks it when a relay is allocated (at join, or after an ICE restart); a
            client that allocates again after it should rejoin (or resume) for new ones.
        tls_cert, tls_key: PEM certificate chain and private key; when both are set ``sfu
            serve`` serves HTTPS and WSS (``sfu serve --tls-cert/--tls-key`` override them).
        hsts_max_age_s: ``Strict-Transport-Security`` max-age sent when TLS is on (seconds,
            RFC 6797; 0 tells browsers to forget it).
    """

    model_config = SettingsConfigDict(env_prefix="SFU_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("./data")
    ice_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    ice_servers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    jwt_secret: str | None = None
    mongo_url: str | None = Field(
        default=None, validation_alias=AliasChoices("MONGO_URL", "SFU_MONGO_URL")
    )
    max_message_bytes: int = 256 * 1024
    ws_heartbeat_s: float = 15.0
    ws_outbox_max_messages: int = Field(default=2048, ge=16)
    ws_outbox_max_bytes: int = Field(default=8 * 1024 * 1024, ge=64 * 1024)
    ws_request_rate: float = Field(default=50.0, gt=0)
    ws_request_burst: int = Field(default=200, ge=1)
    ws_join_timeout_s: float = Field(default=10.0, gt=0)
    ws_max_connections_per_address: int = Field(default=256, ge=0)
    resume_grace_s: float = Field(default=20.0, ge=0)
    resume_buffer_messages: int = Field(default=512, ge=16)
    resume_buffer_bytes: int = Field(default=1024 * 1024, ge=64 * 1024)
    keyframe_min_interval_ms: int = 500
    nack_buffer_packets: int = 512
    max_publish_bitrate_bps: int = Field(default=3_000_000, ge=100_000)
    ice_connect_timeout_s: float = Field(default=30.0, gt=0)
    max_producers_per_participant: int = Field(default=8, ge=1, le=32)
    media_timeout_s: float = Field(default=2.0, ge=0)
    media_restart_grace_s: float = Field(default=15.0, gt=0)
    audio_loss_proxying: bool = True
    rtc_port: int | None = Field(default=None, ge=1, le=65535)
    rtc_announced_address: IPvAnyAddress | None = None
    fast_path: bool = True
    dynacast: bool = True
    env: Literal["development", "production"] = "development"
    workers: int = Field(default_factory=default_workers, ge=0, le=1024)
    worker_room_spread_at: int = Field(default=100, ge=1)
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    mongo_db: str = "sfu"
    bcrypt_cost: int = Field(default=12, ge=4, le=31)
    access_token_ttl_s: int = Field(default=15 * 60, gt=0)
    room_token_ttl_s: int = Field(default=6 * 3600, gt=0)
    refresh_token_ttl_s: int = Field(default=30 * 24 * 3600, gt=0)
    otp_ttl_s: int = Field(default=5 * 60, gt=0)
    otp_max_attempts: int = Field(default=5, gt=0)
    rate_window_s: float = Field(default=600.0, gt=0)
    otp_rate_per_identity: int = Field(default=3, gt=0)
    otp_rate_per_address: int = Field(default=20, gt=0)
    login_rate_per_address: int = Field(default=100, gt=0)
    login_free_failures: int = Field(default=5, ge=0)
    login_backoff_base_s: float = Field(default=1.0, gt=0)
    login_backoff_max_s: float = Field(default=900.0, gt=0)
    invite_ttl_s: int = Field(default=7 * 24 * 3600, gt=0)
    stage_state_ttl_s: int = Field(default=30 * 24 * 3600, gt=0)
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "sfu@localhost"
    smtp_starttls: bool = True

    board_max_points: int = Field(default=100_000, gt=0)
    board_points_per_identity: int = Field(default=20_000, gt=0)
    file_quota_per_identity_bytes: int = Field(default=200 * 1024 * 1024, gt=0)
    file_quota_per_room_bytes: int = Field(default=1024 * 1024 * 1024, gt=0)

    max_upload_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    file_master_key: SecretStr | None = None
    metrics_token: SecretStr | None = None

    redis_url: str | None = None
    node_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    node_url: str | None = None
    node_media_host: str | None = None
    max_participants: int = Field(default=0, ge=0)
    drain_timeout_s: float = Field(default=60.0, ge=0)

    turn_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    turn_secret: SecretStr | None = None
    turn_ttl_s: int = Field(default=24 * 3600, gt=0)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    hsts_max_age_s: int = Field(default=365 * 24 * 3600, ge=0)

    @field_validator("ice_hosts", "ice_servers", "allowed_origins", "turn_urls", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("rtc_port", "rtc_announced_address", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("turn_urls")
    @classmethod
    def _turn_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("turn:", "turns:")) or any(c in url for c in '@<>" \t'):
                raise ValueError(f"{url!r} is not a turn: or turns: URL without credentials")
        return value

    @model_validator(mode="after")
    def _pairs(self) -> Settings:
        if self.turn_urls and not (self.turn_secret and self.turn_secret.get_secret_value()):
            raise ValueError("SFU_TURN_URLS needs SFU_TURN_SECRET")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("SFU_TLS_CERT and SFU_TLS_KEY go together")
        if self.rtc_announced_address is not None and self.rtc_port is None:
            raise ValueError("SFU_RTC_ANNOUNCED_ADDRESS needs SFU_RTC_PORT")
        return self
