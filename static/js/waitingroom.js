// The joiner's side of the host's gates (docs/protocol.md, `set_waiting_room`, `lock_room`):
// "Waiting for the host to let you in" while the server holds our `join` (`waiting`: no media
// yet), and a page in words when the join is refused: the host did not let us in, nobody
// answered, the meeting is locked or ended. Follows each Session from before it starts
// (attach), like podcast.js; app.js shows this section instead of the call while `active`.

import { h } from './dom.js';

/** reason (ErrorResponse.reason of a refused join) -> [title, explanation]. */
const REFUSALS = {
  denied: ['The host did not let you in', 'You can ask the host to let you in, and try again.'],
  waiting_timeout: ['Nobody let you in', 'The host did not answer in time. Try again later.'],
  waiting_room_full: ['The waiting room is full', 'Many people are waiting already. Try again in a few minutes.'],
  room_ended: ['The meeting has ended', 'The host ended the meeting while you were waiting.'],
  locked: ['This meeting is locked', 'The host locked the meeting, so nobody new can join right now.'],
};

export class WaitingRoomView {
  /**
   * @param {object} opts
   * @param {HTMLElement} opts.main      the section goes in it
   * @param {() => void} opts.onchange  re-render the page (the section replaces the call)
   * @param {() => void} opts.onback    "Back": show the join form or the lobby again
   */
  constructor({ main, onchange, onback }) {
    this.onchange = onchange;
    this.session = null;
    this.state = 'idle'; // 'idle' | 'waiting' | 'refused'
    this.reason = null;
    this.title = h('h2', { id: 'waiting-title', tabindex: '-1' });
    this.text = h('p', { class: 'hint', id: 'waiting-text' });
    this.spinner = h('span', { class: 'waiting-dots', 'aria-hidden': 'true' });
    this.cancel = h('button', { type: 'button', class: 'btn', id: 'waiting-cancel' }, ['Leave the waiting room']);
    this.back = h('button', { type: 'button', class: 'btn btn-primary', id: 'waiting-back' }, ['Back']);
    this.cancel.addEventListener('click', () => {
      if (this.session) this.session.leave();
    });
    this.back.addEventListener('click', () => {
      this.state = 'idle';
      this.onchange();
      onback();
    });
    this.section = h(
      'section',
      { class: 'panel waiting', id: 'waiting-section', 'aria-labelledby': 'waiting-title', hidden: true },
      [this.spinner, this.title, this.text, h('div', { class: 'row waiting-buttons' }, [this.cancel, this.back])],
    );
    main.appendChild(this.section);
  }

  /** True while this view replaces the call (waiting, or refused). */
  get active() {
    return this.state !== 'idle';
  }

  attach(session) {
    this.session = session;
    this.state = 'idle';
    this.reason = null;
    session.addEventListener('message', (ev) => {
      const msg = ev.detail.msg;
      if (session !== this.session || msg.type !== 'waiting') return;
      // The join's reply comes when the host answers: wait as long as the server does.
      const ms = Math.max(1, Number(msg.timeout_s) || 600) * 1000 + 10000;
      if (session.signal) session.signal.extendPending(ms);
      session.status(`Waiting for the host to let you into ${session.roomLabel}…`);
      this._set('waiting');
    });
    session.addEventListener('roomevent', (ev) => {
      if (session === this.session && ev.detail.msg.type === 'joined') this._set('idle');
    });
    session.addEventListener('ended', () => {
      if (session !== this.session) return;
      const err = session.joinError;
      const reason = err && err.reason;
      if (reason && REFUSALS[reason]) {
        this.reason = reason;
        // After the Session's own "Error — join: ..." line: say it in words instead.
        setTimeout(() => session.status(`${REFUSALS[reason][0]}.`, true), 0);
        this._set('refused');
      } else if (this.state === 'waiting') {
        this._set('idle');
      }
    });
  }

  _set(state) {
    const was = this.state;
    this.state = state;
    this.render();
    this.onchange();
    if (state !== 'idle' && state !== was) this.title.focus();
  }

  render() {
    this.section.hidden = this.state === 'idle';
    this.section.dataset.state = this.state;
    const room = this.session ? this.session.roomLabel : '';
    if (this.state === 'waiting') {
      this.title.textContent = 'Waiting for the host to let you in';
      this.text.textContent = `You asked to join ${room}. The host will let you in soon.`;
    } else if (this.state === 'refused') {
      const [title, text] = REFUSALS[this.reason];
      this.title.textContent = title;
      this.text.textContent = text;
    }
    this.spinner.hidden = this.state !== 'waiting';
    this.cancel.hidden = this.state !== 'waiting';
    this.back.hidden = this.state !== 'refused';
  }
}
