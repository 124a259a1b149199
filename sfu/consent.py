"""Liveness probes without per-request asyncio work (issue 14): STUN consent freshness checks
(RFC 7675 §5.1), i.e. ICE Binding requests on the selected candidate pair (RFC 8445 §7.2.2),
built from a per-transport template and matched by transaction id.

aioice sends each check as a ``Transaction``: a STUN ``Message`` object serialised attribute by
attribute, a future, a retransmission timer, and on the answer a full parse of the response
into a ``Message``. That is 50-100 µs of Python per check, and the liveness watchdog of
:mod:`sfu.transport` checks every quiet subscriber about once a second: at 400 listeners it
was the largest Python cost of the media plane after the fan-out itself. A
:class:`ConsentProber` does the same exchange with one HMAC-SHA1 and one CRC-32 per request
(both in C, ``hmac.digest`` and ``zlib.crc32``), no timer and no future: the watchdog's own
tick (:data:`sfu.transport.WATCH_INTERVAL_S`) resends and expires them, and the transport's
input guard hands it the responses before aioice parses anything.

This module knows nothing of aioice: the adapter (``sfu._aiortc_adapter.consent_prober``)
takes the ICE credentials and the selected pair from it.
"""

from __future__ import annotations

import hmac
import os
import socket
import struct
import zlib
from collections.abc import Callable

from sfu.udp_mux import (
    BINDING_REQUEST,
    BINDING_SUCCESS,
    STUN_HEADER_BYTES,
    STUN_MAGIC_COOKIE,
)
from sfu.udp_mux import STUN_USERNAME as ATTR_USERNAME

MAGIC_COOKIE = int.from_bytes(STUN_MAGIC_COOKIE, "big")
"""RFC 8489 §5, as an integer."""

ATTR_MESSAGE_INTEGRITY = 0x0008
ATTR_XOR_MAPPED_ADDRESS = 0x0020
ATTR_PRIORITY = 0x0024
ATTR_USE_CANDIDATE = 0x0025
ATTR_FINGERPRINT = 0x8028
ATTR_ICE_CONTROLLED = 0x8029
ATTR_ICE_CONTROLLING = 0x802A

INTEGRITY_BYTES = 20
"""HMAC-SHA1 (RFC 8489 §14.5)."""

FINGERPRINT_XOR = 0x5354554E
"""RFC 8489 §14.7."""

RESEND_AFTER_S = 0.5
"""An unanswered check is sent once more after this long (s): aioice's STUN RTO (RFC 8489
§6.2.1 suggests 500 ms)."""

TIMEOUT_S = 1.0
"""A check unanswered for this long (s) counts as unanswered (sent again after 0.5 s, then
0.5 s more): twice aioice's own consent check, which waits 0.5 s and never resends."""

MAX_PENDING = 16
"""Most checks in flight per transport; the oldest is given up (counted unanswered) beyond."""

_HEADER = struct.Struct("!HHI12s")
_ATTR_HEADER = struct.Struct("!HH")


def _attribute(kind: int, value: bytes) -> bytes:
    return _ATTR_HEADER.pack(kind, len(value)) + value + bytes(-len(value) % 4)


def binding_request(transaction_id: bytes, attributes: bytes, key: bytes) -> bytes:
    """A STUN Binding request carrying ``attributes`` (already encoded, padded) followed by
    MESSAGE-INTEGRITY (HMAC-SHA1 with ``key``, RFC 8489 §14.5) and FINGERPRINT (§14.7).

    Args:
        transaction_id: 12 bytes (RFC 8489 §5).
        attributes: encoded attributes, a multiple of 4 bytes long.
        key: the short-term credential: the remote ICE password, UTF-8 (RFC 8445 §7.2.2).

    Raises:
        ValueError: when ``transaction_id`` is not 12 bytes or ``attributes`` is unpadded.
    """
    if len(transaction_id) != 12 or len(attributes) % 4:
        raise ValueError("a STUN transaction id is 12 bytes and attributes are padded to 4")
    return _signed(BINDING_REQUEST, transaction_id, attributes, key)


def _signed(message_type: int, transaction_id: bytes, attributes: bytes, key: bytes) -> bytes:
    """Header + ``attributes`` + MESSAGE-INTEGRITY (the header's length then counts up to it,
    RFC 8489 §14.5) + FINGERPRINT (§14.7)."""
    with_integrity = len(attributes) + 4 + INTEGRITY_BYTES
    head = _HEADER.pack(message_type, with_integrity, MAGIC_COOKIE, transaction_id)
    integrity = _ATTR_HEADER.pack(ATTR_MESSAGE_INTEGRITY, INTEGRITY_BYTES) + hmac.digest(
        key, head + attributes, "sha1"
    )
    head = _HEADER.pack(message_type, with_integrity + 8, MAGIC_COOKIE, transaction_id)
    body = attributes + integrity
    crc = (zlib.crc32(head + body) ^ FINGERPRINT_XOR) & 0xFFFFFFFF
    return head + body + _ATTR_HEADER.pack(ATTR_FINGERPRINT, 4) + struct.pack("!I", crc)


def response_integrity_ok(data: bytes, key: bytes) -> bool:
    """True when STUN message ``data`` carries a MESSAGE-INTEGRITY attribute that is the
    HMAC-SHA1 with ``key`` of the message up to it (RFC 8489 §14.5: the header's length then
    counts up to the end of that attribute). False for anything malformed."""
    if len(data) < STUN_HEADER_BYTES:
        return False
    end = min(len(data), STUN_HEADER_BYTES + int.from_bytes(data[2:4], "big"))
    pos = STUN_HEADER_BYTES
    while pos + 4 <= end:
        kind, length = _ATTR_HEADER.unpack_from(data, pos)
        if kind == ATTR_MESSAGE_INTEGRITY:
            return _integrity_ok_at(data, pos, length, end, key)
        pos += 4 + length + (-length % 4)
    return False


def _integrity_ok_at(data: bytes, pos: int, length: int, end: int, key: bytes) -> bool:
    """Whether the MESSAGE-INTEGRITY attribute at ``pos`` (value ``length`` bytes, message
    ending at ``end``) is the HMAC-SHA1 with ``key`` of the message up to it."""
    if length != INTEGRITY_BYTES or pos + 4 + INTEGRITY_BYTES > end:
        return False
    signed = (
        data[0:2] + (pos + 4 + INTEGRITY_BYTES - STUN_HEADER_BYTES).to_bytes(2, "big") + data[4:pos]
    )
    expected = hmac.digest(key, signed, "sha1")
    return hmac.compare_digest(expected, data[pos + 4 : pos + 4 + INTEGRITY_BYTES])


def is_plain_check(data: bytes, username: bytes, key: bytes, controlling: bool) -> bool:
    """True when ``data`` is a steady-state ICE check a connected agent answers with a plain
    Binding success response (RFC 8445 §7.3, RFC 7675 §5.2): a Binding request whose USERNAME
    is exactly ``username`` (``"<our ufrag>:<their ufrag>"``), without USE-CANDIDATE, whose
    role attribute is the opposite of ours (``controlling``: no role conflict), and whose
    MESSAGE-INTEGRITY verifies with ``key`` (our ICE password). False for anything else,
    malformed input included (the ICE agent then handles it in full)."""
    if len(data) < STUN_HEADER_BYTES or data[0] != 0 or data[1] != BINDING_REQUEST:
        return False
    end = STUN_HEADER_BYTES + int.from_bytes(data[2:4], "big")
    if end != len(data) or int.from_bytes(data[4:8], "big") != MAGIC_COOKIE:
        return False
    named = role = False
    pos = STUN_HEADER_BYTES
    while pos + 4 <= end:
        kind, length = _ATTR_HEADER.unpack_from(data, pos)
        value_end = pos + 4 + length
        if value_end > end:
            return False
        if kind == ATTR_USERNAME:
            if data[pos + 4 : value_end] != username:
                return False
            named = True
        elif kind == ATTR_USE_CANDIDATE:
            return False
        elif kind == ATTR_ICE_CONTROLLING:
            if controlling:
                return False
            role = True
        elif kind == ATTR_ICE_CONTROLLED:
            if not controlling:
                return False
            role = True
        elif kind == ATTR_MESSAGE_INTEGRITY:
            return named and role and _integrity_ok_at(data, pos, length, end, key)
        pos = value_end + (-length % 4)
    return False


def binding_success(transaction_id: bytes, addr: tuple[str, int], key: bytes) -> bytes:
    """The Binding success response to request ``transaction_id`` from ``addr`` (host,
    port): XOR-MAPPED-ADDRESS (RFC 8489 §14.2), MESSAGE-INTEGRITY with ``key`` (our ICE
    password) and FINGERPRINT, as aioice's agent answers a check.

    Raises:
        ValueError: when ``addr`` is no IP address literal or the id is not 12 bytes.
    """
    if len(transaction_id) != 12:
        raise ValueError("a STUN transaction id is 12 bytes")
    host = addr[0]
    try:
        if ":" in host:
            family, packed = 0x02, socket.inet_pton(socket.AF_INET6, host)
        else:
            family, packed = 0x01, socket.inet_pton(socket.AF_INET, host)
    except OSError as exc:
        raise ValueError(f"not an IP address literal: {host!r}") from exc
    # X-Port is XORed with the cookie's top 16 bits, X-Address with the cookie then (IPv6)
    # the transaction id (RFC 8489 §14.2).
    pad = struct.pack("!HI", MAGIC_COOKIE >> 16, MAGIC_COOKIE) + transaction_id
    clear = struct.pack("!H", addr[1]) + packed
    xored = (int.from_bytes(clear, "big") ^ int.from_bytes(pad[: len(clear)], "big")).to_bytes(
        len(clear), "big"
    )
    attributes = _attribute(ATTR_XOR_MAPPED_ADDRESS, bytes((0, family)) + xored)
    return _signed(BINDING_SUCCESS, transaction_id, attributes, key)


class ConsentProber:
    """Consent checks of one ICE connection's selected pair (RFC 7675), driven by a caller's
    clock instead of timers.

    Args:
        username: ``"<remote ufrag>:<local ufrag>"`` (RFC 8445 §7.2.2).
        password: the remote ICE password (the key of both the request and the answer).
        priority: the PRIORITY attribute (a peer-reflexive candidate's priority, §7.1.1).
        controlling: our ICE role (ICE-CONTROLLING, else ICE-CONTROLLED, §7.1.3).
        tie_breaker: the role tie-breaker (64-bit).
        send: sends one datagram to the peer on the selected pair; returns False when there is
            no pair or socket any more (the check is then unanswered at once).

    Attributes:
        answered: checks answered with a success response whose integrity verified (a count).
        unanswered: checks given up after :data:`TIMEOUT_S` or that could not be sent.
    """

    __slots__ = ("_attributes", "_key", "_pending", "_send", "answered", "unanswered")

    def __init__(
        self,
        username: str,
        password: str,
        priority: int,
        controlling: bool,
        tie_breaker: int,
        send: Callable[[bytes], bool],
    ) -> None:
        role = ATTR_ICE_CONTROLLING if controlling else ATTR_ICE_CONTROLLED
        self._attributes = (
            _attribute(ATTR_USERNAME, username.encode("utf8"))
            + _attribute(ATTR_PRIORITY, struct.pack("!I", priority))
            + _attribute(role, struct.pack("!Q", tie_breaker))
        )
        self._key = password.encode("utf8")
        self._send = send
        # transaction id -> [sent at (s), the datagram, resent already]
        self._pending: dict[bytes, list[object]] = {}
        self.answered = 0
        self.unanswered = 0

    @property
    def pending(self) -> int:
        """Checks in flight."""
        return len(self._pending)

    def request(self, transaction_id: bytes) -> bytes:
        """The Binding request this prober sends with ``transaction_id`` (12 bytes)."""
        return binding_request(transaction_id, self._attributes, self._key)

    def send(self, now: float) -> None:
        """Send a new check (``now``: the caller's clock, s)."""
        pending = self._pending
        if len(pending) >= MAX_PENDING:
            del pending[next(iter(pending))]
            self.unanswered += 1
        transaction_id = os.urandom(12)
        data = self.request(transaction_id)
        if not self._send(data):
            self.unanswered += 1
            return
        pending[transaction_id] = [now, data, False]

    def step(self, now: float) -> None:
        """Resend checks unanswered for :data:`RESEND_AFTER_S`, give up those unanswered for
        :data:`TIMEOUT_S` (``now``: the caller's clock, s)."""
        pending = self._pending
        if not pending:
            return
        for transaction_id, entry in list(pending.items()):
            age = now - entry[0]  # type: ignore[operator]
            if age >= TIMEOUT_S:
                del pending[transaction_id]
                self.unanswered += 1
            elif not entry[2] and age >= RESEND_AFTER_S:
                entry[2] = True
                if not self._send(entry[1]):  # type: ignore[arg-type]
                    del pending[transaction_id]
                    self.unanswered += 1

    def response_received(self, data: bytes) -> bool:
        """Take ``data`` when it is a STUN response to one of our checks (True: consumed, and
        counted in :attr:`answered` when it is a success whose integrity verifies). False for
        anything else, which the caller handles as before."""
        if len(data) < STUN_HEADER_BYTES or not self._pending:
            return False
        entry = self._pending.pop(bytes(data[8:20]), None)
        if entry is None:
            return False
        if (
            int.from_bytes(data[0:2], "big") == BINDING_SUCCESS
            and int.from_bytes(data[4:8], "big") == MAGIC_COOKIE
            and response_integrity_ok(data, self._key)
        ):
            self.answered += 1
        else:  # an error or a forged answer: the check stays unanswered
            self.unanswered += 1
        return True

    def cancel(self) -> None:
        """Forget the checks in flight (their answers are then not ours any more)."""
        self._pending.clear()
