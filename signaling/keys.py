"""Typed application state keys (``web.AppKey``) shared by the signaling modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from signaling.settings import Settings

if TYPE_CHECKING:
    from sfu.plane.api import MediaPlane

SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
MEDIA: web.AppKey[MediaPlane] = web.AppKey("media", object)  # type: ignore[arg-type]
"""The media plane (:class:`sfu.plane.api.MediaPlane`): every call from the edge into the
media goes through it, by participant id and room name."""
