"""The rate limiters of the accounts API (password login, registration, one-time codes).

:class:`Limiters` holds one :class:`~signaling.auth.ratelimit.SlidingWindowLimiter` per limit;
:func:`rate_limit` checks several keys at once and answers 429 ``rate_limited`` (RFC 9457
problem details with ``Retry-After``, RFC 9110 section 10.2.3) when any of them is exhausted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aiohttp import web

from signaling.auth.ratelimit import SlidingWindowLimiter
from signaling.problems import ProblemError
from signaling.settings import Settings


@dataclass(slots=True)
class Limiters:
    """The in-memory rate limiters of one app (see ``signaling.auth.ratelimit``)."""

    otp_identity: SlidingWindowLimiter
    otp_address: SlidingWindowLimiter
    login_identity: SlidingWindowLimiter
    login_address: SlidingWindowLimiter

    @classmethod
    def from_settings(cls, settings: Settings) -> Limiters:
        """Limits and window from ``settings`` (``otp_rate_*``, ``login_rate_*``)."""
        window = settings.rate_window_s
        return cls(
            otp_identity=SlidingWindowLimiter(settings.otp_rate_per_identity, window),
            otp_address=SlidingWindowLimiter(settings.otp_rate_per_address, window),
            login_identity=SlidingWindowLimiter(settings.login_rate_per_identity, window),
            login_address=SlidingWindowLimiter(settings.login_rate_per_address, window),
        )


LIMITERS: web.AppKey[Limiters] = web.AppKey("accounts_limiters", Limiters)


def rate_limit(pairs: list[tuple[SlidingWindowLimiter, str]]) -> None:
    """Record one event on every ``(limiter, key)``, or raise 429 when any is exhausted.

    Raises:
        ProblemError: 429 ``rate_limited`` with ``Retry-After`` (whole seconds, at least 1).
    """
    wait = max(limiter.retry_after(key) for limiter, key in pairs)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise ProblemError(
            429,
            "rate_limited",
            "too many requests; try again later",
            headers={"Retry-After": str(seconds)},
            retry_after=seconds,
        )
    for limiter, key in pairs:
        limiter.hit(key)


def client_address(request: web.Request) -> str:
    """The peer address of ``request`` (``"unknown"`` when aiohttp has none)."""
    # The peer address. Behind a reverse proxy this is the proxy: configure the proxy to
    # rate-limit too (X-Forwarded-For is not trusted here).
    return request.remote or "unknown"
