// Page wiring: which view shows (sign-in, lobby, join form, call), the control buttons, and
// `window.sfu` for tests and debugging.
//
// Entry points:
//   /                      sign-in (password, one-time code, registration), then the lobby;
//                          beside it "Have an invite link?" (paste a link, join as a guest)
//   /join/CODE             an invite link: the pre-join screen (prejoin.js: "You're joining
//                          <room>", preview, devices), then redeems the code and joins
//   /join/CODE?name=N      the same, joining straight away with the name (scripts, tests)
//   /join?token=JWT        a room token in the query: joins that room straight away
//   /?room=R#token=JWT     a room token in the fragment (never sent to servers): pre-join;
//                          with &name=N it joins straight away
//   /?room=R               no credential: the start page says the room needs an invite link
// A link that cannot be used (used up, expired, removed) shows a page in words (#notice).
//
// Staying in the call: what a join needs (room, room token, name) is kept in sessionStorage
// for this tab (never a cookie) while the call lasts, so a reload of the same address joins
// the same call again with the same identity (the owner too) instead of the lobby or the join
// form. When the server forgot the session (a restart), a new Session joins again the same
// way. Leaving, the room ending, or a removal forget it.
//
// Clusters (docs/cluster.md): a node that is full or draining answers `redirect` with another
// node's URL. The page follows it by loading /?room=R&name=N&redirects=K#token=JWT from that
// node (the CSP allows WebSockets to the page's own origin only; room tokens work on every
// node). Only http(s) URLs are followed, at most MAX_REDIRECTS hops (K counts them), so two
// full nodes cannot bounce a user forever; then the page says the room is full, in words.

import { signalingUrl } from './signal.js';
import { Session } from './session.js';
import { StatusLine, setButton, icon } from './ui.js';
import { Api, ApiError, inviteCodeFrom, jwtPayload } from './api.js';
import { AccountsView } from './accounts.js';
import { Panels } from './panels.js';
import { ParticipantsView } from './participants.js';
import { ChatView } from './chat.js';
import { ReactionsView } from './reactions.js';
import { DeviceSettings } from './devices.js';
import { QualityMonitor } from './quality.js';
import { ScreenShare } from './screenshare.js';
import { GridLayout } from './layout.js';
import { PodcastView } from './podcast.js';
import { RoomFiles } from './roomfiles.js';
import { BoardView } from './boardview.js';
import { PreJoin } from './prejoin.js';
import { describeError } from './errors.js';
import { Notices } from './notices.js';
import { MutedHint } from './mutedhint.js';
import { SpeakerView } from './speakerview.js';
import { HandToggle } from './hand.js';
import { Shortcuts } from './shortcuts.js';
import { HostControls } from './hostcontrols.js';
import { WaitingRoomView } from './waitingroom.js';

const $ = (id) => document.getElementById(id);

const els = {
  status: $('status'),
  roomLabel: $('room-label'),
  authSection: $('auth-section'),
  lobbySection: $('lobby-section'),
  inviteSection: $('invite-section'),
  inviteForm: $('invite-form'),
  inviteLink: $('invite-link'),
  inviteError: $('invite-error'),
  landingNote: $('landing-note'),
  remember: $('remember-me'),
  prejoinSection: $('prejoin-section'),
  noticeSection: $('notice-section'),
  noticeTitle: $('notice-title'),
  noticeText: $('notice-text'),
  noticeRetry: $('notice-retry'),
  joinName: $('join-name'),
  callSection: $('call-section'),
  callMain: $('call-main'),
  stage: $('stage'),
  grid: $('grid'),
  quality: $('quality'),
  controls: $('controls'),
  mic: $('mic-button'),
  cam: $('cam-button'),
  screen: $('screen-button'),
  react: $('react-button'),
  participants: $('participants-button'),
  chat: $('chat-button'),
  settings: $('settings-button'),
  leave: $('leave-button'),
  unblock: $('unblock-button'),
  camField: $('cam-select').closest('.field'),
};

const statusLine = new StatusLine(els.status);
let lastStatus = { text: '', isError: false };
const setStatus = (text, isError = false) => {
  lastStatus = { text, isError };
  statusLine.set(text, isError);
};

let session = null;
let unloading = false; // the page is going away (a reload keeps the saved call)
let accountState = 'unknown'; // 'unknown' (checking the stored session) | 'out' | 'in'
// An invite or token link: 'loading' (asking what it opens), 'prejoin', 'notice' (it cannot
// be used: the page says why in words), or null (no link).
let linkView = null;
const prejoin = new PreJoin();

// --- the call view's features --------------------------------------------------------------
// Each is built once and bound to every new Session (`bind(session)`), unbound when it ends.
// Extension point: a feature with a side panel (the whiteboard, a files list) does the same:
//
//   const { body, button } = panels.create({ id: 'whiteboard', title: 'Whiteboard', icon: 'chat' });
//   const board = new Whiteboard(body);            // its own module, e.g. static/js/whiteboard.js
//   features.push({
//     bind: (s) => board.attach({
//       send: (msg) => s.request(msg),             // a protocol request, resolves with its reply
//       onMessage: (fn) => s.addEventListener('message', (ev) => fn(ev.detail.msg)),
//     }),                                          // (server events the session does not know)
//     unbind: () => board.detach(),
//   });

const panels = new Panels({
  aside: $('side-panel'),
  title: $('side-title'),
  close: $('side-close'),
  controls: els.controls,
  before: els.unblock,
  covered: [document.querySelector('.topbar'), els.callMain, els.controls],
});
$('side-close').appendChild(icon('close'));
const participantsView = new ParticipantsView({ list: $('people-list'), button: els.participants });
const chat = new ChatView(
  {
    log: $('chat-log'),
    empty: $('chat-empty'),
    form: $('chat-form'),
    input: $('chat-input'),
    error: $('chat-error'),
    counter: $('chat-counter'),
    send: $('chat-send'),
    button: els.chat,
  },
  panels,
);
$('chat-send').appendChild(icon('send'));
const reactions = new ReactionsView({
  button: els.react,
  bar: $('reaction-bar'),
  note: $('reaction-note'),
  layer: $('reactions-layer'),
});
const devices = new DeviceSettings({ mic: $('mic-select'), cam: $('cam-select'), error: $('device-error') });
const quality = new QualityMonitor({ indicator: els.quality });
const screenShare = new ScreenShare(
  { button: els.screen, stage: els.stage, callMain: els.callMain, grid: els.grid },
  (text, isError) => setStatus(text, isError),
);
// Encrypted file sharing: the chat's attach button and file links, and the Files panel.
const roomFiles = new RoomFiles({ slot: $('chat-attachments-slot') }, panels);
// The room's whiteboard, shown large in the call area (its toggle next to Share screen).
const boardView = new BoardView(
  { callMain: els.callMain, controls: els.controls, before: els.react.parentElement },
  screenShare,
);
// Conference host controls (hostcontrols.js): Raise hand, host badges, mute/remove per person,
// lock, waiting room and End for all (in the top bar, apart from the everyday controls).
const hostControls = new HostControls({
  controls: els.controls,
  before: els.participants,
  topbar: document.querySelector('.topbar'),
  callMain: els.callMain,
  peoplePanel: $('panel-participants'),
  participants: participantsView,
  status: (text, isError) => setStatus(text, isError),
});
const features = [participantsView, chat, reactions, devices, quality, screenShare, roomFiles, boardView, hostControls];
const layout = new GridLayout(els.callMain, els.grid);
// In-call helpers: join/leave notices, the "you are muted" hint, pin and speaker view, the
// keyboard shortcuts (and the hand toggle they use).
const notices = new Notices($('notices'));
const mutedHint = new MutedHint($('muted-hint'));
const speakerView = new SpeakerView({
  callMain: els.callMain,
  grid: els.grid,
  spotlight: $('spotlight'),
  button: $('view-button'),
});
const hand = new HandToggle((text) => notices.show(text, { error: true }));
features.push(notices, mutedHint, speakerView, hand);
const clickIfShown = (selector) => {
  const button = [...document.querySelectorAll(selector)].find((b) => !b.hidden && !b.disabled && b.offsetParent);
  if (button) button.click();
};
const shortcuts = new Shortcuts(
  { dialog: $('shortcuts-dialog'), list: $('shortcut-list'), enabled: $('shortcuts-enabled'), opener: $('shortcuts-button') },
  {
    mic: () => clickIfShown('#mic-button, .pod-mic-btn'),
    camera: () => clickIfShown('#cam-button, .pod-cam-btn'),
    hand: () => hand.toggle(),
    chat: () => {
      if (!els.chat.hidden) panels.toggle('chat');
    },
  },
  () => session !== null && session.state === 'joined',
);

panels.add({ id: 'participants', title: 'Participants', button: els.participants, body: $('panel-participants') });
panels.add({
  id: 'chat',
  title: 'Chat',
  button: els.chat,
  body: $('panel-chat'),
  focus: $('chat-input'),
  onopen: () => chat.opened(),
});
panels.add({
  id: 'settings',
  title: 'Settings',
  button: els.settings,
  body: $('panel-settings'),
  focus: $('mic-select'),
  onopen: () => devices.refresh(),
});
setButton(els.settings, 'settings', 'Settings');
setButton(els.react, 'smile', 'React');

// What tests (and a curious developer with the console open) can reach.
window.sfu = Object.defineProperties(
  {},
  {
    session: { get: () => session, enumerable: true },
    ws: { get: () => (session ? session.ws : null), enumerable: true },
    pub: { get: () => (session ? session.pub : null), enumerable: true },
    sub: { get: () => (session ? session.sub : null), enumerable: true },
    participants: { get: () => (session ? session.participants : new Map()), enumerable: true },
    me: { get: () => (session ? session.me : null), enumerable: true },
    local: { get: () => (session ? session.local : null), enumerable: true },
    state: { get: () => (session ? session.state : 'idle'), enumerable: true },
    lastError: { get: () => (session ? session.lastError : null), enumerable: true },
    activeSpeakers: { get: () => (session ? session.activeSpeakers : []), enumerable: true },
    heardSpeaking: { get: () => (session ? session.heardSpeaking : new Set()), enumerable: true },
    account: { get: () => accountState, enumerable: true },
    // The call view's features (see the e2e tests).
    quality: { get: () => quality.latest, enumerable: true },
    qualityHistory: { get: () => quality.history, enumerable: true },
    chat: { get: () => ({ messages: chat.messages, unread: chat.unread }), enumerable: true },
    reactions: { get: () => reactions.received, enumerable: true },
    screenShare: { get: () => screenShare, enumerable: true },
    events: { get: () => (session ? session.events : []), enumerable: true },
    panel: { get: () => panels.current, enumerable: true },
    panels: { get: () => panels, enumerable: true },
    files: { get: () => roomFiles.files, enumerable: true },
    board: { get: () => boardView, enumerable: true },
    prejoin: { get: () => prejoin.snapshot(), enumerable: true },
    notices: { get: () => notices.log, enumerable: true },
    mutedHint: { get: () => mutedHint, enumerable: true },
    speakerView: { get: () => speakerView, enumerable: true },
    shortcuts: { get: () => shortcuts, enumerable: true },
    host: { get: () => hostControls, enumerable: true },
    waiting: { get: () => waitingRoom.state, enumerable: true },
  },
);

// Podcast rooms: the stage and audience views, and the "room ended" screen (podcast.js). It
// follows each Session from before it starts (attach); its section goes in the call area, in
// place of the grid (the side panels stay beside it).
const podcast = new PodcastView({
  callSection: els.callMain,
  main: $('main'),
  controls: els.controls,
});

// The waiting room and refused joins, from the joiner's side (waitingroom.js): shown instead
// of the call while the host has not let us in, or when the join was refused.
const waitingRoom = new WaitingRoomView({
  main: $('main'),
  onchange: () => render(),
  onback: () => {
    if (entryView() === 'lobby') accounts.showLobby();
    else els.joinName.focus();
  },
});

// --- how the page was opened ------------------------------------------------------------

const params = new URLSearchParams(location.search);
// An invite link (/join/CODE) is redeemed for a room token: POST /api/join/CODE.
const inviteMatch = location.pathname.match(/^\/join\/([A-Za-z0-9_-]{1,128})\/?$/);
const inviteCode = inviteMatch ? inviteMatch[1] : null;
// A room token in the fragment (#token=...) or, on /join, in the query (?token=...).
const fragmentToken = new URLSearchParams(location.hash.slice(1)).get('token');
const queryToken = /^\/join\/?$/.test(location.pathname) ? params.get('token') : null;
const linkToken = queryToken || fragmentToken || null;
const linkClaims = linkToken ? jwtPayload(linkToken) : null;
const tokenRoom =
  linkClaims && linkClaims.video && typeof linkClaims.video.room === 'string'
    ? linkClaims.video.room
    : null;
// A link that holds a credential (invite, room token) opens the pre-join screen, not the lobby.
const linkMode = Boolean(inviteCode || linkToken);

const api = new Api({
  onSignedOut: () => {
    accountState = 'out';
    render();
    accounts.signedOut('Your session has ended. Sign in again.');
  },
});

function entryView() {
  if (linkMode) return linkView || 'loading';
  if (accountState === 'unknown') return 'loading';
  return accountState === 'in' ? 'lobby' : 'auth';
}

function render() {
  const s = session;
  const gate = waitingRoom.active; // waiting for the host, or refused: waitingroom.js
  const inCall = !gate && s !== null && (s.state === 'joined' || s.state === 'joining' || s.reconnecting);
  const busy = inCall || (s !== null && s.state === 'connecting');
  const ended = s !== null && s.state === 'ended';
  const view = gate ? 'gate' : ended ? 'ended' : busy ? 'call' : entryView();
  els.controls.hidden = !inCall;
  els.callSection.hidden = !inCall;
  els.quality.hidden = !(s !== null && s.state === 'joined');
  document.body.classList.toggle('in-call', inCall);
  if (s !== null && s.reconnecting) document.body.dataset.connection = 'reconnecting';
  else delete document.body.dataset.connection;
  // The room's kind ('conference', 'podcast') when the page knows it, for kind-specific views.
  if (inCall && s.roomKind) document.body.dataset.roomKind = s.roomKind;
  else delete document.body.dataset.roomKind;
  els.authSection.hidden = view !== 'auth';
  els.inviteSection.hidden = view !== 'auth';
  els.lobbySection.hidden = view !== 'lobby';
  els.prejoinSection.hidden = view !== 'prejoin';
  els.noticeSection.hidden = view !== 'notice';
  if (view !== 'prejoin' && prejoin.isOpen && busy) prejoin.close();
  els.roomLabel.hidden = !inCall;
  if (inCall) els.roomLabel.textContent = `Room: ${s.roomLabel}`;

  const audio = s ? s.local.audio : null;
  const video = s ? s.local.video : null;
  els.mic.disabled = !audio;
  els.cam.disabled = !video;
  const micMuted = Boolean(audio && audio.muted);
  const camMuted = Boolean(video && video.muted);
  setButton(els.mic, micMuted ? 'micOff' : 'mic', micMuted ? 'Unmute mic' : 'Mute mic', micMuted);
  setButton(els.cam, camMuted ? 'camOff' : 'cam', camMuted ? 'Start camera' : 'Stop camera', camMuted);
  setButton(els.leave, 'leave', 'Leave');
  if (!inCall) {
    els.unblock.hidden = true;
    panels.close({ restoreFocus: false });
  }

  // A podcast room shows the stage (podcast.js) instead of the grid, and its own mic/stage
  // buttons; nobody shares a camera or a screen there. A participant who may not publish (a
  // listener) has no mic or camera to toggle. The grid's hidden tiles still play the audio.
  const podcastRoom = inCall && s.kind === 'podcast';
  const publisher = !inCall || s.canPublish;
  els.grid.hidden = podcastRoom;
  els.mic.hidden = podcastRoom || !publisher;
  els.cam.hidden = podcastRoom || !publisher;
  els.camField.hidden = podcastRoom;
  screenShare.renderButton();
  roomFiles.render();
  layout.schedule();
  speakerView.render();
  podcast.render();
  hostControls.render();
}

// --- the saved call (sessionStorage) ------------------------------------------------------

const SAVED_CALL_KEY = 'sfu.call';

function here() {
  return `${location.pathname}${location.search}`;
}

function saveCall(call) {
  try {
    sessionStorage.setItem(SAVED_CALL_KEY, JSON.stringify({ ...call, where: here() }));
  } catch {
    // storage disabled: a reload shows the entry view
  }
}

function forgetCall() {
  try {
    sessionStorage.removeItem(SAVED_CALL_KEY);
  } catch {
    // nothing saved
  }
}

/** The call saved by this tab at this address, if its room token is still valid. */
function savedCall() {
  let call;
  try {
    call = JSON.parse(sessionStorage.getItem(SAVED_CALL_KEY) || 'null');
  } catch {
    call = null;
  }
  if (!call || typeof call.room !== 'string' || call.where !== here()) {
    if (call) forgetCall(); // another address: another call
    return null;
  }
  const claims = call.token ? jwtPayload(call.token) : null;
  if (call.token && (!claims || (typeof claims.exp === 'number' && claims.exp * 1000 <= Date.now()))) {
    forgetCall();
    return null;
  }
  return call;
}

/** Enter the call view with a room token. `startMuted` {audio, video}: the pre-join choice;
 * `reconnecting`: a rejoin (reload, server restart) that retries its join with backoff;
 * `mutes`: the local kinds to publish muted (the pre-join choice unless given). */
async function startCall(
  { room, roomLabel, token, name, kind = null, startMuted = null },
  { reconnecting = false, mutes = startMuted ?? {} } = {},
) {
  if (session && ['joined', 'joining', 'connecting'].includes(session.state)) return;
  for (const feature of features) feature.unbind();
  const call = { room, roomLabel, token, name, kind };
  saveCall(call);
  session = new Session({
    room,
    roomLabel,
    token,
    name,
    kind,
    reconnecting,
    mutes,
    grid: els.grid,
    status: setStatus,
    onchange: render,
    onblocked: () => {
      els.unblock.hidden = false;
    },
  });
  const current = session;
  podcast.attach(current);
  waitingRoom.attach(current);
  for (const feature of features) feature.bind(current);
  current.addEventListener('ended', () => {
    if (session !== current) return;
    if (current.redirect && !unloading) {
      followRedirect(call, current.redirect);
      return;
    }
    if (current.rejoin && !unloading) {
      // The server forgot the session (a restart): join again as the same identity.
      const mutes = {};
      for (const kind of ['audio', 'video']) mutes[kind] = Boolean(current.local[kind] && current.local[kind].muted);
      startCall(call, { reconnecting: true, mutes });
      return;
    }
    if (!unloading && (current.state === 'ended' || current.state === 'failed' || current.removedReason)) {
      forgetCall();
    }
    for (const feature of features) feature.unbind();
    render();
    // A link's call that failed or dropped: say why on the page, with a way back in.
    // (After the Session's own last words: it sets the status right after this event.)
    if (linkMode && ['failed', 'disconnected'].includes(current.state)) {
      setTimeout(() => {
        if (session !== current) return;
        const fallback = describeError(current.state === 'failed' ? 'internal' : 'closed');
        const why = lastStatus.isError && lastStatus.text ? lastStatus.text : fallback;
        const removed = why === describeError('removed_from_room');
        const title = current.state === 'failed' ? 'You could not join' : 'You are no longer in the room';
        showNotice(title, why, !removed);
      }, 0);
    }
  });
  current.addEventListener('connection', () => {
    if (session === current) render();
  });
  render();
  try {
    await session.start(signalingUrl());
  } catch {
    // start() already reported the error in the status line.
  } finally {
    render();
  }
}

// --- clusters: `redirect` to another node -------------------------------------------------

const MAX_REDIRECTS = 3;

/** The page address on the node at `url` that joins `call` straight away, or null when `url`
 * is no http(s) URL or the hops are used up. */
function redirectTarget(url, call, hops, maxHops = MAX_REDIRECTS) {
  if (hops >= maxHops || !call.token) return null;
  let base;
  try {
    base = new URL(url);
  } catch {
    return null;
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') return null;
  const target = new URL('/', base);
  target.searchParams.set('room', call.room);
  if (call.name) target.searchParams.set('name', call.name);
  target.searchParams.set('redirects', String(hops + 1));
  target.hash = new URLSearchParams({ token: call.token }).toString();
  return target.toString();
}

/** Follow a `redirect` ({url, reason}) by loading the page from that node, or give up in words. */
function followRedirect(call, redirect) {
  forgetCall();
  for (const feature of features) feature.unbind();
  const hops = Number.parseInt(params.get('redirects') ?? '0', 10) || 0;
  const target = redirectTarget(redirect.url, call, hops);
  if (target === null) {
    render();
    const why =
      redirect.reason === 'draining'
        ? 'The server is shutting down and no other server could take you. Try again in a moment.'
        : 'The room is full on every server we tried. Try again in a moment.';
    showNotice('You could not join', why, true);
    return;
  }
  setStatus('This server is busy: moving you to another one…');
  unloading = true;
  location.assign(target);
}

const accounts = new AccountsView({
  api,
  status: setStatus,
  onSignedIn: () => {
    accountState = 'in';
    render();
  },
  onSignedOut: () => {
    accountState = 'out';
    render();
  },
  onJoin: (grant, fallbackName) =>
    startCall({
      room: grant.room.id,
      roomLabel: grant.room.name || grant.room.id,
      token: grant.token,
      name: grant.name || fallbackName || '',
      kind: grant.room.kind || null,
    }),
});

// --- links: invite codes and room tokens, the pre-join screen ---------------------------

/** A link that cannot open a room: a page in words (never a code), with the way out. */
function showNotice(title, text, retry = false) {
  prejoin.close();
  linkView = 'notice';
  els.noticeTitle.textContent = title;
  els.noticeText.textContent = text;
  els.noticeRetry.hidden = !retry;
  setStatus(text, true);
  render();
  els.noticeTitle.focus();
}

function noticeFor(err) {
  const code = err && err.code;
  if (code === 'removed_from_room') return ['You cannot join this room', describeError(err)];
  if (code === 'invite_used_up') return ['This invite link has been used up', describeError(err)];
  if (code === 'invite_not_found') return ['This invite link does not work', describeError(err)];
  if (err && typeof code === 'string' && code.startsWith('token_')) {
    return ['This link does not work', describeError(err)];
  }
  return ['This room cannot be opened right now', describeError(err)];
}

/** The redemption answers 404 for unknown, expired and used-up invites alike; the preview
 * tells used up (410) apart, so that the page can say which. */
async function whyInviteFailed(err) {
  if (!err || err.code !== 'invite_not_found') return err;
  try {
    await api.invitePreview(inviteCode);
  } catch (previewErr) {
    if (previewErr && previewErr.code === 'invite_used_up') return previewErr;
  }
  return err;
}

/** Drop the credential from the address bar (kept in memory only), keeping `name`. */
function cleanAddress(name) {
  const query = new URLSearchParams(name ? { name } : {});
  if (inviteCode || queryToken) {
    history.replaceState(null, '', `${location.pathname}${name ? `?${query}` : ''}`);
  } else if (tokenRoom) {
    query.set('room', tokenRoom);
    history.replaceState(null, '', `${location.pathname}?${query}${location.hash}`);
  }
}

/** Redeem the invite (or use the room token) and join; `choice` from the pre-join screen. */
async function joinFromLink(name, choice = null) {
  if (session && ['joined', 'joining', 'connecting'].includes(session.state)) return;
  const startMuted = choice ? { audio: !choice.audio, video: !choice.video } : null;
  if (inviteCode) {
    setStatus('Opening the invite…');
    let grant;
    try {
      grant = await api.redeemInvite(inviteCode, name);
    } catch (err) {
      showNotice(...noticeFor(await whyInviteFailed(err)));
      return;
    }
    cleanAddress(name);
    prejoin.close();
    await startCall({
      room: grant.room.id,
      roomLabel: grant.room.name || grant.room.id,
      token: grant.token,
      name,
      kind: grant.room.kind || null,
      startMuted,
    });
    return;
  }
  if (!tokenRoom) {
    showNotice('This link does not work', describeError('token_invalid'));
    return;
  }
  cleanAddress(name);
  if (linkTitle === null) {
    // Straight from the link (no pre-join): still show the room's name, when the server says.
    try {
      const preview = await api.tokenPreview(tokenRoom, linkToken);
      linkTitle = preview.room.name;
      linkKind = preview.room.kind || null;
    } catch {
      // the join itself reports a bad token, in words
    }
  }
  const title = linkTitle || tokenRoom;
  prejoin.close();
  await startCall({ room: tokenRoom, roomLabel: title, token: linkToken, name, kind: linkKind, startMuted });
}

let linkTitle = null; // the room's display name, from the preview
let linkKind = null;
let linkCanPublish = true;

/** Ask the server what the link opens (without using it), then show the pre-join screen. */
async function openPreJoin(name) {
  linkView = 'loading';
  render();
  setStatus('Opening the link…');
  try {
    if (inviteCode) {
      const preview = await api.invitePreview(inviteCode);
      linkTitle = preview.room.name;
      linkKind = preview.room.kind || null;
      linkCanPublish = preview.can_publish !== false;
    } else {
      if (!tokenRoom) throw new ApiError(401, 'token_invalid', 'malformed token');
      const preview = await api.tokenPreview(tokenRoom, linkToken);
      linkTitle = preview.room.name;
      linkKind = preview.room.kind || null;
      const video = linkClaims && linkClaims.video;
      linkCanPublish = !(video && video.canPublish === false);
    }
  } catch (err) {
    showNotice(...noticeFor(err));
    return;
  }
  showPreJoin(name);
}

function showPreJoin(name) {
  linkView = 'prejoin';
  prejoin.open({
    title: linkTitle,
    canPublish: linkCanPublish,
    audioOnly: linkKind === 'podcast',
    name,
  });
  render();
  setStatus(`Ready to join ${linkTitle}.`);
  prejoin.focus();
}

prejoin.onjoin = (choice) => joinFromLink(choice.name, choice);

/** After a link's call: the pre-join screen again (asking the server anew when needed). */
function backToLink() {
  const name = els.joinName.value.trim();
  if (linkTitle !== null && !inviteCode) showPreJoin(name);
  else openPreJoin(name);
}

els.noticeRetry.addEventListener('click', () => backToLink());

// --- the start page: "Have an invite link?" -------------------------------------------------

els.inviteForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const code = inviteCodeFrom(els.inviteLink.value);
  if (!code) {
    els.inviteError.textContent = 'That is not an invite link. Paste the whole link you were sent.';
    els.inviteError.hidden = false;
    els.inviteLink.focus();
    return;
  }
  els.inviteError.hidden = true;
  location.assign(`/join/${encodeURIComponent(code)}`);
});

els.remember.checked = api.remembered;
els.remember.addEventListener('change', () => {
  api.remember = els.remember.checked;
});
api.remember = els.remember.checked;

// --- call controls ------------------------------------------------------------------------

els.mic.addEventListener('click', () => {
  if (session && session.local.audio) session.setMuted('audio', !session.local.audio.muted);
});

els.cam.addEventListener('click', () => {
  if (session && session.local.video) session.setMuted('video', !session.local.video.muted);
});

els.leave.addEventListener('click', async () => {
  if (!session) return;
  forgetCall();
  await session.leave();
  render();
  const view = entryView();
  if (view === 'lobby') {
    accounts.showLobby();
  } else if (linkMode) {
    backToLink();
  }
});

els.unblock.addEventListener('click', () => {
  for (const video of els.callMain.querySelectorAll('video')) video.play().catch(() => {});
  els.unblock.hidden = true;
});

window.addEventListener('pageshow', (ev) => {
  if (ev.persisted) unloading = false; // back from the back/forward cache
});

window.addEventListener('pagehide', () => {
  unloading = true; // a reload joins the saved call again
  if (session && session.state === 'joined') session.leave();
});

// --- start ----------------------------------------------------------------------------

const room = params.get('room') ?? '';
const name = params.get('name') ?? (linkClaims && typeof linkClaims.name === 'string' ? linkClaims.name : '');
els.joinName.value = name;
accountState = api.signedIn ? 'unknown' : 'out';
render();

const rejoining = savedCall();
if (rejoining) {
  // A reload during a call: the same call, the same identity (the lobby and forms stay hidden).
  const { room: r, roomLabel, token, name: n, kind } = rejoining;
  startCall({ room: r, roomLabel, token, name: n, kind }, { reconnecting: true });
  if (accountState === 'unknown') {
    // The lobby behind the call (after Leave) needs to know who is signed in.
    accounts.resume().then((ok) => {
      accountState = ok ? 'in' : 'out';
      render();
    });
  }
} else if (queryToken || (linkMode && params.has('name'))) {
  // Scripts and tests: a link with `name` (and /join?token=) joins straight away, no pre-join.
  linkView = 'loading';
  joinFromLink(name);
} else if (linkMode) {
  openPreJoin(name);
} else {
  if (room) {
    // A room named without a credential: the server would refuse the join. Say what works.
    els.landingNote.textContent =
      `To join “${room}” you need its invite link. Paste it below, or sign in if the room is yours.`;
    els.landingNote.hidden = false;
  }
  if (accountState === 'unknown') {
    setStatus('Loading your account…');
    accounts.resume().then((ok) => {
      accountState = ok ? 'in' : 'out';
      render();
      if (ok) accounts.showLobby();
      else accounts.showSignIn();
    });
  } else {
    setStatus('Not signed in. Sign in, create an account, or open an invite link.');
    accounts.showSignIn({ focus: true });
  }
}
