"""Two Chromium pages call each other over HTTPS/WSS with all media relayed through coturn.

The server runs ``sfu serve --tls-cert --tls-key`` (a self-signed certificate made here) with
``SFU_TURN_URLS``/``SFU_TURN_SECRET`` naming a Debian ``turnserver`` started on 127.0.0.1.
Each page opens ``https://.../join?token=...``; an init script forces every
``RTCPeerConnection`` to ``iceTransportPolicy: "relay"`` (the product code is unchanged), so
the only candidates a page has are relayed ones, allocated with the credentials from
``joined.ice_servers``. The test then checks, from each page's ``getStats()``, that the
selected candidate pair's local candidate is ``relay`` and that video and audio are decoded
and bytes keep arriving through it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from signaling.serverproc import ServerStartError, start_server, stop_server, wait_healthy
from tests.e2e.conftest import ServerProcess
from tests.support.certs import client_context, make_self_signed
from tests.support.coturn import Coturn, find_turnserver, start_coturn, stop_coturn
from tests.support.tokens import room_token

pytestmark = pytest.mark.e2e

MEDIA_TIMEOUT_S = 30.0

FORCE_RELAY_JS = """
(() => {
  const Native = window.RTCPeerConnection;
  window.__rtcConfigs = [];
  window.RTCPeerConnection = class extends Native {
    constructor(config, ...rest) {
      const forced = { ...(config || {}), iceTransportPolicy: 'relay' };
      window.__rtcConfigs.push(forced);
      super(forced, ...rest);
    }
  };
})();
"""

# The subscribe PC's selected pair (W3C webrtc-stats: transport.selectedCandidatePairId),
# its local candidate's type, and what was decoded.
RELAY_STATS_JS = """
async () => {
  const pc = window.sfu && window.sfu.sub;
  if (!pc) return null;
  const stats = await pc.getStats();
  const out = { localType: null, remoteType: null, bytesReceived: 0, frames: 0, samples: 0,
                localTypes: [] };
  stats.forEach((r) => {
    if (r.type === 'local-candidate') out.localTypes.push(r.candidateType);
    if (r.type === 'transport' && r.selectedCandidatePairId) {
      const pair = stats.get(r.selectedCandidatePairId);
      if (!pair) return;
      out.bytesReceived = pair.bytesReceived || 0;
      const local = stats.get(pair.localCandidateId);
      const remote = stats.get(pair.remoteCandidateId);
      out.localType = local ? local.candidateType : null;
      out.remoteType = remote ? remote.candidateType : null;
    }
    if (r.type === 'inbound-rtp' && r.kind === 'video') out.frames += r.framesDecoded || 0;
    if (r.type === 'inbound-rtp' && r.kind === 'audio') out.samples += r.totalSamplesReceived || 0;
  });
  return out;
}
"""


@pytest.fixture(scope="module")
def coturn(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    if find_turnserver() is None:
        pytest.skip("turnserver is missing (apt-get install coturn)")
    server = start_coturn(tmp_path_factory.mktemp("coturn"), secrets.token_urlsafe(24))
    try:
        yield server
    finally:
        stop_coturn(server)


@pytest.fixture(scope="module")
def tls_turn_server(
    coturn: Coturn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, str]]:
    """``(server, JWT secret)``: ``sfu serve`` over HTTPS handing out coturn credentials."""
    tmp = tmp_path_factory.mktemp("sfu-tls-turn")
    cert, key = make_self_signed(tmp)
    data_dir = tmp / "data"
    data_dir.mkdir()
    jwt_secret = secrets.token_urlsafe(48)
    env = {
        "SFU_BCRYPT_COST": "4",
        "SFU_JWT_SECRET": jwt_secret,
        "SFU_TURN_URLS": coturn.url,
        "SFU_TURN_SECRET": coturn.secret,
    }
    log_path = tmp / "server.log"
    with log_path.open("wb") as log_file:
        process, url = start_server(
            data_dir, env=env, output=log_file, log_level="info", tls=(cert, key)
        )
    server = ServerProcess(url, process, log_path)
    try:
        try:
            wait_healthy(url, process, 60, context=client_context(cert))
        except ServerStartError as exc:
            pytest.fail(f"{exc}; log:\n{server.log()}")
        yield server, jwt_secret
    finally:
        stop_server(process)


async def _open_relay_only(browser: Any, server: ServerProcess, path: str, who: str) -> Any:
    context = await browser.new_context(ignore_https_errors=True)
    await context.add_init_script(FORCE_RELAY_JS)
    page = await context.new_page()
    page.on("console", lambda msg: server.page_logs.append(f"[{who}] {msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: server.page_logs.append(f"[{who}] pageerror: {err}"))
    await page.goto(f"{server.base_url}{path}")
    return page


async def _wait_joined(page: Any, who: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if await page.evaluate("() => window.sfu && window.sfu.state === 'joined'"):
            return
        await asyncio.sleep(0.2)
    state = await page.evaluate("() => window.sfu && [window.sfu.state, window.sfu.lastError]")
    pytest.fail(f"{who} did not join: {state}")


async def _wait_relayed_media(page: Any, who: str) -> dict[str, Any]:
    """Poll until the selected pair is relayed and frames, samples and bytes all grow."""
    deadline = time.monotonic() + MEDIA_TIMEOUT_S
    before = await page.evaluate(RELAY_STATS_JS)
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        after = await page.evaluate(RELAY_STATS_JS)
        if (
            before is not None
            and after is not None
            and after["localType"] == "relay"
            and after["bytesReceived"] > before["bytesReceived"]
            and after["frames"] > before["frames"]
            and after["samples"] > before["samples"]
        ):
            return after
        before = after
    pytest.fail(f"{who}: no relayed media after {MEDIA_TIMEOUT_S:.0f} s; last stats: {before}")


async def test_call_over_https_relayed_through_coturn(
    browser: Any, tls_turn_server: tuple[ServerProcess, str], coturn: Coturn
) -> None:
    server, jwt_secret = tls_turn_server
    server.page_logs.clear()
    room = f"relay-{uuid.uuid4().hex[:8]}"
    pages = []
    try:
        for who in ("alice", "bob"):
            token = room_token(jwt_secret, room, who)
            pages.append(await _open_relay_only(browser, server, f"/join?token={token}", who))
        for page, who in zip(pages, ("alice", "bob"), strict=True):
            await _wait_joined(page, who)
            assert await page.evaluate("() => location.protocol") == "https:"
            configs = await page.evaluate("() => window.__rtcConfigs")
            turn = [s for s in configs[0]["iceServers"] if s.get("urls") == [coturn.url]]
            assert len(turn) == 1 and turn[0]["username"].endswith(f":{who}"), configs
        for page, who in zip(pages, ("alice", "bob"), strict=True):
            stats = await _wait_relayed_media(page, who)
            # Relay-only: the page gathered no host or server-reflexive candidate at all.
            assert set(stats["localTypes"]) == {"relay"}, stats
    except BaseException:
        print("----- sfu serve log -----\n" + server.log())
        print("----- coturn log -----\n" + coturn.log()[-4000:])
        print("----- browser console -----\n" + "\n".join(server.page_logs))
        raise
    finally:
        for page in pages:
            await page.context.close()
