// The WebSocket signaling client (see docs/protocol.md).
//
// request(msg) sends a client request with a fresh `id` and resolves with the server's direct
// reply (the message whose `ref` echoes that id); an `error` reply rejects with a SignalError.
// Every message without a `ref` (server events such as `offer`, `participant_joined`) goes to
// the `onevent` callback, in arrival order.
//
// Staying connected (docs/protocol.md "Resume"): every server message after `joined` carries a
// `seq`; `lastSeq` is the last one read. connect() may be called again for a new socket (the
// old one is forgotten). With `holdPending` set, requests sent meanwhile are not rejected when
// the socket drops: after a `resume`, resendPending() sends those the replayed messages did not
// answer; rejectPending() gives them up (a fresh join).

export const PROTOCOL_VERSION = 1;

export class SignalError extends Error {
  /** `reason`: the server's machine-readable reason, e.g. why a join was refused ('locked',
   * 'denied': docs/protocol.md, Errors), else null. `detail`: the server's message alone. */
  constructor(code, message, reason = null) {
    super(`${code}: ${message}`);
    this.name = 'SignalError';
    this.code = code;
    this.reason = reason; // why the server refused or removed us (docs/protocol.md, Errors)
    this.detail = message;
  }
}

export function signalingUrl(loc = window.location) {
  const scheme = loc.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${loc.host}/ws`;
}

export class SignalClient {
  constructor(url) {
    this.url = url;
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map(); // id -> {resolve, reject, timer, msg, hold}
    this.lastSeq = 0; // `seq` of the last numbered server message read
    this.holdPending = false; // keep requests across a socket drop (a resume follows)
    this.onevent = () => {};
    this.onerror = () => {}; // error without a matching pending request
    this.onclose = () => {};
  }

  /** Open the socket; resolves once it is open. */
  connect() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      let opened = false;
      ws.addEventListener('open', () => {
        opened = true;
        resolve(ws);
      });
      ws.addEventListener('message', (ev) => {
        if (this.ws === ws) this._onMessage(ev.data);
      });
      ws.addEventListener('close', (ev) => {
        const err = new SignalError('closed', `connection closed (${ev.code})`);
        if (!opened) reject(err);
        if (this.ws !== ws) return; // a socket we replaced
        for (const [id, p] of this.pending) {
          if (p.hold) continue;
          clearTimeout(p.timer);
          this.pending.delete(id);
          p.reject(err);
        }
        if (opened) this.onclose(ev);
      });
    });
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /** Send a message that expects no reply to be awaited (it still gets an id). */
  send(msg) {
    if (!this.isOpen) return false;
    const withId = { ...msg, id: msg.id ?? this._newId() };
    this.ws.send(JSON.stringify(withId));
    return true;
  }

  /** Send a request and resolve with the reply that carries its id as `ref`. */
  request(msg, timeoutMs = 15000) {
    if (!this.isOpen) return Promise.reject(new SignalError('closed', 'not connected'));
    const id = this._newId();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new SignalError('timeout', `no reply to ${msg.type} within ${timeoutMs} ms`));
      }, timeoutMs);
      const full = { ...msg, id };
      const hold = this.holdPending && msg.type !== 'ping';
      this.pending.set(id, { resolve, reject, timer, msg: full, hold });
      this.ws.send(JSON.stringify(full));
    });
  }

  /** Give up a socket that seems dead (no pong) without waiting for its close event: its
   * unheld requests fail now, and nothing it delivers later is read. */
  abandon() {
    const ws = this.ws;
    this.ws = null;
    const err = new SignalError('closed', 'connection lost');
    for (const [id, p] of this.pending) {
      if (p.hold) continue;
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(err);
    }
    if (ws) {
      try {
        ws.close(4000, 'no pong');
      } catch {
        // already closing
      }
    }
  }

  /** After `resumed`: send again the held requests that the replay did not answer. */
  resendPending() {
    for (const p of this.pending.values()) {
      if (p.hold && this.isOpen) this.ws.send(JSON.stringify(p.msg));
    }
  }

  /** Give up every pending request (the session is gone: a fresh join follows). */
  rejectPending(err) {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
  }

  /** Give every request still waiting for its reply `timeoutMs` more (a `join` that waits in
   * a waiting room: the server says how long it keeps the knock). */
  extendPending(timeoutMs) {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.timer = setTimeout(() => {
        this.pending.delete(id);
        p.reject(new SignalError('timeout', `no reply within ${timeoutMs} ms`));
      }, timeoutMs);
    }
  }

  close() {
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000, 'bye');
  }

  _newId() {
    const id = `c${this.nextId}`;
    this.nextId += 1;
    return id;
  }

  _onMessage(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      console.warn('signaling: ignoring non-JSON message');
      return;
    }
    if (msg === null || typeof msg !== 'object') return;
    if (typeof msg.seq === 'number') {
      if (msg.seq <= this.lastSeq) return; // already read
      this.lastSeq = msg.seq;
    }
    const ref = typeof msg.ref === 'string' ? msg.ref : null;
    if (ref !== null && this.pending.has(ref)) {
      const p = this.pending.get(ref);
      this.pending.delete(ref);
      clearTimeout(p.timer);
      if (msg.type === 'error') p.reject(new SignalError(msg.code, msg.message, msg.reason ?? null));
      else p.resolve(msg);
      return;
    }
    if (msg.type === 'error') {
      this.onerror(new SignalError(msg.code, msg.message, msg.reason ?? null));
      return;
    }
    if (ref !== null) return; // a reply to a fire-and-forget message (`ok`, `pong`)
    this.onevent(msg);
  }
}
