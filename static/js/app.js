// Page wiring: which view shows (sign-in, lobby, join form, call), the control buttons, and
// `window.sfu` for tests and debugging.
//
// Entry points:
//   /                      sign-in (password, one-time code, registration), then the lobby;
//                          the guest join form (room + name) below the sign-in forms
//   /join/CODE[?name=N]    an invite link: asks for a display name, redeems the code, joins
//   /join?token=JWT        a room token in the query: joins that room straight away
//   /?room=R&name=N#token=JWT  a room token in the fragment (never sent to servers)

import { signalingUrl } from './signal.js';
import { Session } from './session.js';
import { StatusLine, setButton, icon } from './ui.js';
import { Api, jwtPayload } from './api.js';
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
import { HostControls } from './hostcontrols.js';
import { WaitingRoomView } from './waitingroom.js';

const $ = (id) => document.getElementById(id);

const els = {
  status: $('status'),
  roomLabel: $('room-label'),
  roomField: $('room-field'),
  inviteNote: $('invite-note'),
  authSection: $('auth-section'),
  lobbySection: $('lobby-section'),
  joinSection: $('join-section'),
  joinForm: $('join-form'),
  joinRoom: $('join-room'),
  joinName: $('join-name'),
  joinButton: $('join-button'),
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
const setStatus = (text, isError = false) => statusLine.set(text, isError);

let session = null;
let accountState = 'unknown'; // 'unknown' (checking the stored session) | 'out' | 'in'

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
// A link that names the room (invite, token, ?room=) shows the join form, not the lobby.
const linkMode = Boolean(inviteCode || linkToken || params.has('room'));

const api = new Api({
  onSignedOut: () => {
    accountState = 'out';
    render();
    accounts.signedOut('Your session has ended. Sign in again.');
  },
});

function entryView() {
  if (linkMode) return 'join';
  if (accountState === 'unknown') return 'loading';
  return accountState === 'in' ? 'lobby' : 'auth';
}

function render() {
  const s = session;
  const gate = waitingRoom.active; // waiting for the host, or refused: waitingroom.js
  const inCall = !gate && s !== null && (s.state === 'joined' || s.state === 'joining');
  const busy = inCall || (s !== null && s.state === 'connecting');
  const ended = s !== null && s.state === 'ended';
  const view = gate ? 'gate' : ended ? 'ended' : busy ? 'call' : entryView();
  els.controls.hidden = !inCall;
  els.callSection.hidden = !inCall;
  els.quality.hidden = !(s !== null && s.state === 'joined');
  document.body.classList.toggle('in-call', inCall);
  // The room's kind ('conference', 'podcast') when the page knows it, for kind-specific views.
  if (inCall && s.roomKind) document.body.dataset.roomKind = s.roomKind;
  else delete document.body.dataset.roomKind;
  els.authSection.hidden = view !== 'auth';
  els.lobbySection.hidden = view !== 'lobby';
  els.joinSection.hidden = view !== 'join' && view !== 'auth';
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
  podcast.render();
  hostControls.render();
}

/** Enter the call view with a room token. */
async function startCall({ room, roomLabel, token, name, kind = null }) {
  if (session && ['joined', 'joining', 'connecting'].includes(session.state)) return;
  for (const feature of features) feature.unbind();
  session = new Session({
    room,
    roomLabel,
    token,
    name,
    kind,
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
    for (const feature of features) feature.unbind();
    render();
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

// --- the join form (invite links, room tokens, guests) -----------------------------------

async function joinFromForm(room, name) {
  if (session && ['joined', 'joining', 'connecting'].includes(session.state)) return;
  els.joinButton.disabled = true;
  try {
    let token = linkToken;
    let roomLabel = room;
    let kind = null;
    if (inviteCode) {
      setStatus('Opening the invite…');
      let grant;
      try {
        grant = await api.redeemInvite(inviteCode, name);
      } catch (err) {
        setStatus(`Error — invite: ${err.detail || err.message}`, true);
        return;
      }
      token = grant.token;
      room = grant.room.id;
      roomLabel = grant.room.name || grant.room.id;
      kind = grant.room.kind || null;
      const query = new URLSearchParams(name ? { name } : {});
      history.replaceState(null, '', `${location.pathname}${name ? `?${query}` : ''}`);
    } else if (queryToken) {
      if (!tokenRoom) {
        setStatus('Error — the link does not hold a valid room token.', true);
        return;
      }
      room = tokenRoom;
      roomLabel = tokenRoom;
      // Keep the token in memory only: take it out of the address bar and the history.
      const query = new URLSearchParams(name ? { name } : {});
      history.replaceState(null, '', `${location.pathname}${name ? `?${query}` : ''}`);
    } else {
      if (!room && tokenRoom) room = tokenRoom;
      const query = new URLSearchParams({ room });
      if (name) query.set('name', name);
      history.replaceState(null, '', `${location.pathname}?${query}${location.hash}`);
    }
    await startCall({ room, roomLabel, token, name, kind });
  } finally {
    els.joinButton.disabled = false;
  }
}

els.joinForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  if (!els.joinForm.reportValidity()) return;
  joinFromForm(els.joinRoom.value.trim(), els.joinName.value.trim());
});

// --- call controls ------------------------------------------------------------------------

els.mic.addEventListener('click', () => {
  if (session && session.local.audio) session.setMuted('audio', !session.local.audio.muted);
});

els.cam.addEventListener('click', () => {
  if (session && session.local.video) session.setMuted('video', !session.local.video.muted);
});

els.leave.addEventListener('click', async () => {
  if (!session) return;
  await session.leave();
  render();
  const view = entryView();
  if (view === 'lobby') {
    accounts.showLobby();
  } else if (view === 'join') {
    els.joinName.focus();
  } else {
    els.joinRoom.focus();
  }
});

els.unblock.addEventListener('click', () => {
  for (const video of els.callMain.querySelectorAll('video')) video.play().catch(() => {});
  els.unblock.hidden = true;
});

window.addEventListener('pagehide', () => {
  if (session && session.state === 'joined') session.leave();
});

// --- start ----------------------------------------------------------------------------

const room = params.get('room') ?? '';
const name = params.get('name') ?? (linkClaims && typeof linkClaims.name === 'string' ? linkClaims.name : '');
els.joinRoom.value = room;
els.joinName.value = name;
if (inviteCode || queryToken) {
  // The invite (or the token) names the room: only the display name is asked for.
  els.roomField.hidden = true;
  els.joinRoom.required = false;
  els.inviteNote.hidden = false;
  if (queryToken) els.inviteNote.textContent = 'This link opens a room.';
}
accountState = api.signedIn ? 'unknown' : 'out';
render();

if (queryToken) {
  joinFromForm('', name);
} else if (
  inviteCode ? params.has('name') : room && /^[A-Za-z0-9_.-]{1,128}$/.test(room) && params.has('name')
) {
  joinFromForm(room, name);
} else if (linkMode) {
  setStatus(inviteCode ? 'Not connected. Enter your name to join.' : 'Not connected. Choose a room to join.');
  (room || inviteCode ? els.joinName : els.joinRoom).focus();
} else if (accountState === 'unknown') {
  setStatus('Loading your account…');
  accounts.resume().then((ok) => {
    accountState = ok ? 'in' : 'out';
    render();
    if (ok) accounts.showLobby();
    else accounts.showSignIn();
  });
} else {
  setStatus('Not signed in. Sign in, or join a room with an invite link.');
  accounts.showSignIn({ focus: true });
}
