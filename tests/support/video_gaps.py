"""The longest gap between decoded video frames on a page of the browser client.

``GAPS_START_JS`` starts a sampler in the page that polls ``window.sfu.sub.getStats()`` every
``interval_ms`` (ms) and records the longest time between two increments of the summed
``framesDecoded`` of the inbound video streams (W3C ``RTCInboundRtpStreamStats``);
``GAPS_STOP_JS`` stops it and returns that gap (ms), counting the time since the last decoded
frame too. Used by the Chromium tests and ``bench/simulcast.py``.
"""

from __future__ import annotations


def gaps_start_js(interval_ms: int = 50) -> str:
    """The page function that starts the sampler, polling every ``interval_ms`` (ms)."""
    return (
        """
() => {
  const state = { last: null, lastAt: null, longest: 0, stop: false };
  window.__gaps = state;
  const tick = async () => {
    if (state.stop) return;
    let decoded = 0;
    (await window.sfu.sub.getStats()).forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') decoded += r.framesDecoded || 0;
    });
    const now = performance.now();
    if (state.last === null || decoded > state.last) {
      if (state.lastAt !== null) state.longest = Math.max(state.longest, now - state.lastAt);
      state.last = decoded;
      state.lastAt = now;
    }
    setTimeout(tick, INTERVAL_MS);
  };
  tick();
}
"""
    ).replace("INTERVAL_MS", str(int(interval_ms)))


GAPS_START_JS = gaps_start_js(50)

GAPS_STOP_JS = """
() => {
  const s = window.__gaps;
  s.stop = true;
  return Math.max(s.longest, performance.now() - s.lastAt);
}
"""
