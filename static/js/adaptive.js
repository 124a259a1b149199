// Adaptive stream (docs/protocol.md, "Simulcast and adaptive stream"): tell the server how big
// each received video tile is and whether it is visible, so a simulcast track is sent in the
// smallest layer that fills the tile, and a hidden tile (scrolled away, collapsed, the page in
// the background) gets no video at all. LiveKit calls this `adaptiveStream`.

const INTERVAL_MS = 1000;

export class AdaptiveStream {
  /**
   * @param {import('./session.js').Session} session
   * @param {() => Iterable<{track: string, el: Element | null}>} tiles  the received video
   *   tracks and the tile element each is shown in (null: not shown)
   */
  constructor(session, tiles) {
    this.s = session;
    this.tiles = tiles;
    this.sent = new Map(); // track sid -> "visible:width:height" last sent
    this.timer = setInterval(() => this.check(), INTERVAL_MS);
    document.addEventListener('visibilitychange', () => this.check());
  }

  stop() {
    clearInterval(this.timer);
  }

  /** Measure every tile now and send what changed. */
  check() {
    const s = this.s;
    if (s.state !== 'joined') return;
    const seen = new Set();
    for (const { track, el } of this.tiles()) {
      seen.add(track);
      const settings = measure(el);
      const key = `${settings.visible}:${settings.width}:${settings.height}`;
      if (this.sent.get(track) === key) continue;
      this.sent.set(track, key);
      s.signal.send({ type: 'track_settings', track, ...settings });
    }
    for (const track of [...this.sent.keys()]) if (!seen.has(track)) this.sent.delete(track);
  }
}

/** {visible, width, height} of a tile element, in device pixels (CSS size x pixel ratio). */
export function measure(el) {
  if (!el || !el.isConnected || document.hidden) return { visible: false, width: 0, height: 0 };
  const r = el.getBoundingClientRect();
  const onScreen =
    r.width > 0 && r.height > 0 && r.bottom > 0 && r.right > 0 &&
    r.top < window.innerHeight && r.left < window.innerWidth;
  if (!onScreen) return { visible: false, width: 0, height: 0 };
  const ratio = window.devicePixelRatio || 1;
  return { visible: true, width: Math.round(r.width * ratio), height: Math.round(r.height * ratio) };
}
