// The subscribe side of a Session (session.js): the subscribe RTCPeerConnection, answering the
// server's offers, and attaching the received tracks to each participant's tiles.
//
// Negotiation (docs/protocol.md): the server offers whenever the set of forwarded tracks
// changes, we answer. Server offers are processed strictly one at a time, in arrival order.
//
// The Subscriber holds the subscribe state; the Session exposes it read-only (`sub`,
// `subMids`, `subOffers`). The participants themselves are the Roster's (roster.js).

import { PathWatchdog, Trickler, waitForGathering } from './rtc.js';
import { Tile } from './ui.js';
import { isScreenSource } from './roster.js';
import { AdaptiveStream } from './adaptive.js';

const GATHER_CAP_MS = 3000;

export class Subscriber {
  /** @param {import('./session.js').Session} session  the Session this receives for */
  constructor(session) {
    this.s = session;
    this.pc = null; // the subscribe RTCPeerConnection, made on `joined`
    this.trickle = null;
    this.mids = new Map(); // mid -> {participant, track, kind} from the latest offer
    this.chain = Promise.resolve();
    this.offers = 0; // server offers answered
    this.watchdog = null; // PathWatchdog of the subscribe PC
    this.restarts = 0; // media restarts of the subscribe side
    this.adaptive = null; // AdaptiveStream: tile sizes and visibility to the server
  }

  /** Make the subscribe PC (on `joined`). */
  open() {
    const s = this.s;
    const pc = new RTCPeerConnection(s.rtcConfig);
    this.pc = pc;
    this.trickle = new Trickler(pc, 'subscribe', (msg) => s.signal.send(msg));
    pc.addEventListener('connectionstatechange', () => s.renderStatus());
    pc.addEventListener('track', (ev) => this._onTrack(ev));
    this.watchdog = new PathWatchdog(pc, () => {
      if (this.pc === pc) this.restart(true);
    });
    if (!this.adaptive) this.adaptive = new AdaptiveStream(this.s, () => this.videoTiles());
  }

  /**
   * The received video tracks (sids) and the element each one is shown in: the largest
   * <video> playing it (a grid tile, a pinned or speaker view, a podcast stage card), or null.
   */
  *videoTiles() {
    const s = this.s;
    if (!this.pc) return;
    const videos = [...document.querySelectorAll('video')].filter((v) => v.srcObject);
    for (const tr of this.pc.getTransceivers()) {
      const info = tr.mid ? this.mids.get(tr.mid) : undefined;
      if (!info || info.kind !== 'video' || (s.me && info.participant === s.me.sid)) continue;
      const track = tr.receiver.track;
      let best = null;
      let bestWidth = -1;
      for (const v of videos) {
        if (!v.srcObject.getVideoTracks().includes(track)) continue;
        const width = v.getBoundingClientRect().width;
        if (width > bestWidth) {
          best = v;
          bestWidth = width;
        }
      }
      yield { track: info.track, el: best };
    }
  }

  /** `track_paused_for_bandwidth`: show (or clear) the note on the tile of that video. */
  onBandwidthPaused(msg) {
    const p = this.s.roster.participants.get(msg.participant);
    if (!p) return;
    const tile = this._isScreenTrack(p, msg.track) ? p.screenTile : p.tile;
    if (tile) tile.setBandwidthPaused(msg.paused);
  }

  close() {
    if (this.adaptive) this.adaptive.stop();
    this.adaptive = null;
    if (this.watchdog) this.watchdog.stop();
    if (this.pc) this.pc.close();
  }

  /**
   * Media path failure (docs/protocol.md, "Media restart"): drop the subscribe PC for a new
   * one; the server's next offer (same tracks, same track sids) is answered on it, after the
   * offers queued before. `tellServer`: we found the path dead ourselves (`restart_media`).
   */
  restart(tellServer) {
    this.chain = this.chain
      .then(() => this._restart(tellServer))
      .catch((err) => this.s._error(err, 'media restart'));
    return this.chain;
  }

  async _restart(tellServer) {
    const s = this.s;
    if (!this.pc || s.state !== 'joined') return;
    this.restarts += 1;
    if (this.watchdog) this.watchdog.stop();
    this.pc.close();
    this.mids = new Map();
    this.open();
    s.renderStatus();
    if (tellServer) await s.signal.request({ type: 'restart_media', side: 'subscribe' });
  }

  /** A server `offer`: answered after the ones before it. */
  queueOffer(msg) {
    this.chain = this.chain.then(() => this._handleOffer(msg)).catch((err) => this.s._error(err, 'subscribe offer'));
  }

  /** A track's source decides which of the participant's streams it joins: sort the received
   * tracks again, after any subscribe offer being processed. */
  queueReconcile() {
    this.chain = this.chain.then(() => this._reconcile()).catch((err) => this.s._error(err, 'subscribe'));
  }

  _isScreenTrack(p, trackSid) {
    const info = p.tracks.get(trackSid);
    return Boolean(info && isScreenSource(info.source));
  }

  _onTrack(ev) {
    const s = this.s;
    const mid = ev.transceiver ? ev.transceiver.mid : null;
    const info = mid !== null ? this.mids.get(mid) : undefined;
    if (!info || (s.me && info.participant === s.me.sid)) return;
    const p = s.roster.ensure(info.participant);
    const key = this._isScreenTrack(p, info.track) ? 'screenStream' : 'stream';
    if (!p[key].getTracks().includes(ev.track)) {
      const keep = p[key]
        .getTracks()
        .filter((t) => t.kind !== ev.track.kind || this._isLive(p, t));
      p[key] = new MediaStream([...keep, ev.track]);
      this._attach(p);
    }
  }

  _isLive(p, track) {
    for (const tr of this.pc.getTransceivers()) {
      if (tr.receiver.track !== track || !tr.mid) continue;
      const info = this.mids.get(tr.mid);
      return Boolean(info && info.participant === p.sid);
    }
    return false;
  }

  /** Show a participant's streams: the camera tile, and a screen tile while they share. */
  _attach(p) {
    const s = this.s;
    p.tile.attach(p.stream, s.onblocked);
    s._emit('media', { sid: p.sid });
    const sharing = p.screenStream.getTracks().length > 0;
    if (sharing && !p.screenTile) {
      p.screenTile = new Tile({ sid: p.sid, name: p.name || p.identity, screen: true });
      p.screenTile.since = Date.now();
      p.tile.el.after(p.screenTile.el);
      p.screenTile.attach(p.screenStream, s.onblocked);
      s._emit('screens');
      s._emit('participants');
    } else if (sharing) {
      p.screenTile.attach(p.screenStream, s.onblocked);
    } else if (p.screenTile) {
      p.screenTile.remove();
      p.screenTile = null;
      s._emit('screens');
      s._emit('participants');
    }
  }

  async _handleOffer(msg) {
    const s = this.s;
    if (!this.pc || this.pc.signalingState === 'closed') return;
    this.mids = new Map((msg.tracks ?? []).map((t) => [t.mid, t]));
    await this.pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
    const answer = await this.pc.createAnswer();
    await this.pc.setLocalDescription(answer);
    await waitForGathering(this.pc, GATHER_CAP_MS);
    const sdp = this.pc.localDescription.sdp;
    s.signal.send({ type: 'answer', sdp });
    this.trickle.release(sdp);
    this.offers += 1;
    this._reconcile();
    s.renderStatus();
  }

  /**
   * Make each participant's streams hold exactly the tracks the latest offer maps to them:
   * `stream` the microphone and camera, `screenStream` the screen share.
   */
  _reconcile() {
    const s = this.s;
    if (!this.pc || this.pc.signalingState === 'closed') return;
    const wanted = new Map(); // participant sid -> {stream: [], screenStream: []}
    for (const tr of this.pc.getTransceivers()) {
      if (!tr.mid || tr.stopped) continue;
      const info = this.mids.get(tr.mid);
      const dir = tr.currentDirection;
      if (!info || !(dir === 'recvonly' || dir === 'sendrecv')) continue;
      if (s.me && info.participant === s.me.sid) continue;
      const p = s.roster.ensure(info.participant);
      const lists = wanted.get(p.sid) ?? { stream: [], screenStream: [] };
      lists[this._isScreenTrack(p, info.track) ? 'screenStream' : 'stream'].push(tr.receiver.track);
      wanted.set(p.sid, lists);
    }
    for (const p of s.roster.participants.values()) {
      const lists = wanted.get(p.sid) ?? { stream: [], screenStream: [] };
      for (const key of ['stream', 'screenStream']) {
        const want = lists[key];
        const have = p[key].getTracks();
        const same = want.length === have.length && want.every((t) => have.includes(t));
        if (!same) p[key] = new MediaStream(want);
      }
      this._attach(p);
    }
  }
}
