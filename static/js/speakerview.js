// Speaker view and pinned tiles. The call area shows either the grid (every tile the same
// size, layout.js) or the speaker view: one camera tile large in the spotlight (#spotlight),
// the others in a strip below it, as when a screen share is on the stage.
//
// The large tile is the pinned one (each camera tile has a Pin button; pinning switches to
// the speaker view, unpinning goes back to the view chosen before), else the loudest other
// participant (`active_speakers`, held at least HOLD_MS so that the picture does not flicker
// between two voices), else the one shown before, else the first other participant, else us.
//
// The speaker view gives way to a screen share or the whiteboard (the call area's
// `data-layout` is then 'stage' or 'board'): the tiles all go back to the strip, and it comes
// back when they end. It sets `data-view="speaker"` on the call area while it shows.

import { icon, setButton } from './ui.js';

const HOLD_MS = 1500;

export class SpeakerView {
  /**
   * @param {object} els
   * @param {HTMLElement} els.callMain   the call area (#call-main, its data-layout)
   * @param {HTMLElement} els.grid       the tiles' grid (#grid)
   * @param {HTMLElement} els.spotlight  the large tile's list (#spotlight)
   * @param {HTMLButtonElement} els.button  the grid / speaker view toggle
   */
  constructor({ callMain, grid, spotlight, button }) {
    Object.assign(this, { callMain, grid, spotlight, button });
    this.session = null;
    this.mode = 'grid'; // the view the person chose: 'grid' | 'speaker'
    this.pinned = null; // sid of the pinned tile
    this.featured = null; // sid of the tile in the spotlight
    this.lastSwitch = 0;
    this.timer = 0;
    this.onChange = () => this.render();
    button.addEventListener('click', () => this.setMode(this.mode === 'speaker' ? 'grid' : 'speaker'));
    new MutationObserver(() => this.render()).observe(grid, { childList: true });
    new MutationObserver(() => this.render()).observe(callMain, {
      attributes: true,
      attributeFilter: ['data-layout'],
    });
    // A pin button's click (event delegation: tiles come and go).
    for (const list of [grid, spotlight]) {
      list.addEventListener('click', (ev) => {
        const pin = ev.target instanceof Element ? ev.target.closest('.tile-pin') : null;
        if (!pin) return;
        const sid = pin.closest('.tile').dataset.sid;
        if (this.pinned === sid) this.unpin();
        else this.pin(sid);
        pin.focus({ preventScroll: true });
      });
    }
    this.render();
  }

  bind(session) {
    this.unbind();
    this.session = session;
    this.pinned = null;
    this.featured = null;
    for (const type of ['participants', 'screens', 'local']) session.addEventListener(type, this.onChange);
    this.render();
  }

  unbind() {
    if (this.session) {
      for (const type of ['participants', 'screens', 'local']) this.session.removeEventListener(type, this.onChange);
    }
    this.session = null;
    this.pinned = null;
    this.render();
  }

  /** 'grid' or 'speaker' (the toggle button). Choosing the grid unpins. */
  setMode(mode) {
    this.mode = mode === 'speaker' ? 'speaker' : 'grid';
    if (this.mode === 'grid') this.pinned = null;
    this.render();
  }

  /** Pin a camera tile (by participant sid): it is shown large until unpinned. */
  pin(sid) {
    this.pinned = sid;
    this.render();
  }

  unpin() {
    this.pinned = null;
    this.render();
  }

  /** Whether the speaker view shows now. */
  get active() {
    const s = this.session;
    return Boolean(
      s &&
        s.state === 'joined' &&
        s.kind !== 'podcast' &&
        this.callMain.dataset.layout === 'grid' &&
        (this.mode === 'speaker' || this.pinned !== null),
    );
  }

  _tiles() {
    return [...this.grid.children, ...this.spotlight.children].filter(
      (el) => el.classList.contains('tile') && !el.classList.contains('screen'),
    );
  }

  _choose(tiles) {
    const s = this.session;
    const bySid = (sid) => tiles.find((t) => t.dataset.sid === sid) || null;
    const me = s.me ? s.me.sid : null;
    if (this.pinned !== null) {
      const pinned = bySid(this.pinned);
      if (pinned) return pinned;
      this.pinned = null; // they left
    }
    const current = this.featured !== null ? bySid(this.featured) : null;
    const loudest = s.activeSpeakers.map((sp) => sp.participant).find((sid) => sid !== me && bySid(sid));
    if (loudest && loudest !== this.featured) {
      const wait = this.lastSwitch + HOLD_MS - Date.now();
      if (!current || wait <= 0) return bySid(loudest);
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.render(), wait);
      return current;
    }
    if (current) return current;
    return tiles.find((t) => t.dataset.sid !== me) || tiles[0] || null;
  }

  render() {
    const tiles = this._tiles();
    const active = this.active;
    const next = active ? this._choose(tiles) : null;
    // Whatever else is in the spotlight goes back into the grid (us first).
    for (const child of [...this.spotlight.children]) {
      if (child === next) continue;
      if (child.classList.contains('local') && !child.classList.contains('screen')) this.grid.prepend(child);
      else this.grid.appendChild(child);
      this._play(child);
    }
    if (next && next.parentNode !== this.spotlight) {
      this.spotlight.appendChild(next);
      this._play(next);
    }
    const sid = next ? next.dataset.sid : null;
    if (sid !== this.featured) this.lastSwitch = Date.now();
    this.featured = sid;
    this.spotlight.hidden = next === null;
    if (next) this.callMain.dataset.view = 'speaker';
    else delete this.callMain.dataset.view;
    for (const tile of tiles) {
      tile.classList.toggle('pinned', tile.dataset.sid === this.pinned);
      this._pinButton(tile);
    }
    this._renderButton();
  }

  _play(tile) {
    const video = tile.querySelector('video');
    if (video && video.srcObject) video.play().catch(() => {});
  }

  _pinButton(tile) {
    let button = tile.querySelector(':scope > .tile-pin');
    if (!button) {
      button = document.createElement('button');
      button.type = 'button';
      button.className = 'tile-pin';
      button.appendChild(icon('pin'));
      tile.appendChild(button);
    }
    const pinned = tile.dataset.sid === this.pinned;
    const name = tile.classList.contains('local') ? 'yourself' : tile.dataset.name || 'this participant';
    const label = pinned ? `Unpin ${name}` : `Pin ${name}`;
    if (button.getAttribute('aria-label') !== label) {
      button.setAttribute('aria-label', label);
      button.title = label;
    }
    const pressed = pinned ? 'true' : 'false';
    if (button.getAttribute('aria-pressed') !== pressed) button.setAttribute('aria-pressed', pressed);
  }

  _renderButton() {
    const s = this.session;
    const speaker = this.mode === 'speaker' || this.pinned !== null;
    this.button.hidden = !s || s.kind === 'podcast';
    setButton(this.button, speaker ? 'speaker' : 'grid', 'Speaker view', speaker);
  }
}
