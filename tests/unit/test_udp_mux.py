"""sfu.udp_mux: what goes where on the shared port, and what is dropped (issue 14)."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from sfu.udp_mux import UdpMux, UdpMuxDrops, UdpMuxSocket, stun_username

COOKIE = b"\x21\x12\xa4\x42"


def stun(message_type: int, txid: bytes, username: str | None = None) -> bytes:
    """A STUN message (RFC 8489 §5) with an optional USERNAME attribute."""
    body = b""
    if username is not None:
        value = username.encode()
        body = struct.pack("!HH", 0x0006, len(value)) + value + b"\0" * (-len(value) % 4)
    return struct.pack("!HH", message_type, len(body)) + COOKIE + txid + body


class Endpoint:
    """Records what the mux delivers."""

    def __init__(self) -> None:
        self.got: list[tuple[bytes, tuple[str, int]]] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.append((data, addr))


class Sent:
    """A stand-in for the asyncio transport: records what the mux sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


@pytest.fixture
def mux_socket() -> object:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    mux_socket = UdpMuxSocket(sock, UdpMuxDrops())
    sent = Sent()
    mux_socket.sendto = sent.sendto  # type: ignore[assignment]
    mux_socket.sent = sent  # type: ignore[attr-defined]
    yield mux_socket
    sock.close()


ALICE = ("10.0.0.1", 5000)
BOB = ("10.0.0.2", 6000)
STRANGER = ("10.0.0.9", 9999)
SRTP = b"\x80\x6f" + bytes(30)
DTLS = b"\x16\xfe\xfd" + bytes(20)


def test_requests_go_by_ufrag_and_data_by_the_address_that_passed_a_check(
    mux_socket: UdpMuxSocket,
) -> None:
    a, b = Endpoint(), Endpoint()
    mux_socket.register("aaaa1111", a)
    mux_socket.register("bbbb2222", b)
    check = stun(0x0001, b"t" * 12, "bbbb2222:remote")
    mux_socket.datagram_received(check, ALICE)
    assert b.got == [(check, ALICE)] and a.got == []
    # Before b answered a check from ALICE, its DTLS/SRTP go nowhere.
    mux_socket.datagram_received(DTLS, ALICE)
    assert b.got == [(check, ALICE)] and mux_socket.drops.unknown_address == 1
    mux_socket.send(b, stun(0x0101, b"t" * 12), ALICE)  # b's success response
    mux_socket.datagram_received(DTLS, ALICE)
    mux_socket.datagram_received(SRTP, ALICE)
    assert b.got[1:] == [(DTLS, ALICE), (SRTP, ALICE)] and a.got == []
    # An error response (401: failed integrity) claims nothing.
    mux_socket.send(a, stun(0x0111, b"u" * 12), BOB)
    mux_socket.datagram_received(SRTP, BOB)
    assert a.got == [] and mux_socket.drops.unknown_address == 2


def test_unknown_ufrag_unknown_address_and_unknown_transaction_are_dropped_and_counted(
    mux_socket: UdpMuxSocket,
) -> None:
    a = Endpoint()
    mux_socket.register("aaaa1111", a)
    mux_socket.datagram_received(stun(0x0001, b"x" * 12, "nobody:remote"), STRANGER)
    mux_socket.datagram_received(stun(0x0001, b"x" * 12), STRANGER)  # no USERNAME
    mux_socket.datagram_received(stun(0x0101, b"y" * 12), STRANGER)  # response to nothing
    mux_socket.datagram_received(stun(0x0011, b"y" * 12), STRANGER)  # indication
    mux_socket.datagram_received(SRTP, STRANGER)
    mux_socket.datagram_received(b"", STRANGER)
    mux_socket.datagram_received(b"\x00\x01\x00", STRANGER)  # truncated header
    mux_socket.datagram_received(stun(0x0001, b"x" * 12, "aaaa1111:r")[:-2], STRANGER)
    assert a.got == []
    assert mux_socket.drops == UdpMuxDrops(
        empty=1, malformed_stun=2, unknown_ufrag=2, unknown_transaction=1, unknown_address=2
    )
    assert mux_socket.drops.total_datagrams() == 8


def test_responses_go_to_the_endpoint_whose_request_it_answers(mux_socket: UdpMuxSocket) -> None:
    a, b = Endpoint(), Endpoint()
    mux_socket.register("aaaa1111", a)
    mux_socket.register("bbbb2222", b)
    mux_socket.send(a, stun(0x0001, b"1" * 12, "remote:aaaa1111"), ALICE)
    mux_socket.send(b, stun(0x0001, b"2" * 12, "remote:bbbb2222"), ALICE)
    response = stun(0x0101, b"2" * 12)
    mux_socket.datagram_received(response, ALICE)
    assert b.got == [(response, ALICE)] and a.got == []


def test_an_address_belongs_to_one_endpoint(mux_socket: UdpMuxSocket) -> None:
    a, b = Endpoint(), Endpoint()
    mux_socket.register("aaaa1111", a)
    mux_socket.register("bbbb2222", b)
    assert mux_socket.claim(a, ALICE)
    mux_socket.send(b, stun(0x0101, b"t" * 12), ALICE)  # b answered a check from there too
    assert mux_socket.owner(ALICE) is a and mux_socket.drops.address_taken == 1
    mux_socket.datagram_received(SRTP, ALICE)
    assert a.got == [(SRTP, ALICE)] and b.got == []
    with pytest.raises(ValueError):
        mux_socket.register("aaaa1111", Endpoint())


def test_unregister_removes_ufrag_addresses_and_transactions(mux_socket: UdpMuxSocket) -> None:
    a, b = Endpoint(), Endpoint()
    mux_socket.register("aaaa1111", a)
    mux_socket.register("bbbb2222", b)
    mux_socket.claim(a, ALICE)
    mux_socket.claim(b, BOB)
    mux_socket.send(a, stun(0x0001, b"1" * 12, "remote:aaaa1111"), ALICE)
    mux_socket.unregister(a)
    mux_socket.unregister(a)  # idempotent
    mux_socket.datagram_received(stun(0x0001, b"x" * 12, "aaaa1111:remote"), ALICE)
    mux_socket.datagram_received(stun(0x0101, b"1" * 12), ALICE)
    mux_socket.datagram_received(SRTP, ALICE)
    mux_socket.datagram_received(SRTP, BOB)
    assert a.got == [] and b.got == [(SRTP, BOB)]
    assert mux_socket.drops.unknown_ufrag == 1
    assert mux_socket.drops.unknown_transaction == 1
    assert mux_socket.drops.unknown_address == 1
    assert mux_socket.owner(ALICE) is None and mux_socket.endpoint_count() == 1
    # A closed endpoint sends nothing, and its address is free for another.
    sent = len(mux_socket.sent.sent)  # type: ignore[attr-defined]
    mux_socket.send(a, SRTP, ALICE)
    assert len(mux_socket.sent.sent) == sent  # type: ignore[attr-defined]
    assert mux_socket.claim(b, ALICE)


def test_transaction_memory_is_bounded(mux_socket: UdpMuxSocket) -> None:
    from sfu.udp_mux import TRANSACTIONS_PER_ENDPOINT

    a = Endpoint()
    mux_socket.register("aaaa1111", a)
    for i in range(TRANSACTIONS_PER_ENDPOINT * 3):
        mux_socket.send(a, stun(0x0001, i.to_bytes(12, "big"), "r:aaaa1111"), ALICE)
    assert len(mux_socket._by_txid) == TRANSACTIONS_PER_ENDPOINT
    mux_socket.datagram_received(stun(0x0101, (0).to_bytes(12, "big")), ALICE)
    last = (TRANSACTIONS_PER_ENDPOINT * 3 - 1).to_bytes(12, "big")
    mux_socket.datagram_received(stun(0x0101, last), ALICE)
    assert len(a.got) == 1 and mux_socket.drops.unknown_transaction == 1


def test_stun_username_parser() -> None:
    assert stun_username(stun(0x0001, b"t" * 12, "ab:cd")) == "ab:cd"
    assert stun_username(stun(0x0001, b"t" * 12)) is None
    bad_length = bytearray(stun(0x0001, b"t" * 12, "ab:cd"))
    bad_length[3] += 4
    for data in (b"", bytes(19), bytes(bad_length), b"\x00\x01\x00\x00" + bytes(16)):
        with pytest.raises(ValueError):
            stun_username(data)
    # an attribute whose length runs past the end
    data = struct.pack("!HH", 1, 8) + COOKIE + b"t" * 12 + struct.pack("!HH", 6, 200) + b"abcd"
    with pytest.raises(ValueError):
        stun_username(data)


async def test_mux_binds_one_socket_per_host_on_the_port() -> None:
    mux = UdpMux(["127.0.0.1"], 0)
    (mux_socket,) = mux.sockets.values()
    port = mux_socket.address[1]
    try:
        with pytest.raises(OSError, match=f"cannot bind the WebRTC media port 127.0.0.1:{port}"):
            UdpMux(["127.0.0.1"], port)  # in use
        await mux.start()
        await mux.start()  # idempotent
        a = Endpoint()
        mux_socket.register("aaaa1111", a)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            here = client.getsockname()
            check = stun(0x0001, b"t" * 12, "aaaa1111:remote")
            client.sendto(check, ("127.0.0.1", port))
            for _ in range(100):
                if a.got:
                    break
                await asyncio.sleep(0.01)
        assert a.got == [(check, here)]
        assert len(mux.allocate_ufrag()) == 8
    finally:
        mux.close()
    with pytest.raises(ValueError):
        UdpMux([], 0)


def test_rtc_port_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """SFU_RTC_PORT (1-65535) and SFU_RTC_ANNOUNCED_ADDRESS (an IP, only with a port)."""
    from pydantic import ValidationError

    from signaling.settings import Settings

    assert Settings().rtc_port is None
    monkeypatch.setenv("SFU_RTC_PORT", "")  # an empty variable (e.g. in a compose file): unset
    assert Settings().rtc_port is None
    monkeypatch.setenv("SFU_RTC_PORT", "40000")
    monkeypatch.setenv("SFU_RTC_ANNOUNCED_ADDRESS", "203.0.113.10")
    settings = Settings()
    assert settings.rtc_port == 40000 and str(settings.rtc_announced_address) == "203.0.113.10"
    for port in ("0", "65536", "x"):
        monkeypatch.setenv("SFU_RTC_PORT", port)
        with pytest.raises(ValidationError):
            Settings()
    monkeypatch.delenv("SFU_RTC_PORT")
    with pytest.raises(ValidationError, match="needs SFU_RTC_PORT"):
        Settings()
    monkeypatch.setenv("SFU_RTC_PORT", "40000")
    monkeypatch.setenv("SFU_RTC_ANNOUNCED_ADDRESS", "host.example")
    with pytest.raises(ValidationError):
        Settings()


async def test_announced_address_goes_into_the_candidates() -> None:
    """Behind a NAT or a container's published port the candidates name the announced
    address with the shared port; the socket stays bound where it is."""
    from aiortc import RTCPeerConnection

    from sfu import _aiortc_adapter as adapter

    adapter.set_ice_host_addresses(["127.0.0.1"])
    mux = adapter.open_udp_mux(0, "203.0.113.10")
    (mux_socket,) = mux.sockets.values()
    port = mux_socket.address[1]
    try:
        assert mux_socket.address == ("127.0.0.1", port)
        server = adapter.ForwardingPeerConnection(
            adapter.NullRtpSink(), adapter.make_configuration([]), udp_mux=mux
        )
        client = RTCPeerConnection(adapter.make_configuration([]))
        client.addTransceiver("audio", direction="recvonly")
        await client.setLocalDescription(await client.createOffer())
        await server.setRemoteDescription(client.localDescription)
        await server.setLocalDescription(await server.createAnswer())
        assert adapter.local_media_addresses(server) == [("203.0.113.10", port)]
        assert f" 203.0.113.10 {port} typ host" in server.localDescription.sdp
        await server.close()
        await client.close()
        assert mux.endpoint_count() == 0
    finally:
        mux.close()
        adapter.set_ice_host_addresses([])


def test_serve_flag_sets_the_rtc_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """``sfu serve --rtc-port N`` overrides SFU_RTC_PORT (the settings the app gets)."""
    from aiohttp import web

    from signaling import cli

    seen: list[object] = []

    def create_app(settings: object) -> web.Application:
        seen.append(settings)
        return web.Application()

    monkeypatch.setenv("SFU_RTC_PORT", "40000")
    monkeypatch.setattr("signaling.app.create_app", create_app)
    monkeypatch.setattr("aiohttp.web.run_app", lambda *args, **kwargs: None)
    args = cli.build_parser().parse_args(["serve", "--rtc-port", "41000"])
    assert args.rtc_port == 41000
    assert args.func(args) == 0
    assert [getattr(s, "rtc_port", None) for s in seen] == [41000]


def test_one_wake_up_reads_a_batch_and_a_failing_endpoint_stops_nothing() -> None:
    """Every datagram waiting on the shared socket is read in one wake-up (up to
    READ_BATCH_DATAGRAMS); an endpoint that raises costs its own datagram only."""
    from sfu.udp_mux import READ_BATCH_DATAGRAMS

    class Failing(Endpoint):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            super().datagram_received(data, addr)
            if len(self.got) == 2:
                raise RuntimeError("boom")

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    mux_socket = UdpMuxSocket(sock, UdpMuxDrops())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind(("127.0.0.1", 0))
        endpoint = Failing()
        mux_socket.register("aaaa1111", endpoint)
        mux_socket.claim(endpoint, client.getsockname())
        for i in range(READ_BATCH_DATAGRAMS + 5):
            client.sendto(SRTP + bytes([i]), sock.getsockname())
        mux_socket._read_ready()
        assert len(endpoint.got) == READ_BATCH_DATAGRAMS and mux_socket.read_errors == 1
        mux_socket._read_ready()
        assert len(endpoint.got) == READ_BATCH_DATAGRAMS + 5
        assert [d[-1] for d, _a in endpoint.got] == list(range(READ_BATCH_DATAGRAMS + 5))
    mux_socket.close()
    mux_socket.close()  # idempotent
