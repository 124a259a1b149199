"""Summarise a py-spy collapsed-stack profile (``py-spy record --format raw``) of the server's
event loop: the share of the main thread's samples per category (idle in epoll, the media
receive path, RTCP, the liveness watchdog, WebSocket signaling ...), and the top functions.

Usage: ``python -m bench.profile_summary PROFILE.txt [--top 25]``

Samples of other threads (asyncio's child watcher, executor threads) are left out, and so are
the frames above the event loop's ``_run_once`` (``aiohttp.web.run_app`` is in every stack). A
sample goes to the first category, in the order of :data:`CATEGORIES`, with a marker in one
of its frames.
"""

from __future__ import annotations

import argparse
import collections
import sys

CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("idle (epoll_wait)", ("EpollSelector.select",)),
    ("fan-out (Producer.receive_rtp)", ("Producer.receive_rtp",)),
    (
        "liveness watchdog + consent checks",
        ("_Watchdog.step", "consent.py", "_answer_check", "consent_prober"),
    ),
    ("RTCP received (receiver reports)", ("WebRtcTransport.on_rtcp",)),
    ("RTCP sent (sender reports)", ("_rtcp_step", "_send_reports", "_run_rtcp")),
    ("DTLS/SRTP receive", ("RTCDtlsTransport.__run", "handle_rtp_data", "_direct_srtp")),
    ("ICE/STUN (aioice)", ("aioice/",)),
    ("UDP receive demux (udp_mux)", ("udp_mux.py", "_MuxTransport", "_guarded_datagram")),
    ("WebSocket signaling (aiohttp)", ("aiohttp/", "signaling/ws.py", "_write_loop")),
    ("active speaker observer", ("observers.py",)),
    ("timers/scheduling (asyncio)", ("asyncio/",)),
]


def summarise(path: str, top: int) -> str:
    """The report text for the profile at ``path``."""
    totals: collections.Counter[str] = collections.Counter()
    functions: collections.Counter[str] = collections.Counter()
    main = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if "_run_once" not in stack:
                continue  # not the event loop's thread
            n = int(count)
            main += n
            frames = stack.split(";")
            frames = frames[next(i for i, x in enumerate(frames) if "_run_once" in x) + 1 :]
            for name, markers in CATEGORIES:
                if any(m in frame for frame in reversed(frames) for m in markers):
                    totals[name] += n
                    break
            else:
                totals["other"] += n
            seen = set()
            for frame in frames:
                key = frame.split(":")[0] + ")" if ":" in frame else frame
                if key not in seen:
                    seen.add(key)
                    functions[key] += n
    if not main:
        return "no event-loop samples"
    lines = [f"event-loop thread: {main} samples"]
    for name, n in totals.most_common():
        lines.append(f"  {100 * n / main:5.1f}%  {name}")
    lines.append(f"top functions (inclusive, % of event-loop samples), {top}:")
    for name, n in functions.most_common(top):
        lines.append(f"  {100 * n / main:5.1f}%  {name}")
    return "\n".join(lines)


def main() -> int:
    """Print the summary of one profile."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summarise(args.profile, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
