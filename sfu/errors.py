"""Typed errors raised by the media plane's public API."""

from __future__ import annotations


class SfuError(Exception):
    """Base class of every error the media plane raises on purpose."""


class InvalidSdpError(SfuError):
    """An SDP offer or answer that cannot be parsed or negotiated (RFC 8866, RFC 8829)."""


class InvalidStateError(SfuError):
    """An operation on a closed object, or out of negotiation order (e.g. an answer with no
    offer outstanding)."""


class NotFoundError(SfuError):
    """An unknown room, participant, producer or consumer."""


class LimitExceededError(SfuError):
    """A request that would exceed a per-participant limit (e.g. more producers than
    ``max_producers_per_participant``); nothing changed."""


class UnsupportedCodecError(SfuError):
    """No codec common to the producer and the consumer's transport."""
