// The lobby (split from accounts.js): my rooms (each one a RoomItem, lobby-room.js: live state,
// invite links, history, delete, reopen), create a room, join by code.
//
// Every string that comes from the server (names, error details, URLs) is set with
// textContent or an input's value, never parsed as markup.

import { inviteCodeFrom } from './api.js';
import { busy, showError } from './dom.js';
import { describeProblem } from './errors.js';
import { RoomItem } from './lobby-room.js';

const $ = (id) => document.getElementById(id);

const REFRESH_MS = 5000; // how often the lobby refreshes the rooms' live state

export class LobbyView {
  constructor({ api, status, onJoin }) {
    this.api = api;
    this.status = status;
    this.onJoin = onJoin;
    this.items = new Map(); // room id -> RoomItem
    this.refreshTimer = null;
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
    this.items = new Map();
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
    this._startRefresh();
  }

  async loadRooms() {
    const e = this.els;
    let rooms;
    try {
      rooms = await this.api.rooms();
    } catch (err) {
      if (!this.api.signedIn) return;
      showError(e.lobbyError, `Could not load your rooms: ${describeProblem(err)}`);
      return;
    }
    // Update the rooms in place (an open panel, a typed link or the focus survive a refresh).
    const old = this.items;
    this.items = new Map();
    for (const room of rooms) {
      let item = old.get(room.id);
      if (item) item.update(room);
      else {
        item = new RoomItem({
          api: this.api,
          room,
          onJoin: this.onJoin,
          status: this.status,
          onDeleted: () => this.loadRooms(),
        });
      }
      this.items.set(room.id, item);
    }
    // Re-insert only when the list changed: moving an element would drop the keyboard focus.
    const wanted = [...this.items.values()].map((item) => item.el);
    const current = [...e.roomList.children];
    if (wanted.length !== current.length || wanted.some((el, i) => el !== current[i])) {
      e.roomList.replaceChildren(...wanted);
    }
    e.noRooms.hidden = rooms.length > 0;
  }

  /** While the lobby is shown, refresh the rooms' live state every REFRESH_MS. */
  _startRefresh() {
    if (this.refreshTimer) return;
    this.refreshTimer = setInterval(() => {
      const section = $('lobby-section');
      if (!this.api.signedIn) {
        clearInterval(this.refreshTimer);
        this.refreshTimer = null;
      } else if (section && !section.hidden && document.visibilityState === 'visible') {
        this.loadRooms();
      }
    }, REFRESH_MS);
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
        showError(e.createError, `Could not create the room: ${describeProblem(err)}`);
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
        showError(e.codeError, `Could not join: ${describeProblem(err)}`);
        e.code.focus();
      }
    });
  }
}
