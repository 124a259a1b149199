"""The rate limits of the accounts API (password login, registration, one-time codes).

Every counter lives in MongoDB (:class:`signaling.store.limits.LimitStore`), so a restart or a
second server process sees the same counts.

* One-time codes and registrations: at most ``limit`` requests per fixed window per key (an
  email/phone, a client address): :func:`rate_limit`.
* Password logins count *failures only*, keyed on (account, client address): the first
  ``login_free_failures`` are free, then each further attempt from that address waits
  ``login_backoff_base_s * 2**(failures - free)`` seconds (at most ``login_backoff_max_s``)
  after the last failure; a success resets the count. Someone failing from another address
  therefore never locks the owner out. Failures per client address (any account) are capped
  too (``login_rate_per_address`` per window, against password spraying).

Refusals are 429 ``rate_limited`` RFC 9457 problem details with ``Retry-After`` (RFC 9110
section 10.2.3, whole seconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aiohttp import web

from signaling.problems import ProblemError
from signaling.settings import Settings
from signaling.store.limits import LimitStore


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``limit`` events per ``window_s`` seconds per key; keys start with ``name``."""

    name: str
    limit: int
    window_s: float


@dataclass(slots=True)
class Limiters:
    """The rate limits of one app and the store that counts them."""

    store: LimitStore
    otp_identity: Limit
    otp_address: Limit
    register_address: Limit
    login_address: Limit
    login_free_failures: int
    login_backoff_base_s: float
    login_backoff_max_s: float
    login_failure_ttl_s: float

    @classmethod
    def from_settings(cls, settings: Settings, store: LimitStore) -> Limiters:
        """Limits from ``settings`` (``otp_rate_*``, ``login_*``, ``rate_window_s``)."""
        window = settings.rate_window_s
        return cls(
            store=store,
            otp_identity=Limit("otp-id", settings.otp_rate_per_identity, window),
            otp_address=Limit("otp-ip", settings.otp_rate_per_address, window),
            register_address=Limit("register", settings.login_rate_per_address, window),
            login_address=Limit("login-fail", settings.login_rate_per_address, window),
            login_free_failures=settings.login_free_failures,
            login_backoff_base_s=settings.login_backoff_base_s,
            login_backoff_max_s=settings.login_backoff_max_s,
            login_failure_ttl_s=max(window, settings.login_backoff_max_s),
        )

    def backoff_s(self, failures: int) -> float:
        """The wait after ``failures`` failed logins (0.0 while they are free), seconds."""
        extra = failures - self.login_free_failures
        if extra < 0:
            return 0.0
        return min(self.login_backoff_max_s, self.login_backoff_base_s * 2.0 ** min(extra, 60))


LIMITERS: web.AppKey[Limiters] = web.AppKey("accounts_limiters", Limiters)


def _limited(wait: float) -> ProblemError:
    seconds = max(1, math.ceil(wait))
    return ProblemError(
        429,
        "rate_limited",
        "too many requests; try again later",
        headers={"Retry-After": str(seconds)},
        retry_after=seconds,
    )


async def rate_limit(limiters: Limiters, pairs: list[tuple[Limit, str]]) -> None:
    """Count one event on every ``(limit, key)``, or raise 429 when any is exhausted.

    Raises:
        ProblemError: 429 ``rate_limited`` with ``Retry-After`` (whole seconds, at least 1).
    """
    store = limiters.store
    wait = 0.0
    for limit, key in pairs:
        wait = max(
            wait, await store.retry_after(f"{limit.name}:{key}", limit.limit, limit.window_s)
        )
    if wait > 0:
        raise _limited(wait)
    for limit, key in pairs:
        await store.hit(f"{limit.name}:{key}", limit.window_s)


async def check_login(limiters: Limiters, account: str, address: str) -> None:
    """Before a password check: refuse while ``account`` from ``address`` is backing off or
    ``address`` has failed too often.

    Raises:
        ProblemError: 429 ``rate_limited`` with ``Retry-After``.
    """
    store = limiters.store
    per_address = limiters.login_address
    wait = await store.retry_after(
        f"{per_address.name}:{address}", per_address.limit, per_address.window_s
    )
    failures, last_at = await store.login_failures(account, address)
    if failures:
        wait = max(wait, last_at + limiters.backoff_s(failures) - store.clock())
    if wait > 0:
        raise _limited(wait)


async def login_failed(limiters: Limiters, account: str, address: str) -> None:
    """Count a failed password login of ``account`` from ``address``."""
    store = limiters.store
    await store.add_login_failure(account, address, limiters.login_failure_ttl_s)
    await store.hit(f"{limiters.login_address.name}:{address}", limiters.login_address.window_s)


async def login_succeeded(limiters: Limiters, account: str, address: str) -> None:
    """A successful login resets the failures of ``account`` from ``address``."""
    await limiters.store.reset_login_failures(account, address)


def client_address(request: web.Request) -> str:
    """The peer address of ``request`` (``"unknown"`` when aiohttp has none)."""
    # The peer address. Behind a reverse proxy this is the proxy: configure the proxy to
    # rate-limit too (X-Forwarded-For is not trusted here).
    return request.remote or "unknown"
