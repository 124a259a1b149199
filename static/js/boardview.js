// The room's whiteboard in the call view (the widget is whiteboard.js; the protocol is the
// "Whiteboard" section of docs/protocol.md).
//
// A "Whiteboard" toggle in the controls shows the board large in the call area, as a screen
// share is shown: `#call-main[data-layout="board"]`, the camera tiles (and any screen share)
// in the strip below, while the side panels (chat...) stay usable beside it. Each participant
// opens or closes it for themselves; while it is closed the board still follows the room, and
// the toggle counts the strokes others added meanwhile.
//
// Wiring: one Whiteboard per Session, made on `joined` (it needs our identity); every server
// event goes to `whiteboard.handle(msg)` (it takes the board_* events and participant_left,
// and ignores the rest); requests go through `session.request` so that refusals are shown.
// Drawing needs canPublishData and clearing roomAdmin: `board_state` says both, and
// `role_changed` updates roomAdmin (a new host may clear).

import { Whiteboard } from './whiteboard.js';
import { setButton, el } from './ui.js';

export class BoardView {
  /**
   * @param {object} els
   * @param {HTMLElement} els.callMain  the call area (gets data-layout="board")
   * @param {HTMLElement} els.controls  the controls bar (the toggle goes in it)
   * @param {HTMLElement} els.before    the control the toggle goes before
   * @param {import('./screenshare.js').ScreenShare} screenShare  gives up the call area
   */
  constructor({ callMain, controls, before }, screenShare) {
    this.callMain = callMain;
    this.screenShare = screenShare;
    this.session = null;
    this.board = null;
    this.open = false;
    this.unseen = 0; // strokes by others while the board was closed

    this.area = el('section', 'board-area');
    this.area.id = 'board-area';
    this.area.setAttribute('aria-label', 'Whiteboard');
    this.area.hidden = true;
    this.host = el('div', 'board-host');
    this.area.appendChild(this.host);
    callMain.prepend(this.area);

    this.button = el('button', 'btn');
    this.button.type = 'button';
    this.button.id = 'board-button';
    this.button.setAttribute('aria-controls', this.area.id);
    this.button.addEventListener('click', () => this.toggle());
    controls.insertBefore(this.button, before);

    // The board as large as the area allows at 16:9, whatever the toolbar's height.
    this.fitFrame = 0;
    new ResizeObserver(() => this._scheduleFit()).observe(this.area);

    this.onEvent = (ev) => this._onEvent(ev.detail.msg);
    this.onRole = () => {
      const s = this.session;
      if (this.board && s) this.board.setPermissions({ canDraw: this._canDraw(s), canClear: s.roomAdmin });
    };
    this._renderButton();
  }

  bind(session) {
    this.unbind();
    this.session = session;
    session.addEventListener('roomevent', this.onEvent);
    session.addEventListener('role', this.onRole);
    this._renderButton();
  }

  unbind() {
    if (this.session) {
      this.session.removeEventListener('roomevent', this.onEvent);
      this.session.removeEventListener('role', this.onRole);
    }
    this.session = null;
    this.setOpen(false);
    if (this.board) this.board.destroy();
    this.board = null;
    this.unseen = 0;
    this._renderButton();
  }

  toggle() {
    this.setOpen(!this.open);
  }

  /** Show the board in the call area (true) or give the area back to the tiles (false). */
  setOpen(open) {
    const on = Boolean(open && this.board);
    if (on === this.open) return;
    this.open = on;
    this.area.hidden = !on;
    if (on) {
      this.unseen = 0;
      this.callMain.dataset.layout = 'board';
      this.screenShare.setSuppressed(true);
    } else {
      this.screenShare.setSuppressed(false); // sets data-layout back to 'grid' or 'stage'
    }
    this._renderButton();
    if (on) {
      this._fit();
      this.board.overlay.focus({ preventScroll: true });
    }
  }

  _scheduleFit() {
    if (this.fitFrame) return;
    this.fitFrame = requestAnimationFrame(() => {
      this.fitFrame = 0;
      this._fit();
    });
  }

  /** Width of the board: the area's width, or less so that its height fits under the rest of
   * the widget (toolbar, help, status). Set through the CSSOM (the CSP has no inline styles). */
  _fit() {
    if (!this.open || !this.board) return;
    const wb = this.host; // the widget's container (.wb): toolbar, stage, help, status
    const stage = this.board.stage;
    if (!stage) return;
    const gap = parseFloat(getComputedStyle(wb).rowGap) || 0;
    let chrome = gap * (wb.children.length - 1);
    for (const child of wb.children) if (child !== stage) chrome += child.offsetHeight;
    const width = Math.min(this.area.clientWidth, ((this.area.clientHeight - chrome) * 16) / 9);
    stage.style.width = `${Math.max(160, Math.floor(width))}px`;
  }

  _renderButton() {
    const badge = this.unseen > 0 ? (this.unseen > 9 ? '9+' : this.unseen) : null;
    setButton(this.button, 'board', 'Whiteboard', this.open, badge);
    this.button.disabled = !this.board;
    this.button.dataset.unseen = String(this.unseen);
    const news = this.unseen > 0 ? `, ${this.unseen} new` : '';
    this.button.setAttribute('aria-label', `Whiteboard${news}`);
  }

  /** A podcast listener draws only while the host lets listeners share (`stage_settings`). */
  _canDraw(s) {
    const listener = s.kind === 'podcast' && s.role === 'listener';
    return Boolean(s.canPublishData) && (!listener || s.listenerSharing);
  }

  _onEvent(msg) {
    const s = this.session;
    if (!s) return;
    if (msg.type === 'joined') {
      if (this.board) this.board.destroy();
      this.board = new Whiteboard(this.host, (m) => s.request(m), {
        identity: msg.participant ? msg.participant.identity : null,
        canDraw: s.canPublishData,
        canClear: s.roomAdmin,
      });
      this._renderButton();
      return;
    }
    if (!this.board) return;
    if (msg.type === 'stage_settings') this.board.setPermissions({ canDraw: this._canDraw(s) });
    this.board.handle(msg);
    if (msg.type === 'board_stroke' && !this.open && !(s.me && msg.participant === s.me.sid)) {
      this.unseen += 1;
      this._renderButton();
    }
  }
}
