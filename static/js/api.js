// The accounts HTTP API (see signaling/accounts.py): JSON in, JSON out, errors as RFC 9457
// problem details. The account session (access token, refresh token, user) is never in a
// cookie (a cross-site request cannot carry it): it lives in sessionStorage, and ends with the
// tab, unless the person ticked "Stay signed in", then in localStorage, shared by the tabs of
// this browser until they sign out. Refreshes (which rotate the refresh token) are serialised
// across tabs with the Web Locks API, so that two tabs never spend the same refresh token.

const STORAGE_KEY = 'sfu.account';

export class ApiError extends Error {
  /**
   * @param {number} status  HTTP status (0: the request never reached the server)
   * @param {string} code    the problem's stable `code`
   * @param {string} detail  the problem's human-readable `detail`
   * @param {Array<{loc: Array<string|number>, msg: string}>} errors  validation errors
   */
  constructor(status, code, detail, errors = []) {
    super(detail);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.errors = errors;
    this.problem = null; // the parsed problem body, when there was one (problemFrom)
  }

  /** One sentence for the user: the detail, plus the field errors of a validation failure. */
  describe() {
    const fields = this.errors
      .map((e) => {
        const loc = (e.loc ?? []).filter((part) => part !== 'body').join('.');
        return loc ? `${loc}: ${e.msg}` : e.msg;
      })
      .filter(Boolean);
    return fields.length ? `${this.detail} (${fields.join('; ')})` : this.detail;
  }
}

/** An ApiError from an HTTP status and a parsed RFC 9457 problem body (or null). */
export function problemFrom(status, body) {
  const detail =
    body && typeof body.detail === 'string' && body.detail
      ? body.detail
      : `request failed (HTTP ${status})`;
  const code = body && typeof body.code === 'string' ? body.code : `http_${status}`;
  const errors = body && Array.isArray(body.errors) ? body.errors : [];
  const err = new ApiError(status, code, detail, errors);
  // The whole problem, for its extension members (e.g. `max_bytes` of file_too_large).
  err.problem = body && typeof body === 'object' ? body : null;
  return err;
}

/** An ApiError from a failed fetch Response (its body read as a problem, if it is one). */
export async function problemOf(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  return problemFrom(resp.status, body);
}

function readFrom(storage) {
  try {
    const raw = storage.getItem(STORAGE_KEY);
    const data = raw ? JSON.parse(raw) : null;
    if (data && typeof data.access_token === 'string' && typeof data.refresh_token === 'string') {
      return data;
    }
  } catch {
    // unreadable or disabled storage counts as signed out
  }
  return null;
}

/** The stored account session: {access_token, refresh_token, user} or null (this tab's
 * sessionStorage first, then the browser's localStorage of "Stay signed in"). */
export function loadSession() {
  return readFrom(sessionStorage) || readFrom(localStorage);
}

/** Whether the stored session is the browser-wide one ("Stay signed in"). */
export function sessionRemembered() {
  return readFrom(sessionStorage) === null && readFrom(localStorage) !== null;
}

function saveSession(session, remember = sessionRemembered()) {
  const data = {
    access_token: session.access_token,
    refresh_token: session.refresh_token,
    user: session.user ?? null,
  };
  const [keep, drop] = remember ? [localStorage, sessionStorage] : [sessionStorage, localStorage];
  try {
    drop.removeItem(STORAGE_KEY);
  } catch {
    // storage disabled
  }
  keep.setItem(STORAGE_KEY, JSON.stringify(data));
  return data;
}

export function clearSession() {
  for (const storage of [sessionStorage, localStorage]) {
    try {
      storage.removeItem(STORAGE_KEY);
    } catch {
      // storage disabled
    }
  }
}

/** Run `work` holding the browser-wide refresh lock (Web Locks API) when there is one. */
function withRefreshLock(work) {
  if (typeof navigator !== 'undefined' && navigator.locks && navigator.locks.request) {
    return navigator.locks.request('sfu.account.refresh', work);
  }
  return work();
}

/**
 * The API client. `onSignedOut` runs when the session can no longer be refreshed.
 */
export class Api {
  constructor({ onSignedOut } = {}) {
    this.onSignedOut = onSignedOut ?? (() => {});
    this.refreshing = null; // the in-flight refresh, shared by concurrent 401s
    this.remember = false; // "Stay signed in": the next sign-in is kept in localStorage
  }

  /** Whether the current session is kept for every tab of this browser. */
  get remembered() {
    return sessionRemembered();
  }

  get session() {
    return loadSession();
  }

  get signedIn() {
    return this.session !== null;
  }

  get user() {
    const s = this.session;
    return s ? s.user : null;
  }

  async _fetch(path, { method = 'GET', body, token } = {}) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = `Bearer ${token}`;
    try {
      return await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'omit',
        cache: 'no-store',
      });
    } catch {
      throw new ApiError(0, 'network_error', 'the server cannot be reached');
    }
  }

  /**
   * Call the API; resolves with the JSON answer (null for 204) or rejects with an ApiError.
   * `auth: true` sends the access token and, on a 401, refreshes the session once and retries.
   */
  async request(path, { method = 'GET', body, auth = false } = {}) {
    let session = auth ? this.session : null;
    if (auth && !session) throw new ApiError(401, 'signed_out', 'you are not signed in');
    let resp = await this._fetch(path, { method, body, token: session && session.access_token });
    if (auth && resp.status === 401) {
      session = await this.refresh(session);
      resp = await this._fetch(path, { method, body, token: session.access_token });
      if (resp.status === 401) {
        const err = await problemOf(resp);
        this._signedOut();
        throw err;
      }
    }
    if (!resp.ok) throw await problemOf(resp);
    if (resp.status === 204) return null;
    try {
      return await resp.json();
    } catch {
      throw new ApiError(resp.status, 'bad_response', 'the server sent an unreadable answer');
    }
  }

  /** Rotate the refresh token (POST /api/token/refresh); signs out when that fails. */
  refresh(stale) {
    if (!this.refreshing) {
      this.refreshing = withRefreshLock(async () => {
        const current = this.session;
        // Another call (or another tab) may have refreshed already: use its tokens.
        if (
          current &&
          stale &&
          (current.access_token !== stale.access_token || current.refresh_token !== stale.refresh_token)
        ) {
          return current;
        }
        if (!current) throw new ApiError(401, 'signed_out', 'you are not signed in');
        const resp = await this._fetch('/api/token/refresh', {
          method: 'POST',
          body: { refresh_token: current.refresh_token },
        });
        if (!resp.ok) {
          const err = await problemOf(resp);
          if (resp.status === 401) this._signedOut();
          throw err;
        }
        return saveSession(await resp.json());
      }).finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  _signedOut() {
    clearSession();
    this.onSignedOut();
  }

  // --- accounts ---------------------------------------------------------------------------

  async register(email, password, displayName) {
    const body = { email, password, display_name: displayName };
    return saveSession(await this.request('/api/register', { method: 'POST', body }), this.remember);
  }

  async login(email, password) {
    const body = { email, password };
    return saveSession(await this.request('/api/login', { method: 'POST', body }), this.remember);
  }

  /** Ask for a one-time code; resolves with {hash, expires}. */
  requestCode(email) {
    return this.request('/api/otp/request', { method: 'POST', body: { email } });
  }

  async verifyCode(email, code, challenge) {
    const body = { email, code, hash: challenge.hash, expires: challenge.expires };
    return saveSession(await this.request('/api/otp/verify', { method: 'POST', body }), this.remember);
  }

  async me() {
    const data = await this.request('/api/me', { auth: true });
    const session = this.session;
    if (session && data && data.user) saveSession({ ...session, user: data.user });
    return data.user;
  }

  /** Revoke the tokens (best effort) and forget them. */
  async logout() {
    const session = this.session;
    clearSession();
    if (!session) return;
    try {
      await this._fetch('/api/logout', {
        method: 'POST',
        body: { refresh_token: session.refresh_token },
        token: session.access_token,
      });
    } catch {
      // signed out locally either way
    }
  }

  // --- rooms ------------------------------------------------------------------------------

  async rooms() {
    const data = await this.request('/api/rooms', { auth: true });
    return Array.isArray(data.rooms) ? data.rooms : [];
  }

  async createRoom(name, kind) {
    const data = await this.request('/api/rooms', { method: 'POST', body: { name, kind }, auth: true });
    return data.room;
  }

  /** A new invite link; `role`: 'listener' | 'speaker' | 'moderator' (default: by room kind). */
  createInvite(roomId, role) {
    return this.request(`/api/rooms/${encodeURIComponent(roomId)}/invites`, {
      method: 'POST',
      body: role ? { role } : {},
      auth: true,
    });
  }

  /** The room's live invite links (owner only). */
  async invites(roomId) {
    const data = await this.request(`/api/rooms/${encodeURIComponent(roomId)}/invites`, { auth: true });
    return Array.isArray(data.invites) ? data.invites : [];
  }

  revokeInvite(roomId, code) {
    const path = `/api/rooms/${encodeURIComponent(roomId)}/invites/${encodeURIComponent(code)}`;
    return this.request(path, { method: 'DELETE', auth: true });
  }

  deleteRoom(roomId) {
    return this.request(`/api/rooms/${encodeURIComponent(roomId)}`, { method: 'DELETE', auth: true });
  }

  /** Open a room its host ended, on purpose: {room}. */
  reopenRoom(roomId) {
    return this.request(`/api/rooms/${encodeURIComponent(roomId)}/reopen`, {
      method: 'POST',
      body: {},
      auth: true,
    });
  }

  /** One page of the meeting history, oldest first: {events, total, offset, limit}. */
  history(roomId, offset = 0, limit = 50) {
    const query = `offset=${Number(offset)}&limit=${Number(limit)}`;
    return this.request(`/api/rooms/${encodeURIComponent(roomId)}/history?${query}`, { auth: true });
  }

  roomToken(roomId) {
    return this.request(`/api/rooms/${encodeURIComponent(roomId)}/token`, {
      method: 'POST',
      body: {},
      auth: true,
    });
  }

  /** What an invite opens, without using it: {room: {id, name, kind}, role, can_publish}. */
  invitePreview(code) {
    return this.request(`/api/join/${encodeURIComponent(code)}`);
  }

  /** What a room token opens: {room: {id, name, kind}} (the token is the credential). */
  async tokenPreview(room, token) {
    const resp = await this._fetch(`/api/rooms/${encodeURIComponent(room)}/preview`, { token });
    if (!resp.ok) throw await problemOf(resp);
    return resp.json();
  }

  /** Redeem an invite code; as the signed-in user when there is a session, else as a guest. */
  redeemInvite(code, displayName) {
    const body = displayName ? { display_name: displayName } : {};
    // The browser keeps the device key the server made (a removal bars the browser).
    const device = storedDevice();
    if (device) body.device = device;
    return this.request(`/api/join/${encodeURIComponent(code)}`, {
      method: 'POST',
      body,
      auth: this.signedIn,
    }).then((answer) => {
      if (answer && answer.device) storeDevice(answer.device);
      return answer;
    });
  }
}

const DEVICE_KEY = 'sfu.device';

function storedDevice() {
  try {
    return localStorage.getItem(DEVICE_KEY);
  } catch {
    return null;
  }
}

function storeDevice(device) {
  try {
    localStorage.setItem(DEVICE_KEY, device);
  } catch {
    // storage disabled: every redemption is a new device
  }
}

/** The payload of a JWT (not verified: only to learn the room it names), or null. */
export function jwtPayload(token) {
  const parts = String(token).split('.');
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    const data = JSON.parse(new TextDecoder().decode(bytes));
    return data && typeof data === 'object' ? data : null;
  } catch {
    return null;
  }
}

/** An invite code from a code or a pasted invite link (…/join/CODE), or null. */
export function inviteCodeFrom(text) {
  const value = String(text).trim();
  const fromLink = value.match(/\/join\/([A-Za-z0-9_-]{1,128})\/?(?:[?#].*)?$/);
  if (fromLink) return fromLink[1];
  return /^[A-Za-z0-9_-]{1,128}$/.test(value) ? value : null;
}
