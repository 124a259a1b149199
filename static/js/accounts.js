// The account views: sign-in (password, one-time code, registration) and the lobby (my rooms,
// create a room, invite links, join by code).
//
// Every string that comes from the server (names, error details, URLs) is set with
// textContent or an input's value, never parsed as markup.

import { ApiError, inviteCodeFrom } from './api.js';
import { describeError } from './errors.js';

const $ = (id) => document.getElementById(id);

/** A sentence for an error (errors.js); a problem's own detail when it is written for people. */
function describe(err) {
  if (err instanceof ApiError && err.status >= 400 && err.status < 500 && err.status !== 429) {
    return err.describe();
  }
  return describeError(err);
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

export class AccountsView {
  constructor({ api, status, onSignedIn, onSignedOut, onJoin }) {
    this.api = api;
    this.status = status;
    this.onSignedIn = onSignedIn;
    this.onSignedOut = onSignedOut;
    this.onJoin = onJoin;
    this.challenge = null; // {email, hash, expires} of the one-time code asked for

    this.els = {
      title: $('auth-title'),
      tabs: [...document.querySelectorAll('#auth-section .tab')],
      loginForm: $('login-form'),
      loginEmail: $('login-email'),
      loginPassword: $('login-password'),
      loginError: $('login-error'),
      otpRequestForm: $('otp-request-form'),
      otpEmail: $('otp-email'),
      otpRequestError: $('otp-request-error'),
      otpVerifyForm: $('otp-verify-form'),
      otpNote: $('otp-note'),
      otpCode: $('otp-code'),
      otpVerifyError: $('otp-verify-error'),
      otpRestart: $('otp-restart'),
      registerForm: $('register-form'),
      registerEmail: $('register-email'),
      registerPassword: $('register-password'),
      registerName: $('register-name'),
      registerError: $('register-error'),
      lobbyTitle: $('lobby-title'),
      who: $('who'),
      logout: $('logout-button'),
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
    this.mode = 'password';
    this._wire();
  }

  // --- sign-in ----------------------------------------------------------------------------

  _wire() {
    const e = this.els;
    for (const tab of e.tabs) {
      tab.addEventListener('click', () => this.setMode(tab.dataset.mode, { focus: true }));
    }
    e.loginForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this._login();
    });
    e.otpRequestForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this._requestCode();
    });
    e.otpVerifyForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this._verifyCode();
    });
    e.otpRestart.addEventListener('click', () => {
      this.challenge = null;
      this.setMode('code', { focus: true });
    });
    e.registerForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this._register();
    });
    e.logout.addEventListener('click', () => this._logout());
    e.createForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this._createRoom();
    });
    e.codeForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this._joinByCode();
    });
  }

  /** Show one sign-in form: 'password', 'code' or 'register'. */
  setMode(mode, { focus = false } = {}) {
    const e = this.els;
    this.mode = mode;
    for (const tab of e.tabs) tab.setAttribute('aria-pressed', String(tab.dataset.mode === mode));
    const verifying = mode === 'code' && this.challenge !== null;
    e.loginForm.hidden = mode !== 'password';
    e.otpRequestForm.hidden = mode !== 'code' || verifying;
    e.otpVerifyForm.hidden = !verifying;
    e.registerForm.hidden = mode !== 'register';
    e.title.textContent = {
      password: 'Sign in',
      code: 'Sign in with a one-time code',
      register: 'Create an account',
    }[mode];
    for (const el of [e.loginError, e.otpRequestError, e.otpVerifyError, e.registerError]) {
      showError(el, '');
    }
    if (!focus) return;
    const first = {
      password: e.loginEmail.value ? e.loginPassword : e.loginEmail,
      code: verifying ? e.otpCode : e.otpEmail,
      register: e.registerEmail,
    }[mode];
    first.focus();
  }

  showSignIn({ focus = true, mode = this.mode } = {}) {
    this.setMode(mode, { focus });
  }

  /** The session ended (logout, or a refresh that failed): back to the sign-in forms. */
  signedOut(message) {
    this.challenge = null;
    this.els.roomList.replaceChildren();
    this.els.loginPassword.value = '';
    this.setMode('password', { focus: true });
    if (message) this.status(message, true);
  }

  async _signedIn(session) {
    this.els.loginPassword.value = '';
    this.els.registerPassword.value = '';
    this.els.otpCode.value = '';
    this.challenge = null;
    this.onSignedIn(session);
    await this.showLobby();
  }

  async _login() {
    const e = this.els;
    showError(e.loginError, '');
    const email = e.loginEmail.value.trim();
    const password = e.loginPassword.value;
    if (!email || !password) {
      showError(e.loginError, 'Enter your email address and your password.');
      (email ? e.loginPassword : e.loginEmail).focus();
      return;
    }
    await busy(e.loginForm, async () => {
      try {
        await this._signedIn(await this.api.login(email, password));
      } catch (err) {
        showError(e.loginError, `Sign-in failed: ${describe(err)}`);
        e.loginPassword.select();
        e.loginPassword.focus();
      }
    });
  }

  async _requestCode() {
    const e = this.els;
    showError(e.otpRequestError, '');
    const email = e.otpEmail.value.trim();
    if (!email) {
      showError(e.otpRequestError, 'Enter your email address.');
      e.otpEmail.focus();
      return;
    }
    await busy(e.otpRequestForm, async () => {
      try {
        const answer = await this.api.requestCode(email);
        this.challenge = { email, hash: answer.hash, expires: answer.expires };
        e.otpCode.value = '';
        const until = new Date(answer.expires * 1000).toLocaleTimeString();
        e.otpNote.textContent = `We sent a code to ${email}. It is valid until ${until}.`;
        this.setMode('code', { focus: true });
      } catch (err) {
        showError(e.otpRequestError, `Could not send a code: ${describe(err)}`);
        e.otpEmail.focus();
      }
    });
  }

  async _verifyCode() {
    const e = this.els;
    showError(e.otpVerifyError, '');
    const code = e.otpCode.value.replace(/\s+/g, '');
    if (!/^[0-9]{6}$/.test(code)) {
      showError(e.otpVerifyError, 'The code has 6 digits.');
      e.otpCode.focus();
      return;
    }
    const challenge = this.challenge;
    if (!challenge) return;
    await busy(e.otpVerifyForm, async () => {
      try {
        await this._signedIn(await this.api.verifyCode(challenge.email, code, challenge));
      } catch (err) {
        showError(e.otpVerifyError, `Sign-in failed: ${describe(err)}`);
        e.otpCode.select();
        e.otpCode.focus();
      }
    });
  }

  async _register() {
    const e = this.els;
    showError(e.registerError, '');
    const email = e.registerEmail.value.trim();
    const password = e.registerPassword.value;
    const name = e.registerName.value.trim();
    if (!email || !password || !name) {
      showError(e.registerError, 'Fill in your email address, a password and your name.');
      (!email ? e.registerEmail : !password ? e.registerPassword : e.registerName).focus();
      return;
    }
    await busy(e.registerForm, async () => {
      try {
        await this._signedIn(await this.api.register(email, password, name));
      } catch (err) {
        showError(e.registerError, `Could not create the account: ${describe(err)}`);
        e.registerEmail.focus();
      }
    });
  }

  async _logout() {
    await this.api.logout();
    this.onSignedOut();
    this.signedOut();
    this.status('Signed out.');
    this.els.loginEmail.focus();
  }

  /** Check a stored session (GET /api/me, refreshing once if needed); true when signed in. */
  async resume() {
    try {
      await this.api.me();
      return true;
    } catch {
      return false;
    }
  }

  // --- lobby ------------------------------------------------------------------------------

  async showLobby() {
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
