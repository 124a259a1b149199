// One participant's session in a room: signaling plus the two RTCPeerConnections.
//
// Negotiation follows the two-transport design of docs/protocol.md:
//   publish PC:   we offer (sendonly camera + microphone), the server answers;
//   subscribe PC: the server offers whenever the set of forwarded tracks changes, we answer.
// Server offers are processed strictly one at a time, in arrival order; publish offers too
// (the camera and microphone, then a screen share or a device with no sender yet, each
// renegotiate the publish PC).
//
// A Session is an EventTarget. The page's features listen to it (each event is a CustomEvent
// whose `detail` is given here):
//   'participants'  the participant list, their tracks, mutes or speakers changed
//   'local'         our own tracks changed (published, muted, replaced, screen share)
//   'screens'       the set of screen shares (remote or ours) changed
//   'chat'          {message}     a new chat message (ours included, echoed by the server)
//   'chat_history'  {messages}    the room's last messages, right after joining
//   'reactions'     {reactions}   a batch of reactions
//   'message'       {msg}         any other server event: extensions (whiteboard, files) can
//                                 handle new event types here without touching this file
//   'roomevent'     {msg}         every server event and the `joined` reply, after the Session
//                                 handled it (podcast.js keeps its stage model from these)
//   'role'          our role or permissions changed (`role_changed`)
//   'media'         {sid}  a remote participant's received streams changed
//   'stagevideo'    a podcast stage's video setting changed (`stagevideo` property)
//   'ended'         the session is over (left, disconnected, failed, or the room 'ended')
//
// Roles (docs/protocol.md, "Podcast stage"): `joined.permissions` and `role_changed` carry our
// live grants. Without `canPublish` (a podcast listener, a conference token without the grant)
// the Session neither captures nor makes a publish PC; a promotion captures and publishes on
// the same WebSocket session (a new publish PC), a demotion stops the capture and closes it
// (the server has already closed our producers). Podcast rooms publish audio only, except
// that stage members may turn their camera on while the stage shows video (`stage_settings`,
// `joined.stage_video`: startCamera/stopCamera); it stops when the stage hides video again.

import { SignalClient, SignalError, PROTOCOL_VERSION } from './signal.js';
import { Trickler, waitForGathering } from './rtc.js';
import { Tile } from './ui.js';
import { getCamera, getLocalMedia } from './devices.js';

const GATHER_CAP_MS = 3000;
const PING_INTERVAL_MS = 10000;

function describeError(err) {
  if (err instanceof SignalError) return err.message;
  if (err && err.name) return `${err.name}: ${err.message}`;
  return String(err);
}

const EVENT_LOG_SIZE = 200;

/** Where a remote track belongs: the participant's camera tile or their screen share. */
export function isScreenSource(source) {
  return source === 'screen' || source === 'screen_audio';
}

export class Session extends EventTarget {
  /**
   * @param {object} opts
   * @param {string} opts.room
   * @param {string} opts.name
   * @param {string} [opts.kind]  the room's kind ('conference', 'podcast') when known
   * @param {HTMLElement} opts.grid  the <ul> that holds tiles
   * @param {(text: string, isError?: boolean) => void} opts.status
   * @param {(session: Session) => void} opts.onchange  called when state or local mutes change
   * @param {() => void} opts.onblocked  called when the browser blocks autoplay
   */
  constructor({ room, name, token, roomLabel, kind, grid, status, onchange, onblocked }) {
    super();
    this.room = room;
    this.roomLabel = roomLabel || room;
    this.roomKind = kind || null; // from the page until `joined` says
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
    // sid -> {sid, identity, name, tracks: Map, stream, tile, screenStream, screenTile, screenSince}
    this.participants = new Map();
    // kind -> {kind, track, transceiver, mid, sid, muted, source, name}
    this.local = { audio: null, video: null };
    this.screen = null; // our screen share while it lasts, an entry as in `local`
    this.localStream = null;
    this.localTile = null;
    this.localScreenTile = null;
    this.spareScreenTransceiver = null; // the m-line of an ended screen share, reused next time
    this.spareCameraTransceiver = null; // the m-line of a stopped podcast camera, likewise
    this.stageVideo = false; // a podcast stage shows its video to listeners (`stage_settings`)
    this.listenerSharing = false; // podcast listeners may draw and share files (`stage_settings`)
    this.activeSpeakers = []; // the last active_speakers list, loudest first
    this.heardSpeaking = new Set(); // sids ever reported as active speakers
    this.subMids = new Map(); // mid -> {participant, track, kind} from the latest offer
    this.subChain = Promise.resolve();
    this.pubChain = Promise.resolve();
    this.subOffers = 0;
    this.lastError = null;
    this.pingTimer = null;
    this.mediaNote = '';
    this.earlyEvents = null; // events received before the `joined` reply (see start())
    this.events = []; // the last server events, {type, participant, track}, for tests
    // Our live role and grants (`joined`, `role_changed`); null before `joined`.
    this.role = null;
    this.permissions = null;
    this.endedBy = undefined; // set (a sid or null) when the host ended the room
    this.rtcConfig = null;
  }

  /** The room's kind: 'conference' or 'podcast' (as `joined` said, or the page guessed). */
  get kind() {
    return this.roomKind || 'conference';
  }

  /** Whether we may publish now (a listener may not: no publish PC, no capture). */
  get canPublish() {
    return !this.permissions || this.permissions.canPublish !== false;
  }

  /** Whether we may send chat, reactions and files. */
  get canPublishData() {
    return !this.permissions || this.permissions.canPublishData !== false;
  }

  /** Whether we administer the room (the host; a whiteboard's clear, say). */
  get roomAdmin() {
    return Boolean(this.permissions && this.permissions.roomAdmin);
  }

  get ws() {
    return this.signal ? this.signal.ws : null;
  }

  _emit(type, detail = null) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _localChanged() {
    this.onchange(this);
    this._emit('local');
  }

  _setState(state) {
    this.state = state;
    this.onchange(this);
    if (['left', 'disconnected', 'failed', 'ended'].includes(state)) this._emit('ended');
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
    if (this.pub && (this.localStream || this.screen)) states.push(['sending', this.pub.connectionState]);
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

  // --- requests for the page's features and extensions ------------------------------------

  /** Send a request and resolve with its reply (rejects with a SignalError). */
  request(msg, timeoutMs) {
    if (!this.signal) return Promise.reject(new SignalError('closed', 'not connected'));
    return this.signal.request(msg, timeoutMs);
  }

  /** Send a message without waiting for its reply; false when not connected. */
  send(msg) {
    return this.signal ? this.signal.send(msg) : false;
  }

  sendChat(text) {
    return this.request({ type: 'chat', text });
  }

  sendReaction(emoji) {
    return this.request({ type: 'reaction', emoji });
  }

  /** The display name of a participant sid (ours included). */
  nameOf(sid) {
    if (this.me && sid === this.me.sid) return this.me.name || this.name || 'You';
    const p = this.participants.get(sid);
    return p ? p.name || p.identity || 'Guest' : '';
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
      if (ev.reason === 'removed') this.status('You were removed from this room.', true);
      else this.status(`Disconnected from the server (code ${ev.code}).`, true);
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
    if (this.state !== 'joined') return; // the room ended (or we left) meanwhile
    this.pingTimer = setInterval(() => this.signal.send({ type: 'ping' }), PING_INTERVAL_MS);
    if (this.canPublish) await this._publish();
  }

  _onJoined(joined) {
    this.me = joined.participant;
    this.roomKind = joined.kind ?? this.roomKind ?? 'conference';
    this.role = joined.role ?? null;
    this.permissions = joined.permissions ?? null;
    this.rtcConfig = { iceServers: joined.ice_servers ?? [] };
    this.stageVideo = Boolean(joined.stage_video);
    // The publish PC is made when we publish (_openPublish): a listener never gets one.
    this.sub = new RTCPeerConnection(this.rtcConfig);
    this.subTrickle = new Trickler(this.sub, 'subscribe', (msg) => this.signal.send(msg));
    this.sub.addEventListener('connectionstatechange', () => this.renderStatus());
    this.sub.addEventListener('track', (ev) => this._onTrack(ev));

    this.localTile = new Tile({ sid: this.me.sid, name: this.me.name || this.name, local: true });
    this.grid.prepend(this.localTile.el);
    for (const info of joined.participants) this._upsertParticipant(info);
    this._setState('joined');
    this.renderStatus();
    this._emit('participants');
    this._emit('role');
    this._emit('roomevent', { msg: joined });
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
    if (this.screen) this.screen.track.stop();
    this.screen = null;
    for (const p of this.participants.values()) {
      p.tile.remove();
      if (p.screenTile) p.screenTile.remove();
    }
    this.participants.clear();
    if (this.localTile) this.localTile.remove();
    if (this.localScreenTile) this.localScreenTile.remove();
    this.localScreenTile = null;
    if (this.signal) this.signal.close();
    this._emit('participants');
    this._emit('screens');
  }

  // --- publishing ---------------------------------------------------------------------

  /** The publish PC, made on first use (after `joined`, or when a listener is promoted). */
  _openPublish() {
    this.pub = new RTCPeerConnection(this.rtcConfig);
    this.pubTrickle = new Trickler(this.pub, 'publish', (msg) => this.signal.send(msg));
    this.pub.addEventListener('connectionstatechange', () => this.renderStatus());
    return this.pub;
  }

  /** Capture the microphone and camera (only the microphone in a podcast room) and publish. */
  async _publish() {
    const pc = this.pub ?? this._openPublish();
    const audioOnly = this.kind === 'podcast';
    let stream;
    try {
      stream = await getLocalMedia({ audioOnly });
    } catch (err) {
      this.mediaNote = audioOnly ? 'no microphone: listening only' : 'no camera or microphone: receiving only';
      this._error(err, audioOnly ? 'microphone' : 'camera/microphone');
      return;
    }
    // Left, ended, or demoted (and maybe promoted again: a new PC) while the browser asked.
    if (this.state !== 'joined' || this.pub !== pc) {
      for (const track of stream.getTracks()) track.stop();
      return;
    }
    this.mediaNote = '';
    this.localStream = stream;
    this.localTile.attach(stream);
    for (const track of stream.getTracks()) this._addLocalSender(track);
    this._localChanged();
    try {
      await this._negotiatePublish();
    } catch {
      // _publishOffer() reported it.
    }
  }

  _addLocalSender(track) {
    const transceiver = this.pub.addTransceiver(track, {
      direction: 'sendonly',
      streams: [this.localStream],
    });
    const source = track.kind === 'audio' ? 'microphone' : 'camera';
    this.local[track.kind] = {
      kind: track.kind,
      track,
      transceiver,
      mid: null,
      sid: null,
      muted: !track.enabled,
      source,
      name: source,
    };
  }

  /** The local entries the publish PC sends: microphone, camera, screen share. */
  _sending() {
    return [this.local.audio, this.local.video, this.screen].filter((e) => e !== null);
  }

  /** Queue one publish offer/answer round (at most one is outstanding, see the protocol). */
  _negotiatePublish() {
    const run = this.pubChain.then(() => this._publishOffer());
    this.pubChain = run.catch(() => {});
    return run;
  }

  async _publishOffer() {
    const pc = this.pub;
    if (this.state !== 'joined' || !pc || pc.signalingState === 'closed') return;
    // A demotion closes the PC (and a promotion makes another) at any await below.
    const current = () => this.state === 'joined' && this.pub === pc;
    try {
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      const entries = this._sending();
      const sentMuted = new Map();
      const tracks = [];
      for (const entry of entries) {
        entry.mid = entry.transceiver.mid;
        if (entry.mid === null) continue;
        sentMuted.set(entry, entry.muted);
        tracks.push({
          mid: entry.mid,
          kind: entry.kind,
          source: entry.source,
          name: entry.name,
          muted: entry.muted,
        });
      }
      await waitForGathering(pc, GATHER_CAP_MS);
      if (!current()) return;
      const sdp = pc.localDescription.sdp;
      const reply = this.signal.request({ type: 'offer', sdp, tracks });
      this.pubTrickle.release(sdp);
      const answer = await reply;
      if (!current()) return;
      await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
      const sids = answer.tracks ?? {};
      for (const entry of entries) {
        const known = entry.sid;
        entry.sid = entry.mid !== null && sids[entry.mid] ? sids[entry.mid] : null;
        // A mute toggled while the offer was in flight: tell the server now.
        if (entry.sid && !known && sentMuted.has(entry) && sentMuted.get(entry) !== entry.muted) {
          this._sendMute(entry);
        }
      }
      this._localChanged();
      this.renderStatus();
    } catch (err) {
      if (!current()) return; // a demotion's closed PC, not an error worth a red line
      this._error(err, 'publish');
      throw err;
    }
  }

  /** Demoted: the server already closed our producers and publish transport; stop capturing
   * (screen share included) and drop the publish PC (a later promotion makes a new one). */
  _stopPublishing() {
    if (this.pub) this.pub.close();
    this.pub = null;
    this.pubTrickle = null;
    this.pubChain = Promise.resolve();
    if (this.localStream) {
      for (const track of this.localStream.getTracks()) track.stop();
    }
    this.localStream = null;
    this.local = { audio: null, video: null };
    if (this.localTile) {
      this.localTile.attach(null);
      this.localTile.setMuted({ mic: false, cam: false });
    }
    const sharing = this.screen !== null;
    if (this.screen) this.screen.track.stop();
    this.screen = null;
    this.spareScreenTransceiver = null; // it belonged to the closed PC
    this.spareCameraTransceiver = null;
    if (this.localScreenTile) this.localScreenTile.remove();
    this.localScreenTile = null;
    this._localChanged();
    if (sharing) this._emit('screens');
    this._emit('participants');
    this.renderStatus();
  }

  /** `role_changed`: publish on this session when promoted, stop when demoted. */
  _onRoleChanged(msg) {
    const could = this.canPublish;
    this.role = msg.role ?? this.role;
    this.permissions = msg.permissions ?? this.permissions;
    if (this.me) this.me = { ...this.me, role: this.role };
    if (!could && this.canPublish) {
      this._publish();
    } else if (could && !this.canPublish) {
      this._stopPublishing();
    }
    this.onchange(this);
    this._emit('role');
    this._emit('participants');
  }

  /** A moderator muted one of our tracks (`remote`): show it muted; only we unmute. */
  _onOwnTrackMuted(msg) {
    const entry = this._sending().find((e) => e.sid === msg.track);
    if (!entry || entry.muted === msg.muted) return;
    entry.muted = msg.muted;
    entry.track.enabled = !msg.muted;
    if (entry !== this.screen) {
      this.localTile.setMuted(entry.kind === 'audio' ? { mic: msg.muted } : { cam: msg.muted });
    }
    this._localChanged();
    this._emit('participants');
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
    this._localChanged();
    this._emit('participants');
    return muted;
  }

  _sendMute(entry) {
    this.signal
      .request({ type: 'mute', track: entry.sid, muted: entry.muted })
      .catch((err) => this._error(err, 'mute'));
  }

  /**
   * Send `track` (from another microphone or camera) instead of the current one of its kind:
   * RTCRtpSender.replaceTrack, no renegotiation. The old track is stopped. Without a sender of
   * that kind yet (joined with no camera, say), one is added and the publish PC renegotiates.
   */
  async replaceLocalTrack(track) {
    if (this.state !== 'joined' || !this.pub || !this.canPublish) {
      track.stop();
      throw new Error(this.state === 'joined' ? 'you may not publish in this room now' : 'not in a room');
    }
    if (this.kind === 'podcast' && track.kind === 'video') {
      track.stop();
      throw new Error('a podcast room has no video');
    }
    const entry = this.local[track.kind];
    if (!entry) {
      this.localStream = new MediaStream([...(this.localStream?.getTracks() ?? []), track]);
      this.mediaNote = '';
      this._addLocalSender(track);
      this.localTile.attach(this.localStream);
      this._localChanged();
      await this._negotiatePublish();
      return;
    }
    await entry.transceiver.sender.replaceTrack(track);
    track.enabled = !entry.muted;
    const old = entry.track;
    entry.track = track;
    old.stop();
    const others = this.localStream ? this.localStream.getTracks().filter((t) => t !== old) : [];
    this.localStream = new MediaStream([...others, track]);
    this.localTile.attach(this.localStream);
    this._localChanged();
  }

  /** Whether we may turn a camera on now: a podcast stage member while the stage shows video. */
  get canStartStageCamera() {
    return (
      this.state === 'joined' && this.kind === 'podcast' && this.stageVideo && this.canPublish && this.pub !== null
    );
  }

  /**
   * A podcast stage member turns the camera on (only while the stage shows video): the camera
   * is published as a video m-line with source "camera" on the publish PC (the m-line of an
   * earlier camera is reused).
   */
  async startCamera() {
    if (!this.canStartStageCamera) throw new Error('the stage does not show video now');
    if (this.local.video) return;
    const pc = this.pub;
    const track = await getCamera();
    if (!this.canStartStageCamera || this.pub !== pc || this.local.video) {
      track.stop(); // left, demoted, the stage hid video, or a second click, while we asked
      return;
    }
    let transceiver = this.spareCameraTransceiver;
    this.spareCameraTransceiver = null;
    if (transceiver && !transceiver.stopped) {
      await transceiver.sender.replaceTrack(track);
      transceiver.direction = 'sendonly';
    } else {
      transceiver = pc.addTransceiver(track, { direction: 'sendonly', streams: [new MediaStream([track])] });
    }
    this.local.video = {
      kind: 'video',
      track,
      transceiver,
      mid: null,
      sid: null,
      muted: false,
      source: 'camera',
      name: 'camera',
    };
    this.localStream = new MediaStream([...(this.localStream?.getTracks() ?? []), track]);
    this.localTile.attach(this.localStream);
    this._localChanged();
    this._emit('participants');
    await this._negotiatePublish();
  }

  /** Turn the podcast camera off: the m-line goes inactive (unpublished) and is kept spare. */
  async stopCamera() {
    const entry = this.local.video;
    if (!entry) return;
    this.local.video = null;
    entry.track.stop();
    if (this.localStream) {
      this.localStream = new MediaStream(this.localStream.getTracks().filter((t) => t !== entry.track));
      this.localTile.attach(this.localStream);
    }
    this._localChanged();
    this._emit('participants');
    if (this.state !== 'joined' || !this.pub || this.pub.signalingState === 'closed') return;
    await entry.transceiver.sender.replaceTrack(null);
    entry.transceiver.direction = 'inactive';
    this.spareCameraTransceiver = entry.transceiver;
    await this._negotiatePublish();
  }

  /** `stage_settings`: follow the stage's video setting; our camera stops when it is hidden. */
  _onStageSettings(msg) {
    this.stageVideo = Boolean(msg.video);
    this.listenerSharing = Boolean(msg.listener_sharing);
    if (!this.stageVideo && this.local.video && this.kind === 'podcast') {
      this.stopCamera().catch((err) => this._error(err, 'camera'));
    }
    this._emit('stagevideo');
  }

  /** Publish a screen capture track as an extra video m-line with source "screen". */
  async startScreenShare(track) {
    if (this.state !== 'joined' || !this.pub || !this.canPublish || this.kind === 'podcast') {
      track.stop();
      throw new Error(this.state === 'joined' ? 'you may not share your screen now' : 'not in a room');
    }
    if (this.screen) await this.stopScreenShare();
    if ('contentHint' in track) track.contentHint = 'detail'; // sharp text over smooth motion
    let transceiver = this.spareScreenTransceiver;
    this.spareScreenTransceiver = null;
    if (transceiver && !transceiver.stopped) {
      await transceiver.sender.replaceTrack(track);
      if (track.readyState === 'ended' || this.state !== 'joined') {
        // Stopped while we waited: leave the m-line spare.
        await transceiver.sender.replaceTrack(null).catch(() => {});
        this.spareScreenTransceiver = transceiver;
        return;
      }
      transceiver.direction = 'sendonly';
    } else {
      transceiver = this.pub.addTransceiver(track, {
        direction: 'sendonly',
        streams: [new MediaStream([track])],
      });
    }
    const entry = {
      kind: 'video',
      track,
      transceiver,
      mid: null,
      sid: null,
      muted: false,
      source: 'screen',
      name: 'screen',
    };
    this.screen = entry;
    this.localScreenTile = new Tile({ sid: this.me.sid, name: this.me.name || this.name, local: true, screen: true });
    this.localScreenTile.since = Date.now();
    this.localScreenTile.attach(new MediaStream([track]));
    this.localTile.el.after(this.localScreenTile.el);
    this._localChanged();
    this._emit('screens');
    this._emit('participants');
    try {
      await this._negotiatePublish();
    } catch (err) {
      if (this.screen === entry) await this.stopScreenShare().catch(() => {});
      throw err;
    }
  }

  /** Stop our screen share: the m-line goes inactive and the publish PC renegotiates. */
  async stopScreenShare() {
    const entry = this.screen;
    if (!entry) return;
    this.screen = null;
    entry.track.stop();
    if (this.localScreenTile) this.localScreenTile.remove();
    this.localScreenTile = null;
    this._localChanged();
    this._emit('screens');
    this._emit('participants');
    if (this.state !== 'joined' || !this.pub || this.pub.signalingState === 'closed') return;
    await entry.transceiver.sender.replaceTrack(null);
    entry.transceiver.direction = 'inactive';
    this.spareScreenTransceiver = entry.transceiver;
    await this._negotiatePublish();
  }

  /** Every screen share in the room: {sid, tile, local, since}, oldest first. */
  screenShares() {
    const out = [];
    if (this.localScreenTile && this.me) {
      out.push({ sid: this.me.sid, tile: this.localScreenTile, local: true, since: this.localScreenTile.since });
    }
    for (const p of this.participants.values()) {
      if (p.screenTile) out.push({ sid: p.sid, tile: p.screenTile, local: false, since: p.screenTile.since });
    }
    return out.sort((a, b) => a.since - b.since);
  }

  // --- subscribing ---------------------------------------------------------------------

  _isScreenTrack(p, trackSid) {
    const info = p.tracks.get(trackSid);
    return Boolean(info && isScreenSource(info.source));
  }

  _onTrack(ev) {
    const mid = ev.transceiver ? ev.transceiver.mid : null;
    const info = mid !== null ? this.subMids.get(mid) : undefined;
    if (!info || (this.me && info.participant === this.me.sid)) return;
    const p = this._ensureParticipant(info.participant);
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
    for (const tr of this.sub.getTransceivers()) {
      if (tr.receiver.track !== track || !tr.mid) continue;
      const info = this.subMids.get(tr.mid);
      return Boolean(info && info.participant === p.sid);
    }
    return false;
  }

  /** Show a participant's streams: the camera tile, and a screen tile while they share. */
  _attach(p) {
    p.tile.attach(p.stream, this.onblocked);
    this._emit('media', { sid: p.sid });
    const sharing = p.screenStream.getTracks().length > 0;
    if (sharing && !p.screenTile) {
      p.screenTile = new Tile({ sid: p.sid, name: p.name || p.identity, screen: true });
      p.screenTile.since = Date.now();
      p.tile.el.after(p.screenTile.el);
      p.screenTile.attach(p.screenStream, this.onblocked);
      this._emit('screens');
      this._emit('participants');
    } else if (sharing) {
      p.screenTile.attach(p.screenStream, this.onblocked);
    } else if (p.screenTile) {
      p.screenTile.remove();
      p.screenTile = null;
      this._emit('screens');
      this._emit('participants');
    }
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

  /**
   * Make each participant's streams hold exactly the tracks the latest offer maps to them:
   * `stream` the microphone and camera, `screenStream` the screen share.
   */
  _reconcile() {
    if (!this.sub || this.sub.signalingState === 'closed') return;
    const wanted = new Map(); // participant sid -> {stream: [], screenStream: []}
    for (const tr of this.sub.getTransceivers()) {
      if (!tr.mid || tr.stopped) continue;
      const info = this.subMids.get(tr.mid);
      const dir = tr.currentDirection;
      if (!info || !(dir === 'recvonly' || dir === 'sendrecv')) continue;
      if (this.me && info.participant === this.me.sid) continue;
      const p = this._ensureParticipant(info.participant);
      const lists = wanted.get(p.sid) ?? { stream: [], screenStream: [] };
      lists[this._isScreenTrack(p, info.track) ? 'screenStream' : 'stream'].push(tr.receiver.track);
      wanted.set(p.sid, lists);
    }
    for (const p of this.participants.values()) {
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

  // --- room events -----------------------------------------------------------------------

  _log(msg) {
    const entry = { type: msg.type };
    if (typeof msg.participant === 'string') entry.participant = msg.participant;
    else if (msg.participant && msg.participant.sid) entry.participant = msg.participant.sid;
    if (typeof msg.track === 'string') entry.track = msg.track;
    else if (msg.track && msg.track.sid) entry.track = msg.track.sid;
    this.events.push(entry);
    if (this.events.length > EVENT_LOG_SIZE) this.events.splice(0, this.events.length - EVENT_LOG_SIZE);
  }

  _onEvent(msg) {
    this._log(msg);
    switch (msg.type) {
      case 'offer':
        this.subChain = this.subChain
          .then(() => this._handleOffer(msg))
          .catch((err) => this._error(err, 'subscribe offer'));
        break;
      case 'participant_joined':
        this._upsertParticipant(msg.participant);
        this.renderStatus();
        this._emit('participants');
        break;
      case 'participant_left':
        this._removeParticipant(msg.participant);
        this.renderStatus();
        this._emit('participants');
        break;
      case 'track_published': {
        if (this.me && msg.participant === this.me.sid) break;
        const p = this._ensureParticipant(msg.participant);
        p.tracks.set(msg.track.sid, msg.track);
        this._renderIndicators(p);
        // The track's source decides which of the participant's streams it joins: sort the
        // received tracks again, after any subscribe offer being processed.
        this.subChain = this.subChain
          .then(() => this._reconcile())
          .catch((err) => this._error(err, 'subscribe'));
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
          this._onOwnTrackMuted(msg); // a moderator muted us (`remote`)
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
        this._emit('participants');
        break;
      }
      case 'chat':
        this._emit('chat', { message: msg.message });
        break;
      case 'chat_history':
        this._emit('chat_history', { messages: msg.messages ?? [] });
        break;
      case 'reactions':
        this._emit('reactions', { reactions: msg.reactions ?? [] });
        break;
      case 'role_changed':
        this._onRoleChanged(msg);
        break;
      case 'room_ended':
        this._onRoomEnded(msg);
        break;
      case 'stage_settings':
        this._onStageSettings(msg);
        break;
      default:
        // Stage events (hands, audience, ...) and extensions' (whiteboard, files).
        this._emit('message', { msg });
    }
    this._emit('roomevent', { msg });
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
      screenStream: new MediaStream(),
      screenTile: null,
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
    if (p.screenTile) p.screenTile.setName(info.name || info.identity);
    for (const track of info.tracks ?? []) p.tracks.set(track.sid, track);
    this._renderIndicators(p);
    return p;
  }

  _removeParticipant(sid) {
    const p = this.participants.get(sid);
    if (!p) return;
    p.tile.remove();
    this.participants.delete(sid);
    if (p.screenTile) {
      p.screenTile.remove();
      this._emit('screens');
    }
  }

  _renderIndicators(p) {
    const tracks = [...p.tracks.values()].filter((t) => !isScreenSource(t.source));
    const audio = tracks.filter((t) => t.kind === 'audio');
    const video = tracks.filter((t) => t.kind === 'video');
    p.tile.setMuted({
      mic: audio.length > 0 && audio.every((t) => t.muted),
      cam: video.length > 0 && video.every((t) => t.muted),
    });
    this._emit('participants');
  }
}
