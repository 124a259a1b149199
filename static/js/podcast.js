// Podcast rooms (docs/protocol.md, "Podcast stage"): the stage, the audience and moderation.
//
// When `joined.kind` is "podcast" this view replaces the video grid: the stage members (host,
// moderators, speakers) as avatar cards with a role badge, microphone state and the active
// speaker highlight; the audience count; for the host and moderators the raised-hands queue
// (Promote) and the audience list (paged with `list_audience`), and per-member controls; for
// listeners Raise hand and the stage invitation dialog; for speakers the mic and Leave stage.
// Stage video: the host and moderators toggle "Show video to audience" (`set_stage_video`);
// while it is on, stage members get a camera button and the cards show each member's camera
// (a muted <video>: the grid's hidden tiles play the audio) instead of the avatar.
// It also shows the "room ended" screen (any room kind).
//
// Media stays in Session (session.js): it publishes when `role_changed` grants canPublish and
// stops when it is withdrawn; the grid's hidden tiles still play the stage's audio. This
// module only applies the Session's 'roomevent' events (every server event and the `joined`
// reply, after the Session handled them) to the stage model and sends stage requests. Text
// from others (names) is only ever set with textContent.
//
// One file, one job: this is the view (PodcastView and its DOM); the stage state and its
// updates are podcast-model.js, a stage member's card podcast-card.js, the DOM helpers dom.js.

import { setButton } from './ui.js';
import { h, syncList } from './dom.js';
import { StageCard } from './podcast-card.js';
import {
  addAudiencePage,
  allowed,
  applyEvent,
  displayName,
  freshState,
  isAdminRole,
  RANK,
  snapshot,
  stageMembers,
  videoTrack,
} from './podcast-model.js';

const AUDIENCE_PAGE = 50;
const MAX_AUDIENCE_PAGE = 100; // the server's list_audience limit
const REVOKE_LABEL = 'Also revoke the invite link they joined with';
const NOTICE_MS = 8000;

const SVG_NS = 'http://www.w3.org/2000/svg';
const HAND_PATH =
  'M8 12V5.5a1.5 1.5 0 0 1 3 0V11M11 10.5V4a1.5 1.5 0 0 1 3 0v6.5M14 10.5V5.5a1.5 1.5 0 0 1 3 0' +
  'V12M17 11.5V9a1.5 1.5 0 0 1 3 0v5a7 7 0 0 1-7 7h-.6a7 7 0 0 1-5.6-2.8L4.3 14.8a1.6 1.6 0 0 1' +
  ' 2.5-2L8 14';

function handIcon() {
  const svg = document.createElementNS(SVG_NS, 'svg');
  for (const [k, v] of Object.entries({
    viewBox: '0 0 24 24',
    fill: 'none',
    stroke: 'currentColor',
    'stroke-width': '2',
    'stroke-linecap': 'round',
    'stroke-linejoin': 'round',
    'aria-hidden': 'true',
    focusable: 'false',
  })) {
    svg.setAttribute(k, v);
  }
  const path = document.createElementNS(SVG_NS, 'path');
  path.setAttribute('d', HAND_PATH);
  svg.appendChild(path);
  return svg;
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

export class PodcastView {
  /**
   * @param {object} opts
   * @param {HTMLElement} opts.callSection  the call area: the stage goes in it (for the grid)
   * @param {HTMLElement} opts.main  the ended screen goes in it
   * @param {HTMLElement} opts.controls  the control bar: the podcast buttons go first in it
   */
  constructor({ callSection, main, controls }) {
    this.session = null;
    this.st = freshState();
    this.order = 0;
    this.audienceSeq = 0;
    this.audienceTimer = null;
    this.noticeTimer = null;
    this.cards = new Map(); // sid -> StageCard
    this._build(callSection, main, controls);
    if (window.sfu) {
      Object.defineProperty(window.sfu, 'podcast', {
        get: () => this.snapshot(),
        enumerable: true,
      });
    }
  }

  // --- DOM ------------------------------------------------------------------------------

  _build(callSection, main, controls) {
    this.noticeText = h('span', { class: 'pod-notice-text' });
    this.notice = h('div', { class: 'pod-notice', role: 'status', hidden: true }, [
      this.noticeText,
      h('button', {
        type: 'button',
        class: 'pod-dismiss',
        'aria-label': 'Dismiss',
        text: '×',
        onclick: () => this._setNotice(''),
      }),
    ]);
    this.stageTitle = h('h2', { id: 'pod-stage-title', tabindex: '-1', text: 'On stage' });
    this.audienceCount = h('p', { class: 'pod-audience-count', id: 'pod-audience-count' });
    this.stageList = h('ul', { class: 'pod-stage', 'aria-labelledby': 'pod-stage-title' });
    this.listenerNote = h('p', { class: 'pod-note', hidden: true });

    const panel = (name, title, listTag, emptyText, extra = []) => {
      const count = h('span', { class: 'pod-count' });
      const list = h(listTag, { class: 'pod-rows', 'aria-labelledby': `pod-${name}-title` });
      const empty = h('p', { class: 'hint pod-empty', text: emptyText });
      const section = h(
        'section',
        { class: `pod-panel pod-${name}`, 'aria-labelledby': `pod-${name}-title` },
        [
          h('h3', { id: `pod-${name}-title`, tabindex: '-1' }, [
            document.createTextNode(`${title} `),
            count,
          ]),
          list,
          empty,
          ...extra,
        ],
      );
      return { count, list, empty, section };
    };
    const hands = panel('hands', 'Raised hands', 'ol', 'No raised hands.');
    this.handsCount = hands.count;
    this.handsList = hands.list;
    this.handsEmpty = hands.empty;
    this.handsPanel = hands.section;

    this.loadMore = h('button', { type: 'button', class: 'btn pod-small', text: 'Load more' });
    this.loadMore.addEventListener('click', () => this._loadAudience(false));
    const audience = panel('audience', 'Audience', 'ul', 'Nobody is listening yet.', [
      this.loadMore,
    ]);
    this.audienceTotalEl = audience.count;
    this.audienceListEl = audience.list;
    this.audienceEmpty = audience.empty;
    this.audiencePanel = audience.section;
    this.adminPanels = h('div', { class: 'pod-admin', hidden: true }, [
      this.handsPanel,
      this.audiencePanel,
    ]);

    this.section = h(
      'section',
      { class: 'podcast', id: 'podcast-section', 'aria-label': 'Podcast room', hidden: true },
      [
        this.notice,
        h('div', { class: 'pod-head' }, [this.stageTitle, this.audienceCount]),
        this.stageList,
        this.listenerNote,
        this.adminPanels,
      ],
    );
    callSection.appendChild(this.section);

    // The podcast buttons, first in the control bar (the Session's mic/camera are hidden).
    this.micBtn = h('button', { type: 'button', class: 'btn pod-mic-btn', 'aria-pressed': 'false' });
    this.micBtn.addEventListener('click', () => this._toggleMic());
    this.handBtn = h('button', { type: 'button', class: 'btn pod-hand-btn' });
    this.handBtn.addEventListener('click', () => this._toggleHand());
    this.camBtn = h('button', { type: 'button', class: 'btn pod-cam-btn' });
    this.camBtn.addEventListener('click', () => this._toggleCamera());
    this.videoBtn = h('button', { type: 'button', class: 'btn pod-video-btn', 'aria-pressed': 'false' });
    this.videoBtn.addEventListener('click', () => this._toggleStageVideo());
    this.shareBtn = h('button', { type: 'button', class: 'btn pod-share-btn', 'aria-pressed': 'false' });
    this.shareBtn.addEventListener('click', () => this._toggleListenerSharing());
    this.leaveStageBtn = h('button', { type: 'button', class: 'btn', text: 'Leave stage' });
    this.leaveStageBtn.addEventListener('click', () => this._leaveStage());
    this.endBtn = h('button', { type: 'button', class: 'btn pod-end', text: 'End room' });
    this.endBtn.addEventListener('click', () => this._endRoom());
    this.bar = h('div', { class: 'pod-bar', role: 'group', 'aria-label': 'Stage', hidden: true }, [
      this.micBtn,
      this.camBtn,
      this.handBtn,
      this.videoBtn,
      this.shareBtn,
      this.leaveStageBtn,
      this.endBtn,
    ]);
    controls.prepend(this.bar);

    this.endedTitle = h('h2', { id: 'pod-ended-title', tabindex: '-1' });
    this.endedText = h('p', { class: 'hint' });
    this.endedSection = h(
      'section',
      { class: 'panel pod-ended', id: 'ended-section', 'aria-labelledby': 'pod-ended-title', hidden: true },
      [
        this.endedTitle,
        this.endedText,
        h('a', { class: 'btn btn-primary', href: '/', text: 'Back to start' }),
      ],
    );
    main.appendChild(this.endedSection);

    this.confirmDialog = this._dialog();
    this.inviteDialog = this._dialog();
  }

  /** A modal <dialog> with a title, a text and two buttons (values 'yes' / 'no'). */
  _dialog() {
    const title = h('h2', { class: 'pod-dialog-title' });
    const text = h('p', { class: 'pod-dialog-text' });
    const no = h('button', { type: 'submit', class: 'btn', value: 'no' });
    const yes = h('button', { type: 'submit', class: 'btn btn-primary', value: 'yes' });
    const check = h('input', { type: 'checkbox' });
    const checkText = h('span');
    const checkLabel = h('label', { class: 'row pod-dialog-check', hidden: true }, [check, checkText]);
    const form = h('form', { method: 'dialog', class: 'stack' }, [
      title,
      text,
      checkLabel,
      h('div', { class: 'row pod-dialog-buttons' }, [no, yes]),
    ]);
    const dialog = h('dialog', { class: 'pod-dialog' }, [form]);
    const id = `pod-dialog-${Math.random().toString(36).slice(2, 8)}`;
    title.id = `${id}-title`;
    text.id = `${id}-text`;
    dialog.setAttribute('aria-labelledby', title.id);
    dialog.setAttribute('aria-describedby', text.id);
    document.body.appendChild(dialog);
    return { dialog, title, text, yes, no, check, checkText, checkLabel, resolve: null };
  }

  /** Show a dialog; resolves true for the 'yes' button, false otherwise (Escape too).
   * `checkbox`: the label of an unticked checkbox to show (read `d.check.checked` after). */
  _ask(d, { title, text, yes, no, danger = false, focus = 'no', checkbox = null }) {
    if (d.dialog.open) d.dialog.close('no');
    const returnTo = document.activeElement;
    d.title.textContent = title;
    d.text.textContent = text;
    d.checkLabel.hidden = !checkbox;
    d.checkText.textContent = checkbox || '';
    d.check.checked = false;
    d.yes.textContent = yes;
    d.no.textContent = no;
    d.yes.className = danger ? 'btn btn-danger' : 'btn btn-primary';
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
      (focus === 'yes' ? d.yes : d.no).focus();
    });
  }

  _closeDialogs() {
    for (const d of [this.confirmDialog, this.inviteDialog]) {
      if (d.dialog.open) d.dialog.close('no');
    }
  }

  // --- wiring ------------------------------------------------------------------------------

  /** Follow a new Session (before it starts). */
  attach(session) {
    this._closeDialogs();
    this.session = session;
    this.st = freshState();
    this.cards.clear();
    this.stageList.replaceChildren();
    this.handsList.replaceChildren();
    this.audienceListEl.replaceChildren();
    session.addEventListener('roomevent', (ev) => {
      if (this.session === session) this._onEvent(ev.detail.msg);
    });
    // Received streams change after a subscribe offer; our camera with 'local'.
    for (const type of ['media', 'local']) {
      session.addEventListener(type, () => {
        if (this.session === session) this.render();
      });
    }
    this.render();
  }

  get isAdmin() {
    return isAdminRole(this.st.role);
  }

  _onEvent(msg) {
    const st = this.st;
    const me = this.session.me;
    const was = st.role;
    applyEvent(st, msg, me ? me.sid : null, () => (this.order += 1));
    switch (msg.type) {
      case 'joined':
        if (this.isAdmin && st.kind === 'podcast') this._loadAudience(true);
        break;
      case 'participant_joined':
      case 'participant_updated':
      case 'participant_left':
      case 'track_published':
      case 'track_unpublished':
      case 'hands':
      case 'hand':
        break;
      case 'track_muted':
        if (me && msg.participant === me.sid && msg.remote && msg.muted) {
          this._setNotice('A moderator muted you. Unmute when you are ready to speak.');
        }
        break;
      case 'active_speakers':
        for (const [sid, card] of this.cards) card.setSpeaking(st.speaking.has(sid));
        return;
      case 'role_changed':
        this._onRoleChanged(msg, was);
        break;
      case 'audience':
        if (this.isAdmin && st.kind === 'podcast') this._scheduleAudienceRefresh();
        break;
      case 'stage_invite':
        this._onInvite(msg);
        break;
      case 'stage_settings':
        break; // the Session keeps the setting (stageVideo) and stops our camera
      case 'room_ended':
        this._closeDialogs();
        clearTimeout(this.audienceTimer);
        break;
      default:
        return;
    }
    this.render();
  }

  /** `role_changed` (the model has applied it; `was` is our role before): dialogs, notices. */
  _onRoleChanged(msg, was) {
    const st = this.st;
    const me = this.session.me;
    const byOther = msg.by && !(me && msg.by === me.sid);
    if (msg.role !== 'listener') {
      if (this.inviteDialog.dialog.open) this.inviteDialog.dialog.close('no');
    }
    if (RANK[msg.role] >= RANK.moderator && RANK[was] < RANK.moderator) {
      if (st.kind === 'podcast') this._loadAudience(true);
    }
    if (RANK[msg.role] > RANK[was] && was === 'listener') {
      this._setNotice('You are on stage now: your microphone is live.');
    } else if (msg.role === 'listener' && was !== 'listener' && byOther) {
      this._setNotice('You were moved to the audience.');
    } else if (msg.role === 'host' && was !== 'host') {
      this._setNotice('You are the host now.');
    }
  }

  async _onInvite(msg) {
    if (this.st.role !== 'listener') return;
    this.st.invite = { by: msg.by, name: msg.name };
    this.render();
    const name = msg.name || 'A moderator';
    const text = `${name} invited you to speak. Your microphone will be on when you join.`;
    if (this.inviteDialog.dialog.open) {
      // A second invitation replaces the first on the server: one answer covers both.
      this.inviteDialog.text.textContent = text;
      return;
    }
    const accept = await this._ask(this.inviteDialog, {
      title: 'Join the stage?',
      text,
      yes: 'Accept',
      no: 'Decline',
      focus: 'yes',
    });
    this.st.invite = null;
    this.render();
    if (this.st.role !== 'listener' || this.st.ended) return;
    if (accept) this._setNotice('Joining the stage…');
    this._request({ type: 'respond_invite', accept }, 'answer the invitation');
  }

  _setNotice(text) {
    this.st.notice = text;
    clearTimeout(this.noticeTimer);
    if (text) this.noticeTimer = setTimeout(() => this._setNotice(''), NOTICE_MS);
    this.render();
  }

  _request(msg, what) {
    const s = this.session;
    if (!s || !s.signal) return Promise.resolve(null);
    return s.request(msg).catch((err) => {
      this._setNotice(`Could not ${what}: ${err.message}`);
      return null;
    });
  }

  // --- audience list (host and moderators) ----------------------------------------------------

  async _loadAudience(reset) {
    const st = this.st;
    const seq = (this.audienceSeq += 1);
    const offset = reset ? 0 : st.audienceList.length;
    const limit = reset
      ? Math.min(MAX_AUDIENCE_PAGE, Math.max(AUDIENCE_PAGE, st.audienceList.length))
      : AUDIENCE_PAGE;
    const page = await this._request({ type: 'list_audience', offset, limit }, 'list the audience');
    if (!page || seq !== this.audienceSeq || this.st !== st) return;
    addAudiencePage(st, page, reset);
    this.render();
  }

  _scheduleAudienceRefresh() {
    if (this.audienceTimer) return;
    this.audienceTimer = setTimeout(() => {
      this.audienceTimer = null;
      if (this.isAdmin && !this.st.ended) this._loadAudience(true);
    }, 300);
  }

  // --- actions ------------------------------------------------------------------------------

  /** What `viewer` may do to stage member `m` (podcast-model.js `allowed`). */
  allowed(viewer, m) {
    return allowed(viewer, m);
  }

  muteMember(m) {
    if (m) this._request({ type: 'mute_participant', participant: m.sid }, `mute ${displayName(m)}`);
  }

  async moderate(action, m, returnFocus) {
    if (!m) return;
    const name = displayName(m);
    if (action === 'remove') {
      const ok = await this._ask(this.confirmDialog, {
        title: `Remove ${name}?`,
        text: `${name} leaves the room and cannot come back while it lasts.`,
        yes: 'Remove',
        no: 'Cancel',
        danger: true,
        checkbox: REVOKE_LABEL,
      });
      if (ok) this._remove(m, name);
    } else if (action === 'host') {
      const ok = await this._ask(this.confirmDialog, {
        title: `Make ${name} the host?`,
        text: `${name} becomes the host of this room and you become a moderator.`,
        yes: 'Make host',
        no: 'Cancel',
      });
      if (ok) this._request({ type: 'transfer_host', participant: m.sid }, `hand over to ${name}`);
    } else {
      this._request({ type: 'set_role', participant: m.sid, role: action }, `change ${name}'s role`);
    }
    if (returnFocus && returnFocus.isConnected && !returnFocus.hidden) returnFocus.focus();
  }

  promote(m) {
    this._request({ type: 'set_role', participant: m.sid, role: 'speaker' }, `promote ${displayName(m)}`);
  }

  invite(m) {
    this._request({ type: 'invite_to_stage', participant: m.sid }, `invite ${displayName(m)}`).then(
      (reply) => {
        if (reply) this._setNotice(`Invited ${displayName(m)} to speak.`);
      },
    );
  }

  async removeListener(m) {
    const name = displayName(m);
    const ok = await this._ask(this.confirmDialog, {
      title: `Remove ${name}?`,
      text: `${name} leaves the room and cannot come back while it lasts.`,
      yes: 'Remove',
      no: 'Cancel',
      danger: true,
      checkbox: REVOKE_LABEL,
    });
    if (ok) this._remove(m, name);
  }

  /** `remove_participant`, revoking the invite link too when the dialog's box is ticked. */
  _remove(m, name) {
    const revoke = this.confirmDialog.check.checked;
    this._request({ type: 'remove_participant', participant: m.sid, revoke_invite: revoke }, `remove ${name}`);
  }

  _toggleMic() {
    const s = this.session;
    if (!s || !s.local.audio) return;
    const muted = s.setMuted('audio', !s.local.audio.muted);
    if (muted === false && this.st.notice.startsWith('A moderator muted you')) this._setNotice('');
  }

  _toggleStageVideo() {
    const s = this.session;
    if (!s) return;
    const enabled = !s.stageVideo;
    this._request({ type: 'set_stage_video', enabled }, enabled ? 'show video' : 'hide video');
  }

  _toggleListenerSharing() {
    const s = this.session;
    if (!s) return;
    const enabled = !s.listenerSharing;
    this._request({ type: 'set_listener_sharing', enabled }, enabled ? 'let listeners share' : 'stop listeners sharing');
  }

  async _toggleCamera() {
    const s = this.session;
    if (!s) return;
    this.camBtn.disabled = true;
    try {
      if (s.local.video) await s.stopCamera();
      else await s.startCamera();
    } catch (err) {
      this._setNotice(`Could not ${s.local.video ? 'stop' : 'start'} the camera: ${err.message || err}`);
    } finally {
      this.camBtn.disabled = false;
      this.render();
    }
  }

  _toggleHand() {
    const raised = !this.st.handRaised;
    this.st.handRaised = raised; // the server confirms with `hand`
    this.render();
    const what = raised ? 'raise your hand' : 'lower your hand';
    this._request({ type: 'raise_hand', raised }, what).then((reply) => {
      if (reply === null && this.st.handRaised === raised) {
        this.st.handRaised = !raised;
        this.render();
      }
    });
  }

  _leaveStage() {
    const me = this.session && this.session.me;
    if (me) this._request({ type: 'set_role', participant: me.sid, role: 'listener' }, 'leave the stage');
  }

  async _endRoom() {
    const ok = await this._ask(this.confirmDialog, {
      title: 'End the room for everyone?',
      text: 'Everybody on stage and in the audience is disconnected.',
      yes: 'End room',
      no: 'Cancel',
      danger: true,
    });
    if (ok) this._request({ type: 'end_room' }, 'end the room');
  }

  // --- rendering ----------------------------------------------------------------------------

  /** The stage as shown (podcast-model.js `stageMembers`). */
  _stageMembers() {
    return stageMembers(this.st, this.session);
  }

  /** The camera track a stage card shows, or null (podcast-model.js `videoTrack`). */
  _videoTrack(sid, me) {
    return videoTrack(this.st, this.session, sid, me);
  }

  snapshot() {
    return snapshot(this.st, this.session);
  }

  /** Show or hide the podcast view for the Session's state (called on every app render). */
  render() {
    const s = this.session;
    const st = this.st;
    const ended = Boolean(s && s.state === 'ended');
    const live = Boolean(s && s.state === 'joined' && s.kind === 'podcast');
    this.section.hidden = !live;
    this.bar.hidden = !live;
    this._renderEnded(ended);
    if (!live) return;

    this.noticeText.textContent = st.notice;
    this.notice.hidden = !st.notice;
    this.audienceCount.textContent = plural(st.audience, 'listener', 'listeners');
    this.audienceCount.dataset.count = String(st.audience);

    const members = this._stageMembers();
    syncList(
      this.stageList,
      members,
      (m) => m.sid,
      (m) => {
        const card = new StageCard(this, m.sid);
        this.cards.set(m.sid, card);
        return card.el;
      },
      (el, m) => {
        const card = this.cards.get(m.sid);
        card.update(m, st.role, st.speaking.has(m.sid));
        card.setVideo(this._videoTrack(m.sid, m.me));
      },
      this.stageTitle,
    );
    this.stageList.classList.toggle('with-video', members.some((m) => m.video));
    for (const sid of [...this.cards.keys()]) {
      if (!members.some((m) => m.sid === sid)) this.cards.delete(sid);
    }

    const listener = st.role === 'listener';
    this.listenerNote.hidden = !listener;
    if (listener) {
      this.listenerNote.textContent = st.handRaised
        ? 'Your hand is raised. The host or a moderator can bring you on stage.'
        : 'You are listening. Raise your hand to ask to speak.';
    }
    if (members.length === 0) {
      this.listenerNote.hidden = false;
      this.listenerNote.textContent = 'Nobody is on stage yet.';
    }

    this.adminPanels.hidden = !this.isAdmin;
    if (this.isAdmin) this._renderAdmin();
    this._renderBar();
  }

  _renderAdmin() {
    const st = this.st;
    this.handsCount.textContent = `(${st.hands.total})`;
    this.handsEmpty.hidden = st.hands.queue.length > 0;
    syncList(
      this.handsList,
      st.hands.queue,
      (m) => m.sid,
      (m) => {
        const name = h('span', { class: 'pod-row-name' });
        const promote = h('button', { type: 'button', class: 'btn btn-primary pod-small', text: 'Promote' });
        promote.addEventListener('click', () => this.promote(row.member));
        const actions = h('span', { class: 'pod-row-actions' }, [promote]);
        const row = h('li', { class: 'pod-row' }, [handIcon(), name, actions]);
        row.parts = { name, promote };
        return row;
      },
      (row, m) => {
        row.member = m;
        row.dataset.sid = m.sid;
        row.parts.name.textContent = displayName(m);
        row.parts.promote.setAttribute('aria-label', `Promote ${displayName(m)} to speaker`);
      },
      this.handsPanel.querySelector('h3'),
    );

    const raised = new Set(st.hands.queue.map((m) => m.sid));
    this.audienceTotalEl.textContent = `(${st.audienceTotal})`;
    this.audienceEmpty.hidden = st.audienceList.length > 0;
    this.loadMore.hidden = st.audienceList.length >= st.audienceTotal;
    this.loadMore.setAttribute(
      'aria-label',
      `Load more listeners (${st.audienceList.length} of ${st.audienceTotal} shown)`,
    );
    syncList(
      this.audienceListEl,
      st.audienceList,
      (m) => m.sid,
      (m) => {
        const name = h('span', { class: 'pod-row-name' });
        const hand = h('span', { class: 'pod-row-hand', role: 'img', 'aria-label': 'hand raised' }, [
          handIcon(),
        ]);
        const invite = h('button', { type: 'button', class: 'btn pod-small', text: 'Invite' });
        invite.addEventListener('click', () => this.invite(row.member));
        const remove = h('button', { type: 'button', class: 'btn pod-small pod-danger', text: 'Remove' });
        remove.addEventListener('click', () => this.removeListener(row.member));
        const row = h('li', { class: 'pod-row' }, [
          hand,
          name,
          h('span', { class: 'pod-row-actions' }, [invite, remove]),
        ]);
        row.parts = { name, hand, invite, remove };
        return row;
      },
      (row, m) => {
        row.member = m;
        row.dataset.sid = m.sid;
        const n = displayName(m);
        row.parts.name.textContent = n;
        row.parts.hand.hidden = !raised.has(m.sid);
        row.parts.invite.setAttribute('aria-label', `Invite ${n} to speak`);
        row.parts.remove.setAttribute('aria-label', `Remove ${n} from the room`);
      },
      this.audiencePanel.querySelector('h3'),
    );
  }

  _renderBar() {
    const s = this.session;
    const role = this.st.role;
    const audio = s.local.audio;
    const onStage = role !== null && role !== 'listener';
    this.micBtn.hidden = !onStage;
    this.micBtn.disabled = !audio;
    const muted = Boolean(audio && audio.muted);
    setButton(this.micBtn, muted ? 'micOff' : 'mic', muted ? 'Unmute mic' : 'Mute mic', muted);
    const cam = Boolean(s.local.video);
    this.camBtn.hidden = !(onStage && (s.stageVideo || cam) && s.canPublish);
    setButton(this.camBtn, cam ? 'cam' : 'camOff', cam ? 'Stop camera' : 'Start camera');
    this.videoBtn.hidden = !this.isAdmin;
    setButton(this.videoBtn, 'eye', 'Show video to audience', Boolean(s.stageVideo));
    this.shareBtn.hidden = !this.isAdmin;
    setButton(this.shareBtn, 'board', 'Let listeners draw and share files', Boolean(s.listenerSharing));
    this.handBtn.hidden = role !== 'listener';
    this.handBtn.replaceChildren(
      handIcon(),
      h('span', { class: 'btn-label', text: this.st.handRaised ? 'Lower hand' : 'Raise hand' }),
    );
    this.handBtn.classList.toggle('raised', this.st.handRaised);
    this.leaveStageBtn.hidden = !(role === 'speaker' || role === 'moderator');
    this.endBtn.hidden = role !== 'host';
  }

  _renderEnded(ended) {
    const was = !this.endedSection.hidden;
    this.endedSection.hidden = !ended;
    if (!ended) return;
    const s = this.session;
    const mine = s.me && s.endedBy === s.me.sid;
    this.endedTitle.textContent = mine ? 'You ended the room' : 'The host ended the room';
    this.endedText.textContent = `${s.roomLabel} is over. Thanks for being here.`;
    if (!was) this.endedTitle.focus();
  }
}
