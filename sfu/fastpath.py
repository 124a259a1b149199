"""Selection of the forwarding path: compiled (``sfu._fastpath``, issue 14) or pure Python.

The compiled path does, in one call per incoming packet, what :meth:`sfu.consumer.Consumer.
forward` does per consumer: header rewrite, SRTP protection (libsrtp2, RFC 3711) and the send,
batched with ``sendmmsg``. It is used when the extension was built (``pip install -e .`` with
Debian's ``libsrtp2-dev``) and the ``SFU_FAST_PATH`` setting is on (the default); otherwise
the pure-Python path runs, which :func:`configure` logs once.

SRTP contexts: the compiled path protects a consumer's media SSRC with one
``SrtpSender`` per subscriber DTLS transport, keyed with the same DTLS-SRTP master key as
aiortc's own outbound session (:func:`sfu._aiortc_adapter.srtp_tx_key`). aiortc's session keeps
protecting RTCP and RTX (other SSRCs, or SRTCP, which has its own index), so every RTP SSRC is
protected by exactly one context for the whole life of the transport and its rollover counter
stays right.

For the AEAD_AES_128_GCM / AEAD_AES_256_GCM profiles (aiortc's first choice) a sender does
not call libsrtp per packet: it derives the session key and salt once (RFC 3711 KDF) and
protects with OpenSSL's AES-GCM directly (RFC 7714), keeping libsrtp's rollover counter and
index per SSRC, byte-identical to libsrtp; libsrtp keeps AES_CM_128_HMAC_SHA1_80 and SSRCs
beyond the sender's native table (``sfu/_fastpath.c``, "without libsrtp").
"""

from __future__ import annotations

import functools
import importlib
import logging
from typing import TYPE_CHECKING, Any

from sfu import _aiortc_adapter as adapter

if TYPE_CHECKING:
    from types import ModuleType

logger = logging.getLogger(__name__)

native: ModuleType | None
try:
    native = importlib.import_module("sfu._fastpath")
except ImportError:  # not built (no C compiler or no libsrtp2-dev at install time)
    native = None

srtp_library = ""
"""The libsrtp2 the compiled path protects with (its version string), see :func:`_pick_srtp`."""


def _pick_srtp() -> None:
    # Debian's libsrtp2 (the one sfu._fastpath links) is built on NSS, whose PKCS#11 layer
    # costs 2-10 us per protected packet; pylibsrtp's own libsrtp2 2.x (OpenSSL, AES-NI),
    # loaded in this process anyway for aiortc, takes under 1 us. Use it when it is there.
    global srtp_library
    if native is None:
        return
    try:
        import pylibsrtp._binding as binding

        srtp_library = native.set_srtp_library(binding.__file__) + " (pylibsrtp's)"
    except (ImportError, OSError, ValueError, AttributeError) as exc:
        logger.info("compiled path: using the system libsrtp2 (%s)", exc)
        srtp_library = native.srtp_library() + " (system)"


_pick_srtp()
if native is not None and native.set_native_gcm(True):
    srtp_library += ", AES-GCM with OpenSSL EVP (RFC 7714)"
_enabled = native is not None
_announced: bool | None = None

senders_created = 0
"""Subscriber transports that got a compiled SRTP sender in this process (a counter)."""


def available() -> bool:
    """True when the compiled extension ``sfu._fastpath`` is importable."""
    return native is not None


def configure(enabled: bool) -> bool:
    """Select the compiled path (``enabled``, when built) or the pure-Python one, process-wide,
    for producers created from now on; logs the choice once per change. Returns whether the
    compiled path is in use."""
    global _enabled, _announced
    _enabled = enabled and native is not None
    if _announced != _enabled:
        _announced = _enabled
        if _enabled:
            logger.info(
                "forwarding: compiled fast path (sfu._fastpath, %s, sendmmsg)", srtp_library
            )
        elif enabled:
            logger.warning(
                "forwarding: the compiled fast path sfu._fastpath is not built (install "
                "libsrtp2-dev and a C compiler, then pip install -e .): using the pure-Python path"
            )
        else:
            logger.info("forwarding: pure-Python path (SFU_FAST_PATH=0)")
    return _enabled


def enabled() -> bool:
    """Whether producers created now use the compiled path."""
    return _enabled


def new_fanout(kind: str, nack_buffer_packets: int) -> Any:
    """A ``sfu._fastpath.FanOut`` for a new producer of ``kind`` (video keeps
    ``nack_buffer_packets`` original packets for retransmissions, a power of two), or None on
    the pure-Python path."""
    if not _enabled or native is None:
        return None
    return native.FanOut(nack_buffer_packets if kind == "video" else 0)


def sender_for(raw: object) -> Any:
    """The ``sfu._fastpath.SrtpSender`` of subscriber transport ``raw`` (one per DTLS transport,
    created on first use, route refreshed), or None when ``raw`` is not a connected
    :class:`sfu._aiortc_adapter.RawRtpTransport` (the consumer then uses the Python path).
    Another transport object (a test's or a benchmark's) may offer its own sender through a
    ``native_sender()`` method."""
    if native is None:
        return None
    if not isinstance(raw, adapter.RawRtpTransport):
        provide = getattr(raw, "native_sender", None)
        return provide() if provide is not None else None
    sender = adapter.native_sender(raw)
    if sender is None:
        key = adapter.srtp_tx_key(raw)
        if key is None:
            return None
        sender = native.SrtpSender(key[0], key[1])
        adapter.set_native_sender(raw, sender)
        global senders_created
        senders_created += 1
    refresh_route(raw, sender)
    return sender


def refresh_route(raw: adapter.RawRtpTransport, sender: Any) -> None:
    """Point ``sender`` at ``raw``'s nominated ICE pair: its socket and remote address, or,
    for a relayed (TURN) pair or before nomination, hand the protected datagrams to the
    adapter, which sends or drops them as for the Python path."""
    route = adapter.media_route(raw)
    if route is None:
        sender.set_route(-1, None, functools.partial(adapter.send_protected, raw))
    else:
        sender.set_route(route[0], route[1], None)
