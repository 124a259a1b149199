// The room's collaborative whiteboard (docs/protocol.md, "Whiteboard"): a toolbar and a
// canvas that show the shared board and send what is drawn on it.
//
// Coordinates and widths are board pixels on a logical 1600x900 board, scaled to the size of
// the element. Finished strokes are sent as `board_stroke` and drawn once the server sends them
// back (so every client has the same order); while a stroke is drawn, its new points go out as
// `board_stroke_part` every 50 ms so that the others see it grow. Nothing received is ever
// inserted as HTML: strokes are only painted, and the status line is set with textContent.
//
//   const board = new Whiteboard(element, (msg) => signal.request(msg), { identity, canClear });
//   signal.onevent = (msg) => board.handle(msg);  // board_* events (and participant_left)

export const BOARD_WIDTH = 1600;
export const BOARD_HEIGHT = 900;
export const MAX_STROKE_POINTS = 2000;
export const MAX_PART_POINTS = 200;
export const MIN_WIDTH = 1;
export const MAX_WIDTH = 64;

const PART_INTERVAL_MS = 50; // live progress of the stroke being drawn
const PREVIEW_TTL_MS = 10000; // a preview with no news for this long is dropped
const MAX_PREVIEWS = 64;
const STATUS_MS = 5000;
const CLEAR_CONFIRM_MS = 4000;
const KEY_STEP = 10;
const KEY_STEP_FAST = 50;
const SIMPLIFY_TOLERANCE = 0.75; // board px a finished stroke may deviate from what was drawn
const BACKGROUND = '#ffffff';
const COLOR_RE = /^#[0-9a-f]{6}$/i;
const SWATCHES = [
  ['#1b1f24', 'Black'],
  ['#e5484d', 'Red'],
  ['#f5a524', 'Orange'],
  ['#30a46c', 'Green'],
  ['#3d8bfd', 'Blue'],
  ['#8e4ec6', 'Purple'],
];

let instances = 0;

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
const round1 = (v) => Math.round(v * 10) / 10;

function newStrokeId() {
  const words = crypto.getRandomValues(new Uint32Array(3));
  return Array.from(words, (w) => w.toString(36)).join('').slice(0, 32);
}

/**
 * Ramer-Douglas-Peucker: the points that keep the line within `tolerance` board pixels of the
 * drawn one (distances to segments, so a line that doubles back keeps its turns). Boards are
 * capped in points (docs/protocol.md), so finished strokes are sent simplified.
 */
export function simplify(points, tolerance = SIMPLIFY_TOLERANCE) {
  if (points.length <= 2) return points.slice();
  const keep = new Uint8Array(points.length);
  keep[0] = 1;
  keep[points.length - 1] = 1;
  const stack = [[0, points.length - 1]];
  while (stack.length) {
    const [a, b] = stack.pop();
    const [ax, ay] = points[a];
    const dx = points[b][0] - ax;
    const dy = points[b][1] - ay;
    const len2 = dx * dx + dy * dy;
    let worst = -1;
    let index = -1;
    for (let i = a + 1; i < b; i += 1) {
      const [px, py] = points[i];
      const t = len2 === 0 ? 0 : clamp(((px - ax) * dx + (py - ay) * dy) / len2, 0, 1);
      const d = Math.hypot(px - (ax + t * dx), py - (ay + t * dy));
      if (d > worst) {
        worst = d;
        index = i;
      }
    }
    if (worst > tolerance) {
      keep[index] = 1;
      stack.push([a, index], [index, b]);
    }
  }
  return points.filter((_, i) => keep[i] === 1);
}

/** A stroke from the server, checked (points dropped if not finite), or null. */
function cleanStroke(raw) {
  if (!raw || typeof raw !== 'object' || typeof raw.id !== 'string') return null;
  const points = [];
  for (const pt of Array.isArray(raw.points) ? raw.points : []) {
    if (Array.isArray(pt) && Number.isFinite(pt[0]) && Number.isFinite(pt[1])) {
      points.push([pt[0], pt[1]]);
    }
  }
  return {
    id: raw.id,
    tool: raw.tool === 'eraser' ? 'eraser' : 'pen',
    color: typeof raw.color === 'string' && COLOR_RE.test(raw.color) ? raw.color : '#000000',
    width: Number.isFinite(raw.width) ? clamp(raw.width, MIN_WIDTH, MAX_WIDTH) : 4,
    points,
  };
}

/** A board item ({stroke, participant, identity}) from the server, or null. */
function cleanItem(raw) {
  const stroke = raw && cleanStroke(raw.stroke);
  if (!stroke || stroke.points.length === 0) return null;
  return {
    stroke,
    participant: typeof raw.participant === 'string' ? raw.participant : '',
    identity: typeof raw.identity === 'string' ? raw.identity : '',
  };
}

/**
 * Paint one stroke on a context whose transform maps board pixels. An eraser removes what is
 * under it (`destination-out`); as a `preview` (on the overlay) it is painted in the board's
 * background colour, which looks the same.
 */
export function paintStroke(ctx, stroke, preview = false) {
  const pts = stroke.points;
  if (pts.length === 0) return;
  const eraser = stroke.tool === 'eraser';
  ctx.save();
  ctx.globalCompositeOperation = eraser && !preview ? 'destination-out' : 'source-over';
  ctx.strokeStyle = eraser ? BACKGROUND : stroke.color;
  ctx.fillStyle = ctx.strokeStyle;
  ctx.lineWidth = stroke.width;
  ctx.lineCap = 'round';
  ctx.lineJoin = 'round';
  ctx.beginPath();
  if (pts.length === 1) {
    ctx.arc(pts[0][0], pts[0][1], stroke.width / 2, 0, 2 * Math.PI);
    ctx.fill();
  } else {
    // A quadratic curve through the midpoints: smooth, and it passes every segment's middle.
    ctx.moveTo(pts[0][0], pts[0][1]);
    for (let i = 1; i < pts.length - 1; i += 1) {
      const mx = (pts[i][0] + pts[i + 1][0]) / 2;
      const my = (pts[i][1] + pts[i + 1][1]) / 2;
      ctx.quadraticCurveTo(pts[i][0], pts[i][1], mx, my);
    }
    const last = pts[pts.length - 1];
    ctx.lineTo(last[0], last[1]);
    ctx.stroke();
  }
  ctx.restore();
}

function button(label, text, extraClass = '') {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = `wb-btn ${extraClass}`.trim();
  b.textContent = text;
  b.setAttribute('aria-label', label);
  b.title = label;
  return b;
}

function describe(err) {
  if (err && err.code === 'rate_limited') return 'Drawing too fast: that stroke was not saved.';
  if (err && err.code === 'too_large') {
    return 'The board is full: undo strokes or ask the host to clear it.';
  }
  if (err && err.code === 'forbidden') return 'You may not do that on this board.';
  if (err && err.message) return err.message;
  return String(err);
}

/**
 * The whiteboard widget.
 *
 * @param {HTMLElement} container  emptied and filled with the toolbar and the canvas
 * @param {(msg: object) => (Promise|void)} send  sends one client request; when it returns a
 *   promise (e.g. SignalClient.request), a rejection is shown and a refused stroke disappears
 * @param {object} [options]
 * @param {boolean} [options.canClear=false]  show "Clear" (the roomAdmin grant)
 * @param {boolean} [options.canDraw=true]  allow drawing (the canPublishData grant)
 * @param {string|null} [options.identity=null]  this participant's identity (from `joined`)
 *
 * `board_state` updates canDraw and canClear from the server.
 */
export class Whiteboard {
  constructor(container, send, { canClear = false, canDraw = true, identity = null } = {}) {
    this.container = container;
    this.send = send;
    this.identity = identity;
    this.canDraw = Boolean(canDraw);
    this.canClear = Boolean(canClear);
    this.tool = 'pen';
    this.color = SWATCHES[0][0];
    this.width = 4;
    this.strokes = []; // committed board items, in board order
    this.previews = new Map(); // `${participant} ${id}` -> {stroke, updated}: others drawing
    this.own = new Map(); // id -> {stroke, sent}: our finished strokes awaiting the server
    this.drawing = null; // {stroke, sent, pointerId}: the stroke being drawn here
    this.cursor = { x: BOARD_WIDTH / 2, y: BOARD_HEIGHT / 2 }; // keyboard drawing
    this.showCursor = false;
    this.partTimer = null;
    this.statusTimer = null;
    this.clearTimer = null;
    this.overlayFrame = 0;
    this.uid = `wb${(instances += 1)}`;
    this._build();
    this._setPermissions(this.canDraw, this.canClear);
    this.resizeObserver = new ResizeObserver(() => this._resize());
    this.resizeObserver.observe(this.stage);
    this.pruneTimer = setInterval(() => this._prune(), 2000);
    this._resize();
  }

  // --- public API -------------------------------------------------------------------------

  /**
   * Apply one server event. Board events (`board_state`, `board_stroke`, `board_stroke_part`,
   * `board_undo`, `board_cleared`) return true; `participant_left` drops that participant's
   * unfinished strokes and returns false (other parts of the app need it too).
   */
  handle(msg) {
    if (!msg || typeof msg !== 'object') return false;
    switch (msg.type) {
      case 'board_state': {
        const items = Array.isArray(msg.strokes) ? msg.strokes : [];
        this.strokes = items.map(cleanItem).filter(Boolean);
        this.previews.clear();
        if (typeof msg.can_draw === 'boolean' || typeof msg.can_clear === 'boolean') {
          this._setPermissions(msg.can_draw ?? this.canDraw, msg.can_clear ?? this.canClear);
        }
        this._redrawBase();
        this._scheduleOverlay();
        return true;
      }
      case 'board_stroke': {
        const item = cleanItem(msg);
        if (item === null) return true;
        this.strokes.push(item);
        this.previews.delete(`${item.participant} ${item.stroke.id}`);
        if (this.identity === null || item.identity === this.identity) {
          this.own.delete(item.stroke.id);
        }
        this._withBoardTransform(this.baseCtx, () => paintStroke(this.baseCtx, item.stroke));
        this._scheduleOverlay();
        this._updateButtons();
        return true;
      }
      case 'board_stroke_part': {
        const part = cleanStroke(msg.stroke);
        if (part === null || typeof msg.participant !== 'string') return true;
        const key = `${msg.participant} ${part.id}`;
        let preview = this.previews.get(key);
        if (preview === undefined) {
          if (this.previews.size >= MAX_PREVIEWS) {
            this.previews.delete(this.previews.keys().next().value);
          }
          preview = { stroke: { ...part, points: [] }, updated: 0 };
          this.previews.set(key, preview);
        }
        const room = MAX_STROKE_POINTS - preview.stroke.points.length;
        preview.stroke.points.push(...part.points.slice(0, Math.max(0, room)));
        Object.assign(preview.stroke, { tool: part.tool, color: part.color, width: part.width });
        preview.updated = performance.now();
        this._scheduleOverlay();
        return true;
      }
      case 'board_undo': {
        for (let i = this.strokes.length - 1; i >= 0; i -= 1) {
          const item = this.strokes[i];
          if (item.identity === msg.identity && item.stroke.id === msg.stroke_id) {
            this.strokes.splice(i, 1);
            this._redrawBase();
            this._updateButtons();
            break;
          }
        }
        return true;
      }
      case 'board_cleared':
        this.strokes = [];
        this._redrawBase();
        this._updateButtons();
        this._say('The board was cleared.');
        return true;
      case 'participant_left':
        for (const key of [...this.previews.keys()]) {
          if (key.startsWith(`${msg.participant} `)) this.previews.delete(key);
        }
        this._scheduleOverlay();
        return false;
      default:
        return false;
    }
  }

  /** The committed board as a 1600x900 PNG on a white background: Promise<Blob>. */
  exportPng() {
    const canvas = this._exportCanvas();
    return new Promise((resolve, reject) => {
      const done = (blob) => (blob ? resolve(blob) : reject(new Error('PNG export failed')));
      canvas.toBlob(done, 'image/png');
    });
  }

  /** The same PNG as a `data:` URL (synchronous). */
  exportDataUrl() {
    return this._exportCanvas().toDataURL('image/png');
  }

  /** Choose 'pen' or 'eraser'. */
  setTool(tool) {
    this.tool = tool === 'eraser' ? 'eraser' : 'pen';
    this.penButton.setAttribute('aria-pressed', String(this.tool === 'pen'));
    this.eraserButton.setAttribute('aria-pressed', String(this.tool === 'eraser'));
    this._scheduleOverlay();
  }

  /** Choose the pen colour (`#rrggbb`). */
  setColor(color) {
    if (!COLOR_RE.test(color)) return;
    this.color = color.toLowerCase();
    this.colorInput.value = this.color;
    for (const swatch of this.swatches) {
      swatch.setAttribute('aria-pressed', String(swatch.dataset.color === this.color));
    }
    if (this.tool === 'eraser') this.setTool('pen');
  }

  /** Choose the line width in board pixels (1-64). */
  setWidth(width) {
    const w = clamp(Math.round(Number(width) || 4), MIN_WIDTH, MAX_WIDTH);
    this.width = w;
    this.widthInput.value = String(w);
    this.widthInput.setAttribute('aria-valuetext', `${w} pixels`);
    this.widthOutput.textContent = String(w);
    this._scheduleOverlay();
  }

  /** Update what this participant may do (a role change: `role_changed.permissions`). */
  setPermissions({ canDraw = this.canDraw, canClear = this.canClear } = {}) {
    this._setPermissions(canDraw, canClear);
  }

  /** Undo this participant's last stroke (the server decides which one is last). */
  undo() {
    if (!this.canDraw) return;
    this._request({ type: 'board_undo' }, (err) =>
      this._say(err && err.code === 'not_found' ? 'Nothing of yours to undo.' : describe(err)),
    );
  }

  /** Clear the whole board (room admins only). */
  clear() {
    if (!this.canClear) return;
    this._request({ type: 'board_clear' }, (err) => this._say(describe(err)));
  }

  /** Remove the widget and stop its timers. */
  destroy() {
    this._finishStroke();
    this.resizeObserver.disconnect();
    clearInterval(this.pruneTimer);
    clearTimeout(this.statusTimer);
    clearTimeout(this.clearTimer);
    cancelAnimationFrame(this.overlayFrame);
    this.container.replaceChildren();
    this.container.classList.remove('wb');
  }

  // --- DOM --------------------------------------------------------------------------------

  _build() {
    const c = this.container;
    c.replaceChildren();
    c.classList.add('wb');

    const tools = document.createElement('div');
    tools.className = 'wb-toolbar';
    tools.setAttribute('role', 'group');
    tools.setAttribute('aria-label', 'Whiteboard tools');

    this.penButton = button('Pen', 'Pen', 'wb-tool');
    this.penButton.setAttribute('aria-keyshortcuts', 'P');
    this.penButton.addEventListener('click', () => this.setTool('pen'));
    this.eraserButton = button('Eraser', 'Eraser', 'wb-tool');
    this.eraserButton.setAttribute('aria-keyshortcuts', 'E');
    this.eraserButton.addEventListener('click', () => this.setTool('eraser'));

    const colorLabel = document.createElement('label');
    colorLabel.className = 'wb-field';
    colorLabel.append('Colour');
    this.colorInput = document.createElement('input');
    this.colorInput.type = 'color';
    this.colorInput.className = 'wb-color';
    this.colorInput.addEventListener('input', () => this.setColor(this.colorInput.value));
    colorLabel.append(this.colorInput);

    const swatches = document.createElement('div');
    swatches.className = 'wb-swatches';
    swatches.setAttribute('role', 'group');
    swatches.setAttribute('aria-label', 'Quick colours');
    this.swatches = SWATCHES.map(([color, name]) => {
      const b = button(name, '', 'wb-swatch');
      b.dataset.color = color;
      b.title = name;
      b.style.backgroundColor = color; // CSSOM, allowed by the page's CSP (no style attribute)
      b.addEventListener('click', () => this.setColor(color));
      return b;
    });
    swatches.append(...this.swatches);

    const widthLabel = document.createElement('label');
    widthLabel.className = 'wb-field';
    widthLabel.append('Width');
    this.widthInput = document.createElement('input');
    this.widthInput.type = 'range';
    this.widthInput.min = String(MIN_WIDTH);
    this.widthInput.max = String(MAX_WIDTH);
    this.widthInput.step = '1';
    this.widthInput.addEventListener('input', () => this.setWidth(this.widthInput.value));
    this.widthOutput = document.createElement('output');
    this.widthOutput.className = 'wb-width-value';
    this.widthOutput.setAttribute('aria-hidden', 'true');
    widthLabel.append(this.widthInput, this.widthOutput);

    this.undoButton = button('Undo my last stroke', 'Undo');
    this.undoButton.setAttribute('aria-keyshortcuts', 'Control+Z');
    this.undoButton.addEventListener('click', () => this.undo());
    this.clearButton = button('Clear the whole board', 'Clear', 'wb-danger');
    this.clearButton.addEventListener('click', () => this._onClearClick());
    this.exportButton = button('Export the board as a PNG image', 'Export');
    this.exportButton.addEventListener('click', () => this._download());

    tools.append(
      this.penButton,
      this.eraserButton,
      colorLabel,
      swatches,
      widthLabel,
      this.undoButton,
      this.clearButton,
      this.exportButton,
    );

    this.stage = document.createElement('div');
    this.stage.className = 'wb-stage';
    this.base = document.createElement('canvas');
    this.base.className = 'wb-base';
    this.base.setAttribute('aria-hidden', 'true');
    this.overlay = document.createElement('canvas');
    this.overlay.className = 'wb-overlay';
    this.overlay.tabIndex = 0;
    this.overlay.setAttribute('role', 'img');
    const help = document.createElement('p');
    help.className = 'wb-help';
    help.id = `${this.uid}-help`;
    help.textContent =
      'Draw with a mouse, pen or finger. Keyboard: focus the board, move with the arrow keys ' +
      '(Shift: faster), Space starts and ends a line, Escape ends it. P: pen, E: eraser, ' +
      'Ctrl+Z: undo.';
    this.overlay.setAttribute('aria-describedby', help.id);
    this.stage.append(this.base, this.overlay);
    this.baseCtx = this.base.getContext('2d');
    this.overlayCtx = this.overlay.getContext('2d');

    this.status = document.createElement('p');
    this.status.className = 'wb-status';
    this.status.setAttribute('role', 'status');
    this.status.setAttribute('aria-live', 'polite');

    c.append(tools, this.stage, help, this.status);

    this.overlay.addEventListener('pointerdown', (e) => this._onPointerDown(e));
    this.overlay.addEventListener('pointermove', (e) => this._onPointerMove(e));
    for (const type of ['pointerup', 'pointercancel', 'lostpointercapture']) {
      this.overlay.addEventListener(type, (e) => {
        if (this.drawing && this.drawing.pointerId === e.pointerId) this._finishStroke();
      });
    }
    this.overlay.addEventListener('keydown', (e) => this._onCanvasKey(e));
    this.overlay.addEventListener('focus', () => {
      this.showCursor = this.overlay.matches(':focus-visible'); // not for a mouse click
      this._scheduleOverlay();
    });
    this.overlay.addEventListener('blur', () => {
      if (this.drawing && this.drawing.pointerId === 'keyboard') this._finishStroke();
      this.showCursor = false;
      this._scheduleOverlay();
    });
    c.addEventListener('keydown', (e) => this._onKey(e));

    this.setColor(this.color);
    this.setWidth(this.width);
    this.setTool('pen');
  }

  _setPermissions(canDraw, canClear) {
    this.canDraw = Boolean(canDraw);
    this.canClear = Boolean(canClear);
    this.clearButton.hidden = !this.canClear;
    for (const el of [this.penButton, this.eraserButton, this.colorInput, this.widthInput]) {
      el.disabled = !this.canDraw;
    }
    for (const swatch of this.swatches) swatch.disabled = !this.canDraw;
    this.container.classList.toggle('wb-readonly', !this.canDraw);
    this.overlay.setAttribute(
      'aria-label',
      this.canDraw ? 'Shared whiteboard' : 'Shared whiteboard (view only)',
    );
    if (!this.canDraw) this._finishStroke();
    this._updateButtons();
  }

  _updateButtons() {
    const mine =
      this.identity === null || this.strokes.some((item) => item.identity === this.identity);
    this.undoButton.disabled = !this.canDraw || !mine;
  }

  _say(text) {
    this.status.textContent = text;
    clearTimeout(this.statusTimer);
    this.statusTimer = setTimeout(() => {
      this.status.textContent = '';
    }, STATUS_MS);
  }

  _onClearClick() {
    if (!this.canClear) return;
    if (this.clearTimer === null) {
      // Two steps: the first press arms the button, a second press within 4 s clears.
      this.clearButton.textContent = 'Confirm clear';
      this.clearButton.setAttribute('aria-label', 'Confirm: clear the whole board for everyone');
      this.clearButton.title = 'Confirm: clear the whole board for everyone';
      this._say('Press "Confirm clear" to erase the board for everyone.');
      this.clearTimer = setTimeout(() => this._disarmClear(), CLEAR_CONFIRM_MS);
      return;
    }
    this._disarmClear();
    this.clear();
  }

  _disarmClear() {
    clearTimeout(this.clearTimer);
    this.clearTimer = null;
    this.clearButton.textContent = 'Clear';
    this.clearButton.setAttribute('aria-label', 'Clear the whole board');
    this.clearButton.title = 'Clear the whole board';
  }

  async _download() {
    try {
      const blob = await this.exportPng();
      const url = URL.createObjectURL(blob);
      const a = document.createElement('a');
      a.href = url;
      a.download = `whiteboard-${new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-')}.png`;
      a.click();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (err) {
      this._say(describe(err));
    }
  }

  // --- sending ----------------------------------------------------------------------------

  /** Send one request; `onError(err)` runs when the returned promise (if any) rejects. */
  _request(msg, onError) {
    let result;
    try {
      result = this.send(msg);
    } catch (err) {
      if (onError) onError(err);
      return;
    }
    if (result && typeof result.then === 'function') {
      result.then(undefined, (err) => {
        if (onError) onError(err);
      });
    }
  }

  _beginStroke(point, pointerId) {
    this.drawing = {
      stroke: {
        id: newStrokeId(),
        tool: this.tool,
        color: this.color,
        width: this.width,
        points: [point],
      },
      sent: 0,
      pointerId,
    };
    clearInterval(this.partTimer);
    this.partTimer = setInterval(() => this._sendPart(), PART_INTERVAL_MS);
    this._scheduleOverlay();
  }

  _addPoint(point) {
    const d = this.drawing;
    if (!d) return;
    const pts = d.stroke.points;
    const last = pts[pts.length - 1];
    if (Math.abs(last[0] - point[0]) < 0.5 && Math.abs(last[1] - point[1]) < 0.5) return;
    if (pts.length >= MAX_STROKE_POINTS) {
      // A stroke holds at most 2000 points: end it and go on with a new one from here.
      const { pointerId } = d;
      this._finishStroke();
      this._beginStroke(last, pointerId);
    }
    this.drawing.stroke.points.push(point);
    this._scheduleOverlay();
  }

  _sendPart() {
    const d = this.drawing;
    if (!d || d.sent >= d.stroke.points.length) return;
    const { id, tool, color, width, points } = d.stroke;
    this._request({
      type: 'board_stroke_part',
      stroke: { id, tool, color, width, points: points.slice(d.sent, d.sent + MAX_PART_POINTS) },
    });
    d.sent = Math.min(points.length, d.sent + MAX_PART_POINTS);
  }

  _finishStroke() {
    clearInterval(this.partTimer);
    this.partTimer = null;
    const d = this.drawing;
    this.drawing = null;
    if (!d) return;
    const stroke = { ...d.stroke, points: simplify(d.stroke.points) };
    this.own.set(stroke.id, { stroke, sent: performance.now() });
    this._request({ type: 'board_stroke', stroke }, (err) => {
      this.own.delete(stroke.id);
      this._scheduleOverlay();
      this._say(describe(err));
    });
    this._scheduleOverlay();
  }

  // --- input ------------------------------------------------------------------------------

  _toBoard(e) {
    const rect = this.overlay.getBoundingClientRect();
    const x = ((e.clientX - rect.left) / Math.max(1, rect.width)) * BOARD_WIDTH;
    const y = ((e.clientY - rect.top) / Math.max(1, rect.height)) * BOARD_HEIGHT;
    return [round1(clamp(x, 0, BOARD_WIDTH)), round1(clamp(y, 0, BOARD_HEIGHT))];
  }

  _onPointerDown(e) {
    if (!this.canDraw || this.drawing) return;
    if (e.pointerType === 'mouse' && e.button !== 0) return;
    e.preventDefault();
    this.overlay.setPointerCapture(e.pointerId);
    this.showCursor = false;
    this._beginStroke(this._toBoard(e), e.pointerId);
  }

  _onPointerMove(e) {
    if (!this.drawing || this.drawing.pointerId !== e.pointerId) return;
    const events = typeof e.getCoalescedEvents === 'function' ? e.getCoalescedEvents() : [];
    for (const ev of events.length ? events : [e]) this._addPoint(this._toBoard(ev));
  }

  _onCanvasKey(e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const step = e.shiftKey ? KEY_STEP_FAST : KEY_STEP;
    const moves = {
      ArrowLeft: [-step, 0],
      ArrowRight: [step, 0],
      ArrowUp: [0, -step],
      ArrowDown: [0, step],
    };
    if (e.key in moves) {
      e.preventDefault();
      const [dx, dy] = moves[e.key];
      this.cursor.x = clamp(this.cursor.x + dx, 0, BOARD_WIDTH);
      this.cursor.y = clamp(this.cursor.y + dy, 0, BOARD_HEIGHT);
      this.showCursor = true;
      if (this.drawing && this.drawing.pointerId === 'keyboard') {
        this._addPoint([this.cursor.x, this.cursor.y]);
      }
      this._scheduleOverlay();
    } else if (e.key === ' ' || e.key === 'Enter') {
      e.preventDefault();
      if (this.drawing && this.drawing.pointerId === 'keyboard') this._finishStroke();
      else if (this.canDraw && !this.drawing) {
        this._beginStroke([this.cursor.x, this.cursor.y], 'keyboard');
      }
    } else if (e.key === 'Escape') {
      if (this.drawing && this.drawing.pointerId === 'keyboard') {
        e.preventDefault();
        this._finishStroke();
      }
    }
  }

  _onKey(e) {
    const target = e.target;
    const typing =
      target instanceof HTMLElement &&
      (target.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName));
    if ((e.ctrlKey || e.metaKey) && !e.altKey && !e.shiftKey && e.key.toLowerCase() === 'z') {
      if (typing && target.type !== 'range' && target.type !== 'color') return;
      e.preventDefault();
      this.undo();
      return;
    }
    if (typing || e.ctrlKey || e.metaKey || e.altKey || !this.canDraw) return;
    if (e.key === 'p' || e.key === 'P') this.setTool('pen');
    else if (e.key === 'e' || e.key === 'E') this.setTool('eraser');
  }

  // --- painting ---------------------------------------------------------------------------

  _resize() {
    const rect = this.stage.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(rect.width * dpr));
    const h = Math.max(1, Math.round(rect.height * dpr));
    for (const canvas of [this.base, this.overlay]) {
      if (canvas.width !== w || canvas.height !== h) {
        canvas.width = w;
        canvas.height = h;
      }
    }
    this._redrawBase();
    this._drawOverlay();
  }

  _withBoardTransform(ctx, paint) {
    const canvas = ctx.canvas;
    ctx.setTransform(canvas.width / BOARD_WIDTH, 0, 0, canvas.height / BOARD_HEIGHT, 0, 0);
    paint();
  }

  _redrawBase() {
    const ctx = this.baseCtx;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.base.width, this.base.height);
    this._withBoardTransform(ctx, () => {
      for (const item of this.strokes) paintStroke(ctx, item.stroke);
    });
  }

  _scheduleOverlay() {
    if (this.overlayFrame) return;
    this.overlayFrame = requestAnimationFrame(() => {
      this.overlayFrame = 0;
      this._drawOverlay();
    });
  }

  _drawOverlay() {
    const ctx = this.overlayCtx;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.overlay.width, this.overlay.height);
    this._withBoardTransform(ctx, () => {
      for (const preview of this.previews.values()) paintStroke(ctx, preview.stroke, true);
      for (const own of this.own.values()) paintStroke(ctx, own.stroke, true);
      if (this.drawing) paintStroke(ctx, this.drawing.stroke, true);
      if (this.showCursor && this.canDraw) {
        const { x, y } = this.cursor;
        ctx.save();
        ctx.lineWidth = 2;
        ctx.strokeStyle = '#3d8bfd';
        ctx.beginPath();
        ctx.arc(x, y, Math.max(4, this.width / 2), 0, 2 * Math.PI);
        ctx.moveTo(x - 12, y);
        ctx.lineTo(x + 12, y);
        ctx.moveTo(x, y - 12);
        ctx.lineTo(x, y + 12);
        ctx.stroke();
        ctx.restore();
      }
    });
  }

  _prune() {
    const now = performance.now();
    let changed = false;
    for (const [key, preview] of this.previews) {
      if (now - preview.updated > PREVIEW_TTL_MS) {
        this.previews.delete(key);
        changed = true;
      }
    }
    for (const [id, own] of this.own) {
      if (now - own.sent > PREVIEW_TTL_MS) {
        this.own.delete(id); // never confirmed (a lost message): drop the preview
        changed = true;
      }
    }
    if (changed) this._scheduleOverlay();
  }

  _exportCanvas() {
    const layer = document.createElement('canvas');
    layer.width = BOARD_WIDTH;
    layer.height = BOARD_HEIGHT;
    const lctx = layer.getContext('2d');
    for (const item of this.strokes) paintStroke(lctx, item.stroke);
    const out = document.createElement('canvas');
    out.width = BOARD_WIDTH;
    out.height = BOARD_HEIGHT;
    const octx = out.getContext('2d');
    octx.fillStyle = BACKGROUND;
    octx.fillRect(0, 0, BOARD_WIDTH, BOARD_HEIGHT);
    octx.drawImage(layer, 0, 0);
    return out;
  }
}
