// The other participants of a Session (session.js): who is in the room, their published
// tracks and mutes (the tiles' indicators), their names, and the active speakers.
//
// The Roster holds the participants map; the Session exposes it read-only (`participants`,
// `activeSpeakers`, `heardSpeaking`) and emits the events. The received streams of each
// participant are set by the Subscriber (subscriber.js).

import { Tile } from './ui.js';

/** Where a remote track belongs: the participant's camera tile or their screen share. */
export function isScreenSource(source) {
  return source === 'screen' || source === 'screen_audio';
}

export class Roster {
  /** @param {import('./session.js').Session} session  the Session whose room this lists */
  constructor(session) {
    this.s = session;
    // sid -> {sid, identity, name, tracks: Map, stream, tile, screenStream, screenTile, screenSince}
    this.participants = new Map();
    this.activeSpeakers = []; // the last active_speakers list, loudest first
    this.heardSpeaking = new Set(); // sids ever reported as active speakers
  }

  /** The display name of a participant sid (ours included). */
  nameOf(sid) {
    const s = this.s;
    if (s.me && sid === s.me.sid) return s.me.name || s.name || 'You';
    const p = this.participants.get(sid);
    return p ? p.name || p.identity || 'Guest' : '';
  }

  /** The participant `sid`, made (with an empty tile in the grid) when not known yet. */
  ensure(sid) {
    let p = this.participants.get(sid);
    if (p) return p;
    p = {
      sid,
      identity: '',
      name: '',
      tracks: new Map(),
      stream: new MediaStream(),
      tile: new Tile({ sid, name: '' }),
      screenStream: new MediaStream(),
      screenTile: null,
    };
    this.participants.set(sid, p);
    this.s.grid.appendChild(p.tile.el);
    return p;
  }

  /** Add or update a participant from a ParticipantInfo (never ourselves). */
  upsert(info) {
    const s = this.s;
    if (s.me && info.sid === s.me.sid) return null;
    const p = this.ensure(info.sid);
    p.identity = info.identity;
    p.name = info.name;
    p.tile.setName(info.name || info.identity);
    if (p.screenTile) p.screenTile.setName(info.name || info.identity);
    for (const track of info.tracks ?? []) p.tracks.set(track.sid, track);
    this.renderIndicators(p);
    return p;
  }

  remove(sid) {
    const p = this.participants.get(sid);
    if (!p) return;
    p.tile.remove();
    this.participants.delete(sid);
    if (p.screenTile) {
      p.screenTile.remove();
      this.s._emit('screens');
    }
  }

  /** The session ends: remove every tile and forget everyone. */
  clear() {
    for (const p of this.participants.values()) {
      p.tile.remove();
      if (p.screenTile) p.screenTile.remove();
    }
    this.participants.clear();
  }

  /** `track_published` of another participant; false when it is ours (nothing to do). */
  onTrackPublished(msg) {
    const s = this.s;
    if (s.me && msg.participant === s.me.sid) return false;
    const p = this.ensure(msg.participant);
    p.tracks.set(msg.track.sid, msg.track);
    this.renderIndicators(p);
    return true;
  }

  onTrackUnpublished(msg) {
    const p = this.participants.get(msg.participant);
    if (!p) return;
    p.tracks.delete(msg.track);
    this.renderIndicators(p);
  }

  /** `track_muted` of another participant. */
  onTrackMuted(msg) {
    const p = this.participants.get(msg.participant);
    if (!p) return;
    const track = p.tracks.get(msg.track);
    if (track) p.tracks.set(msg.track, { ...track, muted: msg.muted });
    this.renderIndicators(p);
  }

  /** `active_speakers`: loudest first; our own tile is highlighted too when the server hears us. */
  onActiveSpeakers(msg) {
    const s = this.s;
    const ranks = new Map(msg.speakers.map((sp, i) => [sp.participant, i]));
    for (const p of this.participants.values()) p.tile.setSpeaking(ranks.get(p.sid) ?? null);
    if (s.localTile && s.me) {
      s.localTile.setSpeaking(ranks.get(s.me.sid) ?? null);
    }
    this.activeSpeakers = msg.speakers;
    for (const sp of msg.speakers) this.heardSpeaking.add(sp.participant);
    s._emit('participants');
  }

  renderIndicators(p) {
    const tracks = [...p.tracks.values()].filter((t) => !isScreenSource(t.source));
    const audio = tracks.filter((t) => t.kind === 'audio');
    const video = tracks.filter((t) => t.kind === 'video');
    p.tile.setMuted({
      mic: audio.length > 0 && audio.every((t) => t.muted),
      cam: video.length > 0 && video.every((t) => t.muted),
    });
    this.s._emit('participants');
  }
}
