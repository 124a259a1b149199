// DOM helpers: the status line, participant tiles and icons.
//
// Text that comes from other participants (names) is only ever set with textContent.

const SVG_NS = 'http://www.w3.org/2000/svg';

// Static icon shapes (24x24 viewBox). Each entry is [element, attributes].
const ICONS = {
  mic: [
    ['rect', { x: 9, y: 3, width: 6, height: 11, rx: 3 }],
    ['path', { d: 'M5 11a7 7 0 0 0 14 0M12 18v3' }],
  ],
  micOff: [
    ['rect', { x: 9, y: 3, width: 6, height: 11, rx: 3 }],
    ['path', { d: 'M5 11a7 7 0 0 0 14 0M12 18v3M3 3l18 18' }],
  ],
  cam: [
    ['rect', { x: 2, y: 6, width: 13, height: 12, rx: 2 }],
    ['path', { d: 'M15 10l6-3v10l-6-3z' }],
  ],
  camOff: [
    ['rect', { x: 2, y: 6, width: 13, height: 12, rx: 2 }],
    ['path', { d: 'M15 10l6-3v10l-6-3zM3 3l18 18' }],
  ],
  leave: [['path', { d: 'M10 4H5v16h5M14 8l4 4-4 4M18 12H9' }]],
  screen: [
    ['rect', { x: 2, y: 4, width: 20, height: 13, rx: 2 }],
    ['path', { d: 'M8 21h8M12 17v4M12 14V8M9 10.5l3-3 3 3' }],
  ],
  screenOff: [
    ['rect', { x: 2, y: 4, width: 20, height: 13, rx: 2 }],
    ['path', { d: 'M8 21h8M12 17v4M9 8l6 6M15 8l-6 6' }],
  ],
  people: [
    ['circle', { cx: 9, cy: 8, r: 3.5 }],
    ['path', { d: 'M2.5 20a6.5 6.5 0 0 1 13 0M16 4.5a3.5 3.5 0 0 1 0 7M18 14.5a6.5 6.5 0 0 1 3.5 5.5' }],
  ],
  eye: [
    ['path', { d: 'M2 12s3.5-7 10-7 10 7 10 7-3.5 7-10 7S2 12 2 12z' }],
    ['circle', { cx: 12, cy: 12, r: 3 }],
  ],
  chat: [['path', { d: 'M4 5h16v11H9l-5 4z' }]],
  settings: [
    ['path', { d: 'M4 6h9M17 6h3M4 12h3M11 12h9M4 18h11M19 18h1' }],
    ['circle', { cx: 15, cy: 6, r: 2 }],
    ['circle', { cx: 9, cy: 12, r: 2 }],
    ['circle', { cx: 17, cy: 18, r: 2 }],
  ],
  smile: [
    ['circle', { cx: 12, cy: 12, r: 9 }],
    ['path', { d: 'M8 14a4.5 4.5 0 0 0 8 0M9 9.5h.01M15 9.5h.01' }],
  ],
  send: [['path', { d: 'M4 12l16-8-6 16-2.5-6.5z' }]],
  close: [['path', { d: 'M6 6l12 12M18 6L6 18' }]],
  file: [['path', { d: 'M6 2h8l5 5v15H6zM14 2v5h5' }]],
  attach: [['path', { d: 'M20 11.5l-8.2 8.2a5 5 0 0 1-7.1-7.1l8.5-8.5a3.3 3.3 0 0 1 4.7 4.7l-8.5 8.5a1.7 1.7 0 0 1-2.4-2.4L15 7' }]],
  download: [['path', { d: 'M12 4v11M7 10.5l5 5 5-5M5 20h14' }]],
  board: [
    ['rect', { x: 3, y: 4, width: 18, height: 13, rx: 2 }],
    ['path', { d: 'M7 13c2-3 3.5-4 5-2s3 1 5-2M8 21l2-4M16 21l-2-4' }],
  ],
  pin: [['path', { d: 'M9 4h6l-1 5 3 3v2H7v-2l3-3zM12 14v7' }]],
  grid: [
    ['rect', { x: 3, y: 4, width: 8, height: 7, rx: 1 }],
    ['rect', { x: 13, y: 4, width: 8, height: 7, rx: 1 }],
    ['rect', { x: 3, y: 13, width: 8, height: 7, rx: 1 }],
    ['rect', { x: 13, y: 13, width: 8, height: 7, rx: 1 }],
  ],
  speaker: [
    ['rect', { x: 3, y: 3, width: 18, height: 12, rx: 1.5 }],
    ['rect', { x: 3, y: 17, width: 5, height: 4, rx: 1 }],
    ['rect', { x: 9.5, y: 17, width: 5, height: 4, rx: 1 }],
    ['rect', { x: 16, y: 17, width: 5, height: 4, rx: 1 }],
  ],
  hand: [['path', { d: 'M8 13V5.5a1.5 1.5 0 0 1 3 0V12M11 11V4a1.5 1.5 0 0 1 3 0v7M14 11V5.5a1.5 1.5 0 0 1 3 0V14a7 7 0 0 1-7 7 6 6 0 0 1-5-3l-2.5-4.5a1.5 1.5 0 0 1 2.5-1.5L8 15' }]],
  keyboard: [
    ['rect', { x: 2, y: 6, width: 20, height: 12, rx: 2 }],
    ['path', { d: 'M6 10h.01M10 10h.01M14 10h.01M18 10h.01M7 14h10' }],
  ],
  signal: [
    ['path', { d: 'M5 20v-3', class: 'bar bar-1' }],
    ['path', { d: 'M10 20v-7', class: 'bar bar-2' }],
    ['path', { d: 'M15 20V9', class: 'bar bar-3' }],
    ['path', { d: 'M20 20V4', class: 'bar bar-4' }],
  ],
};

export function icon(name) {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('fill', 'none');
  svg.setAttribute('stroke', 'currentColor');
  svg.setAttribute('stroke-width', '2');
  svg.setAttribute('stroke-linecap', 'round');
  svg.setAttribute('stroke-linejoin', 'round');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  for (const [tag, attrs] of ICONS[name]) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    svg.appendChild(el);
  }
  return svg;
}

/**
 * Replace a button's icon and visible label (the label is also its accessible name; narrow
 * screens hide it visually, not from assistive technology). `pressed` null leaves aria-pressed
 * alone (for buttons that use aria-expanded instead).
 */
export function setButton(button, iconName, label, pressed = null, badge = null) {
  button.replaceChildren(icon(iconName));
  const span = document.createElement('span');
  span.className = 'btn-label';
  span.textContent = label;
  button.appendChild(span);
  if (badge !== null && badge !== '') {
    const b = document.createElement('span');
    b.className = 'badge';
    b.setAttribute('aria-hidden', 'true');
    b.textContent = String(badge);
    button.appendChild(b);
  }
  button.title = label;
  if (pressed !== null) button.setAttribute('aria-pressed', pressed ? 'true' : 'false');
}

/** A short "12:34" for an ISO time; '' when it does not parse. */
export function clockTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** An element with a class and (text only, never markup) content. */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

export class StatusLine {
  constructor(el) {
    this.el = el;
  }

  set(text, isError = false) {
    this.el.textContent = text;
    this.el.classList.toggle('error', isError);
  }
}

function indicator(cls, iconName, label) {
  const span = document.createElement('span');
  span.className = `ind ${cls}`;
  span.setAttribute('role', 'img');
  span.setAttribute('aria-label', label);
  span.title = label;
  span.hidden = true;
  span.appendChild(icon(iconName));
  return span;
}

/**
 * One participant's tile: a <video> that plays that participant's MediaStream (audio and
 * video), a name label and muted indicators. A `screen` tile shows a screen share instead
 * (never mirrored, letterboxed rather than cropped); it has the participant's sid too.
 */
export class Tile {
  constructor({ sid, name, local = false, screen = false }) {
    this.sid = sid;
    this.screen = screen;
    this.since = 0; // when a screen tile appeared (the newest share is shown large)
    this.el = document.createElement('li');
    this.el.className = 'tile no-video';
    if (local) this.el.classList.add('local');
    if (screen) this.el.classList.add('screen');
    this.el.dataset.sid = sid;
    if (screen) this.el.dataset.screen = 'true';
    this.el.dataset.micMuted = 'false';
    this.el.dataset.camMuted = 'false';

    this.video = document.createElement('video');
    this.video.autoplay = true;
    this.video.playsInline = true;
    this.video.muted = local; // never play our own microphone back
    this.video.setAttribute('aria-hidden', 'true');
    const framed = () => this.el.classList.toggle('no-frames', this.video.videoWidth === 0);
    this.video.addEventListener('resize', framed);
    this.video.addEventListener('loadeddata', framed);

    this.avatar = document.createElement('div');
    this.avatar.className = 'avatar';
    this.avatar.setAttribute('aria-hidden', 'true');

    const caption = document.createElement('div');
    caption.className = 'caption';
    this.nameEl = document.createElement('span');
    this.nameEl.className = 'name';
    this.micInd = indicator('ind-mic', 'micOff', 'microphone muted');
    this.camInd = indicator('ind-cam', 'camOff', 'camera off');
    this.qualityInd = indicator('ind-quality', 'signal', '');
    caption.append(this.nameEl, this.micInd, this.camInd, this.qualityInd);

    this.el.append(this.video, this.avatar, caption);
    this.setName(name, local);
  }

  setName(name, local = this.el.classList.contains('local')) {
    const shown = name || 'Guest';
    let label = local ? `${shown} (you)` : shown;
    if (this.screen) label = local ? 'Your screen' : `${shown}'s screen`;
    this.nameEl.textContent = label;
    this.avatar.textContent = shown.trim().charAt(0) || '?';
    this.el.setAttribute('aria-label', label);
    this.el.dataset.name = shown;
  }

  /** Show how well this participant's media arrives: null hides the indicator. */
  setQuality(level, label) {
    if (!level || level === 'unknown') {
      this.qualityInd.hidden = true;
      delete this.el.dataset.quality;
      return;
    }
    this.el.dataset.quality = level;
    this.qualityInd.dataset.level = level;
    this.qualityInd.setAttribute('aria-label', label);
    this.qualityInd.title = label;
    // Only worth a glance when it is not good.
    this.qualityInd.hidden = level === 'good';
  }

  /** Mark this tile as an active speaker (`rank` 0 is the loudest) or not (`null`). */
  setSpeaking(rank) {
    this.el.classList.toggle('speaking', rank !== null);
    this.el.classList.toggle('dominant', rank === 0);
    if (rank === null) delete this.el.dataset.speakerRank;
    else this.el.dataset.speakerRank = String(rank);
  }

  /** The server paused this tile's video: the viewer's link cannot carry even its lowest
   * layer (`track_paused_for_bandwidth`); the audio continues. */
  setBandwidthPaused(paused) {
    if (paused) this.el.dataset.bandwidthPaused = 'true';
    else delete this.el.dataset.bandwidthPaused;
    if (paused && !this.bwNote) {
      this.bwNote = document.createElement('div');
      this.bwNote.className = 'bw-note';
      this.bwNote.setAttribute('role', 'status');
      this.bwNote.textContent = 'Video paused: poor connection';
      this.el.append(this.bwNote);
    } else if (!paused && this.bwNote) {
      this.bwNote.remove();
      this.bwNote = null;
    }
  }

  setMuted({ mic, cam }) {
    if (mic !== undefined) {
      this.el.dataset.micMuted = String(Boolean(mic));
      this.micInd.hidden = !mic;
    }
    if (cam !== undefined) {
      this.el.dataset.camMuted = String(Boolean(cam));
      this.camInd.hidden = !cam;
    }
  }

  /** Show `stream` (or nothing). Playback failures (autoplay policy) call `onBlocked`. */
  attach(stream, onBlocked) {
    if (this.video.srcObject !== stream) this.video.srcObject = stream;
    const hasVideo = stream !== null && stream.getVideoTracks().length > 0;
    this.el.classList.toggle('no-video', !hasVideo);
    this.el.classList.toggle('no-frames', hasVideo && this.video.videoWidth === 0);
    if (stream !== null && stream.getTracks().length > 0) {
      const played = this.video.play();
      if (played && onBlocked) {
        played.catch((err) => {
          if (err && err.name === 'NotAllowedError') onBlocked(this);
        });
      }
    }
  }

  remove() {
    this.video.srcObject = null;
    this.el.remove();
  }
}
