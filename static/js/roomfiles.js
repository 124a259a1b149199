// Encrypted file sharing in the call view (the HTTP API is files.js, see docs/files.md):
//
// - an attach button in the chat form (#chat-attachments-slot), only with `canPublishData`:
//   it uploads the chosen file with a progress bar (and Cancel) and shows typed errors inline;
//   the server announces the file in the chat, so a success needs nothing more here;
// - the chat's file links download through here (chat.setDownloadFileHandler): the bytes are
//   fetched with the room token in a header, then saved (files.saveBlob);
// - a "Files" side panel (panels.create) listing the room's files with download buttons,
//   refreshed when it opens and when a chat message with a file arrives.
//
// Every request uses the room token that joined the WebSocket (session.token); a session
// without one (there is no such join today) gets neither button. File names and uploader
// identities come from other people: they are only ever set with textContent.

import { uploadFile, listFiles, downloadFile, saveBlob } from './files.js';
import { setDownloadFileHandler, formatSize } from './chat.js';
import { clockTime, el, icon } from './ui.js';

/** A sentence for an upload or download failure (an ApiError from files.js). */
export function describeFileError(err, name, what = 'upload') {
  const code = err && err.code;
  const file = name ? `“${name}”` : 'The file';
  switch (code) {
    case 'file_too_large': {
      const max = err.problem && typeof err.problem.max_bytes === 'number' ? err.problem.max_bytes : null;
      return `${file} is too large to share${max ? `: at most ${formatSize(max)}` : ''}.`;
    }
    case 'empty_file':
      return `${file} is empty: there is nothing to share.`;
    case 'invalid_filename':
      return `${file} has a name the server does not accept. Rename it and try again.`;
    case 'cannot_publish_data':
      return 'You may not share files in this room.';
    case 'file_not_found':
      return `${file} is not in this room any more.`;
    case 'file_unreadable':
    case 'file_key_unavailable':
      return `${file} cannot be decrypted on the server.`;
    case 'token_expired':
    case 'token_invalid':
    case 'token_revoked':
    case 'token_missing':
    case 'token_not_yet_valid':
      return 'Your access to this room has expired. Leave and join again to share files.';
    case 'network_error':
      return what === 'upload'
        ? `${file} was not sent: the server cannot be reached.`
        : 'The server cannot be reached.';
    case 'download_failed':
      return `The download of ${file} was interrupted. Try again.`;
    case 'rate_limited':
      return 'Too many requests. Wait a few seconds, then try again.';
    default:
      return `Could not ${what} ${file}: ${(err && (err.detail || err.message)) || 'unknown error'}.`;
  }
}

export class RoomFiles {
  /**
   * @param {object} els
   * @param {HTMLElement} els.slot  the chat form's #chat-attachments-slot
   * @param {import('./panels.js').Panels} panels
   */
  constructor({ slot }, panels) {
    this.session = null;
    this.panels = panels;
    this.upload = null; // {controller, name} while an upload runs
    this.files = []; // the last listing, newest first
    this.listSeq = 0;
    this.stale = true;
    this.downloading = new Set(); // file ids being downloaded
    this.onChat = (ev) => this._onChat(ev.detail.message);
    this.onRole = () => this.render();
    this.onEnded = () => this._cancelUpload();

    // --- the attach button and the upload row, in the chat form ---
    this.input = el('input');
    this.input.type = 'file';
    this.input.id = 'chat-file-input';
    this.input.hidden = true;
    this.input.tabIndex = -1;
    this.input.addEventListener('change', () => {
      const file = this.input.files && this.input.files[0];
      this.input.value = '';
      if (file) this.uploadFile(file);
    });
    this.attach = el('button', 'btn attach-btn');
    this.attach.type = 'button';
    this.attach.id = 'attach-button';
    this.attach.append(icon('attach'), el('span', 'btn-label', 'Attach a file'));
    this.attach.title = 'Attach a file';
    this.attach.addEventListener('click', () => this.input.click());

    this.progressName = el('span', 'upload-name');
    this.progressBar = el('progress', 'upload-bar');
    this.progressBar.max = 1;
    this.progressBar.value = 0;
    this.progressText = el('span', 'upload-pct', '0%');
    this.cancel = el('button', 'btn upload-cancel', 'Cancel');
    this.cancel.type = 'button';
    this.cancel.addEventListener('click', () => this._cancelUpload());
    this.progress = el('div', 'upload');
    this.progress.id = 'upload-progress';
    this.progress.setAttribute('role', 'group');
    this.progress.append(this.progressName, this.progressBar, this.progressText, this.cancel);
    this.progress.hidden = true;
    this.uploadError = el('p', 'form-error upload-error');
    this.uploadError.id = 'upload-error';
    this.uploadError.setAttribute('role', 'alert');
    this.uploadError.hidden = true;
    this.bar = el('div', 'attach-row');
    this.bar.append(this.attach, this.input, this.progress);
    slot.append(this.bar, this.uploadError);

    // --- the Files panel ---
    const { body, button } = panels.create({
      id: 'files',
      title: 'Files',
      icon: 'file',
      label: 'Files',
      onopen: () => this.refresh(),
    });
    this.panelBody = body;
    this.panelButton = button;
    body.classList.add('files');
    this.list = el('ul', 'file-list');
    this.list.setAttribute('aria-label', 'Files shared in this room');
    this.empty = el('p', 'hint files-empty', 'No files shared yet. Attach one in the chat.');
    this.listError = el('p', 'form-error files-error');
    this.listError.setAttribute('role', 'alert');
    this.listError.hidden = true;
    this.listStatus = el('p', 'sr-only');
    this.listStatus.setAttribute('role', 'status');
    body.append(this.listError, this.list, this.empty, this.listStatus);

    setDownloadFileHandler((file) => this.download(file));
    this.render();
  }

  get token() {
    return this.session ? this.session.token : null;
  }

  /** Whether this session may upload: a token with canPublishData, in the room. */
  get canUpload() {
    const s = this.session;
    return Boolean(s && s.token && s.state === 'joined' && s.canPublishData);
  }

  bind(session) {
    this.unbind();
    this.session = session;
    this.files = [];
    this.stale = true;
    this.list.replaceChildren();
    this._showListError('');
    this._showUploadError('');
    session.addEventListener('chat', this.onChat);
    session.addEventListener('role', this.onRole);
    session.addEventListener('ended', this.onEnded);
    this.render();
  }

  unbind() {
    if (this.session) {
      this.session.removeEventListener('chat', this.onChat);
      this.session.removeEventListener('role', this.onRole);
      this.session.removeEventListener('ended', this.onEnded);
    }
    this._cancelUpload();
    this.session = null;
    this.listSeq += 1;
    this.render();
  }

  /** Show or hide the attach button and the panel's toggle for the session's state (app.js
   * calls this on every change of the session's state; role changes come as 'role'). */
  render() {
    const s = this.session;
    this.panelButton.hidden = !(s && s.token);
    this.bar.hidden = !this.canUpload && this.upload === null;
    // While a file uploads its progress row takes the button's place (one upload at a time).
    this.attach.hidden = !this.canUpload || this.upload !== null;
    this.attach.disabled = this.upload !== null;
  }

  // --- uploads ----------------------------------------------------------------------------

  async uploadFile(file) {
    const session = this.session;
    if (!this.canUpload || this.upload) return null;
    const name = file.name || 'file';
    const controller = new AbortController();
    this.upload = { controller, name };
    this._showUploadError('');
    this.progressName.textContent = name;
    this.progressBar.value = 0;
    this.progressText.textContent = '0%';
    this.progress.setAttribute('aria-label', `Uploading ${name}`);
    this.progress.hidden = false;
    this.render();
    try {
      const stored = await uploadFile(
        session.room,
        session.token,
        file,
        (sent, total) => {
          const fraction = total > 0 ? Math.min(1, sent / total) : 0;
          this.progressBar.value = fraction;
          this.progressText.textContent = `${Math.round(fraction * 100)}%`;
        },
        { signal: controller.signal },
      );
      // The chat announcement follows; the list is stale now.
      this.stale = true;
      if (this.panels.isOpen('files')) this.refresh();
      return stored;
    } catch (err) {
      if (this.session === session && !(err && err.code === 'aborted')) {
        this._showUploadError(describeFileError(err, name, 'upload'), err && err.code);
      }
      return null;
    } finally {
      if (this.upload && this.upload.controller === controller) this.upload = null;
      this.progress.hidden = true;
      this.render();
    }
  }

  _cancelUpload() {
    if (this.upload) this.upload.controller.abort();
  }

  _showUploadError(text, code = '') {
    this.uploadError.textContent = text;
    this.uploadError.dataset.code = code || '';
    this.uploadError.hidden = !text;
  }

  // --- downloads --------------------------------------------------------------------------

  /** Download one file ({id, name}) and offer it to save; errors show inline. */
  async download(file) {
    const session = this.session;
    if (!session || !session.token || !file || !file.id || this.downloading.has(file.id)) return;
    this.downloading.add(file.id);
    this._renderBusy(file.id);
    try {
      const blob = await downloadFile(session.room, session.token, file.id);
      if (this.session !== session) return;
      saveBlob(blob, file.name || 'file');
    } catch (err) {
      if (this.session !== session) return;
      const text = describeFileError(err, file.name, 'download');
      // Where the user is looking: the panel when it is open, else the chat form.
      if (this.panels.isOpen('files')) this._showListError(text);
      else this._showUploadError(text, err && err.code);
      this.render();
    } finally {
      this.downloading.delete(file.id);
      this._renderBusy(file.id);
    }
  }

  _renderBusy(id) {
    for (const button of this.list.querySelectorAll('button[data-file-id]')) {
      if (button.dataset.fileId !== id) continue;
      const busy = this.downloading.has(id);
      button.disabled = busy;
      button.toggleAttribute('aria-busy', busy);
      button.querySelector('.btn-label').textContent = busy ? 'Downloading…' : 'Download';
      const name = button.dataset.fileName;
      button.setAttribute('aria-label', `${busy ? 'Downloading' : 'Download'} ${name}`);
    }
  }

  // --- the list -----------------------------------------------------------------------------

  _onChat(message) {
    if (!message || !message.file) return;
    this.stale = true;
    if (this.panels.isOpen('files')) this.refresh();
  }

  /** Fetch the room's files and show them (the newest answer wins). */
  async refresh() {
    const session = this.session;
    if (!session || !session.token) return;
    const seq = (this.listSeq += 1);
    this.panelBody.setAttribute('aria-busy', 'true');
    try {
      const files = await listFiles(session.room, session.token);
      if (seq !== this.listSeq) return;
      this.files = files;
      this.stale = false;
      this._showListError('');
      this._renderList();
    } catch (err) {
      if (seq !== this.listSeq) return;
      const why = (err && (err.detail || err.message)) || 'unknown error';
      this._showListError(`The list of files did not load: ${why}.`);
    } finally {
      if (seq === this.listSeq) this.panelBody.removeAttribute('aria-busy');
    }
  }

  _showListError(text) {
    this.listError.textContent = text;
    this.listError.hidden = !text;
  }

  _renderList() {
    const rows = this.files.map((file) => this._row(file));
    this.list.replaceChildren(...rows);
    this.empty.hidden = rows.length > 0;
    const n = rows.length;
    this.listStatus.textContent = n === 1 ? '1 file' : `${n} files`;
    this.panelButton.dataset.count = String(n);
  }

  /** Who uploaded: the display name of a participant with that identity, else the identity. */
  _uploader(identity) {
    const s = this.session;
    if (!s || !identity) return identity || '';
    if (s.me && s.me.identity === identity) return 'you';
    for (const p of s.participants.values()) {
      if (p.identity === identity && p.name) return p.name;
    }
    return identity;
  }

  _row(file) {
    const name = file.name || 'file';
    const li = el('li', 'file-row');
    li.dataset.fileId = String(file.id);
    const info = el('div', 'file-info');
    const title = el('span', 'file-name', name);
    const meta = [formatSize(file.size), this._uploader(file.uploaded_by), clockTime(file.at)];
    title.title = name;
    info.append(title, el('span', 'file-meta', meta.filter(Boolean).join(' · ')));
    const button = el('button', 'btn file-download');
    button.type = 'button';
    button.dataset.fileId = String(file.id);
    button.append(icon('download'), el('span', 'btn-label', 'Download'));
    button.dataset.fileName = name;
    button.setAttribute('aria-label', `Download ${name}`);
    button.addEventListener('click', () => this.download(file));
    li.append(icon('file'), info, button);
    return li;
  }
}
