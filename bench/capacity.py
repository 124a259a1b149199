"""Capacity benchmark: step the listener count until delivery or latency gives way.

Usage: ``python -m bench.capacity [--steps 100,200,400,800] [--duration 10] [--processes 2]``

Starts ``sfu serve`` in its own process on 127.0.0.1 (as bench/fanout.py does) and, for two
speakers (one Opus speaker; one audio+video speaker: Opus plus VP8 at ~500 kbit/s), runs
``sfu loadtest`` programmatically at each listener count. Printed per step: delivery (all
listeners, and the worst listener), end-to-end latency p99, the server's CPU in microseconds
per forwarded packet (``process_cpu_seconds_total`` / ``sfu_packets_forwarded_total`` deltas
from ``/metrics``; without them, server CPU from /proc over packets received), its share of a
core, and the tester's. Then, per speaker, the largest count with delivery >= 99% and
p99 <= 50 ms. Steps are bounded (at most 10, each at most 5000 listeners); a speaker's
remaining steps are skipped once delivery falls below 90%.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
from typing import Any

from bench.fanout import cpu_seconds
from signaling.loadtest.config import LoadTestConfig
from signaling.loadtest.runner import run_loadtest
from signaling.serverproc import start_server, stop_server, wait_healthy

MAX_STEPS = 10
MAX_LISTENERS = 5000
DELIVERY_OK = 99.0
P99_OK_MS = 50.0
SCENARIOS = {"opus": (1, 0), "audio+video": (1, 1)}  # (audio publishers, video publishers)


def parse_steps(text: str) -> list[int]:
    """``"100,200,400"`` -> [100, 200, 400] (bounded)."""
    try:
        steps = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad --steps {text!r}") from None
    if not steps or len(steps) > MAX_STEPS or any(not 1 <= s <= MAX_LISTENERS for s in steps):
        raise argparse.ArgumentTypeError(
            f"--steps: 1 to {MAX_STEPS} counts, each 1..{MAX_LISTENERS}"
        )
    return sorted(set(steps))


async def run_step(
    url: str, secret: str, pid: int, scenario: str, listeners: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One load test; returns the row printed for it."""
    audio, video = SCENARIOS[scenario]
    config = LoadTestConfig(
        url=url,
        room=f"cap-{scenario.replace('+', '-')}-{listeners}",
        audio_publishers=audio,
        video_publishers=video,
        listeners=listeners,
        duration_s=args.duration,
        join_rate=args.join_rate,
        processes=args.processes,
        token_secret=secret,
        ice_hosts=["127.0.0.1"],
        decoder=False,
    ).validate()
    cpu0 = cpu_seconds(pid)
    report = await run_loadtest(config, progress=not args.quiet, handle_sigint=True)
    proc_cpu = cpu_seconds(pid) - cpu0
    server = report["server"]
    us = server["cpu_us_per_forwarded_packet"]
    if not isinstance(us, float | int):
        received = report["delivery"]["packets_received"]
        us = round(proc_cpu / received * 1e6, 2) if received else None
    return {
        "scenario": scenario,
        "listeners": listeners,
        "joined": report["peers"]["joined_listeners"],
        "delivery_pct": report["delivery"]["delivery_pct"],
        "worst_listener_pct": report["delivery"]["listener_min_pct"],
        "p99_ms": report["latency_ms"]["p99"],
        "us_per_packet": us,
        "server_cores": server["cpu_cores_avg"],
        "tester_cores": report["tester"]["cores"],
        "interrupted": report["interrupted"],
    }


def _ok(row: dict[str, Any]) -> bool:
    return (
        row["delivery_pct"] is not None
        and row["delivery_pct"] >= DELIVERY_OK
        and row["p99_ms"] is not None
        and row["p99_ms"] <= P99_OK_MS
    )


def _fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "n/a" if value is None else str(value)


def print_table(rows: list[dict[str, Any]]) -> None:
    """The per-step table and the capacity per scenario."""
    print(
        f"{'speaker':<12} {'N':>5} {'joined':>6} {'deliv %':>8} {'worst %':>8} {'p99 ms':>7} "
        f"{'us/pkt':>7} {'server':>6} {'tester':>6} {'ok':>3}"
    )
    for r in rows:
        print(
            f"{r['scenario']:<12} {r['listeners']:>5} {r['joined']:>6} "
            f"{_fmt(r['delivery_pct']):>8} {_fmt(r['worst_listener_pct']):>8} "
            f"{_fmt(r['p99_ms'], 1):>7} {_fmt(r['us_per_packet'], 1):>7} "
            f"{_fmt(r['server_cores']):>6} {_fmt(r['tester_cores']):>6} "
            f"{'yes' if _ok(r) else 'no':>3}"
        )
    for scenario in SCENARIOS:
        good = [r["listeners"] for r in rows if r["scenario"] == scenario and _ok(r)]
        if any(r["scenario"] == scenario for r in rows):
            best = max(good) if good else "none of the steps"
            print(
                f"{scenario}: largest listener count with delivery >= {DELIVERY_OK:.0f}% and "
                f"p99 <= {P99_OK_MS:.0f} ms: {best}"
            )


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Start the server, run every step of every scenario, print the table."""
    secret = secrets.token_urlsafe(48)
    proc, url = start_server(
        tempfile.mkdtemp(prefix="sfu-capacity-"), env={"SFU_JWT_SECRET": secret}
    )
    rows: list[dict[str, Any]] = []
    try:
        await asyncio.to_thread(wait_healthy, url, proc)
        for scenario in args.scenarios:
            for listeners in args.steps:
                row = await run_step(url, secret, proc.pid, scenario, listeners, args)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
                if row["interrupted"]:
                    return rows
                if row["delivery_pct"] is None or row["delivery_pct"] < 90:
                    break  # larger steps would only be worse
    finally:
        stop_server(proc)
    return rows


def main() -> int:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=parse_steps, default=[100, 200, 400, 800])
    parser.add_argument("--duration", type=float, default=10.0, help="steady phase per step (s)")
    parser.add_argument(
        "--processes", type=int, default=min(4, os.cpu_count() or 1), help="tester workers"
    )
    parser.add_argument("--join-rate", type=float, default=50.0, help="joins per second")
    parser.add_argument(
        "--scenarios",
        type=lambda s: [x for x in s.split(",") if x],
        default=list(SCENARIOS),
        help="comma-separated: " + ", ".join(SCENARIOS),
    )
    parser.add_argument("--quiet", action="store_true", help="no live progress")
    parser.add_argument("--json", help="write the rows as JSON to this file")
    args = parser.parse_args()
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}")
    if not 1 <= args.processes <= 64 or not 0 < args.duration <= 600:
        parser.error("--processes must be 1..64 and --duration 0..600 s")
    rows = asyncio.run(main_async(args))
    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
