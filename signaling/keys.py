"""Typed application state keys (``web.AppKey``) shared by the signaling modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from signaling.settings import Settings

if TYPE_CHECKING:
    from sfu.server import MediaServer

SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
MEDIA: web.AppKey[MediaServer] = web.AppKey("media", object)  # type: ignore[arg-type]
