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
//   'connection'    the signaling socket dropped or came back (`reconnecting` property)
//
// Roles (docs/protocol.md, "Podcast stage"): `joined.permissions` and `role_changed` carry our
// live grants. Without `canPublish` (a podcast listener, a conference token without the grant)
// the Session neither captures nor makes a publish PC; a promotion captures and publishes on
// the same WebSocket session (a new publish PC), a demotion stops the capture and closes it
// (the server has already closed our producers). Podcast rooms publish audio only, except
// that stage members may turn their camera on while the stage shows video (`stage_settings`,
// `joined.stage_video`: startCamera/stopCamera); it stops when the stage hides video again.
//
// Staying connected (docs/protocol.md "Resume"): when the WebSocket drops without `leave` (and
// the server did not remove us), the Session shows "Reconnecting…" and retries with exponential
// backoff and full jitter. A new socket sends `resume` with `joined.resume_token` and the last
// `seq` read: the server replays what we missed and the same peer connections go on (media
// was never interrupted). When the server no longer holds the session (`resume_failed`, e.g.
// after a restart) the Session ends with `rejoin` set: app.js starts a new Session with the
// same room token (same identity), which retries its join the same way (`reconnecting`).
// A `reconnect` event (the media worker holding us died, `sfu serve --workers N`) ends the
// Session the same way at once, before the socket closes: the new Session joins right away.
// Clusters (docs/cluster.md): a `redirect` (the reply to `join` from a full or draining node,
// or a draining node's event) ends the Session with `redirect` set ({url, reason}); app.js
// follows it by loading the page from that node (the CSP allows sockets to this origin only).
//
// One file, one job: this Session is the coordinator (signaling, lifecycle, roles, events);
// the publish side is publisher.js, the subscribe side subscriber.js, the other participants
// roster.js. Their state is exposed here read-only under the names it always had.

import { SignalClient, SignalError, PROTOCOL_VERSION } from './signal.js';
import { Tile } from './ui.js';
import { Publisher } from './publisher.js';
import { Subscriber } from './subscriber.js';
import { Roster, isScreenSource } from './roster.js';
import { closeSentence, describeError as sentenceOf } from './errors.js';

export { isScreenSource };

const PING_INTERVAL_MS = 10000;
// A socket that answers no ping within this long is taken for dead (a network change can
// leave a socket that never closes by itself): the Session reconnects.
const PING_TIMEOUT_MS = 8000;
// Reconnection backoff: attempt n waits uniform(0, min(CAP, BASE * 2^n)) ms (full jitter; the
// first retry goes at once); past GIVE_UP the session ends as disconnected.
const RECONNECT_BASE_MS = 250;
const RECONNECT_CAP_MS = 4000;
const RECONNECT_GIVE_UP_MS = 120000;
const RESUME_TIMEOUT_MS = 5000;
// Join errors after which retrying cannot help.
const FINAL_JOIN_ERRORS = new Set(['unauthorized', 'forbidden', 'unsupported_version', 'bad_request']);

/** Milliseconds to wait before reconnection attempt `attempt` (0: none). */
export function backoffMs(attempt, random = Math.random) {
  if (attempt <= 0) return 0;
  return random() * Math.min(RECONNECT_CAP_MS, RECONNECT_BASE_MS * 2 ** attempt);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function describeError(err) {
  if (err instanceof SignalError) return err.message;
  if (err && err.name) return `${err.name}: ${err.message}`;
  return String(err);
}

const EVENT_LOG_SIZE = 200;

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
  constructor({ room, name, token, roomLabel, kind, grid, status, onchange, onblocked, reconnecting, mutes }) {
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
    this.publisher = new Publisher(this); // pub, local, screen, localStream, ...
    this.subscriber = new Subscriber(this); // sub, subMids, subOffers
    this.roster = new Roster(this); // participants, activeSpeakers, heardSpeaking
    this.me = null; // ParticipantInfo of this participant
    this.localTile = null;
    this.stageVideo = false; // a podcast stage shows its video to listeners (`stage_settings`)
    this.listenerSharing = false; // podcast listeners may draw and share files (`stage_settings`)
    this.lastError = null;
    this.pingTimer = null;
    this.earlyEvents = null; // events received before the `joined` reply (see start())
    this.events = []; // the last server events, {type, participant, track}, for tests
    // Our live role and grants (`joined`, `role_changed`); null before `joined`.
    this.role = null;
    this.permissions = null;
    this.endedBy = undefined; // set (a sid or null) when the host ended the room
    this.rtcConfig = null;
    // Staying connected.
    this.reconnecting = Boolean(reconnecting); // the socket is down and we are retrying
    this.resumeToken = null; // `joined.resume_token`
    this.removedReason = null; // the server removed us (`not_joined` with a reason)
    this.rejoin = false; // ended because the server forgot the session: join again
    this.reconnects = []; // {outcome: 'resumed'|'rejoined', ms}, for tests and the status
    this.initialMutes = mutes ?? {}; // kind -> true: publish that kind muted (after a rejoin)
    this.redirect = null; // {url, reason}: another cluster node should take us (`redirect`)
  }

  // --- state of the parts, read-only -------------------------------------------------------

  /** The publish RTCPeerConnection, null when we do not publish. */
  get pub() {
    return this.publisher.pc;
  }

  /** kind ('audio' | 'video') -> {kind, track, transceiver, mid, sid, muted, source, name}. */
  get local() {
    return this.publisher.local;
  }

  /** Our screen share while it lasts, an entry as in `local`; else null. */
  get screen() {
    return this.publisher.screen;
  }

  /** The MediaStream of our microphone and camera, null before capture. */
  get localStream() {
    return this.publisher.localStream;
  }

  get localScreenTile() {
    return this.publisher.localScreenTile;
  }

  /** Why we send no media ('no microphone: listening only'), or ''. */
  get mediaNote() {
    return this.publisher.mediaNote;
  }

  /** The subscribe RTCPeerConnection, made on `joined`. */
  get sub() {
    return this.subscriber.pc;
  }

  /** mid -> {participant, track, kind} from the latest subscribe offer. */
  get subMids() {
    return this.subscriber.mids;
  }

  /** How many subscribe offers we answered. */
  get subOffers() {
    return this.subscriber.offers;
  }

  /** sid -> {sid, identity, name, tracks: Map, stream, tile, screenStream, screenTile}. */
  get participants() {
    return this.roster.participants;
  }

  /** The last active_speakers list, loudest first. */
  get activeSpeakers() {
    return this.roster.activeSpeakers;
  }

  /** The sids ever reported as active speakers. */
  get heardSpeaking() {
    return this.roster.heardSpeaking;
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
    this.status(sentenceOf(err), true); // a sentence (errors.js); the console has the code
  }

  renderStatus() {
    if (this.state !== 'joined') return;
    if (this.reconnecting) {
      this.status(`Reconnecting to room ${this.roomLabel}…`);
      return;
    }
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
    return this.roster.nameOf(sid);
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
      // `waiting` (a waiting room) comes before `joined` and is for the page at once.
      if (this.earlyEvents !== null && msg.type !== 'waiting') this.earlyEvents.push(msg);
      else this._onEvent(msg);
    };
    this.signal.onerror = (err) => {
      if (err.reason) this.removedReason = err.reason;
      if (this.state !== 'ended') this._error(err);
    };
    this.signal.onclose = (ev) => {
      if (['left', 'leaving', 'failed', 'ended'].includes(this.state)) return;
      if (this.reconnecting) return; // a failed attempt: the retry loop goes on
      // 4001: our session was resumed on another socket (another tab took it over).
      if (this.state === 'joined' && !this.removedReason && ev.code !== 4001 && ev.reason !== 'removed') {
        this._reconnect();
        return;
      }
      this._teardown();
      this._setState('disconnected');
      this.status(closeSentence(ev.code, ev.reason), true);
    };
    const startedAt = performance.now();
    let joined;
    for (let attempt = 0; ; attempt += 1) {
      try {
        joined = await this._connectAndJoin();
        break;
      } catch (err) {
        const final = !(err instanceof SignalError) || FINAL_JOIN_ERRORS.has(err.code);
        const late = performance.now() - startedAt > RECONNECT_GIVE_UP_MS;
        if (!this.reconnecting || final || late || this.state === 'left') {
          this.reconnecting = false;
          this.joinError = err; // err.reason says why a join was refused (waitingroom.js)
          this._setState('failed');
          this._error(err, this.state === 'joining' ? 'join' : 'connect');
          this.signal.close();
          throw err;
        }
        this.signal.close();
        this._showReconnecting();
        await sleep(backoffMs(attempt + 1));
      }
    }
    if (joined.type === 'redirect') {
      this._onRedirect(joined);
      return;
    }
    if (this.reconnecting) {
      this.reconnecting = false;
      this.reconnects.push({ outcome: 'rejoined', ms: Math.round(performance.now() - startedAt) });
      this._emit('connection');
    }
    this._onJoined(joined);
    const early = this.earlyEvents;
    this.earlyEvents = null;
    for (const msg of early) this._onEvent(msg);
    if (this.state !== 'joined') return; // the room ended (or we left) meanwhile
    this.pingTimer = setInterval(() => this._ping(), PING_INTERVAL_MS);
    if (this.canPublish) await this.publisher.publish();
  }

  /** Open a socket and send `join`; resolves with `joined` (rejects with a SignalError). */
  async _connectAndJoin() {
    this._setState('connecting');
    if (this.reconnecting) this._showReconnecting();
    await this.signal.connect();
    this._setState('joining');
    const join = { type: 'join', v: PROTOCOL_VERSION, room: this.room, name: this.name };
    if (this.token) join.token = this.token;
    this.earlyEvents = [];
    return this.signal.request(join);
  }

  _showReconnecting() {
    this.status(`Reconnecting to room ${this.roomLabel}…`);
    this._emit('connection');
  }

  /** Keepalive: a ping without a pong in PING_TIMEOUT_MS means a dead socket. */
  _ping() {
    if (this.state !== 'joined' || this.reconnecting || !this.signal.isOpen) return;
    const ws = this.signal.ws;
    this.signal.request({ type: 'ping' }, PING_TIMEOUT_MS).catch((err) => {
      if (err.code !== 'timeout' || this.signal.ws !== ws) return;
      if (this.state !== 'joined' || this.reconnecting) return;
      console.warn('signaling: no pong, reconnecting');
      this.signal.abandon();
      this._reconnect();
    });
  }

  /** The socket dropped: resume on a new one, retrying with backoff; see the file comment. */
  async _reconnect() {
    this.reconnecting = true;
    this.signal.holdPending = false; // the resume request itself is not held
    this._showReconnecting();
    this.onchange(this);
    const startedAt = performance.now();
    for (let attempt = 0; performance.now() - startedAt < RECONNECT_GIVE_UP_MS; attempt += 1) {
      await sleep(backoffMs(attempt));
      if (this.state !== 'joined') return; // left meanwhile
      try {
        await this.signal.connect();
      } catch {
        continue; // the server is unreachable: try again later
      }
      if (this.state !== 'joined') {
        this.signal.close(); // left while the socket opened
        return;
      }
      let resumed;
      try {
        if (!this.resumeToken) throw new SignalError('resume_failed', 'no resume token');
        resumed = await this.signal.request(
          { type: 'resume', token: this.resumeToken, last_seq: this.signal.lastSeq },
          RESUME_TIMEOUT_MS,
        );
      } catch (err) {
        if (err instanceof SignalError && err.code === 'resume_failed') {
          // The server forgot us (restart, grace period over): app.js joins again.
          this.rejoin = true;
          this.reconnecting = false;
          this.signal.rejectPending(err);
          this._teardown();
          this._setState('disconnected');
          return;
        }
        continue; // the socket dropped again, or no reply: try again
      }
      this._onResumed(resumed, performance.now() - startedAt);
      return;
    }
    this.reconnecting = false;
    this._teardown();
    this._setState('disconnected');
    this.status('Disconnected from the server: could not reconnect.', true);
  }

  /** `resumed`: the replayed messages were handled; the same peer connections go on. */
  _onResumed(resumed, ms) {
    this.reconnecting = false;
    this.signal.holdPending = true;
    this.signal.resendPending();
    const iceServers = resumed.ice_servers ?? [];
    this.rtcConfig = { ...this.rtcConfig, iceServers };
    for (const pc of [this.pub, this.sub]) {
      if (!pc) continue;
      try {
        pc.setConfiguration({ ...pc.getConfiguration(), iceServers }); // fresh TURN credentials
      } catch (err) {
        console.warn('setConfiguration', err);
      }
    }
    this.reconnects.push({ outcome: 'resumed', ms: Math.round(ms) });
    this._emit('connection');
    this.onchange(this);
    this.renderStatus();
  }

  _onJoined(joined) {
    this.me = joined.participant;
    this.resumeToken = joined.resume_token ?? null;
    this.signal.holdPending = Boolean(this.resumeToken);
    this.roomKind = joined.kind ?? this.roomKind ?? 'conference';
    this.role = joined.role ?? null;
    this.permissions = joined.permissions ?? null;
    this.rtcConfig = { iceServers: joined.ice_servers ?? [] };
    this.stageVideo = Boolean(joined.stage_video);
    // The publish PC is made when we publish (Publisher.open): a listener never gets one.
    this.subscriber.open();

    this.localTile = new Tile({ sid: this.me.sid, name: this.me.name || this.name, local: true });
    this.grid.prepend(this.localTile.el);
    for (const info of joined.participants) this.roster.upsert(info);
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
    this.publisher.closeForTeardown();
    this.subscriber.close();
    this.roster.clear();
    if (this.localTile) this.localTile.remove();
    this.publisher.removeScreenTile();
    if (this.signal) this.signal.close();
    this._emit('participants');
    this._emit('screens');
  }

  // --- publishing (publisher.js) -------------------------------------------------------

  /** `role_changed`: publish on this session when promoted, stop when demoted. */
  _onRoleChanged(msg) {
    const could = this.canPublish;
    this.role = msg.role ?? this.role;
    this.permissions = msg.permissions ?? this.permissions;
    if (this.me) this.me = { ...this.me, role: this.role };
    if (!could && this.canPublish) {
      // A podcast listener brought on stage starts muted and unmutes when ready.
      this.publisher.publish({ startMuted: this.kind === 'podcast' });
    } else if (could && !this.canPublish) {
      this.publisher.stop();
    }
    this.onchange(this);
    this._emit('role');
    this._emit('participants');
  }

  /** `room_ended`: the host closed the room; the server disconnects us next. */
  _onRoomEnded(msg) {
    this.endedBy = msg.by ?? null;
    this._teardown();
    this._setState('ended');
    this.status(`Room ${this.roomLabel} has ended.`);
  }

  /**
   * `reconnect` (docs/protocol.md): the media worker holding us died and our session is over
   * (a `resume` would fail). End now with `rejoin` set, without waiting for the socket's close
   * (code 1012), a backoff or a doomed `resume`: app.js joins again at once with the same room
   * token, publishing the same kinds with the same mutes (the `resume_failed` path).
   */
  _onReconnectEvent() {
    if (this.state !== 'joined') return;
    this.rejoin = true;
    this._abandon(new SignalError('resume_failed', 'the media worker was lost'));
  }

  /**
   * Give this socket up for good: pending requests fail with `error`, its close event is not
   * ours any more (no resume attempt), media is torn down and the state is `disconnected`.
   */
  _abandon(error) {
    this.reconnecting = false;
    this.signal.rejectPending(error);
    this.signal.abandon();
    this._teardown();
    this._setState('disconnected');
  }

  /**
   * `redirect` (docs/protocol.md, clusters): this node is full or draining. As the reply to
   * `join` nothing was created; as an event the server removed us and closes the socket (1012)
   * next. End now with `redirect` set ({url, reason}); app.js follows it.
   */
  _onRedirect(msg) {
    this.redirect = { url: String(msg.url ?? ''), reason: msg.reason ?? null };
    this.earlyEvents = null;
    this._abandon(new SignalError('closed', 'redirected to another node'));
    this._emit('connection');
  }

  /** Mute or unmute one local track kind ('audio' | 'video'); returns the new muted state. */
  setMuted(kind, muted) {
    return this.publisher.setMuted(kind, muted);
  }

  /**
   * Send `track` (from another microphone or camera) instead of the current one of its kind:
   * RTCRtpSender.replaceTrack, no renegotiation. The old track is stopped. Without a sender of
   * that kind yet (joined with no camera, say), one is added and the publish PC renegotiates.
   */
  replaceLocalTrack(track) {
    return this.publisher.replaceLocalTrack(track);
  }

  /** Whether we may turn a camera on now: a podcast stage member while the stage shows video. */
  get canStartStageCamera() {
    return this.publisher.canStartStageCamera;
  }

  /**
   * A podcast stage member turns the camera on (only while the stage shows video): the camera
   * is published as a video m-line with source "camera" on the publish PC (the m-line of an
   * earlier camera is reused).
   */
  startCamera() {
    return this.publisher.startCamera();
  }

  /** Turn the podcast camera off: the m-line goes inactive (unpublished) and is kept spare. */
  stopCamera() {
    return this.publisher.stopCamera();
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
  startScreenShare(track) {
    return this.publisher.startScreenShare(track);
  }

  /** Stop our screen share: the m-line goes inactive and the publish PC renegotiates. */
  stopScreenShare() {
    return this.publisher.stopScreenShare();
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
        this.subscriber.queueOffer(msg);
        break;
      case 'media_restart': // the server replaced a failed transport (publisher.js, subscriber.js)
        if (msg.side === 'publish') this.publisher.restart(false);
        else this.subscriber.restart(false);
        break;
      case 'participant_joined':
        this.roster.upsert(msg.participant);
        this.renderStatus();
        this._emit('participants');
        break;
      case 'participant_left':
        this.roster.remove(msg.participant);
        this.renderStatus();
        this._emit('participants');
        break;
      case 'track_published':
        if (this.roster.onTrackPublished(msg)) this.subscriber.queueReconcile();
        break;
      case 'track_unpublished':
        this.roster.onTrackUnpublished(msg);
        break;
      case 'track_muted':
        if (this.me && msg.participant === this.me.sid) {
          this.publisher.onOwnTrackMuted(msg); // a moderator muted us (`remote`)
        } else {
          this.roster.onTrackMuted(msg);
        }
        break;
      case 'active_speakers':
        this.roster.onActiveSpeakers(msg);
        break;
      case 'publisher_layers': // dynacast: pause the simulcast layers nobody receives
        this.publisher.setActiveLayers(msg.track, msg.active).catch((err) => this._error(err, 'layers'));
        break;
      case 'track_paused_for_bandwidth':
        this.subscriber.onBandwidthPaused(msg);
        break;
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
      case 'reconnect':
        this._onReconnectEvent();
        break;
      case 'redirect':
        this._onRedirect(msg);
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
}
