// The podcast stage model (docs/protocol.md, "Podcast stage"): roles, the stage members, raised
// hands, the audience, and the pure state updates the view (podcast.js) applies for each room
// event. No DOM here; the media state (our microphone and camera, received streams) is read
// from the Session (session.js).

export const RANK = { listener: 0, speaker: 1, moderator: 2, host: 3 };
export const ROLE_LABEL = { host: 'Host', moderator: 'Moderator', speaker: 'Speaker', listener: 'Listener' };

export function displayName(member) {
  return (member && (member.name || member.identity)) || 'Guest';
}

/** Whether `role` moderates the stage (the host and moderators). */
export function isAdminRole(role) {
  return RANK[role] >= RANK.moderator;
}

/** The stage state of a new session. */
export function freshState() {
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

/**
 * Add or update a stage member from a ParticipantInfo (a listener leaves the stage; we are
 * never a stage entry). `nextOrder()` numbers a new member's arrival.
 */
export function upsertMember(st, info, mySid, nextOrder) {
  if (mySid !== null && info.sid === mySid) return;
  if (info.role === 'listener') {
    st.stage.delete(info.sid);
    return;
  }
  const old = st.stage.get(info.sid);
  st.stage.set(info.sid, {
    sid: info.sid,
    identity: info.identity,
    name: info.name,
    role: info.role ?? 'speaker',
    tracks: new Map((info.tracks ?? []).map((t) => [t.sid, t])),
    order: old ? old.order : nextOrder(),
  });
}

/**
 * Apply a room event (or the `joined` reply) to the stage state `st`. `mySid` is our
 * participant sid (null before `joined`). The view adds the side effects (dialogs, notices,
 * audience requests).
 */
export function applyEvent(st, msg, mySid, nextOrder) {
  switch (msg.type) {
    case 'joined':
      st.kind = msg.kind ?? 'conference';
      st.role = msg.role ?? null;
      st.audience = msg.audience ?? 0;
      for (const info of msg.participants ?? []) upsertMember(st, info, mySid, nextOrder);
      break;
    case 'participant_joined':
    case 'participant_updated':
      upsertMember(st, msg.participant, mySid, nextOrder);
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
      if (mySid !== null && msg.participant === mySid) break; // the Session keeps our mutes
      const m = st.stage.get(msg.participant);
      const track = m ? m.tracks.get(msg.track) : null;
      if (track) m.tracks.set(msg.track, { ...track, muted: msg.muted });
      break;
    }
    case 'active_speakers':
      st.speaking = new Set(msg.speakers.map((s) => s.participant));
      break;
    case 'role_changed':
      st.role = msg.role;
      if (msg.role !== 'listener') st.handRaised = false;
      if (RANK[msg.role] < RANK.moderator) {
        st.hands = { queue: [], total: 0 };
        st.audienceList = [];
        st.audienceTotal = 0;
      }
      break;
    case 'hands':
      st.hands = { queue: msg.queue, total: msg.total };
      break;
    case 'hand':
      st.handRaised = msg.raised;
      break;
    case 'audience':
      st.audience = msg.count;
      break;
    case 'room_ended':
      st.ended = { by: msg.by ?? null };
      break;
    default:
      break;
  }
}

/** Add a `list_audience` page: the first page replaces the list (`reset`), others append. */
export function addAudiencePage(st, page, reset) {
  st.audienceList = reset ? page.listeners : [...st.audienceList, ...page.listeners];
  st.audienceTotal = page.total;
}

/** What `viewer` may do to stage member `m` (the module docstring of signaling/stage.py). */
export function allowed(viewer, m) {
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

/**
 * The camera track a stage card shows: ours while we publish one; another member's while we
 * receive it (the subscribe PC) and they publish an unmuted camera. Else null.
 */
export function videoTrack(st, s, sid, me) {
  if (!s || !s.stageVideo) return null;
  if (me) {
    const cam = s.local.video;
    return cam && !cam.muted && cam.track.readyState === 'live' ? cam.track : null;
  }
  const m = st.stage.get(sid);
  const p = s.participants.get(sid);
  if (!m || !p) return null;
  const published = [...m.tracks.values()].some((t) => t.kind === 'video' && t.source !== 'screen' && !t.muted);
  if (!published) return null;
  return p.stream.getVideoTracks().find((t) => t.readyState === 'live') ?? null;
}

/**
 * The stage as shown: me first when I am on it, then by role, then by arrival. Each member:
 * {sid, identity, name, role, me, mic: 'on'|'muted'|'off', video, order}.
 */
export function stageMembers(st, s) {
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
      video: Boolean(videoTrack(st, s, s.me.sid, true)),
      order: 0,
    });
  }
  const others = [...st.stage.values()].map((m) => {
    const audio = [...m.tracks.values()].filter((t) => t.kind === 'audio');
    const mic = audio.length === 0 ? 'off' : audio.every((t) => t.muted) ? 'muted' : 'on';
    const { sid, identity, name, role, order } = m;
    return { sid, identity, name, role, me: false, mic, video: Boolean(videoTrack(st, s, sid, false)), order };
  });
  others.sort((a, b) => RANK[b.role] - RANK[a.role] || a.order - b.order);
  return [...members, ...others];
}

/** A plain copy of the stage state for tests (`window.sfu.podcast`). */
export function snapshot(st, s) {
  return {
    kind: st.kind,
    role: st.role,
    stageVideo: Boolean(s && s.stageVideo),
    camera: Boolean(s && s.local.video),
    audience: st.audience,
    handRaised: st.handRaised,
    hands: st.hands.queue.map((m) => ({ ...m })),
    handsTotal: st.hands.total,
    stage: stageMembers(st, s).map(({ order, ...m }) => ({
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
