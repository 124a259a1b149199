// One participant's session in a room: signaling plus the two RTCPeerConnections.
//
// Negotiation follows the two-transport design of docs/protocol.md:
//   publish PC:   we offer (sendonly camera + microphone), the server answers;
//   subscribe PC: the server offers whenever the set of forwarded tracks changes, we answer.
// Server offers are processed strictly one at a time, in arrival order.

import { SignalClient, SignalError, PROTOCOL_VERSION } from './signal.js';
import { Trickler, waitForGathering } from './rtc.js';
import { Tile } from './ui.js';

const GATHER_CAP_MS = 3000;
const PING_INTERVAL_MS = 10000;

function describeError(err) {
  if (err instanceof SignalError) return err.message;
  if (err && err.name) return `${err.name}: ${err.message}`;
  return String(err);
}

async function getLocalMedia({ audioOnly = false } = {}) {
  const video = { width: 640, height: 480 };
  const attempts = audioOnly
    ? [{ audio: true, video: false }]
    : [
        { audio: true, video },
        { audio: true, video: false },
        { audio: false, video },
      ];
  let lastError = null;
  for (const constraints of attempts) {
    try {
      return await navigator.mediaDevices.getUserMedia(constraints);
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError ?? new Error('no media devices');
}

export class Session {
  /**
   * @param {object} opts
   * @param {string} opts.room
   * @param {string} opts.name
   * @param {HTMLElement} opts.grid  the <ul> that holds tiles
   * @param {(text: string, isError?: boolean) => void} opts.status
   * @param {(session: Session) => void} opts.onchange  called when state or local mutes change
   * @param {() => void} opts.onblocked  called when the browser blocks autoplay
   */
  constructor({ room, name, token, roomLabel, grid, status, onchange, onblocked }) {
    this.room = room;
    this.roomLabel = roomLabel || room;
    this.name = name;
    this.token = token || null;
    this.grid = grid;
    this.status = status;
    this.onchange = onchange ?? (() => {});
    this.onblocked = onblocked ?? (() => {});

    this.state = 'new';
    this.signal = null;
    this.pub = null;
    this.sub = null;
    this.me = null; // ParticipantInfo of this participant
    this.participants = new Map(); // sid -> {sid, identity, name, tracks: Map, tile, stream}
    this.local = { audio: null, video: null }; // kind -> {track, mid, sid, muted}
    this.localStream = null;
    this.localTile = null;
    this.activeSpeakers = []; // the last active_speakers list, loudest first
    this.heardSpeaking = new Set(); // sids ever reported as active speakers
    this.subMids = new Map(); // mid -> {participant, track, kind} from the latest offer
    this.subChain = Promise.resolve();
    this.subOffers = 0;
    this.lastError = null;
    this.pingTimer = null;
    this.mediaNote = '';
    this.earlyEvents = null; // events received before the `joined` reply (see start())
    // Stage (podcast.js): the room kind, our live role and grants from `joined` and
    // `role_changed`; onroomevent sees `joined` and every event after the Session handled it.
    this.kind = 'conference';
    this.role = null;
    this.permissions = null;
    this.endedBy = undefined; // set (sid or null) when the host ended the room
    this.onroomevent = () => {};
  }

  /** Whether we may publish now (a podcast listener may not: no publish PC, no capture). */
  get canPublish() {
    return !this.permissions || this.permissions.canPublish;
  }

  get ws() {
    return this.signal ? this.signal.ws : null;
  }

  _setState(state) {
    this.state = state;
    this.onchange(this);
  }

  _error(err, context) {
    const text = context ? `${context}: ${describeError(err)}` : describeError(err);
    this.lastError = text;
    console.error(text, err);
    this.status(`Error — ${text}`, true);
  }

  renderStatus() {
    if (this.state !== 'joined') return;
    const others = this.participants.size;
    const who = others === 1 ? '1 other participant' : `${others} other participants`;
    const states = [];
    if (this.pub && this.localStream) states.push(['sending', this.pub.connectionState]);
    if (this.sub && this.subOffers > 0) states.push(['receiving', this.sub.connectionState]);
    // A podcast room's listeners are hidden: podcast.js shows the stage and audience counts.
    const parts = [
      this.kind === 'podcast' ? `In room ${this.roomLabel}` : `In room ${this.roomLabel} — ${who}`,
    ];
    if (states.length && states.every(([, st]) => st === 'connected')) {
      parts.push('media connected');
    } else if (states.length) {
      const pending = states.filter(([, st]) => st !== 'connected');
      const text = pending.map(([what, st]) => `${what} ${st === 'new' ? 'connecting' : st}`);
      parts.push(`media: ${text.join(', ')}`);
    }
    if (this.mediaNote) parts.push(this.mediaNote);
    this.status(parts.join(' · '));
  }

  // --- lifecycle ----------------------------------------------------------------------

  async start(url) {
    this._setState('connecting');
    this.status(`Connecting to room ${this.roomLabel}…`);
    this.signal = new SignalClient(url);
    // Events that overtake the `joined` reply (a subscribe offer for the tracks already in the
    // room can) wait until the reply is processed, so that none is lost.
    this.earlyEvents = [];
    this.signal.onevent = (msg) => {
      if (this.earlyEvents !== null) this.earlyEvents.push(msg);
      else this._onEvent(msg);
    };
    this.signal.onerror = (err) => {
      if (this.state !== 'ended') this._error(err);
    };
    this.signal.onclose = (ev) => {
      if (['left', 'leaving', 'failed', 'ended'].includes(this.state)) return;
      this._teardown();
      this._setState('disconnected');
      this.status(`Disconnected from the server (code ${ev.code}).`, true);
    };
    try {
      await this.signal.connect();
    } catch (err) {
      this._setState('failed');
      this._error(err, 'connect');
      throw err;
    }
    this._setState('joining');
    let joined;
    try {
      const join = { type: 'join', v: PROTOCOL_VERSION, room: this.room, name: this.name };
      if (this.token) join.token = this.token;
      joined = await this.signal.request(join);
    } catch (err) {
      this._setState('failed');
      this._error(err, 'join');
      if (err instanceof SignalError && err.code === 'unauthorized') {
        this.status(`Room ${this.roomLabel} needs an invite link (or a room token).`, true);
      }
      this.signal.close();
      throw err;
    }
    this._onJoined(joined);
    const early = this.earlyEvents;
    this.earlyEvents = null;
    for (const msg of early) this._onEvent(msg);
    this.pingTimer = setInterval(() => this.signal.send({ type: 'ping' }), PING_INTERVAL_MS);
    if (this.canPublish) await this._publish();
  }

  _onJoined(joined) {
    this.me = joined.participant;
    this.kind = joined.kind ?? 'conference';
    this.role = joined.role ?? null;
    this.permissions = joined.permissions ?? null;
    this.rtcConfig = { iceServers: joined.ice_servers ?? [] };
    this.sub = new RTCPeerConnection(this.rtcConfig);
    this.subTrickle = new Trickler(this.sub, 'subscribe', (msg) => this.signal.send(msg));
    this.sub.addEventListener('connectionstatechange', () => this.renderStatus());
    this.sub.addEventListener('track', (ev) => this._onTrack(ev));

    this.localTile = new Tile({ sid: this.me.sid, name: this.me.name || this.name, local: true });
    this.grid.prepend(this.localTile.el);
    for (const info of joined.participants) this._upsertParticipant(info);
    this._setState('joined');
    this.renderStatus();
    this.onroomevent(joined);
  }

  async leave() {
    if (this.state === 'left' || this.state === 'leaving') return;
    this._setState('leaving');
    if (this.signal && this.signal.isOpen) {
      try {
        await this.signal.request({ type: 'leave' }, 2000);
      } catch (err) {
        console.warn('leave', err);
      }
    }
    this._teardown();
    this._setState('left');
    this.status(`You left room ${this.roomLabel}.`);
  }

  _teardown() {
    clearInterval(this.pingTimer);
    this.pingTimer = null;
    for (const pc of [this.pub, this.sub]) {
      if (pc) pc.close();
    }
    if (this.localStream) {
      for (const track of this.localStream.getTracks()) track.stop();
    }
    for (const p of this.participants.values()) p.tile.remove();
    this.participants.clear();
    if (this.localTile) this.localTile.remove();
    if (this.signal) this.signal.close();
  }

  // --- publishing ---------------------------------------------------------------------

  /** The publish PC, made on first use (after `joined`, or when a listener is promoted). */
  _openPublish() {
    this.pub = new RTCPeerConnection(this.rtcConfig);
    this.pubTrickle = new Trickler(this.pub, 'publish', (msg) => this.signal.send(msg));
    this.pub.addEventListener('connectionstatechange', () => this.renderStatus());
    return this.pub;
  }

  async _publish() {
    const pc = this.pub ?? this._openPublish();
    let stream;
    try {
      stream = await getLocalMedia({ audioOnly: this.kind === 'podcast' });
    } catch (err) {
      this.mediaNote = 'no camera or microphone: receiving only';
      this._error(err, 'camera/microphone');
      return;
    }
    if (this.state !== 'joined' || this.pub !== pc) {
      for (const track of stream.getTracks()) track.stop();
      return;
    }
    this.localStream = stream;
    this.localTile.attach(stream);
    const added = [];
    for (const track of stream.getTracks()) {
      const transceiver = this.pub.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
      this.local[track.kind] = { track, mid: null, sid: null, muted: !track.enabled };
      added.push([transceiver, track]);
    }
    this.onchange(this);
    try {
      const offer = await this.pub.createOffer();
      await this.pub.setLocalDescription(offer);
      const tracks = added.map(([transceiver, track]) => {
        this.local[track.kind].mid = transceiver.mid;
        return {
          mid: transceiver.mid,
          kind: track.kind,
          source: track.kind === 'audio' ? 'microphone' : 'camera',
          name: track.kind === 'audio' ? 'microphone' : 'camera',
          muted: this.local[track.kind].muted,
        };
      });
      await waitForGathering(this.pub, GATHER_CAP_MS);
      const sdp = this.pub.localDescription.sdp;
      const reply = this.signal.request({ type: 'offer', sdp, tracks });
      this.pubTrickle.release(sdp);
      const answer = await reply;
      if (this.state !== 'joined' || this.pub !== pc) return;
      await this.pub.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
      const sids = answer.tracks ?? {};
      for (const entry of Object.values(this.local)) {
        if (entry && entry.mid !== null && sids[entry.mid]) entry.sid = sids[entry.mid];
      }
      // A mute toggled while the offer was in flight: tell the server now.
      for (const entry of Object.values(this.local)) {
        if (entry && entry.sid && entry.muted) this._sendMute(entry);
      }
      this.renderStatus();
    } catch (err) {
      if (this.pub === pc) this._error(err, 'publish');
    }
  }

  /** Demoted: the server already closed our producers and publish transport; stop capturing
   * and drop the publish PC (a later promotion makes a new one). */
  _stopPublishing() {
    if (this.pub) this.pub.close();
    this.pub = null;
    this.pubTrickle = null;
    if (this.localStream) {
      for (const track of this.localStream.getTracks()) track.stop();
    }
    this.localStream = null;
    this.local = { audio: null, video: null };
    if (this.localTile) this.localTile.attach(null);
    this.onchange(this);
    this.renderStatus();
  }

  /** `role_changed`: publish on this session when promoted, stop when demoted. */
  _onRoleChanged(msg) {
    const could = this.canPublish;
    this.role = msg.role;
    this.permissions = msg.permissions;
    if (this.me) this.me = { ...this.me, role: msg.role };
    if (!could && this.canPublish) {
      this._publish();
    } else if (could && !this.canPublish) {
      this._stopPublishing();
    }
    this.onchange(this);
  }

  /** A moderator muted one of our tracks (`remote`): show it muted; only we unmute. */
  _onOwnTrackMuted(msg) {
    const entry = Object.values(this.local).find((e) => e && e.sid === msg.track);
    if (!entry || entry.muted === msg.muted) return;
    entry.muted = msg.muted;
    entry.track.enabled = !msg.muted;
    this.localTile.setMuted(entry.track.kind === 'audio' ? { mic: msg.muted } : { cam: msg.muted });
    this.onchange(this);
  }

  /** `room_ended`: the host closed the room; the server disconnects us next. */
  _onRoomEnded(msg) {
    this.endedBy = msg.by ?? null;
    this._teardown();
    this._setState('ended');
    this.status(`Room ${this.roomLabel} has ended.`);
  }

  /** Mute or unmute one local track kind ('audio' | 'video'); returns the new muted state. */
  setMuted(kind, muted) {
    const entry = this.local[kind];
    if (!entry) return null;
    entry.muted = muted;
    entry.track.enabled = !muted;
    this.localTile.setMuted(kind === 'audio' ? { mic: muted } : { cam: muted });
    if (entry.sid) this._sendMute(entry);
    this.onchange(this);
    return muted;
  }

  _sendMute(entry) {
    this.signal
      .request({ type: 'mute', track: entry.sid, muted: entry.muted })
      .catch((err) => this._error(err, 'mute'));
  }

  // --- subscribing ---------------------------------------------------------------------

  _onTrack(ev) {
    const mid = ev.transceiver ? ev.transceiver.mid : null;
    const info = mid !== null ? this.subMids.get(mid) : undefined;
    if (!info || (this.me && info.participant === this.me.sid)) return;
    const p = this._ensureParticipant(info.participant);
    if (!p.stream.getTracks().includes(ev.track)) {
      const keep = p.stream
        .getTracks()
        .filter((t) => t.kind !== ev.track.kind || this._isLive(p, t));
      p.stream = new MediaStream([...keep, ev.track]);
      p.tile.attach(p.stream, this.onblocked);
    }
  }

  _isLive(p, track) {
    for (const tr of this.sub.getTransceivers()) {
      if (tr.receiver.track !== track || !tr.mid) continue;
      const info = this.subMids.get(tr.mid);
      return Boolean(info && info.participant === p.sid);
    }
    return false;
  }

  async _handleOffer(msg) {
    if (!this.sub || this.sub.signalingState === 'closed') return;
    this.subMids = new Map((msg.tracks ?? []).map((t) => [t.mid, t]));
    await this.sub.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
    const answer = await this.sub.createAnswer();
    await this.sub.setLocalDescription(answer);
    await waitForGathering(this.sub, GATHER_CAP_MS);
    const sdp = this.sub.localDescription.sdp;
    this.signal.send({ type: 'answer', sdp });
    this.subTrickle.release(sdp);
    this.subOffers += 1;
    this._reconcile();
    this.renderStatus();
  }

  /** Make each participant's MediaStream hold exactly the tracks the latest offer maps to it. */
  _reconcile() {
    const wanted = new Map(); // participant sid -> MediaStreamTrack[]
    for (const tr of this.sub.getTransceivers()) {
      if (!tr.mid || tr.stopped) continue;
      const info = this.subMids.get(tr.mid);
      const dir = tr.currentDirection;
      if (!info || !(dir === 'recvonly' || dir === 'sendrecv')) continue;
      if (this.me && info.participant === this.me.sid) continue;
      this._ensureParticipant(info.participant);
      const list = wanted.get(info.participant) ?? [];
      list.push(tr.receiver.track);
      wanted.set(info.participant, list);
    }
    for (const p of this.participants.values()) {
      const want = wanted.get(p.sid) ?? [];
      const have = p.stream.getTracks();
      const same = want.length === have.length && want.every((t) => have.includes(t));
      if (!same) p.stream = new MediaStream(want);
      p.tile.attach(p.stream, this.onblocked);
    }
  }

  // --- room events -----------------------------------------------------------------------

  _onEvent(msg) {
    switch (msg.type) {
      case 'offer':
        this.subChain = this.subChain
          .then(() => this._handleOffer(msg))
          .catch((err) => this._error(err, 'subscribe offer'));
        break;
      case 'participant_joined':
        this._upsertParticipant(msg.participant);
        this.renderStatus();
        break;
      case 'participant_left':
        this._removeParticipant(msg.participant);
        this.renderStatus();
        break;
      case 'track_published': {
        if (this.me && msg.participant === this.me.sid) break;
        const p = this._ensureParticipant(msg.participant);
        p.tracks.set(msg.track.sid, msg.track);
        this._renderIndicators(p);
        break;
      }
      case 'track_unpublished': {
        const p = this.participants.get(msg.participant);
        if (!p) break;
        p.tracks.delete(msg.track);
        this._renderIndicators(p);
        break;
      }
      case 'track_muted': {
        if (this.me && msg.participant === this.me.sid) {
          this._onOwnTrackMuted(msg);
          break;
        }
        const p = this.participants.get(msg.participant);
        if (!p) break;
        const track = p.tracks.get(msg.track);
        if (track) p.tracks.set(msg.track, { ...track, muted: msg.muted });
        this._renderIndicators(p);
        break;
      }
      case 'active_speakers': {
        // Loudest first; our own tile is highlighted too when the server hears us.
        const ranks = new Map(msg.speakers.map((s, i) => [s.participant, i]));
        for (const p of this.participants.values()) p.tile.setSpeaking(ranks.get(p.sid) ?? null);
        if (this.localTile && this.me) {
          this.localTile.setSpeaking(ranks.get(this.me.sid) ?? null);
        }
        this.activeSpeakers = msg.speakers;
        for (const s of msg.speakers) this.heardSpeaking.add(s.participant);
        break;
      }
      case 'role_changed':
        this._onRoleChanged(msg);
        break;
      case 'room_ended':
        this._onRoomEnded(msg);
        break;
      default:
        break; // stage events (hands, audience, ...) are for onroomevent (podcast.js)
    }
    this.onroomevent(msg);
  }

  _ensureParticipant(sid) {
    let p = this.participants.get(sid);
    if (p) return p;
    p = {
      sid,
      identity: '',
      name: '',
      tracks: new Map(),
      stream: new MediaStream(),
      tile: new Tile({ sid, name: '' }),
    };
    this.participants.set(sid, p);
    this.grid.appendChild(p.tile.el);
    return p;
  }

  _upsertParticipant(info) {
    if (this.me && info.sid === this.me.sid) return null;
    const p = this._ensureParticipant(info.sid);
    p.identity = info.identity;
    p.name = info.name;
    p.tile.setName(info.name || info.identity);
    for (const track of info.tracks ?? []) p.tracks.set(track.sid, track);
    this._renderIndicators(p);
    return p;
  }

  _removeParticipant(sid) {
    const p = this.participants.get(sid);
    if (!p) return;
    p.tile.remove();
    this.participants.delete(sid);
  }

  _renderIndicators(p) {
    const tracks = [...p.tracks.values()];
    const audio = tracks.filter((t) => t.kind === 'audio');
    const video = tracks.filter((t) => t.kind === 'video');
    p.tile.setMuted({
      mic: audio.length > 0 && audio.every((t) => t.muted),
      cam: video.length > 0 && video.every((t) => t.muted),
    });
  }
}
