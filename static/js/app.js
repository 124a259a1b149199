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
import { PodcastView } from './podcast.js';

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
  grid: $('grid'),
  controls: $('controls'),
  mic: $('mic-button'),
  cam: $('cam-button'),
  leave: $('leave-button'),
  unblock: $('unblock-button'),
};

const statusLine = new StatusLine(els.status);
const setStatus = (text, isError = false) => statusLine.set(text, isError);

let session = null;
let accountState = 'unknown'; // 'unknown' (checking the stored session) | 'out' | 'in'

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
  },
);

// Podcast rooms: the stage and audience views, and the "room ended" screen (podcast.js).
const podcast = new PodcastView({
  callSection: els.callSection,
  main: $('main'),
  controls: els.controls,
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
  const inCall = s !== null && (s.state === 'joined' || s.state === 'joining');
  const busy = inCall || (s !== null && s.state === 'connecting');
  const ended = s !== null && s.state === 'ended';
  const view = ended ? 'ended' : busy ? 'call' : entryView();
  els.controls.hidden = !inCall;
  els.callSection.hidden = !inCall;
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
  els.leave.replaceChildren(icon('leave'), document.createTextNode('Leave'));
  if (!inCall) els.unblock.hidden = true;

  // A podcast room shows the stage instead of the grid, and its own mic/stage buttons.
  const podcastRoom = inCall && s.kind === 'podcast';
  els.grid.hidden = podcastRoom;
  els.mic.hidden = podcastRoom;
  els.cam.hidden = podcastRoom;
  podcast.render();
}

/** Enter the call view with a room token. */
async function startCall({ room, roomLabel, token, name }) {
  if (session && ['joined', 'joining', 'connecting'].includes(session.state)) return;
  session = new Session({
    room,
    roomLabel,
    token,
    name,
    grid: els.grid,
    status: setStatus,
    onchange: render,
    onblocked: () => {
      els.unblock.hidden = false;
    },
  });
  podcast.attach(session);
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
    }),
});

// --- the join form (invite links, room tokens, guests) -----------------------------------

async function joinFromForm(room, name) {
  if (session && ['joined', 'joining', 'connecting'].includes(session.state)) return;
  els.joinButton.disabled = true;
  try {
    let token = linkToken;
    let roomLabel = room;
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
    await startCall({ room, roomLabel, token, name });
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
  for (const video of els.grid.querySelectorAll('video')) video.play().catch(() => {});
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
