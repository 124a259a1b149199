"""The load-test report: built from the workers' statistics, printed, saved as JSON or PNG.

Loss is counted per listener and track from RTP sequence numbers (RFC 3550 §6.4.1: expected =
highest - first sequence number received + 1), plus the packets a listener should still have
got after its last arrival (the tail, estimated from the publisher's rate) or, for a track it
never received, since it joined (after a 2 s grace for ICE and DTLS). Delivery = received /
expected. Jitter is RFC 3550's interarrival jitter per listener; the table shows its median
and 95th percentile over listeners.
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import statistics
import time
from typing import TYPE_CHECKING, Any

from signaling.loadtest.config import LoadTestConfig

if TYPE_CHECKING:
    from signaling.loadtest.runner import Collected

TAIL_GRACE_S = 0.3
SETUP_GRACE_S = 2.0
BOTTLENECK_CORE_SHARE = 0.85
NA = "n/a"


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (nearest rank) of ``values``, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _expected_missing(rate: float, start: float, stop: float | None, grace: float) -> int:
    if stop is None or rate <= 0:
        return 0
    return max(0, round((stop - start - grace) * rate))


def _tracks(data: Collected) -> dict[str, dict[str, Any]]:
    tracks: dict[str, dict[str, Any]] = {}
    for final in data.finals.values():
        for publisher in final["publishers"]:
            for sid, sent in publisher["tracks"].items():
                span = (sent["last"] or 0) - (sent["started"] or 0)
                tracks[sid] = {
                    "track": sid,
                    "publisher": publisher["identity"],
                    "kind": sent["kind"],
                    "packets_sent": sent["packets"],
                    "bytes_sent": sent["bytes"],
                    "bitrate_kbps": _r(sent["bytes"] * 8 / span / 1e3, 1) if span > 0 else None,
                    "rate_pps": sent["packets"] / span if span > 0 else 0.0,
                    "started": sent["started"],
                    "last": sent["last"],
                }
    return tracks


def build_report(config: LoadTestConfig, data: Collected, parent_cpu_s: float) -> dict[str, Any]:
    """The whole report as a JSON-ready dict (see the module docstring for definitions)."""
    now = time.monotonic()
    wall = now - data.started
    tracks = _tracks(data)
    listeners = [entry for final in data.finals.values() for entry in final["listeners"]]
    per_track: dict[str, dict[str, Any]] = {
        sid: {"received": 0, "expected": 0, "receiving": 0, "jitter": []} for sid in tracks
    }
    per_listener_delivery: list[float] = []
    tracks_received: list[int] = []
    for listener in listeners:
        got = want = 0
        receiving = 0
        for sid, track in tracks.items():
            entry = listener["tracks"].get(sid)
            if entry is not None and entry["packets"] > 0:
                tail = _expected_missing(
                    track["rate_pps"], entry["last_arrival"], track["last"], TAIL_GRACE_S
                )
                expected = entry["expected"] + tail
                received = min(entry["packets"], expected)
                receiving += 1
                per_track[sid]["receiving"] += 1
                per_track[sid]["jitter"].append(entry["jitter_ms"])
            else:
                start = max(listener["joined_at"], track["started"] or listener["joined_at"])
                expected = _expected_missing(track["rate_pps"], start, track["last"], SETUP_GRACE_S)
                received = 0
            per_track[sid]["received"] += received
            per_track[sid]["expected"] += expected
            got += received
            want += expected
        tracks_received.append(receiving)
        if want:
            per_listener_delivery.append(got / want)
    track_rows = []
    for sid, track in tracks.items():
        agg = per_track[sid]
        delivery = agg["received"] / agg["expected"] if agg["expected"] else None
        track_rows.append(
            {
                **{k: v for k, v in track.items() if k not in ("started", "last", "rate_pps")},
                "listeners_receiving": agg["receiving"],
                "packets_received": agg["received"],
                "packets_expected": agg["expected"],
                "delivery_pct": _r(None if delivery is None else 100 * delivery, 3),
                "loss_pct": _r(None if delivery is None else 100 * (1 - delivery), 3),
                "jitter_ms_median": _r(statistics.median(agg["jitter"]) if agg["jitter"] else None),
                "jitter_ms_p95": _r(percentile(agg["jitter"], 0.95)),
            }
        )
    received_total = sum(a["received"] for a in per_track.values())
    expected_total = sum(a["expected"] for a in per_track.values())
    delivery_pct = 100 * received_total / expected_total if expected_total else None

    joined_listeners = int(data.total("joined_listeners"))
    joined_publishers = int(data.total("joined_publishers"))
    latencies = data.steady_latencies or data.latencies
    decoder = next(
        (f["decoder"] for f in data.finals.values() if f.get("decoder") is not None), None
    )
    if decoder is not None:
        decoder["audio_ok"] = decoder["frames"].get("audio", 0) > 0 or config.audio_publishers == 0
        decoder["video_ok"] = decoder["frames"].get("video", 0) > 0 or config.video_publishers == 0

    worker_cpu = {w: float(f["cpu_s"]) for w, f in data.finals.items()}
    for w, tick in data.ticks.items():
        worker_cpu.setdefault(w, float(tick.get("cpu_s", 0)))
    tester_cpu = sum(worker_cpu.values()) + parent_cpu_s
    per_worker = {str(w): round(cpu / wall, 3) for w, cpu in sorted(worker_cpu.items())}
    notes = list(data.notes)
    busy = [w for w, share in per_worker.items() if share >= BOTTLENECK_CORE_SHARE]
    if busy:
        notes.append(
            f"worker(s) {', '.join(busy)} used {BOTTLENECK_CORE_SHARE:.0%}+ of a core: the tester "
            "may be the bottleneck (use more --processes, or a second machine)"
        )
    if config.processes > (os.cpu_count() or 1):
        notes.append("more --processes than CPU cores: workers compete with each other")

    report: dict[str, Any] = {
        "tool": "sfu loadtest",
        "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "config": config.to_dict(),
        "interrupted": data.interrupted,
        "wall_s": round(wall, 2),
        "steady_s": _r((data.steady_end or now) - data.steady_start if data.steady_start else None),
        "peers": {
            "expected": config.peers,
            "joined_publishers": joined_publishers,
            "joined_listeners": joined_listeners,
            "failed": int(data.total("failed")),
        },
        "join": {
            "count": len(data.join_times),
            "p50_ms": _r(_ms(percentile(data.join_times, 0.5))),
            "p95_ms": _r(_ms(percentile(data.join_times, 0.95))),
            "p99_ms": _r(_ms(percentile(data.join_times, 0.99))),
            "failures": dict(sorted(data.failures.items(), key=lambda kv: -kv[1])),
        },
        "tracks": track_rows,
        "delivery": {
            "packets_received": received_total,
            "packets_expected": expected_total,
            "delivery_pct": _r(delivery_pct, 3),
            "loss_pct": _r(None if delivery_pct is None else 100 - delivery_pct, 3),
            "listener_min_pct": _r(
                100 * min(per_listener_delivery) if per_listener_delivery else None, 3
            ),
            "listener_median_pct": _r(
                100 * statistics.median(per_listener_delivery) if per_listener_delivery else None,
                3,
            ),
        },
        "subscribers": {
            "listeners_reporting": len(listeners),
            "tracks_expected": len(tracks),
            "tracks_received_min": min(tracks_received) if tracks_received else None,
            "tracks_received_median": statistics.median(tracks_received)
            if tracks_received
            else None,
            "listeners_complete": sum(1 for n in tracks_received if n == len(tracks)),
        },
        "latency_ms": {
            "samples": len(latencies),
            "p50": _r(percentile(latencies, 0.5)),
            "p95": _r(percentile(latencies, 0.95)),
            "p99": _r(percentile(latencies, 0.99)),
            "max": _r(max(latencies) if latencies else None),
            "probes": sum(1 for entry in listeners if entry["probe"]),
        },
        "decoder": decoder,
        "tester": {
            "processes": config.processes,
            "cpu_count": os.cpu_count(),
            "cpu_s": round(tester_cpu, 2),
            "cores": round(tester_cpu / wall, 3) if wall > 0 else None,
            "worker_cores": per_worker,
        },
        "server": server_summary(data),
        "timeline": data.timeline,
        "notes": notes,
    }
    return report


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def server_summary(data: Collected) -> dict[str, Any]:
    """Server CPU and memory over the steady phase, from its /metrics samples (n/a if absent)."""
    cpu, rss, fwd = (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "sfu_packets_forwarded_total",
    )
    start = data.steady_start or data.started
    end = (data.steady_end or time.monotonic()) + 1.5
    window = [(t, m) for t, m in data.server if start - 1.5 <= t <= end] or data.server
    out: dict[str, Any] = {
        "metrics": "available" if data.server else "n/a (no /metrics)",
        "cpu_cores_avg": NA,
        "cpu_cores_max": NA,
        "rss_mb_max": NA,
        "rss_mb_end": NA,
        "packets_forwarded": NA,
        "cpu_us_per_forwarded_packet": NA,
        "participants_max": NA,
        "send_dropped": NA,
    }
    with_cpu = [(t, m) for t, m in window if cpu in m]
    if len(with_cpu) >= 2:
        (t0, m0), (t1, m1) = with_cpu[0], with_cpu[-1]
        if t1 > t0:
            out["cpu_cores_avg"] = round((m1[cpu] - m0[cpu]) / (t1 - t0), 3)
        steps = [
            (b[1][cpu] - a[1][cpu]) / (b[0] - a[0])
            for a, b in itertools.pairwise(with_cpu)
            if b[0] > a[0]
        ]
        if steps:
            out["cpu_cores_max"] = round(max(steps), 3)
        if fwd in m0 and fwd in m1:
            forwarded = m1[fwd] - m0[fwd]
            out["packets_forwarded"] = int(forwarded)
            if forwarded > 0:
                out["cpu_us_per_forwarded_packet"] = round((m1[cpu] - m0[cpu]) / forwarded * 1e6, 2)
        if "sfu_send_dropped_total" in m0 and "sfu_send_dropped_total" in m1:
            out["send_dropped"] = int(m1["sfu_send_dropped_total"] - m0["sfu_send_dropped_total"])
    rss_values = [m[rss] for _t, m in data.server if rss in m]
    if rss_values:
        out["rss_mb_max"] = round(max(rss_values) / 1e6, 1)
        out["rss_mb_end"] = round(rss_values[-1] / 1e6, 1)
    participants = [m["sfu_participants"] for _t, m in data.server if "sfu_participants" in m]
    if participants:
        out["participants_max"] = int(max(participants))
    return out


# -- output --------------------------------------------------------------------------------


def _fmt(value: Any, suffix: str = "", digits: int = 2) -> str:
    if value is None or value == NA:
        return NA
    if isinstance(value, float):
        return f"{value:.{digits}f}{suffix}"
    return f"{value}{suffix}"


def print_report(report: dict[str, Any], file: Any = None) -> None:
    """Print the report as rich tables (``file``: a text stream, default stdout)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, highlight=False)
    if not console.is_terminal:
        console.width = 140
    cfg = report["config"]
    title = "PARTIAL REPORT (interrupted)" if report["interrupted"] else "Load test report"
    console.print(
        f"[bold]{title}[/bold]: {cfg['url']} room {cfg['room']}, {cfg['audio_publishers']} audio "
        f"+ {cfg['video_publishers']} video publishers, {cfg['listeners']} listeners, "
        f"{cfg['processes']} process(es); steady phase {_fmt(report['steady_s'], ' s', 1)} "
        f"of {_fmt(report['wall_s'], ' s', 1)}"
    )
    tracks = Table(title="Published tracks (aggregated over listeners)", title_justify="left")
    for column in (
        "track",
        "publisher",
        "kind",
        "packets sent",
        "bitrate",
        "receiving",
        "loss",
        "jitter median",
        "jitter p95",
    ):
        tracks.add_column(column, justify="left" if column in ("track", "publisher") else "right")
    for row in report["tracks"]:
        tracks.add_row(
            row["track"],
            row["publisher"],
            row["kind"],
            str(row["packets_sent"]),
            _fmt(row["bitrate_kbps"], " kb/s", 0),
            f"{row['listeners_receiving']}/{report['subscribers']['listeners_reporting']}",
            _fmt(row["loss_pct"], " %", 3),
            _fmt(row["jitter_ms_median"], " ms"),
            _fmt(row["jitter_ms_p95"], " ms"),
        )
    if not report["tracks"]:
        tracks.add_row("(no published track)", "", "", "", "", "", "", "", "")
    console.print(tracks)

    d, s, j, lat = report["delivery"], report["subscribers"], report["join"], report["latency_ms"]
    peers, tester, server = report["peers"], report["tester"], report["server"]
    summary = Table(title="Summary", title_justify="left", show_header=False)
    summary.add_column("what")
    summary.add_column("value")
    summary.add_row(
        "delivery",
        f"{_fmt(d['delivery_pct'], ' %', 3)} of {d['packets_expected']} packets "
        f"(per listener min {_fmt(d['listener_min_pct'], ' %')}, "
        f"median {_fmt(d['listener_median_pct'], ' %')})",
    )
    summary.add_row(
        "subscribers",
        f"{s['listeners_reporting']} count-only listeners; tracks received / expected: min "
        f"{_fmt(s['tracks_received_min'])} / {s['tracks_expected']}, median "
        f"{_fmt(s['tracks_received_median'])} / {s['tracks_expected']}; "
        f"{s['listeners_complete']} got every track",
    )
    summary.add_row(
        "joins",
        f"{peers['joined_publishers']}+{peers['joined_listeners']} of {peers['expected']} peers; "
        f"join time p50 {_fmt(j['p50_ms'], ' ms', 1)}, p95 {_fmt(j['p95_ms'], ' ms', 1)}, "
        f"p99 {_fmt(j['p99_ms'], ' ms', 1)}; {peers['failed']} failed",
    )
    for reason, count in j["failures"].items():
        summary.add_row("  join failure", f"{count} x {reason}")
    summary.add_row(
        "latency (send to receive)",
        f"p50 {_fmt(lat['p50'], ' ms')}, p95 {_fmt(lat['p95'], ' ms')}, p99 "
        f"{_fmt(lat['p99'], ' ms')}, max {_fmt(lat['max'], ' ms')} "
        f"({lat['samples']} samples on {lat['probes']} probes)",
    )
    dec = report["decoder"]
    if dec is None:
        summary.add_row("decoding listener", "n/a (needs at least 2 listeners)")
    else:
        verdict = "OK" if dec["audio_ok"] and dec["video_ok"] else "FAILED"
        summary.add_row(
            "decoding listener",
            f"{verdict}: {dec['frames'].get('audio', 0)} audio and "
            f"{dec['frames'].get('video', 0)} video frames decoded from "
            f"{dec['tracks_decoding']}/{dec['tracks_subscribed']} tracks",
        )
    summary.add_row(
        "server",
        f"CPU {_fmt(server['cpu_cores_avg'])} cores avg (max {_fmt(server['cpu_cores_max'])}), "
        f"RSS {_fmt(server['rss_mb_end'], ' MB', 1)} (max {_fmt(server['rss_mb_max'], ' MB', 1)}), "
        f"{_fmt(server['cpu_us_per_forwarded_packet'], ' us')} CPU per forwarded packet, "
        f"participants max {_fmt(server['participants_max'])}",
    )
    summary.add_row(
        "tester",
        f"{tester['cpu_s']} CPU s = {_fmt(tester['cores'])} cores over {tester['processes']} "
        f"worker(s) on {tester['cpu_count']} CPUs; per worker "
        + ", ".join(f"{w}: {share:.2f}" for w, share in tester["worker_cores"].items()),
    )
    console.print(summary)
    for note in report["notes"]:
        console.print(f"note: {note}")


def write_json(report: dict[str, Any], path: str) -> None:
    """Write the whole report as JSON."""
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")


def write_plot(report: dict[str, Any], path: str) -> None:
    """A PNG of bitrate, loss, latency and CPU over time (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = report["timeline"]

    def series(key: str, scale: float = 1.0) -> tuple[list[float], list[float]]:
        xs = [p["t_s"] for p in points if p.get(key) is not None]
        ys = [p[key] * scale for p in points if p.get(key) is not None]
        return xs, ys

    fig, axes = plt.subplots(4, 1, figsize=(10, 11), sharex=True)
    ax = axes[0]
    ax.plot(*series("sent_kbps"), label="sent by all publishers")
    ax.plot(*series("received_per_listener_kbps"), label="received per listener (mean)")
    ax.set_ylabel("kbit/s")
    ax.set_ylim(bottom=0)
    ax.set_title("bitrate")
    total = ax.twinx()
    total.plot(
        *series("received_kbps", 1e-3),
        color="tab:gray",
        linestyle="--",
        label="received by all listeners (right)",
    )
    total.set_ylabel("Mbit/s")
    total.set_ylim(bottom=0)
    lines = ax.get_legend_handles_labels()
    more = total.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="lower right")
    ax = axes[1]
    ax.plot(*series("loss_pct"), color="tab:red")
    ax.set_ylabel("%")
    ax.set_title("loss (per second, over listeners)")
    ax.set_ylim(bottom=0)
    ax = axes[2]
    ax.plot(*series("latency_p50_ms"), label="p50")
    ax.plot(*series("latency_p99_ms"), label="p99")
    ax.set_ylabel("ms")
    ax.set_title("end-to-end latency (publisher send to probe receive)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left")
    ax = axes[3]
    xs, ys = series("server_cpu_cores", 100)
    ax.plot(xs, ys, label="server" if xs else "server (n/a: no /metrics)")
    ax.plot(*series("tester_cpu_cores", 100), label="tester (all workers)")
    ax.set_ylabel("% of one core")
    ax.set_title("CPU")
    ax.set_xlabel("time since start (s)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left")
    steady = [p["t_s"] for p in points if p["phase"] == "steady"]
    if steady:
        for ax in axes:
            ax.axvspan(steady[0], steady[-1], color="tab:green", alpha=0.06)
    cfg = report["config"]
    fig.suptitle(
        f"sfu loadtest: {cfg['audio_publishers']} audio + {cfg['video_publishers']} video "
        f"publishers, {cfg['listeners']} listeners (shaded: steady phase)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
