// Host controls in a conference (docs/protocol.md, "Podcast stage": the same stage requests):
//   - everyone: Raise hand (`raise_hand`), who is host ("Host" / "Co-host" badges), raised
//     hands in the participants list, "The host muted you" when a host mutes our microphone,
//     and "Locked" in the top bar while the room is locked;
//   - the host and moderators: Mute / Lower hand / Remove on each participant's row
//     (`mute_participant`, `raise_hand` with `participant`, `remove_participant`), Lock meeting
//     and Waiting room switches (`lock_room`, `set_waiting_room`) at the top of the
//     participants panel, and a card per person waiting to join with Admit / Deny
//     (`knock` → `respond_knock`);
//   - the host: "End for all" (`end_room`), in the top bar, apart from everyday controls.
// Every check is the server's; these controls only hide what the role may not do.
// Podcast rooms have their own stage view (podcast.js): this module is idle there.

import { h } from './dom.js';

const SVG_NS = 'http://www.w3.org/2000/svg';

/** A raised-hand icon (outline, like ui.js's icons). */
function handIcon() {
  const svg = document.createElementNS(SVG_NS, 'svg');
  for (const [k, v] of Object.entries({ viewBox: '0 0 24 24', fill: 'none', stroke: 'currentColor', 'stroke-width': '2', 'stroke-linecap': 'round', 'stroke-linejoin': 'round', 'aria-hidden': 'true', focusable: 'false' })) {
    svg.setAttribute(k, v);
  }
  const path = document.createElementNS(SVG_NS, 'path');
  path.setAttribute('d', 'M8 13V5.5a1.5 1.5 0 0 1 3 0V11m0-6.5v-1a1.5 1.5 0 0 1 3 0V11m0-5.5a1.5 1.5 0 0 1 3 0V11m0-3a1.5 1.5 0 0 1 3 0v6a8 8 0 0 1-8 8h-1a7 7 0 0 1-6-3.5L3.5 14a1.5 1.5 0 0 1 2.5-1.7L8 15');
  svg.appendChild(path);
  return svg;
}

const ADMIN_ROLES = new Set(['host', 'moderator']);
const ROLE_BADGE = { host: 'Host', moderator: 'Co-host' };

export class HostControls {
  /**
   * @param {object} els
   * @param {HTMLElement} els.controls    the control bar (Raise hand goes in it)
   * @param {HTMLElement} els.before      Raise hand is inserted before this control
   * @param {HTMLElement} els.topbar      the top bar (host badge, Locked, End for all)
   * @param {HTMLElement} els.callMain    the call area (knock cards, notices)
   * @param {HTMLElement} els.peoplePanel the participants panel body (host switches)
   * @param {import('./participants.js').ParticipantsView} els.participants
   * @param {(text: string, isError?: boolean) => void} els.status
   */
  constructor({ controls, before, topbar, callMain, peoplePanel, participants, status }) {
    this.participantsView = participants;
    this.status = status;
    this.session = null;
    this.roles = new Map(); // sid -> role
    this.hands = []; // sids, oldest first
    this.myHand = false;
    this.knocks = new Map(); // knock id -> {knock, name, identity}
    this.locked = false;
    this.waitingRoom = false;

    this.handButton = h('button', { type: 'button', class: 'btn', id: 'hand-button', 'aria-pressed': 'false', hidden: true });
    this.handButton.addEventListener('click', () => this.toggleHand());
    controls.insertBefore(this.handButton, before);

    this.badge = h('span', { class: 'host-badge', id: 'my-role-badge', hidden: true });
    this.lockBadge = h('span', { class: 'lock-badge', id: 'lock-badge', role: 'status', hidden: true }, ['Locked']);
    this.endButton = h('button', { type: 'button', class: 'btn btn-danger host-end', id: 'end-all-button', hidden: true }, [
      'End for all',
    ]);
    this.endButton.addEventListener('click', () => this.endForAll());
    const statusLine = topbar.querySelector('.status');
    for (const node of [this.badge, this.lockBadge, this.endButton]) topbar.insertBefore(node, statusLine);

    // The host's switches and the waiting list, at the top of the participants panel.
    this.lockSwitch = h('button', { type: 'button', class: 'btn host-switch', id: 'lock-switch', 'aria-pressed': 'false' }, [
      'Lock meeting',
    ]);
    this.lockSwitch.addEventListener('click', () => this._send({ type: 'lock_room', locked: !this.locked }));
    this.waitSwitch = h('button', { type: 'button', class: 'btn host-switch', id: 'waiting-switch', 'aria-pressed': 'false' }, [
      'Waiting room',
    ]);
    this.waitSwitch.addEventListener('click', () =>
      this._send({ type: 'set_waiting_room', enabled: !this.waitingRoom }),
    );
    this.hostSection = h('div', { class: 'host-section', id: 'host-section', role: 'group', 'aria-label': 'Host controls', hidden: true }, [
      h('div', { class: 'row host-switches' }, [this.lockSwitch, this.waitSwitch]),
    ]);
    peoplePanel.prepend(this.hostSection);

    // People waiting to join (cards with Admit / Deny), and notices for everyone.
    this.knockList = h('ul', { class: 'knock-list', id: 'knock-list', 'aria-label': 'Waiting to join', hidden: true });
    this.notice = h('p', { class: 'host-notice', id: 'host-notice', role: 'status', hidden: true });
    callMain.append(this.knockList, this.notice);

    this.dialog = this._dialog();
    participants.decorate = (li, sid, isMe) => this._decorate(li, sid, isMe);
    this.onEvent = (ev) => this._onEvent(ev.detail.msg);
    this.onRole = () => this._changed();
    this.shown = null; // what render() last showed (it runs on every page render: stay cheap)
  }

  /** True when we may moderate (host or moderator in a conference). */
  get isAdmin() {
    const s = this.session;
    return Boolean(s && s.state === 'joined' && s.kind === 'conference' && ADMIN_ROLES.has(s.role));
  }

  get active() {
    const s = this.session;
    return Boolean(s && s.state === 'joined' && s.kind === 'conference');
  }

  bind(session) {
    this.unbind();
    this.session = session;
    this.roles.clear();
    this.hands = [];
    this.myHand = false;
    this.knocks.clear();
    this.locked = false;
    this.waitingRoom = false;
    session.addEventListener('roomevent', this.onEvent);
    session.addEventListener('role', this.onRole);
    this._changed();
  }

  unbind() {
    if (this.session) {
      this.session.removeEventListener('roomevent', this.onEvent);
      this.session.removeEventListener('role', this.onRole);
    }
    this.session = null;
    if (this.dialog.dialog.open) this.dialog.dialog.close('no');
    this._changed();
  }

  _onEvent(msg) {
    const s = this.session;
    switch (msg.type) {
      case 'joined':
        for (const p of msg.participants ?? []) this.roles.set(p.sid, p.role);
        break;
      case 'participant_joined':
      case 'participant_updated':
        this.roles.set(msg.participant.sid, msg.participant.role);
        break;
      case 'participant_left':
        this.roles.delete(msg.participant);
        this.hands = this.hands.filter((sid) => sid !== msg.participant);
        break;
      case 'hands':
        this.hands = (msg.queue ?? []).map((m) => m.sid);
        break;
      case 'hand':
        this.myHand = Boolean(msg.raised);
        break;
      case 'knock':
        this.knocks.set(msg.knock, msg);
        break;
      case 'knock_resolved':
        this.knocks.delete(msg.knock);
        break;
      case 'stage_settings':
        this.locked = Boolean(msg.locked);
        this.waitingRoom = Boolean(msg.waiting_room);
        break;
      case 'track_muted':
        if (msg.remote && msg.muted && s && s.me && msg.participant === s.me.sid && s.kind === 'conference') {
          this._notify('The host muted your microphone. Only you can unmute it, when you are ready.');
        }
        return;
      default:
        return;
    }
    this._changed();
  }

  /** Our state changed: the controls, the knock cards and the participants list follow. */
  _changed() {
    this.shown = null;
    this.render();
  }

  _notify(text) {
    this.notice.textContent = text;
    this.notice.hidden = false;
    clearTimeout(this.noticeTimer);
    this.noticeTimer = setTimeout(() => {
      this.notice.hidden = true;
    }, 8000);
  }

  async _send(msg) {
    if (!this.session) return null;
    try {
      return await this.session.request(msg);
    } catch (err) {
      this.status(`Could not do that: ${err.detail || err.message}`, true);
      return null;
    }
  }

  toggleHand() {
    if (!this.active) return;
    this._send({ type: 'raise_hand', raised: !this.myHand });
  }

  async endForAll() {
    if (!this.session || this.session.role !== 'host') return;
    const yes = await this._ask({
      title: 'End the meeting for everyone?',
      text: 'Everyone is disconnected and nobody can rejoin until you open the room again.',
      yes: 'End for all',
    });
    if (yes) await this._send({ type: 'end_room' });
  }

  async remove(sid) {
    const name = this.session ? this.session.nameOf(sid) : '';
    const yes = await this._ask({
      title: `Remove ${name || 'this participant'}?`,
      text: 'They leave the meeting now and cannot come back into this room.',
      yes: 'Remove',
    });
    if (yes) await this._send({ type: 'remove_participant', participant: sid });
  }

  /** Show or hide the controls for the current state; cheap when nothing changed. */
  render() {
    const s = this.session;
    const active = this.active;
    const admin = this.isAdmin;
    const key = JSON.stringify([active, admin, s && s.role, s && s.state, this.myHand, this.locked, this.waitingRoom]);
    if (key === this.shown) return;
    const full = this.shown === null; // from _changed(): knocks and rows too
    this.shown = key;
    this.handButton.hidden = !active;
    const label = this.myHand ? 'Lower hand' : 'Raise hand';
    this.handButton.replaceChildren(handIcon(), h('span', { class: 'btn-label', text: label }));
    this.handButton.title = label;
    this.handButton.setAttribute('aria-pressed', String(this.myHand));
    const badge = active ? ROLE_BADGE[s.role] : null;
    this.badge.hidden = !badge;
    this.badge.textContent = badge ? `You are ${badge === 'Host' ? 'the host' : 'a co-host'}` : '';
    this.lockBadge.hidden = !(active && this.locked);
    this.endButton.hidden = !(active && s.role === 'host');
    this.hostSection.hidden = !admin;
    this.lockSwitch.setAttribute('aria-pressed', String(this.locked));
    this.lockSwitch.textContent = this.locked ? 'Meeting locked' : 'Lock meeting';
    this.waitSwitch.setAttribute('aria-pressed', String(this.waitingRoom));
    this.waitSwitch.textContent = this.waitingRoom ? 'Waiting room on' : 'Waiting room off';
    if (!active) this.notice.hidden = true;
    if (full) {
      this._renderKnocks(admin);
      this.participantsView.render();
    }
  }

  _renderKnocks(admin) {
    const knocks = admin ? [...this.knocks.values()] : [];
    this.knockList.hidden = knocks.length === 0;
    const focused = this.knockList.contains(document.activeElement);
    this.knockList.replaceChildren(
      ...knocks.map((k) => {
        const admit = h('button', { type: 'button', class: 'btn btn-primary', 'data-action': 'admit' }, ['Admit']);
        const deny = h('button', { type: 'button', class: 'btn', 'data-action': 'deny' }, ['Deny']);
        admit.setAttribute('aria-label', `Admit ${k.name || k.identity}`);
        deny.setAttribute('aria-label', `Deny ${k.name || k.identity}`);
        admit.addEventListener('click', () => this._send({ type: 'respond_knock', knock: k.knock, admit: true }));
        deny.addEventListener('click', () => this._send({ type: 'respond_knock', knock: k.knock, admit: false }));
        const li = h('li', { class: 'knock' }, [
          h('span', { class: 'knock-text' }, [h('strong', { text: k.name || k.identity }), ' wants to join']),
          h('span', { class: 'row knock-buttons' }, [deny, admit]),
        ]);
        li.dataset.knock = k.knock;
        return li;
      }),
    );
    if (focused && !this.knockList.contains(document.activeElement)) {
      const next = this.knockList.querySelector('button');
      if (next) next.focus();
    }
  }

  /** Add the role badge, the raised hand and (for hosts) the per-participant actions. */
  _decorate(li, sid, isMe) {
    const s = this.session;
    if (!this.active) return;
    const role = isMe ? s.role : this.roles.get(sid);
    const text = li.querySelector('.person-text');
    if (ROLE_BADGE[role]) text.appendChild(h('span', { class: 'person-role', text: ROLE_BADGE[role] }));
    const raised = isMe ? this.myHand : this.hands.includes(sid);
    if (raised) {
      const hand = h('span', { class: 'person-hand', role: 'img', 'aria-label': 'hand raised', title: 'Hand raised' }, ['✋']);
      text.appendChild(hand);
      li.dataset.hand = 'true';
    }
    if (isMe || !this.isAdmin || (ADMIN_ROLES.has(role) && s.role !== 'host')) return;
    const name = s.nameOf(sid) || 'participant';
    const actions = h('span', { class: 'person-actions', role: 'group', 'aria-label': `Host actions for ${name}` });
    if (li.dataset.mic === 'on') {
      actions.appendChild(
        h('button', { type: 'button', class: 'btn btn-small', 'data-action': 'mute', 'aria-label': `Mute ${name}`, onclick: () => this._send({ type: 'mute_participant', participant: sid }) }, ['Mute']),
      );
    }
    if (raised) {
      actions.appendChild(
        h('button', { type: 'button', class: 'btn btn-small', 'data-action': 'lower', 'aria-label': `Lower hand of ${name}`, onclick: () => this._send({ type: 'raise_hand', raised: false, participant: sid }) }, ['Lower hand']),
      );
    }
    actions.appendChild(
      h('button', { type: 'button', class: 'btn btn-small btn-danger', 'data-action': 'remove', 'aria-label': `Remove ${name}`, onclick: () => this.remove(sid) }, ['Remove']),
    );
    li.appendChild(actions);
  }

  /** A modal confirmation <dialog> (values 'yes' / 'no'). */
  _dialog() {
    const title = h('h2', { class: 'pod-dialog-title', id: 'host-dialog-title' });
    const text = h('p', { class: 'pod-dialog-text', id: 'host-dialog-text' });
    const no = h('button', { type: 'submit', class: 'btn', value: 'no' }, ['Cancel']);
    const yes = h('button', { type: 'submit', class: 'btn btn-danger', value: 'yes' });
    const form = h('form', { method: 'dialog', class: 'stack' }, [title, text, h('div', { class: 'row pod-dialog-buttons' }, [no, yes])]);
    const dialog = h('dialog', { class: 'pod-dialog host-dialog', id: 'host-dialog', 'aria-labelledby': title.id, 'aria-describedby': text.id }, [form]);
    document.body.appendChild(dialog);
    return { dialog, title, text, yes, no };
  }

  _ask({ title, text, yes }) {
    const d = this.dialog;
    if (d.dialog.open) d.dialog.close('no');
    const returnTo = document.activeElement;
    d.title.textContent = title;
    d.text.textContent = text;
    d.yes.textContent = yes;
    d.dialog.returnValue = '';
    return new Promise((resolve) => {
      d.dialog.addEventListener(
        'close',
        () => {
          if (returnTo && returnTo.isConnected && returnTo !== document.body) returnTo.focus();
          resolve(d.dialog.returnValue === 'yes');
        },
        { once: true },
      );
      d.dialog.showModal();
      d.no.focus();
    });
  }
}
