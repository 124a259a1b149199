// Short notices over the call (toasts): who joined and who left a conference, and errors of
// actions without a place of their own (a refused keyboard shortcut). The container is a
// polite live region (aria-live), so screen readers announce each notice once; an error
// notice is a role=alert of its own.
//
// Names come from other people: set with textContent only.

import { el } from './ui.js';

const SHOW_MS = 6000;
const MAX_SHOWN = 4;

export class Notices {
  /** @param {HTMLElement} box  the live region the notices go in (#notices) */
  constructor(box) {
    this.box = box;
    this.session = null;
    this.names = new Map(); // sid -> name of everyone we know in the room (ours excluded)
    this.log = []; // every notice shown this call, {text, error, at}, for tests
    this.onEvent = (ev) => this._event(ev.detail.msg);
  }

  bind(session) {
    this.unbind();
    this.session = session;
    this.names.clear();
    this.log = [];
    session.addEventListener('roomevent', this.onEvent);
  }

  unbind() {
    if (this.session) this.session.removeEventListener('roomevent', this.onEvent);
    this.session = null;
    this.box.replaceChildren();
  }

  /** Show `text` for a few seconds; `error` notices are announced assertively. */
  show(text, { error = false } = {}) {
    const toast = el('div', error ? 'toast toast-error' : 'toast', text);
    if (error) toast.setAttribute('role', 'alert');
    this.box.appendChild(toast);
    while (this.box.children.length > MAX_SHOWN) this.box.firstElementChild.remove();
    this.log.push({ text, error, at: Date.now() });
    setTimeout(() => toast.remove(), SHOW_MS);
    return toast;
  }

  _event(msg) {
    const s = this.session;
    if (!s || !msg) return;
    const me = s.me ? s.me.sid : null;
    const nameOf = (info) => info.name || info.identity || 'Guest';
    if (msg.type === 'joined') {
      for (const info of msg.participants ?? []) this.names.set(info.sid, nameOf(info));
      return;
    }
    // Podcast rooms have their own audience counts: no notice per listener.
    if (s.kind !== 'conference') return;
    if (msg.type === 'participant_joined' && msg.participant && msg.participant.sid !== me) {
      const known = this.names.has(msg.participant.sid);
      this.names.set(msg.participant.sid, nameOf(msg.participant));
      if (!known) this.show(`${nameOf(msg.participant)} joined`);
    } else if (msg.type === 'participant_left' && msg.participant !== me) {
      const name = this.names.get(msg.participant);
      this.names.delete(msg.participant);
      if (name !== undefined) this.show(`${name} left`);
    }
  }
}
