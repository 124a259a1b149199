// One podcast stage member's card (podcast.js shows one per stage member): avatar or camera,
// name, role badge, microphone state and the moderation controls the viewer may use.

import { icon } from './ui.js';
import { h } from './dom.js';
import { ROLE_LABEL, displayName } from './podcast-model.js';

/** One stage member's card: avatar, name, role badge, mic state, moderation controls. */
export class StageCard {
  constructor(view, sid) {
    this.view = view;
    this.sid = sid;
    this.member = null;
    this.avatar = h('div', { class: 'pod-avatar', 'aria-hidden': 'true' });
    this.video = h('video', { class: 'pod-video', hidden: true, 'aria-hidden': 'true' });
    this.video.muted = true; // the grid's tile plays the member's audio
    this.video.autoplay = true;
    this.video.playsInline = true;
    this.nameText = h('span', { class: 'pod-name-text' });
    this.youEl = h('span', { class: 'pod-you', text: '(you)', hidden: true });
    this.nameEl = h('span', { class: 'pod-name' }, [this.nameText, this.youEl]);
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
    // A long name wraps (never cut off); the tooltip has it whole too.
    this.nameText.textContent = name;
    this.youEl.hidden = !member.me;
    this.nameEl.title = member.me ? `${name} (you)` : name;
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
    // Each name starts with the button's visible text (WCAG 2.5.3 Label in Name: a voice
    // control user says what they see), then whom it is for.
    this.actions.listener.setAttribute('aria-label', `Make listener: ${name}`);
    this.actions.speaker.setAttribute('aria-label', `Make speaker: ${name}`);
    this.actions.moderator.setAttribute('aria-label', `Make moderator: ${name}`);
    this.actions.host.setAttribute('aria-label', `Make host: ${name}`);
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
