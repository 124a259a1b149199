// Connection quality from RTCPeerConnection.getStats() on both transports, every 2 s.
//
//   loss     % of packets lost in the last interval: what the server reports losing of ours
//            (remote-inbound-rtp fractionLost, from its receiver reports) and what we lose of
//            the streams we receive (inbound-rtp packetsLost / packetsReceived deltas); the
//            worse of the two
//   rtt      ms: remote-inbound-rtp roundTripTime, else the selected candidate pair's
//            currentRoundTripTime (publish, else subscribe)
//   jitter   ms: the worst inbound or remote-inbound jitter of audio streams (video jitter
//            also counts the bursts in which a frame's packets leave, so it says less about the
//            network; it is used only when there is no audio)
//   sendKbps / recvKbps  bitrate of all outgoing / incoming RTP streams
//
// The level is 'good', 'fair' or 'poor' (see classify), 'unknown' before the first numbers,
// and 'outage' when a subscribed track that should be flowing (its publisher has not muted
// it; screen shares may legitimately send nothing while the screen is still) has received no
// bytes for STALL_MS: loss and jitter say nothing then, since nothing arrives to measure.
// Each remote tile also gets a level from the loss and jitter of that participant's streams,
// or 'outage' when one of that participant's tracks stalled.

import { icon } from './ui.js';

export const INTERVAL_MS = 2000;
/** No inbound bytes on an expected track for this long (ms) is an outage. */
export const STALL_MS = 2000;
// Timers fire a little early or late: an interval this much shorter than STALL_MS still counts.
const STALL_SLACK_MS = 250;

const LEVEL_TEXT = { good: 'Good', fair: 'Fair', poor: 'Poor', outage: 'No media', unknown: 'Measuring…' };

/** 'good' | 'fair' | 'poor' from loss (%), rtt (ms) and jitter (ms); null values are ignored. */
export function classify({ loss = null, rtt = null, jitter = null }) {
  if (loss === null && rtt === null && jitter === null) return 'unknown';
  const l = loss ?? 0;
  const r = rtt ?? 0;
  const j = jitter ?? 0;
  if (l < 2 && r < 250 && j < 30) return 'good';
  if (l < 8 && r < 500 && j < 80) return 'fair';
  return 'poor';
}

const round1 = (x) => (x === null ? null : Math.round(x * 10) / 10);
const fmt = (x, unit, digits = 0) => (x === null ? 'n/a' : `${x.toFixed(digits)} ${unit}`);

/** A human summary of the numbers (tooltip and accessible name). */
export function describe(q) {
  const parts = [];
  if (q.stalledMs) parts.push(`nothing received for ${(q.stalledMs / 1000).toFixed(0)} s`);
  parts.push(`RTT ${fmt(q.rtt, 'ms')}`, `loss ${fmt(q.loss, '%', 1)}`, `jitter ${fmt(q.jitter, 'ms')}`);
  if (q.sendKbps !== null) parts.push(`sending ${fmt(q.sendKbps, 'kbit/s')}`);
  if (q.recvKbps !== null) parts.push(`receiving ${fmt(q.recvKbps, 'kbit/s')}`);
  return parts.join(', ');
}

function selectedPairRtt(stats) {
  let pairId = null;
  stats.forEach((r) => {
    if (r.type === 'transport' && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId;
  });
  let rtt = null;
  stats.forEach((r) => {
    if (r.type !== 'candidate-pair' || typeof r.currentRoundTripTime !== 'number') return;
    if (pairId ? r.id === pairId : r.nominated && r.state === 'succeeded') rtt = r.currentRoundTripTime;
  });
  return rtt;
}

/**
 * Whether an inbound stream should be carrying media: it maps to a current subscription
 * whose track the publisher has not muted and that is not a screen share.
 */
function expectedToFlow(session, info) {
  if (!info) return false;
  const p = session.participants.get(info.participant);
  const track = p ? p.tracks.get(info.track) : undefined;
  if (!track || track.muted) return false;
  return track.source !== 'screen';
}

/** Non-negative difference of a cumulative counter (0 when the stream is new or restarted). */
function delta(now, before) {
  if (typeof now !== 'number' || typeof before !== 'number') return 0;
  return Math.max(0, now - before);
}

export class QualityMonitor {
  /**
   * @param {object} opts
   * @param {HTMLElement} opts.indicator  the top bar's indicator (an icon and a label)
   */
  constructor({ indicator }) {
    this.indicator = indicator;
    this.session = null;
    this.timer = null;
    this.prev = null; // the previous sample's counters
    this.latest = null;
    this.history = []; // the last samples, oldest first (for debugging and test reports)
    this.busy = false;
    this.flow = new Map(); // "participant/track" -> its stall clock (_stallClocks)
    this._render(null);
  }

  bind(session) {
    this.unbind();
    this.session = session;
    this.timer = setInterval(() => this.sample(), INTERVAL_MS);
  }

  unbind() {
    clearInterval(this.timer);
    this.timer = null;
    this.session = null;
    this.prev = null;
    this.latest = null;
    this.history = [];
    this.flow = new Map();
    this._render(null);
  }

  /** Take one sample now (the timer calls this every INTERVAL_MS). */
  async sample() {
    const session = this.session;
    if (!session || session.state !== 'joined' || this.busy) return this.latest;
    const { pub, sub } = session;
    if (!sub || sub.signalingState === 'closed') return this.latest;
    // A listener has no publish PC (and a demotion closes it): receiving only.
    const sending = pub && pub.signalingState !== 'closed';
    this.busy = true;
    try {
      const [pubStats, subStats] = await Promise.all([sending ? pub.getStats() : new Map(), sub.getStats()]);
      if (this.session !== session) return null;
      this.latest = this._compute(session, pubStats, subStats, performance.now());
      this.history.push(this.latest);
      if (this.history.length > 30) this.history.shift();
      this._render(this.latest);
      this._renderTiles(session, this.latest);
      return this.latest;
    } catch (err) {
      console.debug('quality: getStats failed', err);
      return this.latest;
    } finally {
      this.busy = false;
    }
  }

  _compute(session, pubStats, subStats, now) {
    const counters = { at: now, out: new Map(), in: new Map() };
    const prev = this.prev;
    const dt = prev ? (now - prev.at) / 1000 : 0;

    // --- publish: what we send and what the server says it lost of it ---
    let sentBytes = 0;
    let pubLoss = null;
    let rtt = null;
    const jitters = { audio: null, video: null };
    const addJitter = (kind, seconds) => {
      if (typeof seconds !== 'number' || !(kind in jitters)) return;
      jitters[kind] = Math.max(jitters[kind] ?? 0, seconds * 1000);
    };
    pubStats.forEach((r) => {
      if (r.type === 'outbound-rtp') {
        counters.out.set(r.id, { bytes: r.bytesSent });
        if (prev && prev.out.has(r.id)) sentBytes += delta(r.bytesSent, prev.out.get(r.id).bytes);
      } else if (r.type === 'remote-inbound-rtp') {
        if (typeof r.fractionLost === 'number') pubLoss = Math.max(pubLoss ?? 0, r.fractionLost * 100);
        if (typeof r.roundTripTime === 'number') rtt = Math.max(rtt ?? 0, r.roundTripTime * 1000);
        addJitter(r.kind, r.jitter);
      }
    });
    if (rtt === null) {
      const pairRtt = selectedPairRtt(pubStats) ?? selectedPairRtt(subStats);
      if (pairRtt !== null) rtt = pairRtt * 1000;
    }

    // --- subscribe: what we receive, per participant ---
    let recvBytes = 0;
    let lost = 0;
    let expected = 0;
    const perSid = new Map(); // sid -> {lost, expected, audio jitter, video jitter}
    let stalledMs = 0; // the longest an expected stream has gone without bytes
    const stalledSids = new Set();
    this.flow = this._stallClocks(session, subStats, now);
    for (const [, clock] of this.flow) {
      if (!clock.shouldFlow || now - clock.at < STALL_MS - STALL_SLACK_MS) continue;
      stalledMs = Math.max(stalledMs, now - clock.at);
      stalledSids.add(clock.participant);
    }
    subStats.forEach((r) => {
      if (r.type !== 'inbound-rtp') return;
      counters.in.set(r.id, { bytes: r.bytesReceived, lost: r.packetsLost, recv: r.packetsReceived });
      addJitter(r.kind, r.jitter);
      const before = prev ? prev.in.get(r.id) : undefined;
      if (!before) return;
      recvBytes += delta(r.bytesReceived, before.bytes);
      const dLost = delta(r.packetsLost, before.lost);
      const dRecv = delta(r.packetsReceived, before.recv);
      lost += dLost;
      expected += dLost + dRecv;
      const info = r.mid !== undefined ? session.subMids.get(r.mid) : undefined;
      if (info) {
        const agg = perSid.get(info.participant) ?? { lost: 0, expected: 0, audio: null, video: null };
        agg.lost += dLost;
        agg.expected += dLost + dRecv;
        if (typeof r.jitter === 'number' && (r.kind === 'audio' || r.kind === 'video')) {
          agg[r.kind] = Math.max(agg[r.kind] ?? 0, r.jitter * 1000);
        }
        perSid.set(info.participant, agg);
      }
    });
    this.prev = counters;

    const jitter = jitters.audio ?? jitters.video;
    const subLoss = expected > 0 ? (100 * lost) / expected : null;
    let loss = null;
    if (pubLoss !== null || subLoss !== null) loss = Math.max(pubLoss ?? 0, subLoss ?? 0);
    // Loss is a number from the first sample on: nothing measured yet is nothing lost.
    if (loss === null) loss = 0;
    const remote = {};
    for (const [sid, agg] of perSid) {
      const l = agg.expected > 0 ? (100 * agg.lost) / agg.expected : 0;
      const j = agg.audio ?? agg.video ?? 0;
      const level = stalledSids.has(sid) ? 'outage' : classify({ loss: l, jitter: j });
      remote[sid] = { loss: round1(l), jitter: round1(j), level };
    }
    // A stalled participant whose connection has no stats yet (replaced, not yet carrying media).
    for (const sid of stalledSids) remote[sid] ??= { loss: 0, jitter: 0, level: 'outage' };
    const q = {
      level: 'unknown',
      loss: round1(loss),
      rtt: round1(rtt),
      jitter: round1(jitter),
      sendKbps: dt > 0 ? Math.round((sentBytes * 8) / dt / 1000) : null,
      recvKbps: dt > 0 ? Math.round((recvBytes * 8) / dt / 1000) : null,
      publishLoss: round1(pubLoss),
      subscribeLoss: round1(subLoss),
      stalledMs: stalledMs > 0 ? Math.round(stalledMs) : 0,
      remote,
      samples: (this.latest ? this.latest.samples : 0) + 1,
      at: Date.now(),
    };
    // The first sample has no interval to measure: wait for the second before judging.
    if (!prev) q.level = 'unknown';
    else q.level = stalledMs > 0 ? 'outage' : classify(q);
    return q;
  }

  /**
   * One stall clock per subscribed track (participant and track sid), not per stats entry: a
   * track counts as stalled from the last sample in which its bytes grew while it was expected
   * to flow (a muted track's silence starts no clock). A replaced subscribe connection (media
   * restart) starts new counters, and until it carries media an expected track has no
   * inbound-rtp at all: that is no media, so the clock goes on instead of starting again.
   */
  _stallClocks(session, subStats, now) {
    const bytesByMid = new Map();
    subStats.forEach((r) => {
      if (r.type === 'inbound-rtp' && r.mid !== undefined) bytesByMid.set(r.mid, r.bytesReceived ?? 0);
    });
    const clocks = new Map();
    for (const [mid, info] of session.subMids) {
      const key = `${info.participant}/${info.track}`;
      const shouldFlow = expectedToFlow(session, info);
      const bytes = bytesByMid.get(mid);
      const last = this.flow.get(key);
      const sameConnection = last !== undefined && last.pc === session.sub;
      const grew = bytes !== undefined && bytes > (sameConnection ? last.bytes ?? 0 : 0);
      const at = !last || grew || !shouldFlow ? now : last.at;
      clocks.set(key, { bytes: bytes ?? 0, at, pc: session.sub, shouldFlow, participant: info.participant });
    }
    return clocks;
  }

  _render(q) {
    const ind = this.indicator;
    const level = q ? q.level : 'unknown';
    ind.dataset.level = level;
    const text = LEVEL_TEXT[level];
    let label = 'Connection quality: measuring';
    if (q && level === 'outage') label = `Connection outage: ${describe(q)}`;
    else if (q && level !== 'unknown') label = `Connection ${text.toLowerCase()}: ${describe(q)}`;
    ind.replaceChildren(icon('signal'));
    const span = document.createElement('span');
    span.className = 'quality-label';
    span.textContent = text;
    ind.appendChild(span);
    // The numbers, shown on hover and keyboard focus (the accessible name has them too).
    if (q && level !== 'unknown') {
      const details = document.createElement('span');
      details.className = 'quality-details';
      details.setAttribute('aria-hidden', 'true');
      for (const line of describe(q).split(', ')) {
        const row = document.createElement('span');
        row.textContent = line;
        details.appendChild(row);
      }
      ind.appendChild(details);
    }
    ind.setAttribute('aria-label', label);
  }

  _renderTiles(session, q) {
    for (const p of session.participants.values()) {
      const r = q.remote[p.sid];
      if (!r || q.samples < 2) {
        p.tile.setQuality(null);
        continue;
      }
      const numbers = `loss ${r.loss.toFixed(1)} %, jitter ${r.jitter.toFixed(0)} ms`;
      const label =
        r.level === 'outage'
          ? 'No media arriving from this participant'
          : `${LEVEL_TEXT[r.level]} connection: ${numbers}`;
      p.tile.setQuality(r.level, label);
    }
  }
}
