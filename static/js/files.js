// File sharing in a room (see docs/files.md): upload, list, download, save.
//
// Every call takes the room token, the same one that joins the WebSocket; it travels in the
// Authorization header (never in a URL). Failures reject with an ApiError (api.js): `status`
// 0 means the server could not be reached, code `aborted` that the caller's signal fired.
// File names, like every text from other participants, are data: insert them with
// textContent, never as HTML.

import { ApiError } from './api.js';

function filesPath(room) {
  return `/api/rooms/${encodeURIComponent(room)}/files`;
}

/** The path of one file's download (it still needs the Authorization header). */
export function downloadPath(room, id) {
  return `${filesPath(room)}/${encodeURIComponent(id)}`;
}

function problemFrom(status, body) {
  const detail =
    body && typeof body.detail === 'string' && body.detail
      ? body.detail
      : `request failed (HTTP ${status})`;
  const code = body && typeof body.code === 'string' ? body.code : `http_${status}`;
  const errors = body && Array.isArray(body.errors) ? body.errors : [];
  return new ApiError(status, code, detail, errors);
}

async function problemOf(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  return problemFrom(resp.status, body);
}

function aborted() {
  return new ApiError(0, 'aborted', 'the request was cancelled');
}

async function authorizedFetch(path, token, signal) {
  try {
    return await fetch(path, {
      headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' },
      credentials: 'omit',
      cache: 'no-store',
      signal,
    });
  } catch (err) {
    if (err && err.name === 'AbortError') throw aborted();
    throw new ApiError(0, 'network_error', 'the server cannot be reached');
  }
}

/**
 * Upload `file` (a File or Blob) to the room. Resolves with the stored file
 * `{id, name, size, content_type, uploaded_by, at}`; the server also announces it in the chat.
 *
 * @param {string} room
 * @param {string} token       room token with the canPublishData grant
 * @param {File|Blob} file     sent as the raw request body, streamed by the browser
 * @param {(sent: number, total: number) => void} [onProgress]  bytes sent so far, of total
 * @param {{signal?: AbortSignal, name?: string}} [options]  `name` overrides file.name
 */
export function uploadFile(room, token, file, onProgress, { signal, name } = {}) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) {
      reject(aborted());
      return;
    }
    const xhr = new XMLHttpRequest();
    xhr.open('POST', filesPath(room));
    xhr.responseType = 'text';
    xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.setRequestHeader('X-Filename', encodeURIComponent(name ?? file.name ?? 'file'));
    xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
    if (onProgress) {
      xhr.upload.onprogress = (event) => {
        onProgress(event.loaded, event.lengthComputable ? event.total : file.size);
      };
    }
    const onAbort = () => xhr.abort();
    const done = () => signal && signal.removeEventListener('abort', onAbort);
    xhr.onload = () => {
      done();
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      if (xhr.status === 201 && body && typeof body.id === 'string') resolve(body);
      else reject(problemFrom(xhr.status, body));
    };
    xhr.onerror = () => {
      done();
      reject(new ApiError(0, 'network_error', 'the upload did not reach the server'));
    };
    xhr.onabort = () => {
      done();
      reject(aborted());
    };
    if (signal) signal.addEventListener('abort', onAbort, { once: true });
    xhr.send(file);
  });
}

/**
 * The room's files, newest first: an array of `{id, name, size, content_type, uploaded_by, at}`.
 *
 * @param {string} room
 * @param {string} token
 * @param {{signal?: AbortSignal}} [options]
 */
export async function listFiles(room, token, { signal } = {}) {
  const resp = await authorizedFetch(filesPath(room), token, signal);
  if (!resp.ok) throw await problemOf(resp);
  const body = await resp.json();
  return Array.isArray(body.files) ? body.files : [];
}

/**
 * Download one file; resolves with its bytes as a Blob (type application/octet-stream).
 * A file that fails verification on the server arrives cut short: that rejects too.
 *
 * @param {string} room
 * @param {string} token
 * @param {string} id          the file's id (from listFiles or a chat message's `file.id`)
 * @param {{signal?: AbortSignal}} [options]
 */
export async function downloadFile(room, token, id, { signal } = {}) {
  const resp = await authorizedFetch(downloadPath(room, id), token, signal);
  if (!resp.ok) throw await problemOf(resp);
  try {
    return await resp.blob();
  } catch (err) {
    if (err && err.name === 'AbortError') throw aborted();
    throw new ApiError(0, 'download_failed', 'the download was interrupted');
  }
}

/** Offer `blob` to the user as a download named `name` (through a temporary <a download>). */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = name || 'file';
  link.rel = 'noopener';
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** A short human size: 532 B, 12.4 KB, 3.1 MB (powers of 1024). */
export function formatSize(bytes) {
  const units = ['B', 'KB', 'MB', 'GB'];
  let value = Number(bytes) || 0;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} ${units[0]}` : `${value.toFixed(1)} ${units[unit]}`;
}
