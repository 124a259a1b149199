"""Chromium through the one shared UDP port (``SFU_RTC_PORT``, issue 14): the two-person call
of test_browser_call.py against a server whose every transport is on one port."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.test_browser_call import _join_pair, _wait_bitrate, _wait_media_flowing
from tests.support.udp import free_udp_port

if TYPE_CHECKING:
    from tests.e2e.conftest import ServerProcess

SERVER_SDPS_JS = """() => [window.sfu.pub, window.sfu.sub]
  .filter((pc) => pc && pc.remoteDescription)
  .map((pc) => pc.remoteDescription.sdp)"""

SELECTED_REMOTE_PORTS_JS = """async () => {
  const ports = [];
  for (const pc of [window.sfu.pub, window.sfu.sub]) {
    if (!pc) continue;
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
        ports.push(stats.get(s.remoteCandidateId).port);
      }
    });
  }
  return ports;
}"""


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    return {"SFU_RTC_PORT": str(free_udp_port())}


async def test_call_through_one_port(
    browser: Any, server: ServerProcess, server_env: dict[str, str]
) -> None:
    """test_browser_call's two-person call and bitrate ramp-up on the shared port: both pages
    publish and subscribe (four server transports), each decodes the other's video and
    audio, the publisher ramps up past 500 kbit/s (REMB through the shared port), and every
    candidate the server signalled and every selected pair's remote end is the one port."""
    port = int(server_env["SFU_RTC_PORT"])
    alice, bob, _alice_sid, _bob_sid = await _join_pair(browser, server, "e2e-one-port")
    for page, who in ((alice, "alice"), (bob, "bob")):
        inbound = await _wait_media_flowing(page, who)
        assert inbound["videoStreams"] >= 1 and inbound["audioStreams"] >= 1
    await _wait_bitrate(alice, "alice")
    for page in (alice, bob):
        sdps = await page.evaluate(SERVER_SDPS_JS)
        assert len(sdps) == 2  # the server's answer (publish) and offer (subscribe)
        for sdp in sdps:
            found = re.findall(r"^a=candidate:\S+ \d+ udp \d+ \S+ (\d+) ", sdp, re.MULTILINE)
            assert found and {int(p) for p in found} == {port}, sdp
        assert set(await page.evaluate(SELECTED_REMOTE_PORTS_JS)) == {port}
