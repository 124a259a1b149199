// Every error a person can meet, as a sentence: one mapping from the codes the client sees to
// words, used by every view (sign-in, lobby, pre-join, call, podcast). A code never reaches the
// screen ("Disconnected (code 1001)"): the developer console keeps the details.
//
// Sources of codes:
//   - RFC 9457 problem details of the HTTP API (`code`, e.g. invite_not_found): api.js ApiError;
//   - protocol errors of the WebSocket (`error.code`, docs/protocol.md): signal.js SignalError;
//   - WebSocket close codes (RFC 6455 §7.4) and close reasons (`removed`, `outbox_overflow`…);
//   - getUserMedia / getDisplayMedia DOMException names (W3C Media Capture and Streams).

/** Problem `code`s (HTTP API) and protocol error codes (WebSocket) -> a sentence. */
export const SENTENCES = {
  // invites and room tokens
  invite_not_found: 'This invite link does not work: it may be mistyped, or it has expired.',
  invite_used_up: 'This invite link has been used up. Ask the person who invited you for a new one.',
  removed_from_room: 'You were removed from this room.',
  room_not_found: 'This room does not exist any more.',
  not_room_owner: 'Only the owner of this room can do that.',
  token_missing: 'This room needs an invite link. Ask the host for one.',
  token_invalid: 'This link does not hold a valid room pass. Ask the host for a new invite link.',
  token_expired: 'This link has expired. Ask the host for a new invite link.',
  token_not_yet_valid: 'This link is not valid yet. Check your computer’s clock and try again.',
  token_revoked: 'This link was withdrawn. Ask the host for a new invite link.',
  wrong_room: 'This link is for another room.',
  // accounts
  invalid_credentials: 'The email address or the password is wrong.',
  email_taken: 'An account with this email address exists already. Sign in instead.',
  weak_password: 'Choose a longer password that is not your email address or a common one.',
  otp_invalid: 'That code is not right. Check the digits and try again.',
  otp_expired: 'That code has expired. Ask for a new one.',
  otp_used: 'That code has been used already. Ask for a new one.',
  otp_attempts_exceeded: 'Too many wrong codes. Ask for a new one.',
  code_delivery_failed: 'We could not send the code. Try again in a moment.',
  refresh_invalid: 'Your sign-in has ended. Sign in again.',
  refresh_reused: 'Your sign-in has ended. Sign in again.',
  signed_out: 'You are not signed in. Sign in first.',
  validation_failed: 'Some of what you entered is not accepted.',
  malformed_json: 'The request could not be read. Reload the page and try again.',
  // files
  file_not_found: 'That file is not there any more.',
  empty_file: 'That file is empty.',
  invalid_filename: 'That file name is not accepted.',
  file_unreadable: 'That file could not be read.',
  file_key_unavailable: 'That file cannot be opened any more.',
  file_too_large: 'That file is too large.',
  cannot_publish_data: 'You may not send messages or files in this room.',
  // the WebSocket protocol (docs/protocol.md)
  unauthorized: 'This room needs an invite link. Ask the host for one.',
  forbidden: 'You are not allowed to do that in this room.',
  not_found: 'That is not there any more.',
  not_joined: 'You are not in the room any more.',
  already_joined: 'You are in this room already, in another tab or window.',
  rate_limited: 'Too many requests in a short time. Wait a moment and try again.',
  too_large: 'That is too large to send.',
  invalid_sdp: 'Your browser and the server could not agree on how to send media.',
  unsupported_version: 'This page is out of date. Reload it.',
  bad_request: 'The server did not understand that request. Reload the page and try again.',
  unknown_type: 'This page is out of date. Reload it.',
  out_of_order: 'Something went out of step. Reload the page and try again.',
  internal: 'Something went wrong on the server. Try again in a moment.',
  internal_error: 'Something went wrong on the server. Try again in a moment.',
  // the client itself
  network_error: 'The server cannot be reached. Check your connection and try again.',
  bad_response: 'The server sent an answer we could not read. Try again in a moment.',
  closed: 'The connection to the server was lost.',
  timeout: 'The server did not answer in time. Try again.',
};

/** WebSocket close reasons (the server's `close(message=…)`) -> a sentence. */
export const CLOSE_REASONS = {
  removed: 'You were removed from this room.',
  room_ended: 'The host ended the meeting.',
  duplicate_identity: 'You joined this room from another tab or device, so this one left.',
  transport_failed: 'Your media connection failed. Check your network and join again.',
  'outbox overflow: the client does not read':
    'Your connection was too slow to keep up with the room, so it was closed.',
  'join timeout': 'Joining took too long. Try again.',
  'too many connections from this address': 'Too many connections from your network. Try again later.',
  'server shutdown': 'The server is restarting. Join again in a moment.',
};

/** WebSocket close codes (RFC 6455 §7.4.1) -> a sentence. */
export const CLOSE_CODES = {
  1000: 'The server closed the connection. Join again.',
  1001: 'The server is restarting. Join again in a moment.',
  1006: 'The connection to the server was lost. Check your network and join again.',
  1008: 'The server closed the connection because of a problem with this page. Join again.',
  1009: 'A message was too large, so the server closed the connection. Join again.',
  1011: 'Something went wrong on the server. Join again in a moment.',
  1012: 'The server is restarting. Join again in a moment.',
  1013: 'The server is busy. Try again later.',
};

/** getUserMedia / getDisplayMedia DOMException names -> a sentence. */
export const MEDIA_ERRORS = {
  NotAllowedError: 'Your browser blocked the camera and microphone. Allow them for this site and try again.',
  NotFoundError: 'No camera or microphone was found.',
  NotReadableError: 'The camera or microphone is in use by another app, or it failed.',
  OverconstrainedError: 'The chosen camera or microphone is not available any more.',
  AbortError: 'The camera or microphone could not start.',
  SecurityError: 'Camera and microphone need a secure page (https:// or localhost).',
  TypeError: 'Camera and microphone are not available on this page.',
};

const FALLBACK = 'Something went wrong. Try again in a moment.';

/** The sentence for a problem or protocol error code; `fallback` (or a generic sentence). */
export function sentenceFor(code, fallback = FALLBACK) {
  return (code && Object.prototype.hasOwnProperty.call(SENTENCES, code) && SENTENCES[code]) || fallback;
}

/** The sentence for a WebSocket close event's `code` and `reason`. */
export function closeSentence(code, reason = '') {
  if (reason && Object.prototype.hasOwnProperty.call(CLOSE_REASONS, reason)) return CLOSE_REASONS[reason];
  if (Object.prototype.hasOwnProperty.call(CLOSE_CODES, code)) return CLOSE_CODES[code];
  return 'The connection to the server was lost. Join again.';
}

/**
 * One sentence for any error the client meets: an ApiError (HTTP status and problem `code`),
 * a SignalError (protocol `code`), a getUserMedia DOMException (by `name`), or anything else.
 * Duck-typed so that this module imports nothing.
 */
export function describeError(err) {
  if (!err) return FALLBACK;
  if (typeof err === 'string') return sentenceFor(err);
  if (err.name === 'ApiError' || err.name === 'SignalError') {
    if (err.code && Object.prototype.hasOwnProperty.call(SENTENCES, err.code)) return SENTENCES[err.code];
    if (err.name === 'ApiError' && err.status === 429) return SENTENCES.rate_limited;
    if (err.name === 'ApiError' && err.status >= 500) return SENTENCES.internal_error;
    if (err.name === 'ApiError' && err.status === 0) return SENTENCES.network_error;
    // A problem's `detail` is a sentence written for people; make it read as one.
    if (err.name === 'ApiError' && err.detail) return asSentence(err.detail);
    return FALLBACK;
  }
  if (err.name && Object.prototype.hasOwnProperty.call(MEDIA_ERRORS, err.name)) return MEDIA_ERRORS[err.name];
  return FALLBACK;
}

/**
 * The error line of a form (sign-in, lobby): a 4xx problem's own `detail`, which is written
 * for people and names the field, else the sentence of {@link describeError}.
 */
export function describeProblem(err) {
  const own = err && err.name === 'ApiError' && typeof err.describe === 'function';
  if (own && err.status >= 400 && err.status < 500 && err.status !== 429) return err.describe();
  return describeError(err);
}

/** "invite not found" -> "Invite not found." */
export function asSentence(text) {
  const t = String(text).trim();
  if (!t) return FALLBACK;
  const first = t.charAt(0).toUpperCase() + t.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}
