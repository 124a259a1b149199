// The publish side of a Session (session.js): the publish RTCPeerConnection, our local senders
// (microphone, camera, screen share), the publish offers, mutes, and stopping on a demotion.
//
// Negotiation (docs/protocol.md): we offer (sendonly camera + microphone), the server answers.
// Publish offers are processed strictly one at a time, in order (the camera and microphone,
// then a screen share or a device with no sender yet, each renegotiate the publish PC). The
// publish PC is made when we publish: a listener (no `canPublish`) never gets one.
//
// The Publisher holds the publish state; the Session exposes it read-only (`pub`, `local`,
// `screen`, `localStream`, `localScreenTile`, `mediaNote`) and emits the events.

import { PathWatchdog, Trickler, waitForGathering } from './rtc.js';
import { Tile } from './ui.js';
import { getCamera, getLocalMedia } from './devices.js';

const GATHER_CAP_MS = 3000;

// The camera as three simulcast encodings (RFC 8853; rids named as LiveKit's): quarter, half
// and full resolution, lowest first. The SFU forwards each subscriber the one its link and its
// tile can use, and pauses (dynacast, `publisher_layers`) the ones nobody uses.
export const CAMERA_ENCODINGS = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000, maxFramerate: 15 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

// VP8 temporal layers in each simulcast encoding (W3C webrtc-svc `scalabilityMode`): the SFU
// lowers a subscriber's frame rate (drops the upper temporal layers of `q`) before it pauses
// the video on a weak link. Only when the browser lists the mode for VP8.
export const CAMERA_SCALABILITY_MODE = 'L1T3';

/** True when this browser can encode VP8 with CAMERA_SCALABILITY_MODE (webrtc-svc §4). */
function temporalLayersSupported() {
  const caps = globalThis.RTCRtpSender?.getCapabilities?.('video');
  return Boolean(
    caps?.codecs?.some(
      (c) => c.mimeType.toLowerCase() === 'video/vp8' && (c.scalabilityModes || []).includes(CAMERA_SCALABILITY_MODE),
    ),
  );
}

// A screen share: one high-resolution, low-frame-rate encoding (slides and text stay sharp;
// LiveKit's `h1080fps15`-like preset, at a lower rate), and under congestion the browser keeps
// the resolution and lowers the frame rate (W3C webrtc-pc degradationPreference, as in
// Chromium; track.contentHint 'detail' asks the same of the encoder).
export const SCREEN_ENCODING = { maxFramerate: 10, maxBitrate: 2_000_000, scaleResolutionDownBy: 1 };
export const SCREEN_DEGRADATION = 'maintain-resolution';

/** Apply SCREEN_ENCODING and SCREEN_DEGRADATION to a screen share's sender. */
async function applyScreenParameters(sender) {
  const params = sender.getParameters();
  if (!params.encodings || params.encodings.length === 0) params.encodings = [{}];
  for (const enc of params.encodings) Object.assign(enc, SCREEN_ENCODING);
  params.degradationPreference = SCREEN_DEGRADATION;
  try {
    await sender.setParameters(params);
  } catch (err) {
    // a browser without degradationPreference: the encoding alone
    delete params.degradationPreference;
    await sender.setParameters(params).catch(() => console.warn('screen share parameters', err));
  }
}

/** addTransceiver init for a local track: the camera is simulcast, audio never is. */
function senderInit(track, streams, source) {
  const init = { direction: 'sendonly', streams };
  if (track.kind === 'video' && source === 'screen') {
    init.sendEncodings = [{ ...SCREEN_ENCODING }];
  }
  if (track.kind === 'video' && source === 'camera') {
    const temporal = temporalLayersSupported();
    init.sendEncodings = CAMERA_ENCODINGS.map((e) =>
      temporal ? { ...e, scalabilityMode: CAMERA_SCALABILITY_MODE } : { ...e },
    );
  }
  return init;
}

export class Publisher {
  /** @param {import('./session.js').Session} session  the Session this publishes for */
  constructor(session) {
    this.s = session;
    this.pc = null; // the publish RTCPeerConnection, null until we publish
    this.trickle = null;
    this.chain = Promise.resolve();
    // kind -> {kind, track, transceiver, mid, sid, muted, source, name}
    this.local = { audio: null, video: null };
    this.screen = null; // our screen share while it lasts, an entry as in `local`
    this.localStream = null;
    this.localScreenTile = null;
    this.spareScreenTransceiver = null; // the m-line of an ended screen share, reused next time
    this.spareCameraTransceiver = null; // the m-line of a stopped podcast camera, likewise
    this.mediaNote = '';
    this.watchdog = null; // PathWatchdog of the publish PC
    this.restarts = 0; // media restarts of the publish side
  }

  /** The publish PC, made on first use (after `joined`, or when a listener is promoted). */
  open() {
    const s = this.s;
    const pc = new RTCPeerConnection(s.rtcConfig);
    this.pc = pc;
    this.trickle = new Trickler(pc, 'publish', (msg) => s.signal.send(msg));
    pc.addEventListener('connectionstatechange', () => s.renderStatus());
    this.watchdog = new PathWatchdog(pc, () => {
      if (this.pc === pc) this.restart(true);
    });
    return pc;
  }

  /**
   * Media path failure (docs/protocol.md, "Media restart"): make a new publish PC, add the
   * same local tracks and offer them with their track sids, which the server keeps (the
   * other participants see no change). `tellServer`: we found the path dead ourselves, so
   * `restart_media` goes first; on the server's `media_restart` event it has already acted.
   */
  restart(tellServer) {
    const run = this.chain.then(() => this._restart(tellServer));
    this.chain = run.catch((err) => this.s._error(err, 'media restart'));
    return run;
  }

  async _restart(tellServer) {
    const s = this.s;
    const old = this.pc;
    if (!old || s.state !== 'joined') return;
    this.restarts += 1;
    const entries = this.sending();
    this.pc = null;
    if (this.watchdog) this.watchdog.stop();
    old.close();
    const pc = this.open();
    for (const entry of entries) {
      const stream = entry === this.screen ? new MediaStream([entry.track]) : this.localStream;
      entry.transceiver = pc.addTransceiver(
        entry.track,
        senderInit(entry.track, stream ? [stream] : [], entry.source),
      );
      entry.mid = null;
      if (entry.source === 'screen') await applyScreenParameters(entry.transceiver.sender);
    }
    this.spareScreenTransceiver = null; // they belonged to the closed PC
    this.spareCameraTransceiver = null;
    s.renderStatus();
    if (tellServer) await s.signal.request({ type: 'restart_media', side: 'publish' });
    if (entries.length) await this._offer();
  }

  /**
   * Capture the microphone and camera (only the microphone in a podcast room) and publish.
   * `startMuted`: publish the microphone muted (a listener brought on stage unmutes when ready):
   * the track is disabled and the offer says `muted`, so the server's Producer starts paused
   * and everyone sees it muted.
   */
  async publish({ startMuted = false } = {}) {
    const s = this.s;
    const pc = this.pc ?? this.open();
    const audioOnly = s.kind === 'podcast';
    let stream;
    try {
      stream = await getLocalMedia({ audioOnly });
    } catch (err) {
      this.mediaNote = audioOnly ? 'no microphone: listening only' : 'no camera or microphone: receiving only';
      s._error(err, audioOnly ? 'microphone' : 'camera/microphone');
      return;
    }
    // Left, ended, or demoted (and maybe promoted again: a new PC) while the browser asked.
    if (s.state !== 'joined' || this.pc !== pc) {
      for (const track of stream.getTracks()) track.stop();
      return;
    }
    this.mediaNote = '';
    this.localStream = stream;
    s.localTile.attach(stream);
    // Tracks that start disabled, so the first publish offer already says muted: the Session's
    // `initialMutes` (the pre-join screen's "join with microphone / camera off", or the mutes
    // kept across a rejoin) and a listener brought on stage (unmutes when ready).
    const muted = (kind) => Boolean(s.initialMutes[kind] || (startMuted && kind === 'audio'));
    for (const track of stream.getTracks()) {
      if (muted(track.kind)) track.enabled = false;
      this._addLocalSender(track);
    }
    if (muted('audio') || muted('video')) {
      s.localTile.setMuted({ mic: muted('audio'), cam: muted('video') });
    }
    s._localChanged();
    try {
      await this.negotiate();
    } catch {
      // _offer() reported it.
    }
  }

  _addLocalSender(track) {
    const source = track.kind === 'audio' ? 'microphone' : 'camera';
    const transceiver = this.pc.addTransceiver(track, senderInit(track, [this.localStream], source));
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

  /**
   * Dynacast (`publisher_layers`): send only the simulcast encodings whose rid is in `active`
   * for our track `sid` (RTCRtpSender.setParameters, W3C WebRTC §5.2); the others are paused.
   */
  async setActiveLayers(sid, active) {
    const entry = this.sending().find((e) => e.sid === sid);
    if (!entry || !entry.transceiver) return;
    const sender = entry.transceiver.sender;
    const params = sender.getParameters();
    if (!params.encodings || params.encodings.length < 2) return;
    let changed = false;
    for (const enc of params.encodings) {
      const on = active.includes(enc.rid);
      if (enc.active !== on) {
        enc.active = on;
        changed = true;
      }
    }
    if (changed) await sender.setParameters(params);
  }

  /** The local entries the publish PC sends: microphone, camera, screen share. */
  sending() {
    return [this.local.audio, this.local.video, this.screen].filter((e) => e !== null);
  }

  /** Queue one publish offer/answer round (at most one is outstanding, see the protocol). */
  negotiate() {
    const run = this.chain.then(() => this._offer());
    this.chain = run.catch(() => {});
    return run;
  }

  async _offer() {
    const s = this.s;
    const pc = this.pc;
    if (s.state !== 'joined' || !pc || pc.signalingState === 'closed') return;
    // A demotion closes the PC (and a promotion makes another) at any await below.
    const current = () => s.state === 'joined' && this.pc === pc;
    try {
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      const entries = this.sending();
      const sentMuted = new Map();
      const tracks = [];
      for (const entry of entries) {
        entry.mid = entry.transceiver.mid;
        if (entry.mid === null) continue;
        sentMuted.set(entry, entry.muted);
        const track = {
          mid: entry.mid,
          kind: entry.kind,
          source: entry.source,
          name: entry.name,
          muted: entry.muted,
        };
        if (entry.sid) track.sid = entry.sid; // kept by the server across a media restart
        tracks.push(track);
      }
      await waitForGathering(pc, GATHER_CAP_MS);
      if (!current()) return;
      const sdp = pc.localDescription.sdp;
      const reply = s.signal.request({ type: 'offer', sdp, tracks });
      this.trickle.release(sdp);
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
      s._localChanged();
      s.renderStatus();
    } catch (err) {
      if (!current()) return; // a demotion's closed PC, not an error worth a red line
      s._error(err, 'publish');
      throw err;
    }
  }

  /** Demoted: the server already closed our producers and publish transport; stop capturing
   * (screen share included) and drop the publish PC (a later promotion makes a new one). */
  stop() {
    const s = this.s;
    if (this.watchdog) this.watchdog.stop();
    if (this.pc) this.pc.close();
    this.pc = null;
    this.trickle = null;
    this.chain = Promise.resolve();
    if (this.localStream) {
      for (const track of this.localStream.getTracks()) track.stop();
    }
    this.localStream = null;
    this.local = { audio: null, video: null };
    if (s.localTile) {
      s.localTile.attach(null);
      s.localTile.setMuted({ mic: false, cam: false });
    }
    const sharing = this.screen !== null;
    if (this.screen) this.screen.track.stop();
    this.screen = null;
    this.spareScreenTransceiver = null; // it belonged to the closed PC
    this.spareCameraTransceiver = null;
    if (this.localScreenTile) this.localScreenTile.remove();
    this.localScreenTile = null;
    s._localChanged();
    if (sharing) s._emit('screens');
    s._emit('participants');
    s.renderStatus();
  }

  /** The session ends: close the publish PC and stop every capture (the PC is not dropped). */
  closeForTeardown() {
    if (this.watchdog) this.watchdog.stop();
    if (this.pc) this.pc.close();
    if (this.localStream) {
      for (const track of this.localStream.getTracks()) track.stop();
    }
    if (this.screen) this.screen.track.stop();
    this.screen = null;
  }

  /** The session ends: remove our screen share's tile. */
  removeScreenTile() {
    if (this.localScreenTile) this.localScreenTile.remove();
    this.localScreenTile = null;
  }

  /** A moderator muted one of our tracks (`remote`): show it muted; only we unmute. */
  onOwnTrackMuted(msg) {
    const s = this.s;
    const entry = this.sending().find((e) => e.sid === msg.track);
    if (!entry || entry.muted === msg.muted) return;
    entry.muted = msg.muted;
    entry.track.enabled = !msg.muted;
    if (entry !== this.screen) {
      s.localTile.setMuted(entry.kind === 'audio' ? { mic: msg.muted } : { cam: msg.muted });
    }
    s._localChanged();
    s._emit('participants');
  }

  /**
   * Mute or unmute one local track kind ('audio' | 'video'); returns the new muted state.
   * The microphone is muted with `track.enabled` (it keeps capturing: the "you are muted" hint
   * listens to it). The conference camera is really stopped (see `_stopCapture`): the
   * capture ends (the camera light goes off) and unmuting captures again.
   */
  setMuted(kind, muted) {
    const s = this.s;
    const entry = this.local[kind];
    if (!entry) return null;
    entry.muted = muted;
    if (kind === 'video' && entry.source === 'camera' && s.kind !== 'podcast') {
      this._cameraCapture(entry, muted);
    } else {
      entry.track.enabled = !muted;
    }
    s.localTile.setMuted(kind === 'audio' ? { mic: muted } : { cam: muted });
    if (entry.sid) this._sendMute(entry);
    s._localChanged();
    s._emit('participants');
    return muted;
  }

  /**
   * "Stop camera" / "Start camera" in a conference: stop the capture (MediaStreamTrack.stop,
   * the sender sends nothing: RTCRtpSender.replaceTrack(null), W3C webrtc-pc) or capture the
   * camera again (getUserMedia, replaceTrack). No renegotiation: the m-line and the server's
   * Producer stay. Clicks while a capture is pending are queued (the last one wins).
   */
  _cameraCapture(entry, muted) {
    const run = (entry.capture ?? Promise.resolve()).then(() =>
      muted ? this._stopCapture(entry) : this._restartCapture(entry),
    );
    entry.capture = run.catch((err) => this.s._error(err, muted ? 'stop camera' : 'start camera'));
  }

  async _stopCapture(entry) {
    if (!entry.muted || entry.stopped || this.local.video !== entry) return;
    entry.stopped = true;
    entry.track.stop();
    this._showLocal();
    if (this.pc && this.pc.signalingState !== 'closed') await entry.transceiver.sender.replaceTrack(null);
  }

  async _restartCapture(entry) {
    const s = this.s;
    if (entry.muted || !entry.stopped || this.local.video !== entry) return;
    let track;
    try {
      track = await getCamera();
    } catch (err) {
      // No camera now (unplugged, refused): it stays off.
      entry.muted = true;
      s.localTile.setMuted({ cam: true });
      if (entry.sid) this._sendMute(entry);
      s._localChanged();
      s._emit('participants');
      throw err;
    }
    // Left, demoted, or stopped again while the browser asked.
    if (s.state !== 'joined' || this.local.video !== entry || entry.muted || !this.pc) {
      track.stop();
      return;
    }
    await entry.transceiver.sender.replaceTrack(track);
    entry.track = track;
    entry.stopped = false;
    this._showLocal();
    s._localChanged();
  }

  /** Rebuild the local stream from the live microphone and camera tracks and show it. */
  _showLocal() {
    const s = this.s;
    const tracks = [this.local.audio, this.local.video]
      .filter((e) => e !== null && e.track.readyState !== 'ended')
      .map((e) => e.track);
    this.localStream = new MediaStream(tracks);
    if (s.localTile) s.localTile.attach(this.localStream);
  }

  _sendMute(entry) {
    this.s.signal
      .request({ type: 'mute', track: entry.sid, muted: entry.muted })
      .catch((err) => this.s._error(err, 'mute'));
  }

  /** Session.replaceLocalTrack: RTCRtpSender.replaceTrack, or a new sender and renegotiation. */
  async replaceLocalTrack(track) {
    const s = this.s;
    if (s.state !== 'joined' || !this.pc || !s.canPublish) {
      track.stop();
      throw new Error(s.state === 'joined' ? 'you may not publish in this room now' : 'not in a room');
    }
    if (s.kind === 'podcast' && track.kind === 'video') {
      track.stop();
      throw new Error('a podcast room has no video');
    }
    const entry = this.local[track.kind];
    if (!entry) {
      this.localStream = new MediaStream([...(this.localStream?.getTracks() ?? []), track]);
      this.mediaNote = '';
      this._addLocalSender(track);
      s.localTile.attach(this.localStream);
      s._localChanged();
      await this.negotiate();
      return;
    }
    await entry.transceiver.sender.replaceTrack(track);
    track.enabled = !entry.muted;
    const old = entry.track;
    entry.track = track;
    old.stop();
    const others = this.localStream ? this.localStream.getTracks().filter((t) => t !== old) : [];
    this.localStream = new MediaStream([...others, track]);
    s.localTile.attach(this.localStream);
    s._localChanged();
  }

  /** Whether we may turn a camera on now: a podcast stage member while the stage shows video. */
  get canStartStageCamera() {
    const s = this.s;
    return s.state === 'joined' && s.kind === 'podcast' && s.stageVideo && s.canPublish && this.pc !== null;
  }

  /** Session.startCamera: the podcast camera as a video m-line with source "camera". */
  async startCamera() {
    const s = this.s;
    if (!this.canStartStageCamera) throw new Error('the stage does not show video now');
    if (this.local.video) return;
    const pc = this.pc;
    const track = await getCamera();
    if (!this.canStartStageCamera || this.pc !== pc || this.local.video) {
      track.stop(); // left, demoted, the stage hid video, or a second click, while we asked
      return;
    }
    let transceiver = this.spareCameraTransceiver;
    this.spareCameraTransceiver = null;
    if (transceiver && !transceiver.stopped) {
      await transceiver.sender.replaceTrack(track);
      transceiver.direction = 'sendonly';
    } else {
      transceiver = pc.addTransceiver(track, senderInit(track, [new MediaStream([track])], 'camera'));
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
    s.localTile.attach(this.localStream);
    s._localChanged();
    s._emit('participants');
    await this.negotiate();
  }

  /** Turn the podcast camera off: the m-line goes inactive (unpublished) and is kept spare. */
  async stopCamera() {
    const s = this.s;
    const entry = this.local.video;
    if (!entry) return;
    this.local.video = null;
    entry.track.stop();
    if (this.localStream) {
      this.localStream = new MediaStream(this.localStream.getTracks().filter((t) => t !== entry.track));
      s.localTile.attach(this.localStream);
    }
    s._localChanged();
    s._emit('participants');
    if (s.state !== 'joined' || !this.pc || this.pc.signalingState === 'closed') return;
    await entry.transceiver.sender.replaceTrack(null);
    entry.transceiver.direction = 'inactive';
    this.spareCameraTransceiver = entry.transceiver;
    await this.negotiate();
  }

  /** Publish a screen capture track as an extra video m-line with source "screen". */
  async startScreenShare(track) {
    const s = this.s;
    if (s.state !== 'joined' || !this.pc || !s.canPublish || s.kind === 'podcast') {
      track.stop();
      throw new Error(s.state === 'joined' ? 'you may not share your screen now' : 'not in a room');
    }
    if (this.screen) await this.stopScreenShare();
    if ('contentHint' in track) track.contentHint = 'detail'; // sharp text over smooth motion
    let transceiver = this.spareScreenTransceiver;
    this.spareScreenTransceiver = null;
    if (transceiver && !transceiver.stopped) {
      await transceiver.sender.replaceTrack(track);
      if (track.readyState === 'ended' || s.state !== 'joined') {
        // Stopped while we waited: leave the m-line spare.
        await transceiver.sender.replaceTrack(null).catch(() => {});
        this.spareScreenTransceiver = transceiver;
        return;
      }
      transceiver.direction = 'sendonly';
    } else {
      transceiver = this.pc.addTransceiver(track, senderInit(track, [new MediaStream([track])], 'screen'));
    }
    await applyScreenParameters(transceiver.sender);
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
    this.localScreenTile = new Tile({ sid: s.me.sid, name: s.me.name || s.name, local: true, screen: true });
    this.localScreenTile.since = Date.now();
    this.localScreenTile.attach(new MediaStream([track]));
    s.localTile.el.after(this.localScreenTile.el);
    s._localChanged();
    s._emit('screens');
    s._emit('participants');
    try {
      await this.negotiate();
    } catch (err) {
      if (this.screen === entry) await this.stopScreenShare().catch(() => {});
      throw err;
    }
  }

  /** Stop our screen share: the m-line goes inactive and the publish PC renegotiates. */
  async stopScreenShare() {
    const s = this.s;
    const entry = this.screen;
    if (!entry) return;
    this.screen = null;
    entry.track.stop();
    if (this.localScreenTile) this.localScreenTile.remove();
    this.localScreenTile = null;
    s._localChanged();
    s._emit('screens');
    s._emit('participants');
    if (s.state !== 'joined' || !this.pc || this.pc.signalingState === 'closed') return;
    await entry.transceiver.sender.replaceTrack(null);
    entry.transceiver.direction = 'inactive';
    this.spareScreenTransceiver = entry.transceiver;
    await this.negotiate();
  }
}
