// The participants panel: everyone in the room (us first), with microphone, camera and screen
// state and who is speaking, and the count on the panel's toggle.
//
// A podcast room's listeners are hidden (only their number is sent: `joined.audience`, then
// `audience`), so there the count is the stage plus the audience, and the list ends with the
// audience's size: the host and every listener see the same number.

import { setButton, el, icon } from './ui.js';
import { isScreenSource } from './session.js';
import { syncList } from './dom.js';

/** Make the kept row `li` look like the freshly built `fresh` (only what differs). */
function sameRow(li, fresh) {
  for (const { name, value } of [...fresh.attributes]) {
    if (li.getAttribute(name) !== value) li.setAttribute(name, value);
  }
  for (const { name } of [...li.attributes]) {
    if (name !== 'data-key' && !fresh.hasAttribute(name)) li.removeAttribute(name);
  }
  if (li.innerHTML === fresh.innerHTML) return;
  if (!fresh.children.length) {
    li.textContent = fresh.textContent; // a text-only row (the podcast audience count)
    return;
  }
  const kept = [...li.children];
  const next = [...fresh.children];
  if (kept.length !== next.length) {
    li.replaceChildren(...next);
    return;
  }
  // Part by part: the name and speaking state change often, the host's buttons rarely.
  next.forEach((part, i) => {
    if (kept[i].outerHTML !== part.outerHTML) li.replaceChild(part, kept[i]);
  });
}

function state(cls, iconName, label) {
  const span = el('span', `pstate ${cls}`);
  span.setAttribute('role', 'img');
  span.setAttribute('aria-label', label);
  span.title = label;
  span.appendChild(icon(iconName));
  return span;
}

/** {mic, cam, screen} of a remote participant from its published tracks. */
function remoteState(p) {
  const tracks = [...p.tracks.values()];
  const own = tracks.filter((t) => !isScreenSource(t.source));
  const audio = own.filter((t) => t.kind === 'audio');
  const video = own.filter((t) => t.kind === 'video');
  const kindState = (list) => (list.length === 0 ? 'none' : list.every((t) => t.muted) ? 'off' : 'on');
  return {
    mic: kindState(audio),
    cam: kindState(video),
    screen: tracks.some((t) => t.source === 'screen') || p.screenTile !== null,
  };
}

function localState(session) {
  const kindState = (entry) => (!entry ? 'none' : entry.muted ? 'off' : 'on');
  return { mic: kindState(session.local.audio), cam: kindState(session.local.video), screen: session.screen !== null };
}

export class ParticipantsView {
  /**
   * @param {object} els
   * @param {HTMLElement} els.list    the <ul>
   * @param {HTMLButtonElement} els.button  the panel's toggle (shows the count)
   */
  constructor({ list, button }) {
    this.list = list;
    this.button = button;
    this.session = null;
    this.count = 0;
    this.audience = 0; // podcast listeners in the room (we among them when we listen)
    // decorate(li, sid, isMe): adds to a row after it is built (hostcontrols.js: role badge,
    // raised hand, the host's Mute / Lower hand / Remove).
    this.decorate = null;
    this.onChange = () => this.render();
    this.onRoomEvent = (ev) => {
      const msg = ev.detail.msg;
      if (msg.type === 'joined' || msg.type === 'audience') {
        this.audience = (msg.type === 'joined' ? msg.audience : msg.count) ?? 0;
        this.render();
      }
    };
    this.render();
  }

  bind(session) {
    this.unbind();
    this.session = session;
    this.audience = 0;
    for (const type of ['participants', 'local', 'screens']) session.addEventListener(type, this.onChange);
    session.addEventListener('roomevent', this.onRoomEvent);
    this.render();
  }

  unbind() {
    if (this.session) {
      for (const type of ['participants', 'local', 'screens']) this.session.removeEventListener(type, this.onChange);
      this.session.removeEventListener('roomevent', this.onRoomEvent);
    }
    this.session = null;
    this.render();
  }

  render() {
    const s = this.session;
    const rows = [];
    let count = 0;
    if (s && s.me && s.state === 'joined') {
      const speaking = new Set(s.activeSpeakers.map((x) => x.participant));
      rows.push(this._row(s.me.sid, s.me.name || s.name, true, localState(s), speaking.has(s.me.sid)));
      const others = [...s.participants.values()].sort((a, b) =>
        (a.name || a.identity).localeCompare(b.name || b.identity),
      );
      for (const p of others) {
        rows.push(this._row(p.sid, p.name || p.identity, false, remoteState(p), speaking.has(p.sid)));
      }
      count = rows.length;
      if (s.kind === 'podcast') {
        // The stage (us when on it) plus the audience, which counts us when we listen.
        count = others.length + (s.role === 'listener' ? 0 : 1) + this.audience;
        const audience = el('li', 'person person-audience');
        audience.textContent = `Audience: ${this.audience} ${this.audience === 1 ? 'listener' : 'listeners'}`;
        audience.dataset.count = String(this.audience);
        audience.dataset.sid = 'audience'; // its key in syncList
        rows.push(audience);
      }
    }
    // Rows are kept (by sid) and only touched when their content changed, so that a focused or
    // clicked button in a row (the host's Mute, Remove) survives the frequent re-renders.
    syncList(this.list, rows, (li) => li.dataset.sid, (li) => el('li'), sameRow, null);
    this.count = count;
    setButton(this.button, 'people', 'Participants', null, this.count || null);
    this.button.dataset.count = String(this.count);
    // "Participants, 2 in the room": the name holds the visible text ("Participants 2", WCAG
    // 2.5.3); a parenthesised count would not count as part of it.
    this.button.setAttribute('aria-label', `Participants, ${this.count} in the room`);
  }

  _row(sid, name, isMe, st, speaking) {
    const shown = name || 'Guest';
    const li = el('li', 'person');
    li.dataset.sid = sid;
    if (speaking) li.classList.add('speaking');
    const avatar = el('span', 'person-avatar', shown.trim().charAt(0).toUpperCase() || '?');
    avatar.setAttribute('aria-hidden', 'true');
    const who = el('span', 'person-name', shown);
    who.title = shown; // a long name is cut with an ellipsis here: the tooltip has it whole
    const text = el('span', 'person-text');
    text.appendChild(who);
    if (isMe) text.appendChild(el('span', 'person-you', '(you)'));
    if (speaking) text.appendChild(el('span', 'person-speaking', 'speaking'));
    const states = el('span', 'person-states');
    if (st.screen) states.appendChild(state('pstate-screen', 'screen', 'sharing the screen'));
    if (st.mic !== 'none') {
      states.appendChild(
        state(`pstate-mic ${st.mic}`, st.mic === 'on' ? 'mic' : 'micOff', st.mic === 'on' ? 'microphone on' : 'microphone muted'),
      );
    }
    if (st.cam !== 'none') {
      states.appendChild(
        state(`pstate-cam ${st.cam}`, st.cam === 'on' ? 'cam' : 'camOff', st.cam === 'on' ? 'camera on' : 'camera off'),
      );
    }
    li.dataset.mic = st.mic;
    li.dataset.cam = st.cam;
    li.dataset.screen = String(st.screen);
    li.append(avatar, text, states);
    if (this.decorate) this.decorate(li, sid, isMe);
    return li;
  }
}
