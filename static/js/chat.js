// The chat panel: the room's history (`chat_history`, right after joining) and new `chat`
// messages, a composer (Enter sends, Shift+Enter adds a line, at most 2048 bytes of UTF-8 as
// the server allows), typed errors inline, and an unread count on the panel's toggle.
//
// Everything that comes from other people (names, text, file names) is set with textContent,
// never as markup; http(s) links in the text become <a> nodes (linkify.js).
//
// File attachments: a message may carry `file: {id, name, size, content_type}`; it is shown as
// a download link that calls `onDownloadFile(file)`. The files feature wires that hook with
// `setDownloadFileHandler(fn)`, and puts its attach button / upload progress in the empty
// `#chat-attachments-slot` above the message box (see index.html).

import { setButton, clockTime, el, icon } from './ui.js';
import { linkifyNodes } from './linkify.js';

export const CHAT_MAX_BYTES = 2048;
const COUNTER_FROM_BYTES = 1536; // show "n / 2048 bytes" from here on
const GROUP_WINDOW_MS = 3 * 60 * 1000; // consecutive messages of one sender share a header

const ERROR_TEXT = {
  rate_limited: 'You are sending messages too fast. Wait a few seconds, then send again.',
  forbidden: 'You may not send messages in this room.',
  too_large: `The message is too long (at most ${CHAT_MAX_BYTES} bytes).`,
  not_joined: 'You are not in the room any more.',
  closed: 'Not connected to the server.',
  timeout: 'The server did not answer. Try again.',
};

const encoder = new TextEncoder();
export const utf8Length = (text) => encoder.encode(text).length;

let downloadHandler = null;

/** The files feature sets what a click on an attachment does (`fn(file)`). */
export function setDownloadFileHandler(fn) {
  downloadHandler = fn;
}

/**
 * Hook: the user asked for a chat attachment (`{id, name, size, content_type}`). A no-op
 * until the files feature calls setDownloadFileHandler().
 */
export function onDownloadFile(file) {
  if (downloadHandler) return downloadHandler(file);
  return undefined;
}

/** "12 KB"-style size. */
export function formatSize(bytes) {
  if (typeof bytes !== 'number' || !Number.isFinite(bytes) || bytes < 0) return '';
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB'];
  let n = bytes / 1024;
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${n < 10 ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
}

function fileLink(file) {
  const box = el('div', 'msg-file');
  const link = el('a', 'file-link');
  link.href = '#';
  link.dataset.fileId = String(file.id ?? '');
  link.append(icon('file'), el('span', 'file-name', file.name || 'file'));
  const size = formatSize(file.size);
  link.setAttribute('aria-label', `Download ${file.name || 'file'}${size ? ` (${size})` : ''}`);
  link.addEventListener('click', (ev) => {
    ev.preventDefault();
    onDownloadFile(file);
  });
  box.appendChild(link);
  if (size) box.appendChild(el('span', 'file-size', size));
  return box;
}

export class ChatView {
  /**
   * @param {object} els
   * @param {HTMLElement} els.log     the <ol> of messages
   * @param {HTMLElement} els.empty   shown while there are none
   * @param {HTMLFormElement} els.form
   * @param {HTMLTextAreaElement} els.input
   * @param {HTMLElement} els.error   inline error (role=alert)
   * @param {HTMLElement} els.counter byte counter
   * @param {HTMLButtonElement} els.button  the panel's toggle (gets the unread badge)
   * @param {import('./panels.js').Panels} panels
   */
  constructor({ log, empty, form, input, error, counter, send, button }, panels) {
    Object.assign(this, { log, empty, form, input, error, counter, send, button, panels });
    this.session = null;
    this.messages = []; // every message shown, oldest first
    this.ids = new Set();
    this.unread = 0;
    this.sending = false;
    this.onChat = (ev) => this.add(ev.detail.message, { live: true });
    this.onHistory = (ev) => {
      for (const m of ev.detail.messages) this.add(m, { live: false });
    };
    this.onEnded = () => this._setEnabled(false);

    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.submit();
    });
    input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        this.submit();
      }
    });
    input.addEventListener('input', () => this._checkLength());
    this._renderButton();
    this._setEnabled(false);
  }

  bind(session) {
    this.unbind();
    this.session = session;
    this.messages = [];
    this.ids.clear();
    this.unread = 0;
    this.log.replaceChildren();
    this.input.value = '';
    this._showError('');
    this._checkLength();
    this._renderButton();
    this.empty.hidden = false;
    session.addEventListener('chat', this.onChat);
    session.addEventListener('chat_history', this.onHistory);
    session.addEventListener('ended', this.onEnded);
    this._setEnabled(true);
  }

  unbind() {
    if (!this.session) return;
    this.session.removeEventListener('chat', this.onChat);
    this.session.removeEventListener('chat_history', this.onHistory);
    this.session.removeEventListener('ended', this.onEnded);
    this.session = null;
    this._setEnabled(false);
  }

  /** The panel opened: everything is read. */
  opened() {
    this.unread = 0;
    this._renderButton();
    this._scrollToEnd();
  }

  _setEnabled(on) {
    this.input.disabled = !on;
    this.send.disabled = !on;
  }

  _renderButton() {
    setButton(this.button, 'chat', 'Chat', null, this.unread > 0 ? this.unread : null);
    this.button.dataset.unread = String(this.unread);
    this.button.setAttribute('aria-label', this.unread > 0 ? `Chat, ${this.unread} unread` : 'Chat');
  }

  _showError(text) {
    this.error.textContent = text;
    this.error.hidden = !text;
  }

  _checkLength() {
    const bytes = utf8Length(this.input.value);
    const over = bytes > CHAT_MAX_BYTES;
    this.counter.hidden = bytes < COUNTER_FROM_BYTES;
    this.counter.textContent = `${bytes} / ${CHAT_MAX_BYTES} bytes`;
    this.counter.classList.toggle('over', over);
    this.input.setAttribute('aria-invalid', over ? 'true' : 'false');
    return !over;
  }

  async submit() {
    const session = this.session;
    const text = this.input.value;
    if (!session || this.sending || !text.trim()) return;
    if (!this._checkLength()) {
      this._showError(`The message is too long: ${utf8Length(text)} bytes, at most ${CHAT_MAX_BYTES}.`);
      return;
    }
    this.sending = true;
    this.send.setAttribute('aria-busy', 'true');
    this._showError('');
    try {
      await session.sendChat(text);
      // The server echoes it as a `chat` event; clear the box unless it was edited meanwhile.
      if (this.input.value === text) this.input.value = '';
      this._checkLength();
    } catch (err) {
      const code = err && err.code;
      this._showError(ERROR_TEXT[code] || `The message was not sent: ${err.message || err}`);
      this.error.dataset.code = code || '';
    } finally {
      this.sending = false;
      this.send.removeAttribute('aria-busy');
      this.input.focus();
    }
  }

  _nearEnd() {
    const { scrollTop, scrollHeight, clientHeight } = this.log;
    return scrollHeight - scrollTop - clientHeight < 80;
  }

  _scrollToEnd() {
    this.log.scrollTop = this.log.scrollHeight;
  }

  /** Show one message (ignored when already shown); `live` ones can be unread. */
  add(message, { live }) {
    if (!message || typeof message.text !== 'string' || this.ids.has(message.id)) return;
    this.ids.add(message.id);
    const me = this.session && this.session.me;
    const mine = Boolean(me && message.participant === me.sid);
    const previous = this.messages[this.messages.length - 1];
    this.messages.push(message);
    const stick = mine || this._nearEnd();

    const li = el('li', 'msg');
    li.dataset.id = String(message.id);
    li.dataset.participant = String(message.participant);
    if (mine) li.classList.add('mine');
    const at = new Date(message.at).getTime();
    const grouped =
      previous &&
      previous.participant === message.participant &&
      Number.isFinite(at) &&
      at - new Date(previous.at).getTime() < GROUP_WINDOW_MS;
    if (grouped) li.classList.add('cont');
    const head = el('div', 'msg-head');
    head.appendChild(el('span', 'msg-name', mine ? 'You' : message.name || message.identity || 'Guest'));
    const time = el('time', 'msg-time', clockTime(message.at));
    time.dateTime = message.at;
    head.appendChild(time);
    li.appendChild(head);
    const body = el('p', 'msg-text');
    body.append(...linkifyNodes(message.text)); // http(s) links clickable; the rest is text
    li.appendChild(body);
    if (message.file && typeof message.file === 'object') li.appendChild(fileLink(message.file));
    this.log.appendChild(li);
    this.empty.hidden = true;

    if (live && !mine && !this.panels.isOpen('chat')) {
      this.unread += 1;
      this._renderButton();
    }
    if (stick) this._scrollToEnd();
  }
}
