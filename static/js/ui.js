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

/** Replace a button's icon and visible label. */
export function setButton(button, iconName, label, pressed) {
  button.replaceChildren(icon(iconName));
  const span = document.createElement('span');
  span.className = 'btn-label';
  span.textContent = label;
  button.appendChild(span);
  button.setAttribute('aria-pressed', pressed ? 'true' : 'false');
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
 * video), a name label and muted indicators.
 */
export class Tile {
  constructor({ sid, name, local = false }) {
    this.sid = sid;
    this.el = document.createElement('li');
    this.el.className = 'tile no-video';
    if (local) this.el.classList.add('local');
    this.el.dataset.sid = sid;
    this.el.dataset.micMuted = 'false';
    this.el.dataset.camMuted = 'false';

    this.video = document.createElement('video');
    this.video.autoplay = true;
    this.video.playsInline = true;
    this.video.muted = local; // never play our own microphone back
    this.video.setAttribute('aria-hidden', 'true');

    this.avatar = document.createElement('div');
    this.avatar.className = 'avatar';
    this.avatar.setAttribute('aria-hidden', 'true');

    const caption = document.createElement('div');
    caption.className = 'caption';
    this.nameEl = document.createElement('span');
    this.nameEl.className = 'name';
    this.micInd = indicator('ind-mic', 'micOff', 'microphone muted');
    this.camInd = indicator('ind-cam', 'camOff', 'camera off');
    caption.append(this.nameEl, this.micInd, this.camInd);

    this.el.append(this.video, this.avatar, caption);
    this.setName(name, local);
  }

  setName(name, local = this.el.classList.contains('local')) {
    const shown = name || 'Guest';
    this.nameEl.textContent = local ? `${shown} (you)` : shown;
    this.avatar.textContent = shown.trim().charAt(0) || '?';
    this.el.setAttribute('aria-label', local ? `${shown} (you)` : shown);
    this.el.dataset.name = shown;
  }

  /** Mark this tile as an active speaker (`rank` 0 is the loudest) or not (`null`). */
  setSpeaking(rank) {
    this.el.classList.toggle('speaking', rank !== null);
    this.el.classList.toggle('dominant', rank === 0);
    if (rank === null) delete this.el.dataset.speakerRank;
    else this.el.dataset.speakerRank = String(rank);
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
