// One room of the lobby (lobby.js): its live state (live, how many are in it, ended), Join, an
// ended room's Reopen, invite links (by role: listener, speaker, moderator; listed, copied and
// revoked), the meeting history (paginated) and Delete (with a confirmation; a live room ends).
//
// Every string that comes from the server (names, error details, URLs) is set with
// textContent or an input's value, never parsed as markup.

import { ApiError } from './api.js';
import { h, showError } from './dom.js';
import { describeProblem } from './errors.js';

const KIND_LABELS = { conference: 'Conference', podcast: 'Podcast' };
const ROLE_LABELS = { listener: 'Listener', speaker: 'Speaker', moderator: 'Moderator' };
const EVENT_LABELS = {
  joined: 'joined',
  left: 'left',
  removed: 'was removed',
  role_changed: 'changed role',
  room_ended: 'ended the room',
};
const HISTORY_PAGE = 20;

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

/** Run `work` with `button` disabled. */
async function pressed(button, work) {
  button.disabled = true;
  try {
    return await work();
  } finally {
    button.disabled = false;
  }
}

function button(text, label, cls = 'btn') {
  const b = h('button', { type: 'button', class: cls, text });
  if (label) b.setAttribute('aria-label', label);
  return b;
}

export class RoomItem {
  /**
   * @param {object} opts
   * @param {import('./api.js').Api} opts.api
   * @param {object} opts.room  the room (GET /api/rooms: id, name, kind, live, participants, ended)
   * @param {(grant: object, name: string) => void} opts.onJoin
   * @param {(text: string) => void} opts.status
   * @param {() => void} opts.onDeleted  the room was deleted (the lobby reloads its list)
   */
  constructor({ api, room, onJoin, status, onDeleted }) {
    this.api = api;
    this.room = room;
    this.onJoin = onJoin;
    this.status = status;
    this.onDeleted = onDeleted;
    this.historyEvents = [];
    this.historyTotal = 0;
    const name = room.name;

    this.nameEl = h('span', { class: 'room-name', text: name });
    this.kindEl = h('span', { class: 'room-kind', text: KIND_LABELS[room.kind] || room.kind });
    this.liveEl = h('span', { class: 'room-live' });
    this.liveEl.setAttribute('role', 'status');
    const info = h('div', { class: 'room-info' }, [
      this.nameEl,
      h('span', { class: 'room-meta' }, [this.kindEl, this.liveEl]),
    ]);

    this.joinBtn = button('Join', `Join ${name}`, 'btn btn-primary');
    this.reopenBtn = button('Reopen room', `Reopen room ${name}`, 'btn btn-primary');
    this.roleSelect = h('select', { class: 'invite-role' });
    this.roleSelect.setAttribute('aria-label', `Role for a new invite link to ${name}`);
    for (const role of ['listener', 'speaker', 'moderator']) {
      this.roleSelect.append(h('option', { value: role, text: `as ${ROLE_LABELS[role]}` }));
    }
    this.roleSelect.value = room.kind === 'podcast' ? 'listener' : 'speaker';
    this.inviteBtn = button('Invite link', `Invite link for ${name}`);
    this.linksBtn = button('Links', `Invite links of ${name}`);
    this.linksBtn.setAttribute('aria-expanded', 'false');
    this.historyBtn = button('History', `Meeting history of ${name}`);
    this.historyBtn.setAttribute('aria-expanded', 'false');
    this.deleteBtn = button('Delete', `Delete ${name}`, 'btn room-danger');
    const actions = h('div', { class: 'room-actions' }, [
      this.joinBtn,
      this.reopenBtn,
      h('span', { class: 'invite-maker' }, [this.roleSelect, this.inviteBtn]),
      this.linksBtn,
      this.historyBtn,
      this.deleteBtn,
    ]);

    this.error = h('p', { class: 'form-error', role: 'alert', hidden: true });

    // A new invite link.
    const inputId = `invite-url-${room.id}`;
    this.url = h('input', { id: inputId, class: 'invite-url' });
    this.url.readOnly = true;
    this.url.spellcheck = false;
    this.copyBtn = button('Copy', `Copy the invite link for ${name}`);
    this.note = h('p', { class: 'copy-note', role: 'status' });
    this.inviteLabel = h('label', { for: inputId, text: `Invite link for ${name}` });
    this.inviteBox = h('div', { class: 'invite', hidden: true }, [
      this.inviteLabel,
      h('div', { class: 'invite-row' }, [this.url, this.copyBtn]),
      this.note,
    ]);

    // The live invite links, each with Revoke.
    this.linksList = h('ul', { class: 'room-links' });
    this.linksList.setAttribute('aria-label', `Invite links of ${name}`);
    this.linksEmpty = h('p', { class: 'hint', text: 'No live invite links.', hidden: true });
    this.linksBox = h('div', { class: 'room-panel', hidden: true }, [
      h('h3', { class: 'room-panel-title', text: 'Invite links' }),
      this.linksList,
      this.linksEmpty,
    ]);

    // The meeting history, a page at a time.
    this.historyList = h('ol', { class: 'room-history' });
    this.historyList.setAttribute('aria-label', `Meeting history of ${name}`);
    this.historyEmpty = h('p', { class: 'hint', text: 'Nobody has met here yet.', hidden: true });
    this.moreBtn = button('Show more', `Show more of the history of ${name}`);
    this.historyCount = h('p', { class: 'hint' });
    this.historyBox = h('div', { class: 'room-panel', hidden: true }, [
      h('h3', { class: 'room-panel-title', text: 'Meeting history' }),
      this.historyList,
      this.historyEmpty,
      this.historyCount,
      this.moreBtn,
    ]);

    // Delete, confirmed in place.
    this.confirmText = h('p', { class: 'room-confirm-text' });
    this.confirmDelete = button('Yes, delete', `Yes, delete ${name}`, 'btn room-danger');
    this.cancelDelete = button('Keep the room');
    this.confirmBox = h('div', { class: 'room-confirm', role: 'group', hidden: true }, [
      this.confirmText,
      h('div', { class: 'room-actions' }, [this.confirmDelete, this.cancelDelete]),
    ]);
    this.confirmBox.setAttribute('aria-label', `Delete ${name}?`);

    this.el = h('li', { class: 'room-item' }, [
      info,
      actions,
      this.error,
      this.confirmBox,
      this.inviteBox,
      this.linksBox,
      this.historyBox,
    ]);
    this.el.dataset.roomId = room.id;
    this._wire();
    this.update(room);
  }

  /** Show the room's live state (from GET /api/rooms). */
  update(room) {
    this.room = room;
    const live = Boolean(room.live);
    const ended = Boolean(room.ended);
    const n = room.participants ?? 0;
    this.el.dataset.live = String(live);
    this.el.dataset.ended = String(ended);
    this.el.dataset.participants = String(n);
    const [state, text] = ended
      ? ['ended', 'Ended']
      : live
        ? ['live', `Live · ${plural(n, 'person', 'people')} in the room`]
        : ['idle', 'Nobody in it'];
    // Only a change is written (the badge is a status region: a refresh alone says nothing).
    if (this.liveEl.textContent !== text) this.liveEl.textContent = text;
    this.liveEl.dataset.state = state;
    // Join stays: an ended room answers it with a sentence that points at Reopen.
    this.reopenBtn.hidden = !ended;
    this.joinBtn.classList.toggle('btn-primary', !ended);
  }

  _wire() {
    const room = () => this.room;
    this.joinBtn.addEventListener('click', () =>
      pressed(this.joinBtn, async () => {
        showError(this.error, '');
        try {
          const grant = await this.api.roomToken(room().id);
          const user = this.api.user;
          this.onJoin(grant, user ? user.display_name : '');
        } catch (err) {
          if (err instanceof ApiError && err.code === 'room_ended') {
            this.update({ ...room(), ended: true, live: false, participants: 0 });
            this.reopenBtn.focus();
          }
          showError(this.error, `Could not join: ${describeProblem(err)}`);
        }
      }),
    );
    this.reopenBtn.addEventListener('click', () =>
      pressed(this.reopenBtn, async () => {
        showError(this.error, '');
        try {
          const answer = await this.api.reopenRoom(room().id);
          this.update(answer.room);
          this.status(`${room().name} is open again.`);
          this.joinBtn.focus();
        } catch (err) {
          showError(this.error, `Could not reopen the room: ${describeProblem(err)}`);
        }
      }),
    );
    this.inviteBtn.addEventListener('click', () =>
      pressed(this.inviteBtn, async () => {
        showError(this.error, '');
        const role = this.roleSelect.value;
        try {
          const answer = await this.api.createInvite(room().id, role);
          this.url.value = new URL(answer.url, window.location.origin).href;
          this.url.dataset.role = answer.role;
          this.url.dataset.code = answer.code;
          this.inviteLabel.textContent = `Invite link for ${room().name} (joins as ${ROLE_LABELS[answer.role] || answer.role})`;
          this.note.textContent = answer.expires_at
            ? `Anyone with this link joins as ${(ROLE_LABELS[answer.role] || answer.role).toLowerCase()} until ${new Date(answer.expires_at).toLocaleString()}.`
            : '';
          this.inviteBox.hidden = false;
          this.url.focus();
          this.url.select();
          if (!this.linksBox.hidden) await this._loadLinks();
        } catch (err) {
          showError(this.error, `Could not create an invite: ${describeProblem(err)}`);
        }
      }),
    );
    this.copyBtn.addEventListener('click', async () => {
      if (await copyText(this.url)) {
        this.note.textContent = 'Copied to the clipboard.';
      } else {
        this.url.focus();
        this.url.select();
        this.note.textContent = 'Select the link and copy it (Ctrl+C).';
      }
    });
    this.linksBtn.addEventListener('click', () =>
      pressed(this.linksBtn, async () => {
        const open = this.linksBox.hidden;
        if (open && !(await this._loadLinks())) return;
        this.linksBox.hidden = !open;
        this.linksBtn.setAttribute('aria-expanded', String(open));
      }),
    );
    this.historyBtn.addEventListener('click', () =>
      pressed(this.historyBtn, async () => {
        const open = this.historyBox.hidden;
        if (open) {
          this.historyEvents = [];
          if (!(await this._loadHistory())) return;
        }
        this.historyBox.hidden = !open;
        this.historyBtn.setAttribute('aria-expanded', String(open));
      }),
    );
    this.moreBtn.addEventListener('click', () => pressed(this.moreBtn, () => this._loadHistory()));
    this.deleteBtn.addEventListener('click', () => {
      const r = room();
      this.confirmText.textContent = r.live
        ? `Delete ${r.name}? The meeting going on in it ends for everyone, and its invite links and history are deleted.`
        : `Delete ${r.name}? Its invite links and history are deleted.`;
      this.confirmBox.hidden = false;
      this.cancelDelete.focus();
    });
    this.cancelDelete.addEventListener('click', () => {
      this.confirmBox.hidden = true;
      this.deleteBtn.focus();
    });
    this.confirmDelete.addEventListener('click', () =>
      pressed(this.confirmDelete, async () => {
        showError(this.error, '');
        try {
          await this.api.deleteRoom(room().id);
          this.status(`Room ${room().name} deleted.`);
          this.el.remove();
          this.onDeleted();
        } catch (err) {
          showError(this.error, `Could not delete the room: ${describeProblem(err)}`);
        }
      }),
    );
  }

  /** Fetch and show the live invite links; false (and an error line) when it failed. */
  async _loadLinks() {
    showError(this.error, '');
    let invites;
    try {
      invites = await this.api.invites(this.room.id);
    } catch (err) {
      showError(this.error, `Could not list the invite links: ${describeProblem(err)}`);
      return false;
    }
    this.linksList.replaceChildren(...invites.map((invite) => this._linkRow(invite)));
    this.linksEmpty.hidden = invites.length > 0;
    return true;
  }

  _linkRow(invite) {
    const role = ROLE_LABELS[invite.role] || invite.role;
    const href = new URL(invite.url, window.location.origin).href;
    const until = new Date(invite.expires_at).toLocaleString();
    const text = h('span', { class: 'room-link-text' }, [
      h('span', { class: 'room-link-role', text: role }),
      h('span', { class: 'room-link-url', text: href }),
      h('span', {
        class: 'room-link-meta',
        text: `${plural(invite.remaining, 'use', 'uses')} left · until ${until}`,
      }),
    ]);
    const revoke = button('Revoke', `Revoke the ${role.toLowerCase()} link ${invite.code}`, 'btn room-danger');
    const li = h('li', { class: 'room-link' }, [text, revoke]);
    li.dataset.code = invite.code;
    li.dataset.role = invite.role;
    revoke.addEventListener('click', () =>
      pressed(revoke, async () => {
        showError(this.error, '');
        try {
          await this.api.revokeInvite(this.room.id, invite.code);
          this.status(`The ${role.toLowerCase()} link was revoked: it no longer lets anyone in.`);
          if (this.url.dataset.code === invite.code) this.inviteBox.hidden = true;
          await this._loadLinks();
          this.linksBtn.focus();
        } catch (err) {
          showError(this.error, `Could not revoke the link: ${describeProblem(err)}`);
        }
      }),
    );
    return li;
  }

  /** Load the next page of the history (oldest first); false (and an error line) on failure. */
  async _loadHistory() {
    showError(this.error, '');
    let page;
    try {
      page = await this.api.history(this.room.id, this.historyEvents.length, HISTORY_PAGE);
    } catch (err) {
      showError(this.error, `Could not load the history: ${describeProblem(err)}`);
      return false;
    }
    const fresh = this.historyEvents.length === 0;
    this.historyEvents = [...this.historyEvents, ...page.events];
    this.historyTotal = page.total;
    const rows = page.events.map((e) => {
      const who = e.name || e.identity;
      const when = new Date(e.at).toLocaleString();
      const li = h('li', { class: 'room-event' }, [
        h('time', { datetime: e.at, text: when }),
        h('span', { class: 'room-event-text', text: `${who} ${EVENT_LABELS[e.event] || e.event}` }),
      ]);
      li.dataset.event = e.event;
      return li;
    });
    if (fresh) this.historyList.replaceChildren(...rows);
    else this.historyList.append(...rows);
    this.historyEmpty.hidden = this.historyEvents.length > 0;
    this.historyCount.textContent = this.historyTotal
      ? `${this.historyEvents.length} of ${plural(this.historyTotal, 'event', 'events')} shown`
      : '';
    this.moreBtn.hidden = this.historyEvents.length >= this.historyTotal;
    return true;
  }
}

/** Copy an input's text: the async Clipboard API, else the selection and execCommand. */
export async function copyText(input) {
  try {
    await navigator.clipboard.writeText(input.value);
    return true;
  } catch {
    input.focus();
    input.select();
    try {
      return document.execCommand('copy');
    } catch {
      return false;
    }
  }
}
