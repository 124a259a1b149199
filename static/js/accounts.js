// The account views: sign-in (password, one-time code, registration); the lobby (my rooms,
// create a room, invite links, join by code) is lobby.js.
//
// Every string that comes from the server (names, error details, URLs) is set with
// textContent or an input's value, never parsed as markup.

import { busy, showError } from './dom.js';
import { describeProblem } from './errors.js';
import { LobbyView } from './lobby.js';

const $ = (id) => document.getElementById(id);

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
      logout: $('logout-button'),
    };
    this.lobby = new LobbyView({ api, status, onJoin });
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
    this.lobby.clear();
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
        showError(e.loginError, `Sign-in failed: ${describeProblem(err)}`);
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
        showError(e.otpRequestError, `Could not send a code: ${describeProblem(err)}`);
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
        showError(e.otpVerifyError, `Sign-in failed: ${describeProblem(err)}`);
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
        showError(e.registerError, `Could not create the account: ${describeProblem(err)}`);
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

  // --- lobby (lobby.js) ----------------------------------------------------------------------

  async showLobby() {
    await this.lobby.show();
  }

  async loadRooms() {
    await this.lobby.loadRooms();
  }
}
