// The WebSocket signaling client (see docs/protocol.md).
//
// request(msg) sends a client request with a fresh `id` and resolves with the server's direct
// reply (the message whose `ref` echoes that id); an `error` reply rejects with a SignalError.
// Every message without a `ref` (server events such as `offer`, `participant_joined`) goes to
// the `onevent` callback, in arrival order.

export const PROTOCOL_VERSION = 1;

export class SignalError extends Error {
  /** `reason`: the server's machine-readable reason, e.g. why a join was refused ('locked',
   * 'denied': docs/protocol.md, Errors), else null. `detail`: the server's message alone. */
  constructor(code, message, reason = null) {
    super(`${code}: ${message}`);
    this.name = 'SignalError';
    this.code = code;
    this.reason = reason;
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
    this.pending = new Map(); // id -> {resolve, reject, timer}
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
      ws.addEventListener('message', (ev) => this._onMessage(ev.data));
      ws.addEventListener('close', (ev) => {
        const err = new SignalError('closed', `connection closed (${ev.code})`);
        for (const p of this.pending.values()) {
          clearTimeout(p.timer);
          p.reject(err);
        }
        this.pending.clear();
        if (!opened) reject(err);
        else this.onclose(ev);
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
      this.pending.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ ...msg, id }));
    });
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
      this.onerror(new SignalError(msg.code, msg.message));
      return;
    }
    if (ref !== null) return; // a reply to a fire-and-forget message (`ok`, `pong`)
    this.onevent(msg);
  }
}
