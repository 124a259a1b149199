// Microphone and camera choice: the settings panel's two pickers, the stored preference
// (localStorage) that the next call starts with, and the device hot-plug (`devicechange`).
//
// Switching a device sends the new track on the existing sender (RTCRtpSender.replaceTrack,
// see Session.replaceLocalTrack): no renegotiation, the others see no new track.

const STORE_KEYS = { audio: 'sfu.device.audioinput', video: 'sfu.device.videoinput' };
const DEVICE_KIND = { audio: 'audioinput', video: 'videoinput' };
const VIDEO_SIZE = { width: 1280, height: 720 }; // 720p: three simulcast layers (publisher.js)

export function stored(kind) {
  try {
    return localStorage.getItem(STORE_KEYS[kind]) || null;
  } catch {
    return null; // storage disabled
  }
}

export function store(kind, deviceId) {
  try {
    if (deviceId) localStorage.setItem(STORE_KEYS[kind], deviceId);
    else localStorage.removeItem(STORE_KEYS[kind]);
  } catch {
    // storage disabled: the choice lasts for this call only
  }
}

/** getUserMedia constraints for one kind, preferring (not requiring) `deviceId`. */
export function constraintsFor(kind, deviceId, exact = false) {
  const base = kind === 'video' ? { ...VIDEO_SIZE } : {};
  if (deviceId) base.deviceId = exact ? { exact: deviceId } : { ideal: deviceId };
  return Object.keys(base).length ? base : true;
}

/**
 * The microphone and camera to start a call with: the stored choices when they still exist,
 * else the defaults; falls back to audio only, then video only. `audioOnly` (a podcast room):
 * the microphone alone.
 */
export async function getLocalMedia({ audioOnly = false } = {}) {
  const audio = constraintsFor('audio', stored('audio'));
  const video = constraintsFor('video', stored('video'));
  const attempts = audioOnly
    ? [{ audio, video: false }]
    : [
        { audio, video },
        { audio, video: false },
        { audio: false, video },
      ];
  let lastError = null;
  for (const constraints of attempts) {
    try {
      return await navigator.mediaDevices.getUserMedia(constraints);
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError ?? new Error('no media devices');
}

/** The camera alone (a podcast stage member turning it on while the stage shows video). */
export async function getCamera() {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: false,
    video: constraintsFor('video', stored('video')),
  });
  return stream.getVideoTracks()[0];
}

/** The id of the device a track captures from ('' when unknown). */
function deviceOf(track) {
  if (!track || !track.getSettings) return '';
  return track.getSettings().deviceId || '';
}

/**
 * The settings panel's pickers. `bind(session)` for each call; the lists refresh when the
 * panel opens, when the session's tracks change and on `devicechange`.
 */
export class DeviceSettings {
  /**
   * @param {object} els
   * @param {HTMLSelectElement} els.mic
   * @param {HTMLSelectElement} els.cam
   * @param {HTMLElement} els.error  an inline error line (role=alert)
   */
  constructor({ mic, cam, error }) {
    this.selects = { audio: mic, video: cam };
    this.error = error;
    this.session = null;
    this.devices = { audio: [], video: [] };
    this.switching = { audio: false, video: false };
    this.onLocal = () => this.refresh();
    this.onEnded = (ev) => this._trackEnded(ev.target);
    for (const kind of ['audio', 'video']) {
      this.selects[kind].addEventListener('change', () => this.choose(kind, this.selects[kind].value));
    }
    if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
      navigator.mediaDevices.addEventListener('devicechange', () => this._deviceChange());
    }
    this.refresh();
  }

  bind(session) {
    this.unbind();
    this.session = session;
    session.addEventListener('local', this.onLocal);
    this._showError('');
    this.refresh();
  }

  unbind() {
    if (this.session) this.session.removeEventListener('local', this.onLocal);
    this.session = null;
  }

  _track(kind) {
    const entry = this.session && this.session.local[kind];
    return entry ? entry.track : null;
  }

  /** Whether our capture of `kind` was stopped on purpose (the camera's "Stop camera"). */
  _stopped(kind) {
    const entry = this.session && this.session.local[kind];
    return Boolean(entry && entry.stopped);
  }

  _showError(text) {
    this.error.textContent = text;
    this.error.hidden = !text;
  }

  /** Re-read the device list and fill the pickers (labels need camera/mic permission). */
  async refresh() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
    let list;
    try {
      list = await navigator.mediaDevices.enumerateDevices();
    } catch {
      return;
    }
    for (const kind of ['audio', 'video']) {
      const devices = list.filter((d) => d.kind === DEVICE_KIND[kind] && d.deviceId);
      this.devices[kind] = devices;
      const track = this._track(kind);
      // Keep ended tracks watched: an unplugged device ends its track.
      if (track) track.addEventListener('ended', this.onEnded);
      this._fill(kind, devices, deviceOf(track) || stored(kind) || '');
    }
  }

  _fill(kind, devices, current) {
    const select = this.selects[kind];
    if (this.switching[kind]) return;
    const noun = kind === 'audio' ? 'Microphone' : 'Camera';
    const options = devices.map((d, i) => {
      const option = document.createElement('option');
      option.value = d.deviceId;
      option.textContent = d.label || `${noun} ${i + 1}`;
      return option;
    });
    if (options.length === 0) {
      const none = document.createElement('option');
      none.value = '';
      none.textContent = kind === 'audio' ? 'No microphone found' : 'No camera found';
      options.push(none);
    }
    select.replaceChildren(...options);
    select.disabled = devices.length === 0;
    if (devices.some((d) => d.deviceId === current)) select.value = current;
  }

  /**
   * Capture from `deviceId` and send it instead of the current track of `kind`; `remember`
   * stores the choice for the next calls (a fallback after an unplug does not).
   */
  async choose(kind, deviceId, remember = true) {
    if (!deviceId) return;
    if (remember) store(kind, deviceId);
    const session = this.session;
    if (!session || session.state !== 'joined') return; // used when the next call starts
    // Not publishing (a listener) or no video in this room: used when we publish.
    if (!session.canPublish || (kind === 'video' && session.kind === 'podcast')) return;
    // The camera is stopped ("Stop camera"): the stored choice is captured on "Start camera".
    if (this._stopped(kind)) return;
    if (deviceOf(this._track(kind)) === deviceId) return;
    this.switching[kind] = true;
    this.selects[kind].setAttribute('aria-busy', 'true');
    this._showError('');
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        [kind]: constraintsFor(kind, deviceId, true),
      });
      const [track] = kind === 'audio' ? stream.getAudioTracks() : stream.getVideoTracks();
      if (this.session !== session) {
        track.stop();
        return;
      }
      await session.replaceLocalTrack(track);
      track.addEventListener('ended', this.onEnded);
    } catch (err) {
      const noun = kind === 'audio' ? 'microphone' : 'camera';
      const why = err && err.name === 'NotReadableError' ? 'it is in use or unavailable' : err.message || err.name;
      this._showError(`Could not switch the ${noun}: ${why}.`);
    } finally {
      this.switching[kind] = false;
      this.selects[kind].removeAttribute('aria-busy');
      this.refresh();
    }
  }

  async _deviceChange() {
    await this.refresh();
    // A device that went away: move its kind to the first device still there.
    for (const kind of ['audio', 'video']) {
      const track = this._track(kind);
      if (!track || track.readyState !== 'ended' || this._stopped(kind)) continue;
      this._fallback(kind);
    }
  }

  _trackEnded(track) {
    const kind = track.kind;
    if (this._track(kind) !== track) return; // replaced on purpose, or not ours any more
    this._fallback(kind);
  }

  _fallback(kind) {
    const current = deviceOf(this._track(kind));
    const next = this.devices[kind].find((d) => d.deviceId !== current && d.deviceId !== 'default')
      || this.devices[kind][0];
    if (next) this.choose(kind, next.deviceId, false);
  }
}
