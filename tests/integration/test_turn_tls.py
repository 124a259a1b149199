"""TURN credentials that a real coturn accepts, and ``sfu serve`` over HTTPS/WSS.

* A join's ``joined.ice_servers`` carries TURN REST API credentials for ``SFU_TURN_URLS``;
  an ICE agent (aioice, relay-only) allocates a relay on Debian's coturn with them, and the
  same agent with a credential signed by another secret gets nothing.
* WHIP's ``201 Created`` names the same TURN server in ``Link: rel="ice-server"`` headers
  (RFC 9725 §4.6).
* ``sfu serve --tls-cert --tls-key`` answers HTTPS (verified against the test's self-signed
  certificate) with ``Strict-Transport-Security``, and a room join over WSS works.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from aioice import Connection, TransportPolicy
from aiortc import RTCPeerConnection
from pydantic import SecretStr

from sfu import _aiortc_adapter as adapter
from signaling.auth.tokens import VideoGrant, create_access_token
from signaling.client import RoomClient
from signaling.serverproc import REPO_ROOT, start_server, stop_server, wait_healthy
from signaling.settings import Settings
from tests.integration.conftest import MakeToken
from tests.support.certs import client_context, make_self_signed
from tests.support.coturn import Coturn, find_turnserver, start_coturn, stop_coturn
from tests.support.media import ToneTrack

TURN_TTL_S = 600


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    if find_turnserver() is None:
        pytest.skip("turnserver is missing (apt-get install coturn)")
    server = start_coturn(tmp_path_factory.mktemp("coturn"), secrets.token_urlsafe(24))
    try:
        yield server
    finally:
        stop_coturn(server)


@pytest.fixture
def sfu_settings(sfu_settings: Settings, coturn: Coturn) -> Settings:
    return sfu_settings.model_copy(
        update={
            "turn_urls": [coturn.url],
            "turn_secret": SecretStr(coturn.secret),
            "turn_ttl_s": TURN_TTL_S,
        }
    )


def _turn_entry(ice_servers: list[dict[str, object]], url: str) -> dict[str, object]:
    entries = [s for s in ice_servers if s.get("urls") == [url]]
    assert len(entries) == 1, ice_servers
    return entries[0]


async def _relay_candidates(coturn: Coturn, username: str, password: str) -> list[str]:
    """The candidate types a relay-only ICE agent gathers with these TURN credentials."""
    agent = Connection(
        ice_controlling=True,
        components=1,
        turn_server=("127.0.0.1", coturn.port),
        turn_username=username,
        turn_password=password,
        turn_transport="udp",
        transport_policy=TransportPolicy.RELAY,
    )
    try:
        await agent.gather_candidates()
        return [c.type for c in agent.local_candidates]
    finally:
        await agent.close()


async def test_join_hands_out_turn_credentials_that_coturn_accepts(
    room_client: Callable[..., RoomClient], coturn: Coturn
) -> None:
    client = room_client("turn-room", "alice")
    try:
        before = int(time.time())
        joined = await client.connect()
        after = int(time.time())
    finally:
        await client.close()
    entry = _turn_entry(joined["ice_servers"], coturn.url)
    username, password = str(entry["username"]), str(entry["credential"])
    expiry, _, identity = username.partition(":")
    assert identity == "alice"
    assert before + TURN_TTL_S <= int(expiry) <= after + TURN_TTL_S
    mac = hmac.new(coturn.secret.encode(), username.encode(), hashlib.sha1).digest()
    assert base64.b64decode(password) == mac

    assert await _relay_candidates(coturn, username, password) == ["relay"]
    # coturn really checks the HMAC: the same username signed with another secret fails.
    forged = base64.b64encode(hmac.new(b"other", username.encode(), hashlib.sha1).digest())
    assert await _relay_candidates(coturn, username, forged.decode()) == []


async def test_whip_created_carries_ice_server_links(
    sfu_url: str, make_token: MakeToken, coturn: Coturn
) -> None:
    publisher = RTCPeerConnection(adapter.make_configuration([]))
    headers = {
        "Authorization": "Bearer " + make_token("whip-turn", "obs", subscribe=False),
        "Content-Type": "application/sdp",
    }
    try:
        publisher.addTransceiver(ToneTrack(440.0), direction="sendonly")
        await publisher.setLocalDescription(await publisher.createOffer())
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{sfu_url}/whip/whip-turn", data=publisher.localDescription.sdp, headers=headers
            ) as resp:
                assert resp.status == 201, await resp.text()
                links = resp.headers.getall("Link", [])
                location = resp.headers["Location"]
            async with http.delete(sfu_url + location, headers=headers) as resp:
                assert resp.status == 200
    finally:
        await publisher.close()
    assert len(links) == 1, links
    match = re.fullmatch(
        r'<(?P<url>[^>]+)>; rel="ice-server"; username="(?P<user>[^"]+)"; '
        r'credential="(?P<cred>[^"]+)"; credential-type="password"',
        links[0],
    )
    assert match is not None, links[0]
    assert match["url"] == coturn.url
    assert match["user"].endswith(":obs")
    assert await _relay_candidates(coturn, match["user"], match["cred"]) == ["relay"]


# --- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(
    mongo_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, Path]]:
    """``(https URL, JWT secret, certificate)`` of ``sfu serve --tls-cert --tls-key``."""
    tmp = tmp_path_factory.mktemp("sfu-tls")
    cert, key = make_self_signed(tmp)
    secret = secrets.token_urlsafe(48)
    env = {
        "SFU_JWT_SECRET": secret,
        "MONGO_URL": mongo_url,
        "SFU_MONGO_DB": f"tls_{uuid.uuid4().hex[:12]}",
        "SFU_HSTS_MAX_AGE_S": "86400",
    }
    data_dir = tmp / "data"
    data_dir.mkdir()
    proc, url = start_server(data_dir, env=env, tls=(cert, key))
    try:
        assert url.startswith("https://")
        wait_healthy(url, proc, timeout_s=30, context=client_context(cert))
        yield url, secret, cert
    finally:
        stop_server(proc)


async def test_https_sends_hsts_and_wss_join_works(tls_server: tuple[str, str, Path]) -> None:
    url, secret, cert = tls_server
    context = client_context(cert)
    token, _claims = create_access_token(
        secret,
        identity="tls-alice",
        name="Alice",
        ttl_s=600,
        video=VideoGrant(room="tls-room", roomJoin=True, canPublish=True, canSubscribe=True),
    )
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/healthz", ssl=context) as resp:
            assert resp.status == 200
            assert resp.headers["Strict-Transport-Security"] == "max-age=86400"
        async with http.get(f"{url}/", ssl=context) as resp:
            assert resp.status == 200
            assert resp.headers["Strict-Transport-Security"] == "max-age=86400"
        wss = "wss" + url.removeprefix("https") + "/ws"
        async with http.ws_connect(wss, ssl=context) as ws:
            join = {"type": "join", "id": "j1", "v": 1, "room": "tls-room", "token": token}
            await ws.send_str(json.dumps(join))
            reply = json.loads(await ws.receive_str(timeout=20))
            assert reply["type"] == "joined", reply
            assert reply["participant"]["identity"] == "tls-alice"
        # The certificate is checked: a client that does not trust it is refused.
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with http.get(f"{url}/healthz") as resp:
                pass


def _serve(tmp_path: Path, *tls_args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "signaling.cli", "serve", "--port", "0"]
    cmd += ["--data-dir", str(tmp_path), *tls_args]
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)


def test_serve_refuses_an_unloadable_key_or_a_lone_certificate(tmp_path: Path) -> None:
    cert, _key = make_self_signed(tmp_path)
    proc = _serve(tmp_path, "--tls-cert", str(cert), "--tls-key", str(tmp_path / "nope.pem"))
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("sfu serve:")]
    assert len(lines) == 1 and "cannot load TLS certificate" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr

    proc = _serve(tmp_path, "--tls-cert", str(cert))
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("sfu serve:")]
    assert len(lines) == 1 and "SFU_TLS_CERT and SFU_TLS_KEY" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
