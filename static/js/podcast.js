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
// module only keeps the stage model from the Session's 'roomevent' events (every server event
// and the `joined` reply, after the Session handled them) and sends stage requests. Text from others (names) is only ever set with textContent.

import { icon, setButton } from './ui.js';

const RANK = { listener: 0, speaker: 1, moderator: 2, host: 3 };
const ROLE_LABEL = { host: 'Host', moderator: 'Moderator', speaker: 'Speaker', listener: 'Listener' };
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

/** A small element builder: `class`, `text`, `hidden`, `on<event>` and plain attributes. */
function h(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k === 'hidden') node.hidden = Boolean(v);
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, String(v));
  }
  node.append(...children);
  return node;
}

function displayName(member) {
  return (member && (member.name || member.identity)) || 'Guest';
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

/**
 * Make `list`'s children one element per item, in order, reusing elements by key so that
 * keyboard focus survives updates. `make(item)` builds a new element, `update(el, item)`
 * refreshes one. When the focused element is removed, `fallback` gets the focus.
 */
function syncList(list, items, key, make, update, fallback) {
  const old = new Map([...list.children].map((child) => [child.dataset.key, child]));
  const focused = document.activeElement;
  let lostFocus = false;
  const keep = new Set();
  let cursor = list.firstElementChild;
  for (const item of items) {
    const k = key(item);
    keep.add(k);
    let child = old.get(k);
    if (!child) {
      child = make(item);
      child.dataset.key = k;
    }
    update(child, item);
    if (child !== cursor) list.insertBefore(child, cursor);
    else cursor = cursor.nextElementSibling;
  }
  for (const [k, child] of old) {
    if (keep.has(k)) continue;
    if (focused && child.contains(focused)) lostFocus = true;
    child.remove();
  }
  if (lostFocus && fallback) fallback.focus();
}

/** One stage member's card: avatar, name, role badge, mic state, moderation controls. */
class StageCard {
  constructor(view, sid) {
    this.view = view;
    this.sid = sid;
    this.member = null;
    this.avatar = h('div', { class: 'pod-avatar', 'aria-hidden': 'true' });
    this.video = h('video', { class: 'pod-video', hidden: true, 'aria-hidden': 'true' });
    this.video.muted = true; // the grid's tile plays the member's audio
    this.video.autoplay = true;
    this.video.playsInline = true;
    this.nameEl = h('span', { class: 'pod-name' });
    this.badge = h('span', { class: 'pod-role' });
    this.mic = h('span', { class: 'pod-mic', role: 'img' });
    this.muteBtn = h('button', { type: 'button', class: 'btn pod-small', text: 'Mute' });
    this.muteBtn.addEventListener('click', () => this.view.muteMember(this.member));
    const menuId = `pod-menu-${sid}`;
    this.manageBtn = h('button', {
      type: 'button',
      class: 'btn pod-small',
      text: 'Manage',
      'aria-expanded': 'false',
      'aria-controls': menuId,
    });
    this.manageBtn.addEventListener('click', () => this.toggleMenu());
    this.menu = h('div', { class: 'pod-menu', id: menuId, role: 'group', hidden: true });
    this.menu.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape') {
        ev.preventDefault();
        this.toggleMenu(false);
        this.manageBtn.focus();
      }
    });
    const item = (action, text) => {
      const button = h('button', { type: 'button', class: 'btn pod-small', text });
      button.dataset.action = action;
      button.addEventListener('click', () => {
        this.toggleMenu(false);
        this.view.moderate(action, this.member, this.manageBtn);
      });
      this.menu.appendChild(button);
      return button;
    };
    this.actions = {
      listener: item('listener', 'Make listener'),
      speaker: item('speaker', 'Make speaker'),
      moderator: item('moderator', 'Make moderator'),
      host: item('host', 'Make host'),
      remove: item('remove', 'Remove'),
    };
    this.actions.remove.classList.add('pod-danger');
    this.controls = h('div', { class: 'pod-card-actions' }, [this.muteBtn, this.manageBtn]);
    const who = h('div', { class: 'pod-who' }, [
      this.nameEl,
      h('span', { class: 'pod-meta' }, [this.badge, this.mic]),
    ]);
    this.el = h('li', { class: 'pod-card' }, [this.avatar, this.video, who, this.controls, this.menu]);
    this.el.dataset.sid = sid;
  }

  toggleMenu(open = this.menu.hidden) {
    this.menu.hidden = !open;
    this.manageBtn.setAttribute('aria-expanded', String(open));
    if (open) {
      const first = [...this.menu.children].find((b) => !b.hidden);
      if (first) first.focus();
    }
  }

  /** `member`: {sid, identity, name, role, me, mic: 'on'|'muted'|'off'}; `viewer`: my role. */
  update(member, viewer, speaking) {
    this.member = member;
    const name = displayName(member);
    this.nameEl.textContent = member.me ? `${name} (you)` : name;
    this.avatar.textContent = name.trim().charAt(0).toUpperCase() || '?';
    this.badge.textContent = ROLE_LABEL[member.role] ?? member.role;
    this.badge.dataset.role = member.role;
    this.mic.replaceChildren(icon(member.mic === 'on' ? 'mic' : 'micOff'));
    const micText = { on: 'microphone on', muted: 'microphone muted', off: 'no microphone' };
    this.mic.setAttribute('aria-label', micText[member.mic]);
    this.mic.title = micText[member.mic];
    this.el.dataset.role = member.role;
    this.el.dataset.mic = member.mic;
    this.el.classList.toggle('me', Boolean(member.me));
    this.setSpeaking(speaking);

    const can = this.view.allowed(viewer, member);
    this.muteBtn.hidden = !(can.mute && member.mic === 'on');
    this.muteBtn.setAttribute('aria-label', `Mute ${name}`);
    this.manageBtn.setAttribute('aria-label', `Manage ${name}`);
    this.menu.setAttribute('aria-label', `Actions for ${name}`);
    let any = false;
    for (const [action, button] of Object.entries(this.actions)) {
      button.hidden = !can[action];
      any = any || can[action];
    }
    this.actions.listener.setAttribute('aria-label', `Make ${name} a listener`);
    this.actions.speaker.setAttribute('aria-label', `Make ${name} a speaker`);
    this.actions.moderator.setAttribute('aria-label', `Make ${name} a moderator`);
    this.actions.host.setAttribute('aria-label', `Make ${name} the host`);
    this.actions.remove.setAttribute('aria-label', `Remove ${name} from the room`);
    this.manageBtn.hidden = !any;
    if (!any) this.toggleMenu(false);
    this.controls.hidden = this.muteBtn.hidden && this.manageBtn.hidden;
  }

  /** Show `track` (a live camera) instead of the avatar, or the avatar when null. */
  setVideo(track) {
    const current = this.video.srcObject ? this.video.srcObject.getVideoTracks()[0] : null;
    if (track !== current) {
      this.video.srcObject = track ? new MediaStream([track]) : null;
      if (track) this.video.play().catch(() => {});
    }
    this.video.hidden = !track;
    this.avatar.hidden = Boolean(track);
    this.el.classList.toggle('has-video', Boolean(track));
    this.el.dataset.video = String(Boolean(track));
  }

  setSpeaking(speaking) {
    this.el.classList.toggle('speaking', speaking);
    this.el.dataset.speaking = String(speaking);
  }
}

function freshState() {
  return {
    kind: null,
    role: null,
    audience: 0,
    hands: { queue: [], total: 0 },
    handRaised: false,
    stage: new Map(), // sid -> {sid, identity, name, role, tracks: Map, order}
    speaking: new Set(),
    invite: null, // {by, name} while the invitation dialog is open
    audienceList: [], // AudienceMember[] loaded so far (host/moderators)
    audienceTotal: 0,
    ended: null, // {by} once the room ended
    notice: '',
  };
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
    return RANK[this.st.role] >= RANK.moderator;
  }

  _onEvent(msg) {
    const st = this.st;
    switch (msg.type) {
      case 'joined':
        st.kind = msg.kind ?? 'conference';
        st.role = msg.role ?? null;
        st.audience = msg.audience ?? 0;
        for (const info of msg.participants ?? []) this._upsert(info);
        if (this.isAdmin && st.kind === 'podcast') this._loadAudience(true);
        break;
      case 'participant_joined':
      case 'participant_updated':
        this._upsert(msg.participant);
        break;
      case 'participant_left':
        st.stage.delete(msg.participant);
        break;
      case 'track_published': {
        const m = st.stage.get(msg.participant);
        if (m) m.tracks.set(msg.track.sid, msg.track);
        break;
      }
      case 'track_unpublished': {
        const m = st.stage.get(msg.participant);
        if (m) m.tracks.delete(msg.track);
        break;
      }
      case 'track_muted': {
        const me = this.session.me;
        if (me && msg.participant === me.sid) {
          if (msg.remote && msg.muted) {
            this._setNotice('A moderator muted you. Unmute when you are ready to speak.');
          }
          break;
        }
        const m = st.stage.get(msg.participant);
        const track = m ? m.tracks.get(msg.track) : null;
        if (track) m.tracks.set(msg.track, { ...track, muted: msg.muted });
        break;
      }
      case 'active_speakers':
        st.speaking = new Set(msg.speakers.map((s) => s.participant));
        for (const [sid, card] of this.cards) card.setSpeaking(st.speaking.has(sid));
        return;
      case 'role_changed':
        this._onRoleChanged(msg);
        break;
      case 'hands':
        st.hands = { queue: msg.queue, total: msg.total };
        break;
      case 'hand':
        st.handRaised = msg.raised;
        break;
      case 'audience':
        st.audience = msg.count;
        if (this.isAdmin && st.kind === 'podcast') this._scheduleAudienceRefresh();
        break;
      case 'stage_invite':
        this._onInvite(msg);
        break;
      case 'stage_settings':
        break; // the Session keeps the setting (stageVideo) and stops our camera
      case 'room_ended':
        st.ended = { by: msg.by ?? null };
        this._closeDialogs();
        clearTimeout(this.audienceTimer);
        break;
      default:
        return;
    }
    this.render();
  }

  _upsert(info) {
    const me = this.session.me;
    if (me && info.sid === me.sid) return;
    if (info.role === 'listener') {
      this.st.stage.delete(info.sid);
      return;
    }
    const old = this.st.stage.get(info.sid);
    this.st.stage.set(info.sid, {
      sid: info.sid,
      identity: info.identity,
      name: info.name,
      role: info.role ?? 'speaker',
      tracks: new Map((info.tracks ?? []).map((t) => [t.sid, t])),
      order: old ? old.order : (this.order += 1),
    });
  }

  _onRoleChanged(msg) {
    const st = this.st;
    const was = st.role;
    st.role = msg.role;
    const me = this.session.me;
    const byOther = msg.by && !(me && msg.by === me.sid);
    if (msg.role !== 'listener') {
      st.handRaised = false;
      if (this.inviteDialog.dialog.open) this.inviteDialog.dialog.close('no');
    }
    if (RANK[msg.role] >= RANK.moderator && RANK[was] < RANK.moderator) {
      if (st.kind === 'podcast') this._loadAudience(true);
    } else if (RANK[msg.role] < RANK.moderator) {
      st.hands = { queue: [], total: 0 };
      st.audienceList = [];
      st.audienceTotal = 0;
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
    st.audienceList = reset ? page.listeners : [...st.audienceList, ...page.listeners];
    st.audienceTotal = page.total;
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

  /** What `viewer` may do to stage member `m` (the module docstring of signaling/stage.py). */
  allowed(viewer, m) {
    if (!m || m.me) {
      return { mute: false, listener: false, speaker: false, moderator: false, host: false, remove: false };
    }
    const host = viewer === 'host';
    const moderate = host || (viewer === 'moderator' && RANK[m.role] <= RANK.speaker);
    return {
      mute: moderate,
      remove: moderate,
      listener: moderate && m.role !== 'host',
      speaker: host && m.role === 'moderator',
      moderator: host && m.role === 'speaker',
      host,
    };
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

  /** The stage as shown: me first when I am on it, then by role, then by arrival. */
  _stageMembers() {
    const s = this.session;
    const st = this.st;
    const members = [];
    if (s && s.me && st.role && st.role !== 'listener') {
      const audio = s.local.audio;
      members.push({
        sid: s.me.sid,
        identity: s.me.identity,
        name: s.me.name || s.name,
        role: st.role,
        me: true,
        mic: !audio ? 'off' : audio.muted ? 'muted' : 'on',
        video: Boolean(this._videoTrack(s.me.sid, true)),
        order: 0,
      });
    }
    const others = [...st.stage.values()].map((m) => {
      const audio = [...m.tracks.values()].filter((t) => t.kind === 'audio');
      const mic = audio.length === 0 ? 'off' : audio.every((t) => t.muted) ? 'muted' : 'on';
      const { sid, identity, name, role, order } = m;
      return { sid, identity, name, role, me: false, mic, video: Boolean(this._videoTrack(sid, false)), order };
    });
    others.sort((a, b) => RANK[b.role] - RANK[a.role] || a.order - b.order);
    return [...members, ...others];
  }

  /**
   * The camera track a stage card shows: ours while we publish one; another member's while we
   * receive it (the subscribe PC) and they publish an unmuted camera. Else null.
   */
  _videoTrack(sid, me) {
    const s = this.session;
    if (!s || !s.stageVideo) return null;
    if (me) {
      const cam = s.local.video;
      return cam && !cam.muted && cam.track.readyState === 'live' ? cam.track : null;
    }
    const m = this.st.stage.get(sid);
    const p = s.participants.get(sid);
    if (!m || !p) return null;
    const published = [...m.tracks.values()].some(
      (t) => t.kind === 'video' && t.source !== 'screen' && !t.muted,
    );
    if (!published) return null;
    return p.stream.getVideoTracks().find((t) => t.readyState === 'live') ?? null;
  }

  snapshot() {
    const st = this.st;
    const s = this.session;
    return {
      kind: st.kind,
      role: st.role,
      stageVideo: Boolean(s && s.stageVideo),
      camera: Boolean(s && s.local.video),
      audience: st.audience,
      handRaised: st.handRaised,
      hands: st.hands.queue.map((m) => ({ ...m })),
      handsTotal: st.hands.total,
      stage: this._stageMembers().map(({ order, ...m }) => ({
        ...m,
        speaking: st.speaking.has(m.sid),
      })),
      audienceList: st.audienceList.map((m) => ({ ...m })),
      audienceTotal: st.audienceTotal,
      invite: st.invite ? { ...st.invite } : null,
      ended: st.ended ? { ...st.ended } : null,
      notice: st.notice,
    };
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
