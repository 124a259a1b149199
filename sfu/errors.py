"""Typed errors raised by the media plane's public API.

Every error carries a stable ``code`` (a class attribute; a channel's error for a code it
does not know may set it per instance), so a proxy of the media plane
(:mod:`sfu.plane`) can send ``(code, message)`` over its channel and re-raise the same class
on the other side with :func:`error_from_code`.
"""

from __future__ import annotations


class SfuError(Exception):
    """Base class of every error the media plane raises on purpose."""

    code: str = "sfu_error"


class InvalidSdpError(SfuError):
    """An SDP offer or answer that cannot be parsed or negotiated (RFC 8866, RFC 8829)."""

    code: str = "invalid_sdp"


class InvalidStateError(SfuError):
    """An operation on a closed object, or out of negotiation order (e.g. an answer with no
    offer outstanding)."""

    code: str = "invalid_state"


class NotAllowedError(InvalidStateError):
    """The participant lacks the grant the operation needs (e.g. a publish offer without
    ``canPublish``); nothing changed."""

    code: str = "not_allowed"


class NotFoundError(SfuError):
    """An unknown room, participant, producer or consumer."""

    code: str = "not_found"


class LimitExceededError(SfuError):
    """A request that would exceed a per-participant limit (e.g. more producers than
    ``max_producers_per_participant``); nothing changed."""

    code: str = "limit_exceeded"


class UnsupportedCodecError(SfuError):
    """No codec common to the producer and the consumer's transport."""

    code: str = "unsupported_codec"


class CodecError(SfuError, ValueError):
    """A media-plane channel message that does not decode to the API's types (a peer of
    another version, or a corrupt channel; :mod:`sfu.plane.codec`)."""

    code: str = "codec_error"


ERRORS: dict[str, type[SfuError]] = {
    cls.code: cls
    for cls in (
        SfuError,
        InvalidSdpError,
        InvalidStateError,
        NotAllowedError,
        NotFoundError,
        LimitExceededError,
        UnsupportedCodecError,
        CodecError,
    )
}
"""Every typed error by its ``code``."""


def error_from_code(code: str, message: str) -> SfuError:
    """The typed error for ``code`` with ``message`` (an unknown code gives a plain
    :class:`SfuError`, so a newer peer's error is still typed)."""
    return ERRORS.get(code, SfuError)(message)
