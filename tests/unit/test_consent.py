"""sfu.consent: consent checks built without aioice's transactions must be the checks aioice
builds (any ICE agent accepts them), and only a genuine answer counts (issue 14)."""

from __future__ import annotations

import os

from aioice import stun

from sfu import consent
from sfu.consent import ConsentProber

PASSWORD = "remote-password-0123456789"


def _prober(sent: list[bytes], *, controlling: bool = True, up: bool = True) -> ConsentProber:
    def send(data: bytes) -> bool:
        sent.append(data)
        return up

    return ConsentProber(
        username="remoteUfrag:localUfrag",
        password=PASSWORD,
        priority=1853824767,
        controlling=controlling,
        tie_breaker=0x0123456789ABCDEF,
        send=send,
    )


def _answer(request: bytes, key: str = PASSWORD) -> bytes:
    """A Binding success response as aioice's agent answers ``request`` (RFC 8445 §7.3)."""
    message = stun.parse_message(request)
    response = stun.Message(
        message_method=stun.Method.BINDING,
        message_class=stun.Class.RESPONSE,
        transaction_id=message.transaction_id,
    )
    response.attributes["XOR-MAPPED-ADDRESS"] = ("127.0.0.1", 40000)
    response.add_message_integrity(key.encode("utf8"))
    return bytes(response)


def test_request_is_the_check_aioice_builds() -> None:
    """aioice parses it with integrity and fingerprint checked, and finds the attributes of
    ``Connection.build_request`` (USERNAME, PRIORITY, ICE-CONTROLLING/-CONTROLLED)."""
    for controlling in (True, False):
        sent: list[bytes] = []
        prober = _prober(sent, controlling=controlling)
        txid = os.urandom(12)
        data = prober.request(txid)
        message = stun.parse_message(data)  # the FINGERPRINT is checked here
        assert message.check_message_integrity(PASSWORD.encode())
        assert message.message_method == stun.Method.BINDING
        assert message.message_class == stun.Class.REQUEST
        assert message.transaction_id == txid
        assert message.attributes["USERNAME"] == "remoteUfrag:localUfrag"
        assert message.attributes["PRIORITY"] == 1853824767
        role = "ICE-CONTROLLING" if controlling else "ICE-CONTROLLED"
        assert message.attributes[role] == 0x0123456789ABCDEF
        # aioice's own serialisation of the same attributes is byte-identical.
        mine = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.REQUEST,
            transaction_id=txid,
        )
        mine.attributes["USERNAME"] = "remoteUfrag:localUfrag"
        mine.attributes["PRIORITY"] = 1853824767
        mine.attributes[role] = 0x0123456789ABCDEF
        mine.add_message_integrity(PASSWORD.encode())
        assert bytes(mine) == data


def test_only_a_verified_answer_counts() -> None:
    sent: list[bytes] = []
    prober = _prober(sent)
    prober.send(0.0)
    assert prober.pending == 1
    request = sent[-1]
    # Somebody else's transaction is not ours: left to aioice.
    assert not prober.response_received(_answer(prober.request(os.urandom(12))))
    # A forged answer (wrong key) is consumed but counts as unanswered.
    assert prober.response_received(_answer(request, key="not-the-password"))
    assert (prober.answered, prober.unanswered, prober.pending) == (0, 1, 0)
    prober.send(0.1)
    answer = bytearray(_answer(sent[-1]))
    answer[-30] ^= 0x01  # a bit flipped inside the integrity-protected part
    assert prober.response_received(bytes(answer))
    assert (prober.answered, prober.unanswered) == (0, 2)
    prober.send(0.2)
    assert prober.response_received(_answer(sent[-1]))
    assert (prober.answered, prober.unanswered, prober.pending) == (1, 2, 0)
    # A second copy of that answer (the check was sent twice) is not counted again.
    assert not prober.response_received(_answer(sent[-1]))
    # Truncated and garbage data never raise.
    for junk in (b"", b"\x01\x01", bytes(20), b"\x01\x01\x00\x08" + bytes(16) + b"\x00\x08\x00"):
        assert prober.response_received(junk) in (True, False)


def test_resend_then_give_up_on_the_callers_clock() -> None:
    sent: list[bytes] = []
    prober = _prober(sent)
    prober.send(10.0)
    prober.step(10.0 + consent.RESEND_AFTER_S - 0.01)
    assert len(sent) == 1
    prober.step(10.0 + consent.RESEND_AFTER_S)
    assert len(sent) == 2 and sent[0] == sent[1]  # the same transaction, sent again
    prober.step(10.0 + consent.RESEND_AFTER_S + 0.3)
    assert len(sent) == 2  # sent at most twice
    prober.step(10.0 + consent.TIMEOUT_S)
    assert (prober.answered, prober.unanswered, prober.pending) == (0, 1, 0)
    # The answer arriving after it was given up is not ours any more.
    assert not prober.response_received(_answer(sent[0]))


def test_no_pair_counts_unanswered_and_pending_is_bounded() -> None:
    down: list[bytes] = []
    prober = _prober(down, up=False)
    prober.send(0.0)
    assert (prober.unanswered, prober.pending) == (1, 0)
    sent: list[bytes] = []
    prober = _prober(sent)
    for i in range(consent.MAX_PENDING + 5):
        prober.send(i * 0.01)
    assert prober.pending == consent.MAX_PENDING
    assert prober.unanswered == 5
    prober.cancel()
    assert prober.pending == 0


def _check(controlling: bool, *, nominate: bool = False, username: str = "local:remote") -> bytes:
    """A connectivity check as aioice's agent builds it (``Connection.build_request``)."""
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    request.attributes["USERNAME"] = username
    request.attributes["PRIORITY"] = 1853824767
    request.attributes["ICE-CONTROLLING" if controlling else "ICE-CONTROLLED"] = 42
    if nominate:
        request.attributes["USE-CANDIDATE"] = None
    request.add_message_integrity(PASSWORD.encode())
    return bytes(request)


def test_plain_check_is_recognised_and_anything_else_is_left_to_the_agent() -> None:
    """We are controlled (a browser offers, we answer): the peer's plain checks are ours to
    answer; nomination, a role conflict, other credentials or a broken message are not."""
    user, key = b"local:remote", PASSWORD.encode()
    assert consent.is_plain_check(_check(True), user, key, controlling=False)
    assert not consent.is_plain_check(_check(True, nominate=True), user, key, controlling=False)
    assert not consent.is_plain_check(_check(False), user, key, controlling=False)  # conflict
    assert consent.is_plain_check(_check(False), user, key, controlling=True)
    assert not consent.is_plain_check(_check(True, username="other:remote"), user, key, False)
    assert not consent.is_plain_check(_check(True), user, b"wrong", controlling=False)
    data = _check(True)
    for broken in (data[:-1], data[:20], data[:30], b"\x00\x01" + data[2:4] + bytes(len(data) - 4)):
        assert not consent.is_plain_check(broken, user, key, controlling=False)


def test_success_answer_is_what_aioice_sends() -> None:
    """Byte-identical to aioice's answer (XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY with our
    password, FINGERPRINT), for IPv4 and IPv6 sources."""
    for addr in (("127.0.0.1", 50000), ("::1", 40001)):
        txid = os.urandom(12)
        mine = consent.binding_success(txid, addr, PASSWORD.encode())
        theirs = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=txid,
        )
        theirs.attributes["XOR-MAPPED-ADDRESS"] = addr
        theirs.add_message_integrity(PASSWORD.encode())
        assert mine == bytes(theirs)
        parsed = stun.parse_message(mine)
        assert parsed.attributes["XOR-MAPPED-ADDRESS"] == addr
        assert parsed.check_message_integrity(PASSWORD.encode())
