// Page wiring: the join form, the control buttons, and `window.sfu` for tests and debugging.

import { signalingUrl } from './signal.js';
import { Session } from './session.js';
import { StatusLine, setButton, icon } from './ui.js';

const $ = (id) => document.getElementById(id);

const els = {
  status: $('status'),
  roomLabel: $('room-label'),
  roomField: $('room-field'),
  inviteNote: $('invite-note'),
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
  },
);

function renderControls() {
  const s = session;
  const inCall = s !== null && (s.state === 'joined' || s.state === 'joining');
  els.controls.hidden = !inCall;
  els.callSection.hidden = !inCall;
  els.joinSection.hidden = inCall || (s !== null && s.state === 'connecting');
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
}

// An invite link (/join/CODE) is redeemed for a room token: POST /api/join/CODE.
const inviteMatch = location.pathname.match(/^\/join\/([A-Za-z0-9_-]{1,128})\/?$/);
const inviteCode = inviteMatch ? inviteMatch[1] : null;
// A room token may also come in the fragment (#token=...), which is never sent to servers.
const fragmentToken = new URLSearchParams(location.hash.slice(1)).get('token');

async function redeemInvite(code, name) {
  const body = name ? { display_name: name } : {};
  const resp = await fetch(`/api/join/${encodeURIComponent(code)}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  let data = null;
  try {
    data = await resp.json();
  } catch {
    data = null;
  }
  if (!resp.ok || !data || !data.token) {
    const detail = data && (data.detail || data.title) ? data.detail || data.title : resp.status;
    throw new Error(`invite: ${detail}`);
  }
  return data; // {token, identity, name, room: {id, name, ...}, grants}
}

async function join(room, name) {
  if (session && (session.state === 'joined' || session.state === 'joining')) return;
  els.joinButton.disabled = true;
  let token = fragmentToken;
  let roomLabel = room;
  if (inviteCode) {
    setStatus('Opening the invite…');
    try {
      const grant = await redeemInvite(inviteCode, name);
      token = grant.token;
      room = grant.room.id;
      roomLabel = grant.room.name || grant.room.id;
    } catch (err) {
      setStatus(`Error — ${err.message}`, true);
      els.joinButton.disabled = false;
      return;
    }
    const params = new URLSearchParams(name ? { name } : {});
    history.replaceState(null, '', `${location.pathname}${name ? `?${params}` : ''}`);
  } else {
    const params = new URLSearchParams({ room });
    if (name) params.set('name', name);
    history.replaceState(null, '', `${location.pathname}?${params}${location.hash}`);
  }
  session = new Session({
    room,
    roomLabel,
    token,
    name,
    grid: els.grid,
    status: setStatus,
    onchange: renderControls,
    onblocked: () => {
      els.unblock.hidden = false;
    },
  });
  renderControls();
  try {
    await session.start(signalingUrl());
  } catch {
    // start() already reported the error in the status line.
  } finally {
    els.joinButton.disabled = false;
    renderControls();
  }
}

els.joinForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  if (!els.joinForm.reportValidity()) return;
  join(els.joinRoom.value.trim(), els.joinName.value.trim());
});

els.mic.addEventListener('click', () => {
  if (session && session.local.audio) session.setMuted('audio', !session.local.audio.muted);
});

els.cam.addEventListener('click', () => {
  if (session && session.local.video) session.setMuted('video', !session.local.video.muted);
});

els.leave.addEventListener('click', async () => {
  if (!session) return;
  await session.leave();
  renderControls();
  els.joinRoom.focus();
});

els.unblock.addEventListener('click', () => {
  for (const video of els.grid.querySelectorAll('video')) video.play().catch(() => {});
  els.unblock.hidden = true;
});

window.addEventListener('pagehide', () => {
  if (session && session.state === 'joined') session.leave();
});

// --- start ----------------------------------------------------------------------------

const params = new URLSearchParams(location.search);
const room = params.get('room') ?? '';
const name = params.get('name') ?? '';
els.joinRoom.value = room;
els.joinName.value = name;
if (inviteCode) {
  // The invite names the room: only the display name is asked for.
  els.roomField.hidden = true;
  els.joinRoom.required = false;
  els.inviteNote.hidden = false;
}
renderControls();
if (inviteCode ? params.has('name') : room && /^[A-Za-z0-9_.-]{1,128}$/.test(room) && params.has('name')) {
  join(room, name);
} else {
  setStatus(inviteCode ? 'Not connected. Enter your name to join.' : 'Not connected. Choose a room to join.');
  (room || inviteCode ? els.joinName : els.joinRoom).focus();
}
