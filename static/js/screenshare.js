// Screen sharing: the "Share screen" button (getDisplayMedia, published as an extra video
// track with source "screen", see Session.startScreenShare), stopping from the button or from
// the browser's own "Stop sharing" bar (the track's `ended` event), and the stage layout: the
// newest screen share of another participant is shown large, camera tiles become a strip.
//
// The call area's `data-layout` is 'grid' or 'stage' (other views can add their own: while
// one takes the call area, e.g. the whiteboard's 'board', it calls setSuppressed(true) and
// the screen shares stay in the strip of tiles).

import { setButton } from './ui.js';

export class ScreenShare {
  /**
   * @param {object} els
   * @param {HTMLButtonElement} els.button
   * @param {HTMLElement} els.stage     where the featured screen tile goes (a <ul>)
   * @param {HTMLElement} els.callMain  the call area (gets data-layout)
   * @param {HTMLElement} els.grid      the tiles' grid (a screen tile goes back there)
   * @param {(text: string, isError?: boolean) => void} status
   */
  constructor({ button, stage, callMain, grid }, status) {
    Object.assign(this, { button, stage, callMain, grid, status });
    this.session = null;
    this.track = null; // our capture while sharing
    this.starting = false;
    this.featured = null; // the Tile on the stage
    this.suppressed = false; // another view has the call area (setSuppressed)
    this.supported = Boolean(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
    this.onScreens = () => this.layout();
    this.onLocal = () => {
      // Our share ended inside the Session (a demotion stops it): nothing left to stop here.
      if (this.track && !this.starting && this.session && this.session.screen === null) this._forget();
      this.renderButton();
    };
    /** The track's `ended` handler: the browser's "Stop sharing" (or the source closed). */
    this.onEnded = () => this.stop();
    button.addEventListener('click', () => this.toggle());
    this.renderButton();
  }

  get active() {
    return this.track !== null;
  }

  bind(session) {
    this.unbind();
    this.session = session;
    session.addEventListener('screens', this.onScreens);
    session.addEventListener('local', this.onLocal);
    this.layout();
    this.renderButton();
  }

  unbind() {
    if (this.session) {
      this.session.removeEventListener('screens', this.onScreens);
      this.session.removeEventListener('local', this.onLocal);
    }
    this.session = null;
    this._forget();
    this.layout();
    this.renderButton();
  }

  _forget() {
    if (this.track) this.track.removeEventListener('ended', this.onEnded);
    this.track = null;
  }

  /** Whether this session may share: a browser that can, a publisher, not a podcast room. */
  get allowed() {
    const s = this.session;
    return this.supported && !(s && (s.kind === 'podcast' || !s.canPublish));
  }

  renderButton() {
    const on = this.active;
    this.button.hidden = !this.allowed;
    setButton(this.button, on ? 'screenOff' : 'screen', on ? 'Stop sharing' : 'Share screen', on);
    this.button.disabled = this.starting || !this.session || this.session.state !== 'joined';
  }

  toggle() {
    return this.active ? this.stop() : this.start();
  }

  async start() {
    const session = this.session;
    if (!session || this.active || this.starting) return;
    this.starting = true;
    this.renderButton();
    let track = null;
    try {
      const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
      [track] = stream.getVideoTracks();
      for (const other of stream.getTracks()) if (other !== track) other.stop();
      if (this.session !== session) {
        track.stop();
        return;
      }
      this.track = track;
      track.addEventListener('ended', this.onEnded);
      await session.startScreenShare(track);
    } catch (err) {
      if (track && this.track === track) this._forget();
      // Cancelling the browser's picker is not an error worth a red line.
      if (err && err.name !== 'NotAllowedError' && err.name !== 'AbortError') {
        this.status(`Error — screen share: ${err.message || err.name}`, true);
      }
    } finally {
      this.starting = false;
      this.renderButton();
    }
  }

  async stop() {
    const session = this.session;
    const track = this.track;
    if (!track) return;
    this._forget();
    this.renderButton();
    track.stop();
    if (!session) return;
    try {
      await session.stopScreenShare();
    } catch (err) {
      this.status(`Error — stop sharing: ${err.message || err.name}`, true);
    }
  }

  /** Another view takes the call area (true): no stage, and `data-layout` is left to it. */
  setSuppressed(on) {
    this.suppressed = Boolean(on);
    this.layout();
  }

  /** Put the newest screen share of someone else on the stage, or go back to the grid. */
  layout() {
    const shares =
      this.session && !this.suppressed ? this.session.screenShares().filter((s) => !s.local) : [];
    const next = shares.length ? shares[shares.length - 1].tile : null;
    if (this.featured && this.featured !== next && this.featured.el.parentNode === this.stage) {
      // Back into the grid, right after its owner's camera tile.
      const owner = this.grid.querySelector(`.tile[data-sid="${CSS.escape(this.featured.sid)}"]:not(.screen)`);
      if (owner) owner.after(this.featured.el);
      else this.grid.appendChild(this.featured.el);
    }
    this.featured = next;
    if (next && next.el.parentNode !== this.stage) {
      this.stage.replaceChildren(next.el);
      next.video.play().catch(() => {});
    }
    if (!next) this.stage.replaceChildren();
    this.stage.hidden = next === null;
    if (!this.suppressed) this.callMain.dataset.layout = next ? 'stage' : 'grid';
  }
}
