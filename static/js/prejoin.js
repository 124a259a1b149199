// The pre-join screen: "You're joining Weekly sync", a camera and microphone preview with a
// level meter (Web Audio AnalyserNode), the microphone and camera pickers, and joining with the
// microphone or the camera off.
//
// A participant who may not publish (a podcast listener: the invite's `can_publish` is false)
// gets no preview at all: this screen never calls getUserMedia for them. A podcast speaker
// previews the microphone alone (podcast rooms publish audio only).
//
// The choices are handed over when the person clicks Join: {name, audio, video}, where
// `audio`/`video` false means "join with it off". The preview's tracks are stopped before the
// call captures again (the device choice is stored, devices.js, so the call uses the same ones).
// Turning the camera off here stops its capture (the camera light goes off).

import { getLocalMedia, stored, store, constraintsFor } from './devices.js';
import { describeError } from './errors.js';

const $ = (id) => document.getElementById(id);
const METER_INTERVAL_MS = 60;

/** A Web Audio level (0..100) from an RMS amplitude: -60 dBFS and below is 0, 0 dBFS is 100. */
export function levelOf(rms) {
  if (!(rms > 0)) return 0;
  const db = 20 * Math.log10(rms);
  return Math.max(0, Math.min(100, Math.round(((db + 60) / 60) * 100)));
}

export class PreJoin {
  constructor() {
    this.els = {
      section: $('prejoin-section'),
      title: $('prejoin-title'),
      room: $('prejoin-room'),
      role: $('prejoin-role'),
      media: $('prejoin-media'),
      video: $('prejoin-video'),
      camOff: $('prejoin-camoff'),
      level: $('prejoin-level'),
      levelBar: $('prejoin-level-bar'),
      note: $('prejoin-media-note'),
      form: $('join-form'),
      name: $('join-name'),
      micField: $('prejoin-mic-field'),
      camField: $('prejoin-cam-field'),
      mic: $('prejoin-mic'),
      cam: $('prejoin-cam'),
      toggles: $('prejoin-toggles'),
      micOn: $('prejoin-mic-on'),
      camOn: $('prejoin-cam-on'),
      camOnLabel: $('prejoin-cam-on-label'),
      error: $('prejoin-error'),
      join: $('join-button'),
    };
    this.onjoin = null; // ({name, audio, video}) => Promise
    this.opts = null; // {title, canPublish, audioOnly}
    this.stream = null; // the preview MediaStream
    this.audio = null; // {ctx, analyser, buf, timer}
    this.level = 0;
    this.peak = 0;
    this.captures = 0; // getUserMedia calls made by this screen
    this.generation = 0; // bumps on every open/close: late captures are dropped
    this._wire();
  }

  _wire() {
    const e = this.els;
    e.form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this._join();
    });
    e.micOn.addEventListener('change', () => this._applyMic());
    e.camOn.addEventListener('change', () => this._applyCam());
    e.mic.addEventListener('change', () => this._switch('audio', e.mic.value));
    // Browsers start an AudioContext made without a user gesture suspended: the first click or
    // key press on this screen wakes the level meter.
    const wake = () => {
      if (this.audio && this.audio.ctx.state === 'suspended') this.audio.ctx.resume().catch(() => {});
    };
    e.section.addEventListener('pointerdown', wake);
    e.section.addEventListener('keydown', wake);
    e.cam.addEventListener('change', () => this._switch('video', e.cam.value));
  }

  get isOpen() {
    return this.opts !== null;
  }

  /** What tests and the console see: window.sfu.prejoin. */
  snapshot() {
    const audio = this.stream ? this.stream.getAudioTracks()[0] : null;
    const video = this.stream ? this.stream.getVideoTracks()[0] : null;
    return {
      open: this.isOpen,
      title: this.opts ? this.opts.title : null,
      canPublish: this.opts ? this.opts.canPublish : null,
      captures: this.captures,
      level: this.level,
      peak: this.peak,
      micOn: this.els.micOn.checked,
      camOn: this.els.camOn.checked,
      audioLive: Boolean(audio && audio.readyState === 'live' && audio.enabled),
      videoLive: Boolean(video && video.readyState === 'live'),
    };
  }

  /**
   * Show the screen for a room: `title` (its display name), `canPublish` (false: a listener,
   * no capture), `audioOnly` (a podcast speaker), `name` (the display name to start with).
   */
  open({ title, canPublish = true, audioOnly = false, name = '' }) {
    this.close();
    this.generation += 1;
    this.opts = { title, canPublish, audioOnly };
    const e = this.els;
    e.room.textContent = title;
    if (name && !e.name.value) e.name.value = name;
    e.role.textContent = canPublish
      ? audioOnly
        ? 'Check your microphone before you join. This room is audio only.'
        : 'Check your camera and microphone before you join.'
      : "You'll join as a listener: your microphone stays off. You can raise your hand once you're in.";
    e.media.hidden = !canPublish;
    e.micField.hidden = !canPublish;
    e.camField.hidden = !canPublish || audioOnly;
    e.toggles.hidden = !canPublish;
    e.camOnLabel.hidden = audioOnly;
    e.video.hidden = audioOnly;
    e.camOff.hidden = true;
    this._showError('');
    this._setLevel(0);
    this.peak = 0;
    if (canPublish) this._capture();
  }

  /** Stop the preview (tracks, meter) and forget the room. */
  close() {
    this.generation += 1;
    this._stopMeter();
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    this.stream = null;
    this.els.video.srcObject = null;
    this.opts = null;
  }

  focus() {
    const e = this.els;
    (e.name.value ? e.join : e.name).focus();
  }

  _note(text) {
    this.els.note.textContent = text || '';
  }

  _showError(text) {
    this.els.error.textContent = text || '';
    this.els.error.hidden = !text;
  }

  async _gum(constraints) {
    this.captures += 1;
    return navigator.mediaDevices.getUserMedia(constraints);
  }

  async _capture() {
    const gen = this.generation;
    const { audioOnly } = this.opts;
    this._note('Asking your browser for the camera and microphone…');
    let stream;
    try {
      this.captures += 1;
      stream = await getLocalMedia({ audioOnly });
    } catch (err) {
      if (gen !== this.generation) return;
      this._note(`${describeError(err)} You can still join and listen.`);
      return;
    }
    if (gen !== this.generation) {
      for (const track of stream.getTracks()) track.stop();
      return;
    }
    this.stream = new MediaStream(stream.getTracks());
    this._note('');
    this._showVideo();
    this._startMeter();
    this._applyMic();
    if (!this.els.camOn.checked) this._applyCam();
    await this._fillPickers();
  }

  _showVideo() {
    const e = this.els;
    const video = this.stream ? this.stream.getVideoTracks()[0] : null;
    e.camOff.hidden = this.opts.audioOnly || Boolean(video);
    e.video.srcObject = video ? new MediaStream([video]) : null;
  }

  // --- level meter (Web Audio AnalyserNode, W3C Web Audio API) ----------------------------

  _startMeter() {
    this._stopMeter();
    const track = this.stream ? this.stream.getAudioTracks()[0] : null;
    if (!track || typeof AudioContext === 'undefined') return;
    const ctx = new AudioContext();
    const source = ctx.createMediaStreamSource(new MediaStream([track]));
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 1024;
    source.connect(analyser); // not to the destination: no echo of yourself
    const buf = new Float32Array(analyser.fftSize);
    const timer = setInterval(() => {
      analyser.getFloatTimeDomainData(buf);
      let sum = 0;
      for (const v of buf) sum += v * v;
      const level = track.enabled ? levelOf(Math.sqrt(sum / buf.length)) : 0;
      this._setLevel(level);
    }, METER_INTERVAL_MS);
    if (ctx.state === 'suspended') ctx.resume().catch(() => {});
    this.audio = { ctx, source, analyser, timer };
  }

  _stopMeter() {
    if (!this.audio) return;
    clearInterval(this.audio.timer);
    this.audio.source.disconnect();
    this.audio.ctx.close().catch(() => {});
    this.audio = null;
    this._setLevel(0);
  }

  _setLevel(level) {
    this.level = level;
    this.peak = Math.max(this.peak, level);
    this.els.levelBar.style.width = `${level}%`;
    this.els.level.setAttribute('aria-valuenow', String(level));
    this.els.level.dataset.active = String(level > 5);
  }

  // --- microphone and camera on/off, device choice ---------------------------------------

  _applyMic() {
    const track = this.stream ? this.stream.getAudioTracks()[0] : null;
    if (track) track.enabled = this.els.micOn.checked;
    if (this.audio && this.audio.ctx.state === 'suspended') this.audio.ctx.resume().catch(() => {});
    if (!this.els.micOn.checked) this._setLevel(0);
  }

  /** Camera off stops the capture (the light goes off); on captures it again. */
  async _applyCam() {
    if (!this.opts || this.opts.audioOnly || !this.opts.canPublish) return;
    const on = this.els.camOn.checked;
    const current = this.stream ? this.stream.getVideoTracks()[0] : null;
    if (!on && current) {
      current.stop();
      this.stream.removeTrack(current);
      this._showVideo();
      this.els.camOff.hidden = false;
      return;
    }
    if (on && !current && this.stream) await this._switch('video', this.els.cam.value || stored('video'));
    if (!on) this.els.camOff.hidden = false;
  }

  /** Capture `kind` from another device (kept for the call, devices.js) and preview it. */
  async _switch(kind, deviceId) {
    if (!this.stream || !this.opts) return;
    if (deviceId) store(kind, deviceId);
    if (kind === 'video' && !this.els.camOn.checked) return; // used when the camera goes on
    const gen = this.generation;
    let track;
    try {
      const stream = await this._gum({ [kind]: constraintsFor(kind, deviceId || null, Boolean(deviceId)) });
      track = kind === 'audio' ? stream.getAudioTracks()[0] : stream.getVideoTracks()[0];
    } catch (err) {
      this._showError(describeError(err));
      return;
    }
    if (gen !== this.generation || !this.stream) {
      track.stop();
      return;
    }
    this._showError('');
    for (const old of kind === 'audio' ? this.stream.getAudioTracks() : this.stream.getVideoTracks()) {
      old.stop();
      this.stream.removeTrack(old);
    }
    this.stream.addTrack(track);
    if (kind === 'audio') {
      this._startMeter();
      this._applyMic();
    } else {
      this._showVideo();
    }
  }

  async _fillPickers() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
    let list = [];
    try {
      list = await navigator.mediaDevices.enumerateDevices();
    } catch {
      return;
    }
    const fill = (select, deviceKind, noun, track) => {
      const devices = list.filter((d) => d.kind === deviceKind && d.deviceId);
      const current = track && track.getSettings ? track.getSettings().deviceId : '';
      select.replaceChildren(
        ...devices.map((d, i) => {
          const option = document.createElement('option');
          option.value = d.deviceId;
          option.textContent = d.label || `${noun} ${i + 1}`;
          return option;
        }),
      );
      if (!devices.length) {
        const option = document.createElement('option');
        option.value = '';
        option.textContent = `No ${noun.toLowerCase()} found`;
        select.append(option);
      }
      if (current) select.value = current;
    };
    const stream = this.stream;
    fill(this.els.mic, 'audioinput', 'Microphone', stream ? stream.getAudioTracks()[0] : null);
    fill(this.els.cam, 'videoinput', 'Camera', stream ? stream.getVideoTracks()[0] : null);
  }

  // --- join -----------------------------------------------------------------------------

  async _join() {
    if (!this.opts || !this.onjoin) return;
    const e = this.els;
    const choice = {
      name: e.name.value.trim(),
      audio: !this.opts.canPublish || e.micOn.checked,
      video: !this.opts.canPublish || this.opts.audioOnly || e.camOn.checked,
    };
    e.join.disabled = true;
    this._showError('');
    try {
      await this.onjoin(choice);
    } finally {
      e.join.disabled = false;
    }
  }
}
