// Raise or lower our hand from anywhere (the keyboard shortcut): one small entry point that
// the views with a hand button plug into, tolerant of rooms without one.
//
// Order: a handler set with setHandToggle() (a conference's hand button, when a feature adds
// one); else a visible, enabled hand button on the page (#hand-button, the podcast's
// .pod-hand-btn) is clicked; else the `raise_hand` request is sent directly (docs/protocol.md)
// and our state follows the server's `hand` event. A refused request shows the server's
// sentence ("Could not raise your hand: only listeners raise hands; you are on stage.").

let handler = null;

/** A feature with its own hand button sets what the shortcut does (`fn()`, may be async). */
export function setHandToggle(fn) {
  handler = fn;
}

const HAND_BUTTONS = '#hand-button, .pod-hand-btn';

function visibleButton() {
  for (const button of document.querySelectorAll(HAND_BUTTONS)) {
    if (!button.hidden && !button.disabled && button.offsetParent !== null) return button;
  }
  return null;
}

/** The sentence of an error (a SignalError's message is "code: sentence"). */
export function errorSentence(err) {
  const text = (err && err.message) || String(err);
  const detail = err && err.code && text.startsWith(`${err.code}: `) ? text.slice(err.code.length + 2) : text;
  return detail.replace(/[.\s]+$/, '');
}

export class HandToggle {
  /** @param {(text: string) => void} onError  shows a refused request's sentence */
  constructor(onError) {
    this.onError = onError;
    this.session = null;
    this.raised = false; // our hand as the server last said (`hand`)
    this.onMessage = (ev) => {
      const msg = ev.detail.msg;
      if (msg && msg.type === 'hand') this.raised = Boolean(msg.raised);
    };
  }

  bind(session) {
    this.unbind();
    this.session = session;
    this.raised = false;
    session.addEventListener('message', this.onMessage);
  }

  unbind() {
    if (this.session) this.session.removeEventListener('message', this.onMessage);
    this.session = null;
  }

  /** Raise the hand, or lower it when raised. */
  async toggle() {
    const s = this.session;
    if (!s || s.state !== 'joined') return;
    if (handler) {
      try {
        await handler();
      } catch (err) {
        this.onError(`Could not change your hand: ${errorSentence(err)}.`);
      }
      return;
    }
    const button = visibleButton();
    if (button) {
      button.click();
      return;
    }
    const raised = !this.raised;
    try {
      await s.request({ type: 'raise_hand', raised });
      this.raised = raised;
    } catch (err) {
      this.onError(`Could not ${raised ? 'raise' : 'lower'} your hand: ${errorSentence(err)}.`);
    }
  }
}
