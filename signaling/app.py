"""The aiohttp application factory: ``create_app(settings)``.

Start-up and tear-down are ``cleanup_ctx`` async generators, unwound in reverse order:
the media plane (rooms, routers, transports) starts first and stops last; ``on_shutdown``
closes every WebSocket so that participants leave cleanly.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from signaling import keys
from signaling.settings import Settings

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


async def _media_ctx(app: web.Application) -> AsyncIterator[None]:
    from sfu.plane.local import LocalMediaPlane, MediaSettings

    settings = app[keys.SETTINGS]
    media_settings = MediaSettings(
        ice_hosts=settings.ice_hosts,
        ice_servers=settings.ice_servers,
        keyframe_min_interval_ms=settings.keyframe_min_interval_ms,
        nack_buffer_packets=settings.nack_buffer_packets,
        max_publish_bitrate_bps=settings.max_publish_bitrate_bps,
        ice_connect_timeout_s=settings.ice_connect_timeout_s,
        max_producers_per_participant=settings.max_producers_per_participant,
        media_timeout_s=settings.media_timeout_s or None,
        audio_loss_proxying=settings.audio_loss_proxying,
        rtc_port=settings.rtc_port,
        rtc_announced_address=(
            str(settings.rtc_announced_address) if settings.rtc_announced_address else None
        ),
        fast_path=settings.fast_path,
        dynacast=settings.dynacast,
    )
    if settings.workers == 0:
        media = LocalMediaPlane(media_settings)
        app[keys.MEDIA] = media
        yield
        await media.close()
        return
    from sfu.plane.workers import WorkerMediaPlane

    workers = WorkerMediaPlane(
        media_settings,
        settings.workers,
        spread_at=settings.worker_room_spread_at,
        log_level=_worker_log_level(),
    )
    await workers.start()  # media worker processes (issue 12)
    app[keys.MEDIA] = workers
    try:
        yield
    finally:
        await workers.close()


def _worker_log_level() -> str:
    level = logging.getLogger().getEffectiveLevel()
    return "debug" if level <= logging.DEBUG else "info" if level <= logging.INFO else "warning"


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


def create_app(settings: Settings | None = None) -> web.Application:
    """Build the aiohttp application.

    Routes: ``/`` (browser client), ``/static/*``, ``/ws`` (signaling, see docs/protocol.md),
    ``/whip/{room}`` and ``/whep/{room}/{identity}`` (RFC 9725), ``/metrics`` (Prometheus),
    ``/healthz``, ``/readyz``, the accounts API under ``/api`` and room files under
    ``/api/rooms/{room}/files`` (docs/files.md).
    """
    from signaling import chat, cors, files, metrics, stage, whip, whiteboard, ws

    settings = settings or Settings()
    app = web.Application(client_max_size=settings.max_message_bytes)
    app[keys.SETTINGS] = settings
    app.cleanup_ctx.append(_media_ctx)
    app.cleanup_ctx.append(metrics.metrics_ctx)
    # --- accounts (issue 3): contexts and routes are added between these markers ---
    from signaling import accounts, join, rooms
    from signaling.problems import problem_middleware

    app.cleanup_ctx.append(accounts.accounts_ctx)
    app.router.add_routes(accounts.routes)
    app.router.add_routes(rooms.routes)
    app.router.add_routes(join.routes)
    app.middlewares.extend([cors.cors_middleware, problem_middleware])
    app.on_response_prepare.append(accounts.security_headers)
    # --- end accounts ---
    app.cleanup_ctx.append(chat.chat_ctx)  # after the accounts store
    app.cleanup_ctx.append(files.files_ctx)  # after the accounts store (and its JWT secret)
    app.router.add_routes(files.routes)
    app.cleanup_ctx.append(whiteboard.board_ctx)  # after the accounts store
    app.cleanup_ctx.append(stage.stage_ctx)  # after the accounts store
    from signaling.cluster.node import cluster_ctx

    app.cleanup_ctx.append(cluster_ctx)  # after stage and chat; only with SFU_REDIS_URL
    ws.install(app)
    stage.install(app)
    whip.install(app)
    app.router.add_get("/", _index)
    app.router.add_get("/join", _index)  # /join?token=<room token>: the client joins from it
    app.router.add_get("/ws", ws.handle_ws)
    app.router.add_routes(whip.routes)
    app.router.add_get("/healthz", metrics.handle_healthz)
    app.router.add_get("/readyz", metrics.handle_readyz)
    app.router.add_get("/metrics", metrics.handle_metrics)
    if STATIC_DIR.is_dir():
        app.router.add_static("/static", STATIC_DIR, show_index=False)
    app.on_shutdown.append(ws.close_all_sockets)
    if settings.tls_cert is not None:  # sfu serve serves HTTPS/WSS: send HSTS (RFC 6797)
        from signaling.tls import install_hsts

        install_hsts(app, settings.hsts_max_age_s)
    return app
