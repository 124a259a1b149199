// Emoji reactions: a small bar of buttons (opened from the controls) that sends `reaction`,
// and the `reactions` batches shown as bubbles floating over the call, one per sender and
// emoji, counting up while the same person keeps reacting.

import { el } from './ui.js';

export const REACTIONS = [
  ['👍', 'Thumbs up'],
  ['👏', 'Applause'],
  ['😂', 'Laughing'],
  ['❤️', 'Heart'],
  ['🎉', 'Celebrate'],
  ['😮', 'Surprised'],
];

const BUBBLE_MS = 3200; // how long a bubble floats (CSS animation of the same length)
const MERGE_MS = 1500; // a new batch of the same sender and emoji adds to a younger bubble
const MAX_BUBBLES = 24;

export class ReactionsView {
  /**
   * @param {object} els
   * @param {HTMLButtonElement} els.button  the controls' toggle
   * @param {HTMLElement} els.bar     the popover with the emoji buttons
   * @param {HTMLElement} els.note    a line in the bar for errors (rate limit)
   * @param {HTMLElement} els.layer   where bubbles float (over the call)
   */
  constructor({ button, bar, note, layer }) {
    Object.assign(this, { button, bar, note, layer });
    this.session = null;
    this.received = []; // {participant, emoji, count} of every batch, for tests
    this.bubbles = new Map(); // `${sid}\n${emoji}` -> {el, count, at}
    this.onReactions = (ev) => this.show(ev.detail.reactions);

    for (const [emoji, label] of REACTIONS) {
      const b = el('button', 'emoji-btn', emoji);
      b.type = 'button';
      b.dataset.emoji = emoji;
      b.setAttribute('aria-label', `React: ${label}`);
      b.title = label;
      b.addEventListener('click', () => this.send(emoji));
      bar.insertBefore(b, note);
    }
    button.setAttribute('aria-expanded', 'false');
    button.setAttribute('aria-controls', bar.id);
    button.addEventListener('click', () => (bar.hidden ? this.open() : this.close()));
    // Capture phase: Escape closes this popover before it could close a side panel.
    document.addEventListener(
      'keydown',
      (ev) => {
        if (ev.key !== 'Escape' || bar.hidden) return;
        ev.preventDefault();
        this.close();
      },
      true,
    );
    document.addEventListener('pointerdown', (ev) => {
      if (!bar.hidden && !bar.contains(ev.target) && !button.contains(ev.target)) this.close(false);
    });
  }

  bind(session) {
    this.unbind();
    this.session = session;
    this.received = [];
    session.addEventListener('reactions', this.onReactions);
  }

  unbind() {
    if (this.session) this.session.removeEventListener('reactions', this.onReactions);
    this.session = null;
    this.close(false);
    this.layer.replaceChildren();
    this.bubbles.clear();
  }

  open() {
    this.bar.hidden = false;
    this.button.setAttribute('aria-expanded', 'true');
    this.note.hidden = true;
    const first = this.bar.querySelector('button');
    if (first) first.focus();
  }

  close(restoreFocus = true) {
    if (this.bar.hidden) return;
    this.bar.hidden = true;
    this.button.setAttribute('aria-expanded', 'false');
    if (restoreFocus) this.button.focus();
  }

  async send(emoji) {
    if (!this.session) return;
    try {
      await this.session.sendReaction(emoji);
      this.note.hidden = true;
    } catch (err) {
      this.note.textContent =
        err && err.code === 'rate_limited' ? 'Slow down a little.' : `Not sent: ${err.message || err}`;
      this.note.hidden = false;
    }
  }

  /** Float the reactions of one `reactions` batch. */
  show(reactions) {
    const now = performance.now();
    for (const r of reactions) {
      this.received.push(r);
      const key = `${r.participant}\n${r.emoji}`;
      const known = this.bubbles.get(key);
      if (known && now - known.at < MERGE_MS && known.el.isConnected) {
        known.count += r.count;
        known.countEl.textContent = `×${known.count}`;
        known.countEl.hidden = false;
        continue;
      }
      this._bubble(key, r, now);
    }
    if (this.received.length > 500) this.received.splice(0, this.received.length - 500);
  }

  _bubble(key, r, now) {
    while (this.layer.childElementCount >= MAX_BUBBLES) this.layer.firstElementChild.remove();
    const bubble = el('div', 'reaction');
    bubble.dataset.emoji = r.emoji;
    bubble.dataset.participant = r.participant;
    const countEl = el('span', 'reaction-count', `×${r.count}`);
    countEl.hidden = r.count < 2;
    const name = this.session ? this.session.nameOf(r.participant) : '';
    bubble.append(el('span', 'reaction-emoji', r.emoji), countEl, el('span', 'reaction-name', name));
    // A spread of horizontal positions so that simultaneous reactions do not stack.
    bubble.style.left = `${5 + Math.random() * 55}%`;
    this.layer.appendChild(bubble);
    const entry = { el: bubble, count: r.count, at: now, countEl };
    this.bubbles.set(key, entry);
    setTimeout(() => {
      bubble.remove();
      if (this.bubbles.get(key) === entry) this.bubbles.delete(key);
    }, BUBBLE_MS);
  }
}
