// "You are muted": a hint when we talk while our microphone is muted.
//
// Muting sets the microphone track's `enabled` to false (publisher.js), which makes it send
// silence, so the level is measured on a clone of the track (MediaStreamTrack.clone(), W3C
// Media Capture and Streams): the clone has its own `enabled` and hears the microphone. While
// muted, an AnalyserNode (Web Audio) reads its RMS level every POLL_MS; when it stays above
// SPEAKING_RMS for SPEAKING_POLLS polls in a row the hint shows, for HINT_MS. The clone and the
// AudioContext exist only while muted (and are stopped on unmute, on a device switch and when
// the call ends).

const POLL_MS = 100;
const SPEAKING_RMS = 0.02; // about -34 dBFS: a voice close to the microphone, not room noise
const SPEAKING_POLLS = 3; // 300 ms of speech
const HINT_MS = 5000;
const HINT_TEXT = 'You are muted. Unmute to talk (M).';

/** RMS of time-domain samples in [-1, 1]. */
export function rms(samples) {
  let sum = 0;
  for (let i = 0; i < samples.length; i += 1) sum += samples[i] * samples[i];
  return samples.length ? Math.sqrt(sum / samples.length) : 0;
}

export class MutedHint {
  /** @param {HTMLElement} hint  the hint's element (an empty role=status paragraph) */
  constructor(hint) {
    this.hint = hint;
    this.session = null;
    this.source = null; // the microphone track the clone was made from
    this.clone = null;
    this.ctx = null;
    this.analyser = null;
    this.buffer = null;
    this.timer = 0;
    this.hideTimer = 0;
    this.shown = false;
    this.loud = 0;
    this.level = 0; // the last RMS measured, for tests
    this.shownCount = 0; // how many times the hint showed this call, for tests
    this.onLocal = () => this.update();
  }

  bind(session) {
    this.unbind();
    this.session = session;
    this.shownCount = 0;
    session.addEventListener('local', this.onLocal);
    session.addEventListener('ended', this.onLocal);
    this.update();
  }

  unbind() {
    if (this.session) {
      this.session.removeEventListener('local', this.onLocal);
      this.session.removeEventListener('ended', this.onLocal);
    }
    this.session = null;
    this.update();
  }

  /** Whether the level is being watched (muted, with a microphone). */
  get watching() {
    return this.clone !== null;
  }

  /** Follow the microphone: watch its level while muted, stop watching otherwise. */
  update() {
    const s = this.session;
    const entry = s && s.state === 'joined' ? s.local.audio : null;
    const track = entry && entry.muted && entry.track.readyState === 'live' ? entry.track : null;
    if (track === this.source) return;
    this._stop();
    if (track) this._start(track);
  }

  _start(track) {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    this.source = track;
    this.clone = track.clone();
    this.clone.enabled = true;
    this.ctx = new Ctx();
    // Started by the mute click (a user gesture) in practice; resume in case it is suspended.
    this.ctx.resume().catch(() => {});
    const node = this.ctx.createMediaStreamSource(new MediaStream([this.clone]));
    this.analyser = this.ctx.createAnalyser();
    this.analyser.fftSize = 1024;
    this.buffer = new Float32Array(this.analyser.fftSize);
    node.connect(this.analyser);
    this.loud = 0;
    this.timer = setInterval(() => this._poll(), POLL_MS);
  }

  _stop() {
    clearInterval(this.timer);
    this.timer = 0;
    if (this.clone) this.clone.stop();
    if (this.ctx) this.ctx.close().catch(() => {});
    this.source = null;
    this.clone = null;
    this.ctx = null;
    this.analyser = null;
    this.level = 0;
    this._hide();
  }

  _poll() {
    if (!this.analyser) return;
    this.analyser.getFloatTimeDomainData(this.buffer);
    this.level = rms(this.buffer);
    this.loud = this.level >= SPEAKING_RMS ? this.loud + 1 : 0;
    if (this.loud >= SPEAKING_POLLS) this._show();
  }

  _show() {
    clearTimeout(this.hideTimer);
    if (!this.shown) {
      this.shown = true;
      this.shownCount += 1;
      // Text set into a live region that stays in the page: announced once per showing.
      this.hint.textContent = HINT_TEXT;
      this.hint.classList.add('shown');
    }
    this.hideTimer = setTimeout(() => this._hide(), HINT_MS);
  }

  _hide() {
    clearTimeout(this.hideTimer);
    this.hideTimer = 0;
    this.shown = false;
    this.hint.textContent = '';
    this.hint.classList.remove('shown');
  }
}
