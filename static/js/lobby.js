// The lobby (split from accounts.js): my rooms, create a room, invite links, join by code.
//
// Every string that comes from the server (names, error details, URLs) is set with
// textContent or an input's value, never parsed as markup.

import { ApiError, inviteCodeFrom } from './api.js';

const $ = (id) => document.getElementById(id);

function describe(err) {
  if (err instanceof ApiError) return err.describe();
  return err && err.message ? err.message : String(err);
}

function showError(el, text) {
  el.textContent = text || '';
  el.hidden = !text;
}

/** Disable a form's buttons while `work` runs. */
async function busy(form, work) {
  const buttons = [...form.querySelectorAll('button')];
  for (const b of buttons) b.disabled = true;
  form.setAttribute('aria-busy', 'true');
  try {
    return await work();
  } finally {
    for (const b of buttons) b.disabled = false;
    form.removeAttribute('aria-busy');
  }
}

const KIND_LABELS = { conference: 'Conference', podcast: 'Podcast' };

export class LobbyView {
  constructor({ api, status, onJoin }) {
    this.api = api;
    this.status = status;
    this.onJoin = onJoin;
    this.els = {
      lobbyTitle: $('lobby-title'),
      who: $('who'),
      lobbyError: $('lobby-error'),
      roomList: $('room-list'),
      noRooms: $('no-rooms'),
      createForm: $('create-room-form'),
      roomName: $('room-name'),
      roomKind: $('room-kind'),
      createError: $('create-room-error'),
      codeForm: $('code-form'),
      code: $('invite-code'),
      codeError: $('code-error'),
    };
    const e = this.els;
    e.createForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this._createRoom();
    });
    e.codeForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this._joinByCode();
    });
  }

  /** Signed out: forget the rooms shown. */
  clear() {
    this.els.roomList.replaceChildren();
  }

  // --- lobby ------------------------------------------------------------------------------

  async show() {
    const e = this.els;
    const user = this.api.user;
    e.who.textContent = user ? `Signed in as ${user.display_name}` : '';
    showError(e.lobbyError, '');
    this.status(user ? `Signed in as ${user.display_name}.` : 'Signed in.');
    e.lobbyTitle.focus();
    await this.loadRooms();
  }

  async loadRooms() {
    const e = this.els;
    let rooms;
    try {
      rooms = await this.api.rooms();
    } catch (err) {
      if (!this.api.signedIn) return;
      showError(e.lobbyError, `Could not load your rooms: ${describe(err)}`);
      return;
    }
    e.roomList.replaceChildren(...rooms.map((room) => this._roomItem(room)));
    e.noRooms.hidden = rooms.length > 0;
  }

  _roomItem(room) {
    const li = document.createElement('li');
    li.className = 'room-item';
    li.dataset.roomId = room.id;

    const info = document.createElement('div');
    info.className = 'room-info';
    const nameEl = document.createElement('span');
    nameEl.className = 'room-name';
    nameEl.textContent = room.name;
    const kind = document.createElement('span');
    kind.className = 'room-kind';
    kind.textContent = KIND_LABELS[room.kind] || room.kind;
    info.append(nameEl, kind);

    const actions = document.createElement('div');
    actions.className = 'room-actions';
    const join = document.createElement('button');
    join.type = 'button';
    join.className = 'btn btn-primary';
    join.textContent = 'Join';
    join.setAttribute('aria-label', `Join ${room.name}`);
    const invite = document.createElement('button');
    invite.type = 'button';
    invite.className = 'btn';
    invite.textContent = 'Invite link';
    invite.setAttribute('aria-label', `Invite link for ${room.name}`);
    actions.append(join, invite);

    const error = document.createElement('p');
    error.className = 'form-error';
    error.setAttribute('role', 'alert');
    error.hidden = true;

    const box = document.createElement('div');
    box.className = 'invite';
    box.hidden = true;
    const inputId = `invite-url-${room.id}`;
    const label = document.createElement('label');
    label.htmlFor = inputId;
    label.textContent = `Invite link for ${room.name}`;
    const row = document.createElement('div');
    row.className = 'invite-row';
    const url = document.createElement('input');
    url.id = inputId;
    url.className = 'invite-url';
    url.readOnly = true;
    url.spellcheck = false;
    const copy = document.createElement('button');
    copy.type = 'button';
    copy.className = 'btn';
    copy.textContent = 'Copy';
    copy.setAttribute('aria-label', `Copy the invite link for ${room.name}`);
    row.append(url, copy);
    const note = document.createElement('p');
    note.className = 'copy-note';
    note.setAttribute('role', 'status');
    box.append(label, row, note);

    li.append(info, actions, error, box);

    join.addEventListener('click', async () => {
      showError(error, '');
      join.disabled = true;
      try {
        const grant = await this.api.roomToken(room.id);
        const user = this.api.user;
        this.onJoin(grant, user ? user.display_name : '');
      } catch (err) {
        showError(error, `Could not join: ${describe(err)}`);
      } finally {
        join.disabled = false;
      }
    });
    invite.addEventListener('click', async () => {
      showError(error, '');
      invite.disabled = true;
      try {
        const answer = await this.api.createInvite(room.id);
        url.value = new URL(answer.url, window.location.origin).href;
        note.textContent = answer.expires_at
          ? `Anyone with this link can join until ${new Date(answer.expires_at).toLocaleString()}.`
          : '';
        box.hidden = false;
        url.focus();
        url.select();
      } catch (err) {
        showError(error, `Could not create an invite: ${describe(err)}`);
      } finally {
        invite.disabled = false;
      }
    });
    copy.addEventListener('click', async () => {
      if (await copyText(url)) {
        note.textContent = 'Copied to the clipboard.';
      } else {
        url.focus();
        url.select();
        note.textContent = 'Select the link and copy it (Ctrl+C).';
      }
    });
    return li;
  }

  async _createRoom() {
    const e = this.els;
    showError(e.createError, '');
    const name = e.roomName.value.trim();
    if (!name) {
      showError(e.createError, 'Give the room a name.');
      e.roomName.focus();
      return;
    }
    await busy(e.createForm, async () => {
      try {
        const room = await this.api.createRoom(name, e.roomKind.value);
        e.roomName.value = '';
        this.status(`Room ${room.name} created.`);
        await this.loadRooms();
        const item = [...e.roomList.children].find((li) => li.dataset.roomId === room.id);
        const join = item ? item.querySelector('button') : null;
        if (join) join.focus();
      } catch (err) {
        showError(e.createError, `Could not create the room: ${describe(err)}`);
        e.roomName.focus();
      }
    });
  }

  async _joinByCode() {
    const e = this.els;
    showError(e.codeError, '');
    const code = inviteCodeFrom(e.code.value);
    if (!code) {
      showError(e.codeError, 'Enter an invite code or paste an invite link.');
      e.code.focus();
      return;
    }
    await busy(e.codeForm, async () => {
      try {
        const grant = await this.api.redeemInvite(code);
        e.code.value = '';
        const user = this.api.user;
        this.onJoin(grant, user ? user.display_name : '');
      } catch (err) {
        showError(e.codeError, `Could not join: ${describe(err)}`);
        e.code.focus();
      }
    });
  }
}

/** Copy an input's text: the async Clipboard API, else the selection and execCommand. */
async function copyText(input) {
  try {
    await navigator.clipboard.writeText(input.value);
    return true;
  } catch {
    input.focus();
    input.select();
    try {
      return document.execCommand('copy');
    } catch {
      return false;
    }
  }
}
