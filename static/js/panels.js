// The call view's side panel: one <aside> that shows one panel at a time (participants, chat,
// settings, and whatever extensions add), each opened by its toggle button in the controls bar.
// On narrow screens the aside is a full-screen overlay (CSS).
//
// Keyboard: the toggles carry aria-expanded / aria-controls; opening moves focus into the
// panel, Escape (or the close button) closes it and gives focus back to its toggle. While the
// panel is a full-screen overlay, what it covers is `inert` (no focus, no clicks).

const OVERLAY_QUERY = '(max-width: 720px)'; // keep in step with app.css
//
// Extensions (a whiteboard, a files list) call `panels.create({id, title, icon, label})`: it
// adds the panel's section and a toggle button before the Leave button, and returns
// `{body, button}` to fill. See `add()` for panels whose markup is already in index.html.

import { setButton } from './ui.js';

export class Panels {
  /**
   * @param {object} els
   * @param {HTMLElement} els.aside   the side panel (#side-panel)
   * @param {HTMLElement} els.title   its heading (#side-title)
   * @param {HTMLElement} els.close   its close button
   * @param {HTMLElement} els.controls  the controls bar (new toggles go in there)
   * @param {HTMLElement} els.before    the control new toggles go before (Leave)
   * @param {HTMLElement[]} els.covered what the overlay covers on narrow screens
   */
  constructor({ aside, title, close, controls, before, covered = [] }) {
    this.aside = aside;
    this.covered = covered;
    this.overlay = window.matchMedia(OVERLAY_QUERY);
    this.overlay.addEventListener('change', () => this._inert());
    this.title = title;
    this.closeButton = close;
    this.controls = controls;
    this.before = before;
    this.panels = new Map(); // id -> {id, title, button, body, onopen, onclose, focus}
    this.current = null;
    this.listeners = new Set();
    this.closeButton.addEventListener('click', () => this.close());
    document.addEventListener('keydown', (ev) => {
      if (ev.key !== 'Escape' || ev.defaultPrevented || this.current === null || ev.isComposing) return;
      ev.preventDefault();
      this.close();
    });
  }

  /**
   * Register a panel whose section (`body`, inside the aside) and toggle (`button`) exist.
   * `focus` is the element to focus on open (default: the panel's heading); `onopen` and
   * `onclose` run after it opens or closes.
   */
  add({ id, title, button, body, focus = null, onopen = null, onclose = null }) {
    const panel = { id, title, button, body, focus, onopen, onclose };
    this.panels.set(id, panel);
    body.hidden = true;
    body.dataset.panel = id;
    body.setAttribute('role', 'region');
    body.setAttribute('aria-label', title);
    button.setAttribute('aria-expanded', 'false');
    button.setAttribute('aria-controls', this.aside.id);
    button.addEventListener('click', () => this.toggle(id));
    return panel;
  }

  /** Create a panel and its toggle (for extensions); returns {body, button}. */
  create({ id, title, icon = 'settings', label = title, onopen = null, onclose = null }) {
    const body = document.createElement('section');
    body.className = 'side-body';
    body.id = `panel-${id}`;
    this.aside.appendChild(body);
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'btn';
    button.id = `${id}-button`;
    setButton(button, icon, label);
    this.controls.insertBefore(button, this.before);
    this.add({ id, title, button, body, onopen, onclose });
    return { body, button };
  }

  isOpen(id) {
    return this.current === id;
  }

  /** Call `fn(currentId | null)` whenever a panel opens or closes. */
  onchange(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  toggle(id) {
    if (this.current === id) this.close();
    else this.open(id);
  }

  open(id, { focus = true } = {}) {
    const panel = this.panels.get(id);
    if (!panel) return;
    if (this.current !== null && this.current !== id) this._hide(this.panels.get(this.current));
    this.current = id;
    this.aside.hidden = false;
    this.aside.dataset.panel = id;
    this.title.textContent = panel.title;
    panel.body.hidden = false;
    panel.button.setAttribute('aria-expanded', 'true');
    panel.button.classList.add('active');
    this._inert();
    if (focus) (panel.focus || this.title).focus({ preventScroll: true });
    if (panel.onopen) panel.onopen();
    for (const fn of this.listeners) fn(id);
  }

  /** Close the open panel; focus goes back to its toggle unless `restoreFocus` is false. */
  close({ restoreFocus = true } = {}) {
    if (this.current === null) return;
    const panel = this.panels.get(this.current);
    this.current = null;
    this._hide(panel);
    this.aside.hidden = true;
    delete this.aside.dataset.panel;
    this._inert();
    if (restoreFocus && panel.button.isConnected && !panel.button.hidden) panel.button.focus();
    for (const fn of this.listeners) fn(null);
  }

  _inert() {
    const on = this.current !== null && this.overlay.matches;
    for (const el of this.covered) el.inert = on;
  }

  _hide(panel) {
    panel.body.hidden = true;
    panel.button.setAttribute('aria-expanded', 'false');
    panel.button.classList.remove('active');
    if (panel.onclose) panel.onclose();
  }
}
