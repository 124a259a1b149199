"""A Chromium page whose subscribe transport goes through the impairing UDP relay.

:func:`open_through_relay` opens a page like ``test_browser_call._open`` but first

* exposes ``RelaySet.rewrite`` to the page (``page.expose_function``, async) and wraps
  ``RTCPeerConnection.prototype.setRemoteDescription`` (``page.add_init_script``) so that every
  remote *offer* (only the server's subscribe offers are offers; publish gets answers) has its
  127.0.0.1 candidates replaced by relay ports before Chromium applies it;
* with ``exclusive`` (the default), keeps the subscribe transport's own candidates from the
  server (no candidates in the ``answer`` SDP, no ``trickle`` for ``subscribe``): the server can
  then reach the page only through the relay, as the peer-reflexive address the relay's checks
  come from (RFC 8445 §7.3.1.3), so every subscribe datagram, both ways, crosses the relay.

The publish transport is untouched (a clean uplink).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.support.udprelay import RelaySet

if TYPE_CHECKING:
    from tests.e2e.conftest import ServerProcess

REWRITE_JS = """
(() => {
  const setRemote = RTCPeerConnection.prototype.setRemoteDescription;
  RTCPeerConnection.prototype.setRemoteDescription = async function (desc, ...rest) {
    if (desc && desc.type === 'offer' && typeof desc.sdp === 'string') {
      desc = { type: 'offer', sdp: await window.__sfuRelaySdp(desc.sdp) };
    }
    return setRemote.call(this, desc, ...rest);
  };
})();
"""

EXCLUSIVE_JS = """
(() => {
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (typeof data === 'string' && data.startsWith('{')) {
      const msg = JSON.parse(data);
      if (msg.type === 'trickle' && msg.transport === 'subscribe') return undefined;
      if (msg.type === 'answer' && typeof msg.sdp === 'string') {
        const lines = msg.sdp.split('\\r\\n');
        msg.sdp = lines.filter((l) => !l.startsWith('a=candidate:')).join('\\r\\n');
        data = JSON.stringify(msg);
      }
    }
    return send.call(this, data);
  };
})();
"""


async def open_through_relay(
    browser: Any,
    server: ServerProcess,
    path: str,
    viewport: dict[str, int],
    relays: RelaySet,
    *,
    exclusive: bool = True,
) -> Any:
    """A new page at ``path`` whose subscribe media crosses ``relays`` (see the module doc)."""
    context = await browser.new_context(viewport=viewport)
    page = await context.new_page()
    page.on("console", lambda msg: server.page_logs.append(f"[{path}] {msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: server.page_logs.append(f"[{path}] pageerror: {err}"))
    await page.expose_function("__sfuRelaySdp", relays.rewrite)
    await page.add_init_script(REWRITE_JS)
    if exclusive:
        await page.add_init_script(EXCLUSIVE_JS)
    await page.goto(f"{server.base_url}{path}")
    return page
