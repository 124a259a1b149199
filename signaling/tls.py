"""HTTPS and WSS served directly by ``sfu serve`` (browsers grant cameras only to secure
origins: https, or localhost), and the HSTS header that goes with it.

Sources: RFC 8446 (TLS 1.3) / RFC 5246 (TLS 1.2) through Python's :mod:`ssl`; RFC 6797
(HTTP Strict Transport Security); W3C Secure Contexts (why cameras need https).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from aiohttp import web

HSTS_MAX_AGE: web.AppKey[int] = web.AppKey("hsts_max_age_s", int)


class TlsConfigError(Exception):
    """The certificate or key cannot be loaded (missing file, bad PEM, key does not match)."""


def server_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side ``SSLContext`` (TLS 1.2 or newer) with the PEM certificate chain ``cert``
    and its private key ``key``.

    Raises:
        TlsConfigError: a file is missing or unreadable, not PEM, or the key does not match.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(f"cannot load TLS certificate {cert} / key {key}: {exc}") from None
    return context


async def _hsts_header(request: web.Request, response: web.StreamResponse) -> None:
    # RFC 6797 §7.2: an HSTS host must not send the header over non-secure transport.
    if request.secure:
        max_age = request.app[HSTS_MAX_AGE]
        response.headers["Strict-Transport-Security"] = f"max-age={max_age}"


def install_hsts(app: web.Application, max_age_s: int) -> None:
    """Add ``Strict-Transport-Security: max-age=<max_age_s>`` (seconds, RFC 6797 §6.1) to every
    response sent over TLS (HTTP and the WebSocket upgrade)."""
    app[HSTS_MAX_AGE] = max_age_s
    app.on_response_prepare.append(_hsts_header)
