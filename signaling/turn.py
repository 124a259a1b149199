"""Short-lived TURN credentials (the "TURN REST API", as coturn implements it).

A TURN server such as coturn started with ``--use-auth-secret --static-auth-secret=S``
accepts any username of the form ``<expiry>:<identity>`` whose password is
``base64(HMAC-SHA1(S, username))`` while ``expiry`` (Unix time, seconds) is in the future.
The SFU and the TURN server share only ``S``; each join hands the client a fresh pair.

Sources: draft-uberti-behave-turn-rest-00 §2.2 ("A REST API For Access To TURN Services");
coturn's ``turnserver`` manual, options ``--use-auth-secret`` and ``--static-auth-secret``
(the "TURN REST API" section); RFC 9725 §4.6 for the WHIP/WHEP ``Link`` header form.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from signaling.settings import Settings

# RFC 8489 §14.3: USERNAME is fewer than 509 bytes of UTF-8.
MAX_USERNAME_BYTES = 508


def turn_credentials(secret: str, identity: str, ttl_s: int, now_s: float) -> tuple[str, str]:
    """A TURN REST API ``(username, password)`` pair valid for ``ttl_s`` seconds.

    Args:
        secret: the TURN server's shared secret (coturn ``--static-auth-secret``).
        identity: who the credential is for (the participant identity); it only labels the
            allocation in the TURN server's logs. It may contain ``:`` (coturn reads the
            expiry up to the first separator).
        ttl_s: lifetime (seconds, > 0).
        now_s: the current Unix time (seconds); the expiry is ``int(now_s) + ttl_s``.

    Returns:
        ``("<expiry>:<identity>", base64(HMAC-SHA1(secret, username)))`` (RFC 4648 base64 with
        padding, RFC 2104 HMAC), as draft-uberti-behave-turn-rest-00 §2.2 and coturn define.

    Raises:
        ValueError: an empty secret, ``ttl_s <= 0``, or a username longer than the 508 bytes
            that the STUN USERNAME attribute allows (RFC 8489 §14.3).
    """
    if not secret:
        raise ValueError("the TURN secret is empty")
    if ttl_s <= 0:
        raise ValueError(f"the TURN credential lifetime must be positive, not {ttl_s}")
    username = f"{int(now_s) + ttl_s}:{identity}"
    if len(username.encode("utf-8")) > MAX_USERNAME_BYTES:
        raise ValueError(f"TURN username longer than {MAX_USERNAME_BYTES} bytes")
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def turn_ice_server(
    urls: Sequence[str], secret: str, identity: str, ttl_s: int, now_s: float
) -> dict[str, object]:
    """A W3C ``RTCIceServer`` dictionary (``urls``, ``username``, ``credential``) for the TURN
    ``urls`` with fresh credentials from :func:`turn_credentials` (same arguments and errors).
    """
    username, password = turn_credentials(secret, identity, ttl_s, now_s)
    return {"urls": list(urls), "username": username, "credential": password}


def ice_server_link_headers(ice_servers: Sequence[dict[str, object]]) -> list[str]:
    """``Link`` header values for a WHIP/WHEP ``201 Created`` (RFC 9725 §4.6), one per URL:
    ``<turn:host:3478>; rel="ice-server"; username="u"; credential="p"``.

    ``ice_servers`` are W3C ``RTCIceServer`` dictionaries (``urls`` a string or a list of
    strings). Quotes and backslashes inside values are escaped as RFC 9110 §5.6.4
    quoted-string requires.
    """
    values: list[str] = []
    for server in ice_servers:
        urls = server.get("urls", [])
        url_list = [urls] if isinstance(urls, str) else urls if isinstance(urls, list) else []
        for url in url_list:
            value = f'<{url}>; rel="ice-server"'
            username = server.get("username")
            if username:
                value += f"; username={_quoted(str(username))}"
                value += f"; credential={_quoted(str(server.get('credential', '')))}"
                value += '; credential-type="password"'
            values.append(value)
    return values


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def client_ice_servers(
    settings: Settings,
    base: Sequence[dict[str, object]],
    identity: str,
    now_s: float | None = None,
) -> list[dict[str, object]]:
    """The ``RTCIceServer`` list for one client: ``base`` (the static ``SFU_ICE_SERVERS``) plus,
    when ``SFU_TURN_URLS`` is set, one entry for those URLs with credentials minted now
    (``now_s``, Unix seconds, defaults to the clock) for ``identity``, valid for
    ``SFU_TURN_TTL_S`` seconds. An identity too long for a STUN USERNAME is cut (it only
    labels the allocation); this never raises for a valid ``settings``.
    """
    servers = list(base)
    secret = settings.turn_secret.get_secret_value() if settings.turn_secret else ""
    if not settings.turn_urls or not secret:
        return servers
    # Room for "<expiry>:" (at most 20 bytes); a cut multi-byte character is dropped.
    label = identity.encode("utf-8")[: MAX_USERNAME_BYTES - 20].decode("utf-8", "ignore")
    now = time.time() if now_s is None else now_s
    servers.append(turn_ice_server(settings.turn_urls, secret, label, settings.turn_ttl_s, now))
    return servers
