"""The adapter's contract with aiortc internals: fails loudly when aiortc changes."""

from __future__ import annotations

import inspect

import aiortc
import aiortc.codecs
import aiortc.rtcpeerconnection
import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCSessionDescription
from aiortc.rtcdtlstransport import RTCDtlsTransport

from sfu import _aiortc_adapter as adapter
from sfu.udp_mux import UdpMux


def test_pinned_aiortc_version() -> None:
    assert aiortc.__version__ == adapter.AIORTC_VERSION, (
        f"aiortc {aiortc.__version__} installed but sfu/_aiortc_adapter.py is written for "
        f"{adapter.AIORTC_VERSION}: re-check every private attribute it uses"
    )
    adapter.check_aiortc_version()


def test_version_check_refuses_other_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiortc, "__version__", "9.9.9")
    with pytest.raises(RuntimeError, match=r"aiortc==1\.16\.0"):
        adapter.check_aiortc_version()


def test_private_hooks_exist() -> None:
    """Every private name the adapter overrides or reads must still exist in aiortc."""
    for name in (
        "_RTCPeerConnection__createDtlsTransport",
        "_RTCPeerConnection__createTransceiver",
        "_RTCPeerConnection__remoteRtp",
        "_RTCPeerConnection__connect",
    ):
        assert hasattr(RTCPeerConnection, name), f"aiortc no longer has {name}"
    for name in ("_handle_rtp_data", "_handle_rtcp_data", "_recv_next"):
        assert hasattr(RTCDtlsTransport, name), f"RTCDtlsTransport lost {name}"
    # _recv_next must still dispatch through the two handlers we replace.
    source = inspect.getsource(RTCDtlsTransport._recv_next)
    assert "self._handle_rtp_data(" in source and "self._handle_rtcp_data(" in source
    assert "self._tx_srtp" in inspect.getsource(RTCDtlsTransport._send_rtp)
    assert "async def receive" in inspect.getsource(RTCRtpReceiver)
    assert "async def send" in inspect.getsource(RTCRtpSender)
    assert "_nominated" in inspect.getsource(__import__("aioice.ice").ice.Connection.sendto)
    signature = inspect.signature(RTCPeerConnection._RTCPeerConnection__createTransceiver)  # type: ignore[attr-defined]
    assert list(signature.parameters)[:3] == ["self", "direction", "kind"]


async def test_receiver_and_sender_are_bypassed() -> None:
    """A ForwardingPeerConnection's transceivers never start aiortc's decoder or encoder."""

    class Sink:
        def on_rtp(self, data: bytes, arrival_ms: int) -> None: ...
        def on_rtcp(self, data: bytes) -> None: ...
        def on_receive_parameters(self, transceiver: object, rtp: object) -> None: ...
        def on_send_parameters(self, transceiver: object, rtp: object) -> None: ...

    pc = adapter.ForwardingPeerConnection(Sink(), adapter.make_configuration([]))
    transceiver = pc.addTransceiver("video", direction="sendonly")
    assert transceiver.sender.send.__qualname__.endswith("<locals>.send")
    assert transceiver.receiver.receive.__qualname__.endswith("<locals>.receive")
    assert hasattr(transceiver.sender.transport, "_sfu_raw")
    await pc.close()


def test_ice_host_override_includes_loopback() -> None:
    import aioice.ice

    try:
        adapter.set_ice_host_addresses(["127.0.0.1", "::1"])
        assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1", "::1"]
    finally:
        adapter.set_ice_host_addresses([])
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(True, False)


def test_configuration_is_explicit_and_max_bundle() -> None:
    config = adapter.make_configuration([])
    assert config.iceServers == []  # never None: aiortc would fall back to public STUN
    assert config.bundlePolicy.value == "max-bundle"
    config = adapter.make_configuration(["stun:127.0.0.1:3478", "turn:u:p@127.0.0.1:3478"])
    assert [s.urls for s in config.iceServers] == ["stun:127.0.0.1:3478", "turn:127.0.0.1:3478"]
    assert config.iceServers[1].username == "u" and config.iceServers[1].credential == "p"


def test_aioice_receive_path_the_guard_relies_on() -> None:
    """IceInputGuard (issue 10) replaces aioice's receive path: the names it touches must still
    exist and be used the way it assumes, or the guard would silently stop guarding."""
    import asyncio

    import aioice
    from aioice import ice

    assert aioice.__version__ == "0.13.0", (
        f"aioice {aioice.__version__} installed: re-check IceInputGuard in sfu/_aiortc_adapter.py"
    )
    # StunProtocol.datagram_received (patched process-wide) dispatches to its receiver.
    source = inspect.getsource(adapter._original_datagram_received)
    assert "self.receiver.data_received(data, self.local_candidate.component)" in source
    assert "self.receiver.request_received(message, addr, self)" in source
    # Connection.data_received feeds the queue that recv() (RTCIceTransport._recv) reads.
    assert "self._queue.put_nowait((data, component))" in inspect.getsource(
        ice.Connection.data_received
    )
    assert "self._queue.get()" in inspect.getsource(ice.Connection.recvfrom)
    init = inspect.getsource(ice.Connection.__init__)
    for name in (
        "self._queue: asyncio.Queue",
        "self._nominated",
        "self._check_list",
        "self._remote_candidates",
        "self._remote_candidates_resolving",
        "self._closing",
        "self._early_checks: deque",
    ):
        assert name in init, f"aioice Connection lost {name}"
    assert issubclass(adapter._DatagramQueue, asyncio.Queue)
    for hook in ("_init", "_put", "_get"):
        assert hook in vars(asyncio.Queue), f"asyncio.Queue lost the {hook} subclass hook"
    # Signalled candidates (SDP and trickle) go through Connection.add_remote_candidate.
    from aiortc.rtcicetransport import RTCIceTransport

    assert "self._connection.add_remote_candidate(" in inspect.getsource(
        RTCIceTransport.addRemoteCandidate
    )
    assert "self._recv = self._connection.recv" in inspect.getsource(RTCIceTransport.__init__)
    # Authenticated checks that arrive before connect() wait in _early_checks (bounded).
    assert "self._early_checks.append((message, addr, protocol))" in inspect.getsource(
        ice.Connection.request_received
    )
    # Peer-reflexive candidates come from authenticated requests (check_incoming).
    assert "self._remote_candidates.append(remote_candidate)" in inspect.getsource(
        ice.Connection.check_incoming
    )
    for name in ("protocol", "remote_addr"):
        assert hasattr(ice.CandidatePair, name) or name in inspect.getsource(
            ice.CandidatePair.__init__
        )
    assert "_network_host" in inspect.getsource(ice.CandidatePair)
    # The aiortc bug the guard works around: _recv_next indexes data[0] unguarded. When this
    # assertion fails, aiortc changed the DTLS receive loop: re-check the guard's comments.
    assert "first_byte = data[0]" in inspect.getsource(RTCDtlsTransport._recv_next)


async def test_guard_is_installed_on_every_forwarding_transport() -> None:
    from aioice import ice

    pc = adapter.ForwardingPeerConnection(adapter.NullRtpSink(), adapter.make_configuration([]))
    pc.addTransceiver("audio", direction="sendonly")
    guard = adapter.ice_input_guard(pc)
    assert guard is not None
    connection = pc.getTransceivers()[0].sender.transport.transport._connection
    assert connection._queue is guard._queue
    assert connection.data_received == guard.data_received
    assert ice.StunProtocol.datagram_received is adapter._guarded_datagram_received
    assert adapter.IceInputGuard.install(connection) is guard  # idempotent
    await pc.close()


def test_dtls_role_internals_exist() -> None:
    """answer_as_dtls_server reads RTCDtlsTransport._role and calls _set_role; createAnswer
    must still copy that role into a=setup."""
    transport_source = inspect.getsource(RTCDtlsTransport)
    assert 'self._role = "auto"' in transport_source
    assert hasattr(RTCDtlsTransport, "_set_role")
    assert "dtlsTransport._role" in inspect.getsource(RTCPeerConnection.createAnswer)


async def test_actpass_offer_is_answered_passive() -> None:
    """An a=setup:actpass offer gets a=setup:passive (we are the DTLS server), and the role
    stays fixed when the same peer renegotiates."""
    offerer = RTCPeerConnection(adapter.make_configuration([]))
    answerer = adapter.ForwardingPeerConnection(
        adapter.NullRtpSink(), adapter.make_configuration([])
    )
    try:
        offerer.addTransceiver("audio", direction="sendonly")
        await offerer.setLocalDescription(await offerer.createOffer())
        assert "a=setup:actpass" in offerer.localDescription.sdp
        await answerer.setRemoteDescription(offerer.localDescription)
        adapter.answer_as_dtls_server(answerer)
        await answerer.setLocalDescription(await answerer.createAnswer())
        assert "a=setup:passive" in answerer.localDescription.sdp
        assert "a=setup:active" not in answerer.localDescription.sdp
    finally:
        await offerer.close()
        await answerer.close()


async def test_recycled_transceiver_reoffers_its_mline_with_new_codecs() -> None:
    """can_recycle: a sending m-line is reusable once its inactive direction is negotiated;
    aiortc then re-offers the same mid (no new m-line) with the new codec preferences."""
    server = adapter.ForwardingPeerConnection(adapter.NullRtpSink(), adapter.make_configuration([]))
    client = RTCPeerConnection(adapter.make_configuration([]))

    async def negotiate() -> str:
        await server.setLocalDescription(await server.createOffer())
        await client.setRemoteDescription(server.localDescription)
        await client.setLocalDescription(await client.createAnswer())
        await server.setRemoteDescription(client.localDescription)
        return str(server.localDescription.sdp)

    def only(mime: str) -> list[object]:
        codecs = RTCRtpSender.getCapabilities("video").codecs
        return [c for c in codecs if c.mimeType in (mime, "video/rtx")][:2]

    try:
        transceiver = server.addTransceiver("video", direction="sendonly")
        assert adapter.can_recycle(transceiver)  # never offered yet
        transceiver.setCodecPreferences(only("video/VP8"))
        sdp = await negotiate()
        assert "VP8/90000" in sdp and "H264/90000" not in sdp
        assert not adapter.can_recycle(transceiver)  # still sending
        transceiver.direction = "inactive"
        assert not adapter.can_recycle(transceiver)  # inactive not negotiated yet
        await negotiate()
        assert transceiver.currentDirection == "inactive"
        assert adapter.can_recycle(transceiver)
        mid = transceiver.mid
        transceiver.direction = "sendonly"
        transceiver.setCodecPreferences(only("video/H264"))
        sdp = await negotiate()
        assert sdp.count("m=video") == 1 and f"a=mid:{mid}" in sdp
        assert "H264/90000" in sdp and "VP8/90000" not in sdp
        assert transceiver.currentDirection == "sendonly"
        await transceiver.stop()
        assert not adapter.can_recycle(transceiver)
    finally:
        await server.close()
        await client.close()


def test_consent_probe_internals_exist() -> None:
    """consent_prober (media path failure, issues 11 and 14) builds aioice's own consent
    check from the connection's credentials, role and tie-breaker and sends it on the
    selected pair's socket: the names it reads must still mean what it assumes."""
    import aioice
    from aioice import ice

    build = inspect.getsource(ice.Connection.build_request)
    assert 'tx_username = f"{self.remote_username}:{self.local_username}"' in build
    assert 'candidate_priority(pair.component, "prflx")' in build
    assert 'request.attributes["ICE-CONTROLLING"] = self._tie_breaker' in build
    assert 'request.attributes["ICE-CONTROLLED"] = self._tie_breaker' in build
    consent = inspect.getsource(ice.Connection.query_consent)
    assert "integrity_key=self.remote_password.encode" in consent
    assert "self._nominated.values()" in consent
    assert aioice.__version__ == "0.13.0"


def test_direct_srtp_receive_mirrors_recv_next() -> None:
    """_direct_srtp is a copy of the SRTP/SRTCP branch of RTCDtlsTransport._recv_next: the
    branch and the counters it updates must still be there, as written."""
    source = inspect.getsource(RTCDtlsTransport._recv_next)
    for line in (
        "self.__rx_bytes += len(data)",
        "self.__rx_packets += 1",
        "elif first_byte > 127 and first_byte < 192 and self._rx_srtp:",
        "arrival_time_ms = clock.current_ms()",
        "if is_rtcp(data):",
        "data = self._rx_srtp.unprotect_rtcp(data)",
        "await self._handle_rtcp_data(data)",
        "data = self._rx_srtp.unprotect(data)",
        "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)",
        "except pylibsrtp.Error as exc:",
    ):
        assert line in source, f"RTCDtlsTransport._recv_next changed: {line!r} is gone"
    init = inspect.getsource(RTCDtlsTransport.__init__)
    assert "self._rx_srtp: Optional[Session] = None" in init or "self._rx_srtp" in init


async def _connected_pair(
    sink: adapter.RtpSink, udp_mux: UdpMux | None = None, direction: str = "sendrecv"
) -> tuple[adapter.ForwardingPeerConnection, RTCPeerConnection]:
    """A ForwardingPeerConnection answering an aiortc client's audio offer, connected."""
    import asyncio

    server = adapter.ForwardingPeerConnection(sink, adapter.make_configuration([]), udp_mux=udp_mux)
    client = RTCPeerConnection(adapter.make_configuration([]))
    client.addTransceiver("audio", direction=direction)
    await client.setLocalDescription(await client.createOffer())
    await server.setRemoteDescription(client.localDescription)
    await server.setLocalDescription(await server.createAnswer())
    await client.setRemoteDescription(
        RTCSessionDescription(sdp=server.localDescription.sdp, type="answer")
    )
    for _ in range(100):
        if server.connectionState == "connected" and client.connectionState == "connected":
            break
        await asyncio.sleep(0.05)
    assert server.connectionState == "connected"
    return server, client


async def _probe(prober: object, bound_s: float = 3.0) -> str:
    """Send one check and step the prober on the loop's clock until it is answered or given
    up (bounded): "answered" or "unanswered"."""
    import asyncio

    from sfu.consent import ConsentProber

    assert isinstance(prober, ConsentProber)
    clock = asyncio.get_running_loop().time
    answered, unanswered = prober.answered, prober.unanswered
    prober.send(clock())
    deadline = clock() + bound_s
    while clock() < deadline:
        await asyncio.sleep(0.05)
        prober.step(clock())
        if prober.answered != answered:
            return "answered"
        if prober.unanswered != unanswered:
            return "unanswered"
    return "pending"


async def test_consent_probe_answered_by_a_live_peer_and_not_by_a_dead_one() -> None:
    """consent_prober: its checks are answered while the peer's ICE agent is alive and given
    up once it is gone; None before any candidate pair is selected."""
    adapter.set_ice_host_addresses(["127.0.0.1"])
    try:
        server = adapter.ForwardingPeerConnection(
            adapter.NullRtpSink(), adapter.make_configuration([])
        )
        assert adapter.consent_prober(server) is None
        await server.close()
        server, client = await _connected_pair(adapter.NullRtpSink())
        prober = adapter.consent_prober(server)
        assert prober is not None and adapter.consent_prober(server) is prober
        assert await _probe(prober) == "answered"
        assert await _probe(prober) == "answered"
        guard = adapter.ice_input_guard(server)
        assert guard is not None and guard.received > 0  # the DTLS handshake came from the peer
        # The client's path dies without a DTLS close_notify: its UDP sockets go away.
        dtls = client.getTransceivers()[0].receiver.transport
        for protocol in dtls.transport._connection._protocols:
            protocol.transport.close()
        assert await _probe(prober) == "unanswered"
        await server.close()
        await client.close()
    finally:
        adapter.set_ice_host_addresses([])


async def test_srtp_reaches_the_sink_without_the_receive_queue() -> None:
    """Once keyed, SRTP and SRTCP from the peer reach the sink in the datagram's own call,
    in order, without waiting in the DTLS transport's receive queue (issue 14)."""
    import asyncio

    from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket, RtpPacket

    got_rtp: list[int] = []
    got_rtcp: list[bytes] = []

    class Sink(adapter.NullRtpSink):
        def on_rtp(self, data: bytes, arrival_ms: int) -> None:
            got_rtp.append(RtpPacket.parse(data).sequence_number)

        def on_rtcp(self, data: bytes) -> None:
            got_rtcp.append(data)

    adapter.set_ice_host_addresses(["127.0.0.1"])
    try:
        server, client = await _connected_pair(Sink())
        guard = adapter.ice_input_guard(server)
        assert guard is not None
        puts: list[int] = []
        queue = guard._queue
        original_put = queue._put

        def counting_put(item: tuple[bytes, int] | None) -> None:
            puts.append(1)
            original_put(item)

        queue._put = counting_put  # type: ignore[method-assign]
        client_dtls = client.getTransceivers()[0].sender.transport
        for seq in range(20):
            packet = RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960)
            packet.ssrc = 1234
            packet.payload = bytes(40)
            await client_dtls._send_rtp(packet.serialize())
        info = RtcpReceiverInfo(
            ssrc=5678, fraction_lost=0, packets_lost=0, highest_sequence=0, jitter=0, lsr=0, dlsr=0
        )
        report = RtcpRrPacket(ssrc=1234, reports=[info])
        await client_dtls._send_rtp(bytes(report))
        for _ in range(100):
            if len(got_rtp) == 20 and got_rtcp:
                break
            await asyncio.sleep(0.02)
        assert got_rtp == list(range(20))
        assert len(got_rtcp) == 1
        assert puts == []  # nothing waited in the queue
        await server.close()
        await client.close()
    finally:
        adapter.set_ice_host_addresses([])


def test_opus_codec_entry_internal_exists() -> None:
    """enable_opus_inband_fec edits aiortc.codecs.CODECS["audio"]'s Opus entry; answers must
    still deep-copy the local entry (not the remote one) for its parameters to reach them."""
    opus = [c for c in aiortc.codecs.CODECS["audio"] if c.mimeType.lower() == "audio/opus"]
    assert len(opus) == 1 and isinstance(opus[0].parameters, dict)
    assert opus[0].parameters == adapter.OPUS_FMTP
    source = inspect.getsource(aiortc.rtcpeerconnection.find_common_codecs)
    assert "for codec in local_codecs" in source and "copy.deepcopy(codec)" in source
    assert "CODECS[transceiver.kind]" in inspect.getsource(RTCPeerConnection.createOffer)


def _opus_fmtp(sdp: str) -> str:
    payload_type = next(
        line.split()[0].split(":")[1] for line in sdp.splitlines() if "opus/48000" in line
    )
    return next(
        line for line in sdp.splitlines() if line.startswith(f"a=fmtp:{payload_type} ")
    ).split(" ", 1)[1]


async def test_answer_and_offer_carry_opus_inband_fec() -> None:
    """Our answer to a publisher says ``useinbandfec=1`` (else a Chromium publisher never
    sends Opus FEC), even to an offer without any Opus fmtp; so does a subscribe offer."""
    publisher = RTCPeerConnection(adapter.make_configuration([]))
    answerer = adapter.ForwardingPeerConnection(
        adapter.NullRtpSink(), adapter.make_configuration([])
    )
    subscriber = adapter.ForwardingPeerConnection(
        adapter.NullRtpSink(), adapter.make_configuration([])
    )
    try:
        publisher.addTransceiver("audio", direction="sendonly")
        await publisher.setLocalDescription(await publisher.createOffer())
        offer = "\r\n".join(
            line
            for line in publisher.localDescription.sdp.splitlines()
            if not line.startswith("a=fmtp:")
        )
        await answerer.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await answerer.setLocalDescription(await answerer.createAnswer())
        params = set(_opus_fmtp(answerer.localDescription.sdp).split(";"))
        assert {"useinbandfec=1", "minptime=10"} <= params

        transceiver = subscriber.addTransceiver("audio", direction="sendonly")
        opus = [
            c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/opus"
        ]
        transceiver.setCodecPreferences(opus)  # as sfu.transport does for a consumer
        await subscriber.setLocalDescription(await subscriber.createOffer())
        assert "useinbandfec=1" in _opus_fmtp(subscriber.localDescription.sdp).split(";")
    finally:
        await publisher.close()
        await answerer.close()
        await subscriber.close()


def test_udp_mux_internals_exist() -> None:
    """use_udp_mux (one UDP port, issue 14) replaces aioice's per-connection host sockets:
    every aioice name it relies on must still be used the way it assumes."""
    import aioice
    from aioice import candidate, ice

    connection = ice.Connection(ice_controlling=False)
    assert isinstance(connection._local_username, str)
    assert connection.local_username is connection._local_username
    assert connection._protocols == [] and connection.stun_server is None
    assert connection.turn_server is None
    # gather_candidates hands the host addresses to get_component_candidates, looked up on the
    # instance (so our per-connection replacement is called), with these keyword arguments.
    gather = inspect.getsource(ice.Connection.gather_candidates)
    assert "self.get_component_candidates(component=component, addresses=addresses)" in gather
    assert list(inspect.signature(ice.Connection.get_component_candidates).parameters) == [
        "self",
        "component",
        "addresses",
        "timeout",
    ]
    # With no host address aioice's own gathering only makes a TURN relay candidate.
    component = inspect.getsource(ice.Connection.get_component_candidates)
    assert (
        "for address in addresses:" in component and "for protocol in host_protocols:" in component
    )
    assert "self._protocols += host_protocols" in component
    # close() closes every protocol's transport and waits for connection_lost.
    assert "await protocol.close()" in inspect.getsource(ice.Connection.close)
    protocol_close = inspect.getsource(ice.StunProtocol.close)
    assert "self.transport.close()" in protocol_close
    assert "self.receiver.protocol_lost(self)" in inspect.getsource(
        ice.StunProtocol.connection_lost
    )
    assert "self.transport.sendto(" in inspect.getsource(ice.StunProtocol.send_stun)
    assert "self.transport.sendto(" in inspect.getsource(ice.StunProtocol.send_data)
    # The success response is sent only after MESSAGE-INTEGRITY was checked with our password.
    request = inspect.getsource(ice.Connection.request_received)
    assert request.index("check_message_integrity") < request.index("Class.RESPONSE")
    assert list(inspect.signature(ice.server_reflexive_candidate).parameters) == [
        "protocol",
        "stun_server",
    ]
    assert candidate.candidate_foundation("host", "udp", "127.0.0.1")
    assert candidate.candidate_priority(1, "host") > candidate.candidate_priority(1, "srflx")
    assert aioice.__version__ == "0.13.0"


async def test_forwarding_connections_share_the_mux_port() -> None:
    """Two ForwardingPeerConnections on one UdpMux: both connect to their aiortc peers
    through the one port, each with its own ufrag; send_target() names the shared socket;
    closing one leaves the mux with the other only."""
    adapter.set_ice_host_addresses(["127.0.0.1"])
    mux = UdpMux(["127.0.0.1"], 0)
    (mux_socket,) = mux.sockets.values()
    port = mux_socket.address[1]
    pairs: list[tuple[adapter.ForwardingPeerConnection, RTCPeerConnection]] = []
    try:
        for _ in range(2):
            server, client = await _connected_pair(adapter.NullRtpSink(), mux, "recvonly")
            assert adapter.local_media_addresses(server) == [("127.0.0.1", port)]
            pairs.append((server, client))
        assert [s.connectionState for s, _c in pairs] == ["connected", "connected"]
        assert mux.endpoint_count() == 2
        first = adapter.raw_transport(pairs[0][0].getTransceivers()[0])
        target = first.send_target()
        assert target is not None and target[0] == mux_socket.socket.fileno()
        assert mux_socket.owner(target[1]) is not None
        await pairs[0][0].close()
        assert mux.endpoint_count() == 1 and mux_socket.owner(target[1]) is None
        assert first.send_target() is None
        assert pairs[1][0].connectionState == "connected"
    finally:
        for server, client in pairs:
            await server.close()
            await client.close()
        mux.close()
        adapter.set_ice_host_addresses([])


async def test_send_target_is_the_transport_socket_without_a_mux() -> None:
    """send_target() with per-transport ports: the fd of the selected pair's own socket and
    the peer's address; None before a pair is selected and after close."""
    import asyncio

    adapter.set_ice_host_addresses(["127.0.0.1"])
    server = adapter.ForwardingPeerConnection(adapter.NullRtpSink(), adapter.make_configuration([]))
    client = RTCPeerConnection(adapter.make_configuration([]))
    try:
        client.addTransceiver("audio", direction="recvonly")
        await client.setLocalDescription(await client.createOffer())
        await server.setRemoteDescription(client.localDescription)
        raw = adapter.raw_transport(server.getTransceivers()[0])
        assert raw.send_target() is None
        await server.setLocalDescription(await server.createAnswer())
        await client.setRemoteDescription(
            RTCSessionDescription(sdp=server.localDescription.sdp, type="answer")
        )
        for _ in range(100):
            if server.connectionState == "connected":
                break
            await asyncio.sleep(0.05)
        target = raw.send_target()
        assert target is not None
        connection = server.getTransceivers()[0].sender.transport.transport._connection
        pair = connection._nominated[1]
        assert target == (
            pair.protocol.transport.get_extra_info("socket").fileno(),
            pair.remote_addr,
        )
        client_ports = [
            c.port
            for c in client.getTransceivers()[
                0
            ].sender.transport.transport.iceGatherer.getLocalCandidates()
        ]
        assert target[1][1] in client_ports
        await server.close()
        assert raw.send_target() is None
    finally:
        await server.close()
        await client.close()
        adapter.set_ice_host_addresses([])


def test_srtp_key_export_internals_exist() -> None:
    """srtp_tx_key (compiled forwarding path, issue 14) derives aiortc's outbound SRTP key
    again the way RTCDtlsTransport._setup_srtp does: the same exporter label and length, the
    same key half per DTLS role, the same profile table."""
    source = inspect.getsource(RTCDtlsTransport._setup_srtp)
    assert 'b"EXTRACTOR-dtls_srtp"' in source
    assert "2 * (srtp_profile.key_length + srtp_profile.salt_length)" in source
    assert "self._ssl.get_selected_srtp_profile()" in source
    assert "for srtp_profile in self._srtp_profiles:" in source
    server_branch = source.split('if self._role == "server":')[1].split("else:")[0]
    assert "srtp_tx_key = srtp_profile.get_key_and_salt(view, 1)" in server_branch
    assert "ssrc_type=Policy.SSRC_ANY_OUTBOUND" in source and "self._tx_srtp = Session" in source
    assert "srtp_profile=srtp_profile.libsrtp_profile" in source
    assert "self._ssl" in inspect.getsource(RTCDtlsTransport.start)
    sendto = adapter.RawRtpTransport._route
    assert "self._sendto = sock.sendto" in inspect.getsource(sendto)


async def test_srtp_tx_key_matches_aiortcs_session_and_route_is_the_pair() -> None:
    """On a connected transport the exported key protects exactly as aiortc's own outbound
    session (so a second context for our consumers' SSRCs is valid), and media_route names the
    nominated pair's socket and the peer's address."""
    import asyncio
    import socket
    import struct

    from sfu import fastpath

    if not fastpath.available():
        pytest.fail("sfu._fastpath is not built (scripts/test.sh installs libsrtp2-dev)")
    adapter.set_ice_host_addresses(["127.0.0.1"])
    try:
        server = adapter.ForwardingPeerConnection(
            adapter.NullRtpSink(), adapter.make_configuration([])
        )
        client = RTCPeerConnection(adapter.make_configuration([]))
        client.addTransceiver("audio", direction="recvonly")
        await client.setLocalDescription(await client.createOffer())
        await server.setRemoteDescription(client.localDescription)
        await server.setLocalDescription(await server.createAnswer())
        raw = adapter.raw_transport(server.getTransceivers()[0])
        assert adapter.srtp_tx_key(raw) is None  # not connected yet
        await client.setRemoteDescription(
            RTCSessionDescription(sdp=server.localDescription.sdp, type="answer")
        )
        for _ in range(100):
            if server.connectionState == "connected":
                break
            await asyncio.sleep(0.05)
        assert server.connectionState == "connected"
        exported = adapter.srtp_tx_key(raw)
        assert exported is not None
        sender = fastpath.native.SrtpSender(*exported)  # type: ignore[union-attr]
        dtls = server.getTransceivers()[0].sender.transport
        packet = struct.pack("!BBHII", 0x80, 111, 7, 960, 0x5EED) + bytes(range(60))
        assert sender.protect(packet) == dtls._tx_srtp.protect(packet)
        route = adapter.media_route(raw)
        assert route is not None
        fd, addr = route
        pair = dtls.transport._connection._nominated[1]
        assert addr == pair.remote_addr
        sock = socket.socket(fileno=fd)
        try:
            assert sock.getsockname() == pair.protocol.transport.get_extra_info("sockname")
        finally:
            sock.detach()
        await server.close()
        await client.close()
        assert adapter.srtp_tx_key(raw) is None  # closed
    finally:
        adapter.set_ice_host_addresses([])


async def test_peers_consent_checks_are_answered_without_aioice() -> None:
    """The peer's consent checks on the selected pair are answered by the guard (issue 14)
    and its ICE agent accepts the answers; a nominating check still goes to aioice."""
    from aioice import ice as aioice_ice

    adapter.set_ice_host_addresses(["127.0.0.1"])
    try:
        server, client = await _connected_pair(adapter.NullRtpSink())
        guard = adapter.ice_input_guard(server)
        assert guard is not None
        connection = client.getTransceivers()[0].sender.transport.transport._connection
        pair = connection._nominated[1]
        key = connection.remote_password.encode("utf8")
        before = guard.checks_answered
        handled_by_aioice: list[object] = []
        original = aioice_ice.Connection.check_incoming

        def spy(self: object, *args: object) -> None:
            handled_by_aioice.append(args)
            original(self, *args)  # type: ignore[arg-type]

        aioice_ice.Connection.check_incoming = spy  # type: ignore[method-assign]
        try:
            for _ in range(3):
                request = connection.build_request(pair, nominate=False)
                response, _addr = await pair.protocol.request(
                    request, pair.remote_addr, integrity_key=key, retransmissions=2
                )
                assert response.attributes["XOR-MAPPED-ADDRESS"] == pair.local_addr
            assert guard.checks_answered == before + 3
            assert handled_by_aioice == []
            nominating = connection.build_request(pair, nominate=True)
            await pair.protocol.request(
                nominating, pair.remote_addr, integrity_key=key, retransmissions=2
            )
            assert guard.checks_answered == before + 3
        finally:
            aioice_ice.Connection.check_incoming = original  # type: ignore[method-assign]
        await server.close()
        await client.close()
    finally:
        adapter.set_ice_host_addresses([])


def test_decoding_receiver_internals_exist() -> None:
    """:func:`adapter.browser_like_recovery` swaps the receiver's NACK generator, skips in and
    drains its jitter buffer: aiortc must still NACK ``sorted(generator.missing)`` when ``add``
    says so, and queue ``(codec, frame)`` for its decoder thread."""
    from aiortc.jitterbuffer import JitterBuffer

    receiver = RTCRtpReceiver("video", type("Dtls", (), {"state": "new"})())  # type: ignore[arg-type]
    assert hasattr(receiver, "_RTCRtpReceiver__nack_generator")
    assert isinstance(receiver._RTCRtpReceiver__jitter_buffer, JitterBuffer)  # type: ignore[attr-defined]
    source = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    assert "self.__nack_generator.add(packet)" in source
    assert "sorted(self.__nack_generator.missing)" in source
    assert "self.__decoder_queue.put((codec, encoded_frame))" in source
    assert "self.__timestamp_mapper.map(" in source
    for name in ("decoder_thread", "decoder_queue", "timestamp_mapper", "codecs"):
        assert hasattr(receiver, f"_RTCRtpReceiver__{name}"), f"RTCRtpReceiver lost __{name}"
    assert hasattr(RTCRtpReceiver, "_send_rtcp_pli")
    buffer = JitterBuffer(capacity=512, is_video=True)
    assert buffer._origin is None and len(buffer._packets) == 512 and callable(buffer.remove)
    assert callable(buffer._remove_frame)
