// Keyboard shortcuts in a call, and their help dialog ("?" opens it):
//   M  mute or unmute the microphone      V  stop or start the camera
//   H  raise or lower your hand           C  open or close the chat
//   ?  this list
// They never fire while typing (an input, a textarea, a select, anything contenteditable),
// with Ctrl/Alt/Meta held, while a dialog is open, or outside a call. Single-key shortcuts can
// be turned off in the dialog (WCAG 2.1.4 Character Key Shortcuts); the choice is stored on
// this device. The Settings panel's "Keyboard shortcuts" button opens the dialog too.

const STORE_KEY = 'sfu.shortcuts';

/** The shortcuts: key (lower case) -> [action name, what it does]. */
export const SHORTCUTS = [
  ['m', 'mic', 'Mute or unmute your microphone'],
  ['v', 'camera', 'Stop or start your camera'],
  ['h', 'hand', 'Raise or lower your hand'],
  ['c', 'chat', 'Open or close the chat'],
  ['?', 'help', 'Show these shortcuts'],
];

function storedEnabled() {
  try {
    return localStorage.getItem(STORE_KEY) !== 'off';
  } catch {
    return true;
  }
}

/** Whether a key event comes from somewhere text is typed. */
export function typing(target) {
  if (!(target instanceof Element)) return false;
  if (target.closest('[contenteditable=""], [contenteditable="true"]')) return true;
  if (target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return true;
  if (target instanceof HTMLInputElement) {
    return !['button', 'checkbox', 'radio', 'range', 'color', 'file', 'submit', 'reset'].includes(target.type);
  }
  return false;
}

export class Shortcuts {
  /**
   * @param {object} els
   * @param {HTMLDialogElement} els.dialog   the help dialog
   * @param {HTMLElement} els.list          the dialog's <dl>, filled from SHORTCUTS
   * @param {HTMLInputElement} els.enabled   its "single-key shortcuts" checkbox
   * @param {HTMLButtonElement} [els.opener] a button that opens the dialog
   * @param {object} actions  name -> () => void for 'mic', 'camera', 'hand', 'chat'
   * @param {() => boolean} inCall  whether a call is on (the shortcuts work only then)
   */
  constructor({ dialog, list, enabled, opener }, actions, inCall) {
    this.dialog = dialog;
    this.enabledBox = enabled;
    this.actions = actions;
    this.inCall = inCall;
    this.enabled = storedEnabled();
    this.used = []; // the actions run from the keyboard, for tests
    enabled.checked = this.enabled;
    list.replaceChildren(
      ...SHORTCUTS.map(([key, , what]) => {
        const row = document.createElement('div');
        row.className = 'shortcut';
        const dt = document.createElement('dt');
        const kbd = document.createElement('kbd');
        kbd.textContent = key.toUpperCase();
        dt.appendChild(kbd);
        const dd = document.createElement('dd');
        dd.textContent = what;
        row.append(dt, dd);
        return row;
      }),
    );
    enabled.addEventListener('change', () => this.setEnabled(enabled.checked));
    if (opener) opener.addEventListener('click', () => this.open());
    // Escape closes the dialog (the browser's default) and nothing else (not the side panel).
    dialog.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape') ev.stopPropagation();
    });
    document.addEventListener('keydown', (ev) => this.onKey(ev));
  }

  setEnabled(on) {
    this.enabled = Boolean(on);
    this.enabledBox.checked = this.enabled;
    try {
      localStorage.setItem(STORE_KEY, this.enabled ? 'on' : 'off');
    } catch {
      // storage disabled: for this page only
    }
  }

  open() {
    if (!this.dialog.open) this.dialog.showModal();
  }

  onKey(ev) {
    if (!this.enabled || ev.defaultPrevented || ev.isComposing || ev.repeat) return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (this.dialog.open || document.querySelector('dialog[open]')) return;
    if (typing(ev.target) || !this.inCall()) return;
    const key = ev.key.length === 1 ? ev.key.toLowerCase() : '';
    const found = SHORTCUTS.find(([k]) => k === key);
    if (!found) return;
    const [, action] = found;
    ev.preventDefault();
    this.used.push(action);
    if (action === 'help') this.open();
    else if (this.actions[action]) this.actions[action]();
  }
}
