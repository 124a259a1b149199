// Small WebRTC helpers shared by the publish and subscribe transports.

/** Resolve once ICE gathering is complete, or after `capMs`, whichever comes first. */
export function waitForGathering(pc, capMs = 3000) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === 'complete') done();
    };
    const timer = setTimeout(done, capMs);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

/** The RTCIceCandidateInit fields the protocol accepts (no usernameFragment). */
export function candidateInit(candidate) {
  if (!candidate || !candidate.candidate) return null;
  return {
    candidate: candidate.candidate,
    sdpMid: candidate.sdpMid ?? null,
    sdpMLineIndex: candidate.sdpMLineIndex ?? null,
  };
}

/**
 * Trickles a transport's ICE candidates over signaling, holding them until the SDP that
 * carries the ufrag has been sent (`release(sdp)`). Candidates already written into that SDP
 * are not sent again.
 */
export class Trickler {
  constructor(pc, transport, send) {
    this.transport = transport;
    this.send = send;
    this.released = false;
    this.queue = [];
    pc.addEventListener('icecandidate', (ev) => this._add(candidateInit(ev.candidate)));
  }

  _add(init) {
    if (!this.released) {
      this.queue.push(init);
      return;
    }
    this._emit(init);
  }

  _emit(init) {
    this.send({ type: 'trickle', transport: this.transport, candidate: init });
  }

  /** Call right after sending an offer/answer whose text is `sdp`. */
  release(sdp) {
    if (this.released) return;
    this.released = true;
    const queued = this.queue;
    this.queue = [];
    for (const init of queued) {
      if (init !== null && sdpHasCandidate(sdp, init.candidate)) continue;
      this._emit(init);
    }
  }
}

/**
 * Whether `sdp` already has the candidate: same foundation, component, protocol, priority,
 * address and port (the trickled string also carries extensions such as `ufrag` that the SDP
 * line does not).
 */
export function sdpHasCandidate(sdp, candidate) {
  const key = candidate.replace(/^a=/, '').split(/\s+/).slice(0, 6).join(' ');
  return sdp.split(/\r?\n/).some((line) => line.startsWith(`a=${key} `) || line === `a=${key}`);
}

/** How long a PC may stay 'disconnected' before its media path counts as dead (ms). */
export const DISCONNECTED_RESTART_MS = 2000;

/**
 * Calls `onDead` once when `pc`'s media path is dead: its connectionState is 'failed' (ICE
 * failed or consent expired, RFC 7675), or has been 'disconnected' (nothing heard from the
 * server) for DISCONNECTED_RESTART_MS. aiortc has no ICE restart, so the caller replaces the
 * PC (docs/protocol.md, "Media restart").
 */
export class PathWatchdog {
  constructor(pc, onDead) {
    this.pc = pc;
    this.onDead = onDead;
    this.timer = null;
    this.fired = false;
    this.listener = () => this._check();
    pc.addEventListener('connectionstatechange', this.listener);
  }

  _check() {
    const state = this.pc.connectionState;
    if (state === 'failed') {
      this._fire();
    } else if (state === 'disconnected') {
      if (this.timer === null) {
        this.timer = setTimeout(() => {
          this.timer = null;
          if (this.pc.connectionState === 'disconnected') this._fire();
        }, DISCONNECTED_RESTART_MS);
      }
    } else if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  _fire() {
    if (this.fired) return;
    this.fired = true;
    this.stop();
    this.onDead();
  }

  stop() {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.pc.removeEventListener('connectionstatechange', this.listener);
  }
}
